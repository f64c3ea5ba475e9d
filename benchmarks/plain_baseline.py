"""A plain torchvision resnet18 from scratch, cross-validated on a folder of real galaxies.

The reference the pipeline's recipe is judged against: no deepgal training code, only
torchvision's resnet18, Adam(W), per-sample random flips + 90-degree rotations, the whole
frame (or a centre crop) resized once with antialiasing, per-channel normalisation from the
training fold, cross-entropy, the final epoch's weights scored on the held-out fold. The
same folds as ``benchmarks/real_recipe.py`` (:func:`deepgal.crossval.run_folds`, fold seed 0).

    python benchmarks/plain_baseline.py --size 64 --epochs 30 --only-folds 0 1 --threads 1
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

from deepgal.crossval import identical_images, run_folds, summarise
from deepgal.data.labelled import read_labelled

REAL700 = Path(__file__).resolve().parents[2] / "shared" / "data" / "galaxy10_decals_real700"


def prepare(images: np.ndarray, size: int, crop: float) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, size, size) float in [0, 1]: centre crop, antialiased resize."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    h = x.shape[-1]
    k = round(h * crop)
    o = (h - k) // 2
    x = x[..., o : o + k, o : o + k]
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def dihedral(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(B, 3, S, S) -> each image under a random one of the 8 flips/90-degree rotations."""
    out = torch.empty_like(x)
    for i, (k, f) in enumerate(
        zip(
            torch.randint(0, 4, (len(x),), generator=gen).tolist(),
            torch.randint(0, 2, (len(x),), generator=gen).tolist(),
            strict=True,
        )
    ):
        v = torch.rot90(x[i], k, (1, 2))
        out[i] = v.flip(2) if f else v
    return out


def train_fold(x, y, tr, te, args) -> dict[str, np.ndarray]:
    """Train on rows ``tr``; returns {"plain": (len(te), 10) softmax probabilities of rows ``te``}."""
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    mean = x[tr].mean((0, 2, 3), keepdim=True)
    std = x[tr].std((0, 2, 3), keepdim=True)
    xn = (x - mean) / std
    model = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    for _ in range(args.epochs):
        model.train()
        perm = torch.from_numpy(tr)[torch.randperm(len(tr), generator=gen)]
        for b in range(len(tr) // args.batch):
            idx = perm[b * args.batch : (b + 1) * args.batch]
            loss = F.cross_entropy(model(dihedral(xn[idx], gen)), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return {
            "plain": torch.cat(
                [model(xn[te[i : i + 128]]).softmax(1) for i in range(0, len(te), 128)]
            ).numpy()
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REAL700)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--crop", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only-folds", type=int, nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write the result (real_recipe.py --merge reads it)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images, labels, _ = read_labelled(args.data)
    y = labels.astype("int64")
    x = prepare(images, args.size, args.crop)
    cpu0 = time.process_time()
    results = run_folds(
        y,
        args.folds,
        0,
        lambda tr, te, k: train_fold(x, y, tr, te, args),
        groups=identical_images(images),
        only=args.only_folds,
        on_fold=lambda r: print(f"fold {r.fold}: {r.wall_s / 60:.1f} min", flush=True),
    )
    out = {
        "folds": args.folds,
        "folds_run": len(results),
        "n": int(sum(len(r.held) for r in results)),
        "wall_min_per_fold": float(np.mean([r.wall_s for r in results])) / 60,
        "cpu_min_per_fold": (time.process_time() - cpu0) / len(results) / 60,
        "loadavg": os.getloadavg(),
        "args": vars(args) | {"data": str(args.data)},
        "plain": summarise(y, results, "plain", args.folds).to_dict(),
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str) + "\n")
    s = out["plain"]
    print(
        f"| plain resnet18 {args.size}px crop {args.crop} {args.epochs} ep | "
        f"{len(results)}/{args.folds} | {100 * s['acc']:.1f} ± {100 * s['se']:.1f} | "
        f"{100 * s['spread']:.1f} | {s['macro_f1']:.3f} | {out['wall_min_per_fold']:.1f} | "
        f"{out['cpu_min_per_fold']:.1f} | {'/'.join(f'{v:.1f}' for v in out['loadavg'])} |"
    )


if __name__ == "__main__":
    main()
