"""A plain torchvision resnet18 from scratch, cross-validated on a folder of real galaxies.

The reference the pipeline's recipe is judged against: no deepgal training code, only
torchvision's resnet18, Adam(W), per-sample random flips + 90-degree rotations, the whole
frame (or a centre crop) resized once with antialiasing, per-channel normalisation from the
training fold, cross-entropy, the final epoch's weights scored on the held-out fold. Same
stratified folds as ``benchmarks/real_recipe.py`` (``StratifiedKFold(shuffle, seed)``).

    python benchmarks/plain_baseline.py --size 64 --epochs 30 --max-folds 2 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from deepgal.data.labelled import read_labelled

REAL700 = Path(__file__).resolve().parents[2] / "shared" / "data" / "galaxy10_decals_real700"


def prepare(images: np.ndarray, size: int, crop: float) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, size, size) float in [0, 1]: centre crop, antialiased resize."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    h = x.shape[-1]
    k = round(h * crop)
    o = (h - k) // 2
    x = x[..., o:o + k, o:o + k]
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def dihedral(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(B, 3, S, S) -> each image under a random one of the 8 flips/90-degree rotations."""
    out = torch.empty_like(x)
    for i, (k, f) in enumerate(zip(torch.randint(0, 4, (len(x),), generator=gen).tolist(),
                                   torch.randint(0, 2, (len(x),), generator=gen).tolist())):
        v = torch.rot90(x[i], k, (1, 2))
        out[i] = v.flip(2) if f else v
    return out


def train_fold(x, y, tr, te, args) -> np.ndarray:
    """Train on rows ``tr``; returns the (len(te),) predicted classes of rows ``te``."""
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    mean = x[tr].mean((0, 2, 3), keepdim=True)
    std = x[tr].std((0, 2, 3), keepdim=True)
    xn = (x - mean) / std
    model = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    steps = args.epochs * (len(tr) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps) \
        if args.onecycle else None
    for _ in range(args.epochs):
        model.train()
        perm = torch.from_numpy(tr)[torch.randperm(len(tr), generator=gen)]
        for b in range(len(tr) // args.batch):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            loss = F.cross_entropy(model(dihedral(xn[idx], gen)), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched:
                sched.step()
    model.eval()
    with torch.no_grad():
        return torch.cat([model(xn[te[i:i + 128]]).argmax(1)
                          for i in range(0, len(te), 128)]).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REAL700)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--crop", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.0)
    ap.add_argument("--onecycle", action="store_true", help="one-cycle lr schedule (else constant)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only-folds", type=int, nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write per-fold accuracies and the confusion here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images, labels, _ = read_labelled(args.data)
    y = labels.astype("int64")
    x = prepare(images, args.size, args.crop)
    splits = list(StratifiedKFold(args.folds, shuffle=True, random_state=0).split(y, y))
    pred, truth, accs, walls = [], [], [], []
    cpu0 = time.process_time()
    for k in args.only_folds or range(args.folds):
        tr, te = splits[k]
        t0 = time.perf_counter()
        p = train_fold(x, y, tr, te, args)
        walls.append(time.perf_counter() - t0)
        accs.append(float((p == y[te]).mean()))
        pred.append(p)
        truth.append(y[te])
        print(f"fold {k}: acc {accs[-1]:.3f}, {walls[-1] / 60:.1f} min", flush=True)
    p, t = np.concatenate(pred), np.concatenate(truth)
    acc = float((p == t).mean())
    se = (acc * (1 - acc) / len(t)) ** 0.5
    if args.json:
        conf = np.zeros((10, 10), int)
        np.add.at(conf, (t, p), 1)
        args.json.write_text(json.dumps({
            "n": len(t), "folds": args.folds, "folds_run": len(accs),
            "wall_min_per_fold": np.mean(walls) / 60,
            "cpu_min_per_fold": (time.process_time() - cpu0) / len(accs) / 60,
            "loadavg": os.getloadavg(), "plain": {"fold_acc": accs, "confusion": conf.tolist()}}))
    load = "/".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"| plain {vars(args)} | {len(accs)}/{args.folds} | {100 * np.mean(accs):.1f} ± "
          f"{100 * se:.1f} | {100 * np.std(accs):.1f} | {f1_score(t, p, average='macro'):.3f} | "
          f"{np.mean(walls) / 60:.1f} | {(time.process_time() - cpu0) / len(accs) / 60:.1f} | "
          f"{load} |")


if __name__ == "__main__":
    main()
