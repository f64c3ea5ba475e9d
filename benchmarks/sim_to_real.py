"""Sim-to-real check of the embedded galaxies: train on synthetic images only, score on real ones.

Renders ``--per-class`` synthetic images per class, trains a small CNN from scratch on CPU
(random rotations by any angle, flips, scale and brightness jitter), then classifies the 50
real Galaxy10 DECaLS images of ``../shared/data`` (resized 256 -> ``--image-size`` with
antialiasing) and prints overall and per-class accuracy. The real images are only scored,
never trained or tuned on. Averages over every seed in ``--seeds``.

    python benchmarks/sim_to_real.py --per-class 400 --epochs 12 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from deepgal.data.galaxy10 import CLASS_NAMES, NUM_CLASSES
from deepgal.data.synthetic import render

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "galaxy10_decals_sample50.h5"


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Small(nn.Module):
    """5 conv-BN-ReLU blocks (3 max-pools), global average pooling, linear head (~25 MMAC at
    64 px, so a run fits in minutes on 2 CPU cores)."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            block(3, w), nn.MaxPool2d(2), block(w, 2 * w), nn.MaxPool2d(2),
            block(2 * w, 4 * w), nn.MaxPool2d(2), block(4 * w, 8 * w), block(8 * w, 8 * w))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(8 * w, NUM_CLASSES))

    def forward(self, x):  # (B, 3, S, S) -> (B, 10)
        return self.head(self.features(x).mean((2, 3)))


class Res(nn.Module):
    """A ResNet-18-like stack (basic blocks 1-1-1-1 at widths 32..256), for comparison."""

    def __init__(self):
        super().__init__()
        self.stem = block(3, 32)
        chans = [32, 64, 128, 256]
        layers, cin = [], 32
        for i, c in enumerate(chans):
            layers.append(Basic(cin, c, stride=1 if i == 0 else 2))
            cin = c
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, NUM_CLASSES)

    def forward(self, x):
        return self.head(self.layers(self.stem(x)).mean((2, 3)))


class Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout)))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.skip(x))


MODELS = {"small": Small, "resnet18-ish": Res}


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-sample rotation (any angle), flip, scale 0.85-1.15 and brightness jitter of (B,3,S,S)."""
    b = x.shape[0]
    ang = torch.rand(b, generator=gen) * 2 * math.pi
    scale = 0.85 + 0.3 * torch.rand(b, generator=gen)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, torch.zeros(b)], 1),
                         torch.stack([sin * flip, cos, torch.zeros(b)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    gain = 1 + 0.15 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    return x * gain + 0.1 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)


def load_real(size: int) -> tuple[torch.Tensor, np.ndarray]:
    """Real images resized to (50, 3, size, size) float in 0..1, and labels (50,)."""
    with h5py.File(REAL, "r") as f:
        x = torch.from_numpy(f["images"][:]).permute(0, 3, 1, 2).float() / 255
        y = f["ans"][:].astype(np.int64)
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False), y


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Class predictions (N,) averaged over the 8 flips/quarter turns (the dihedral group)."""
    model.eval()
    logits = 0
    for k in range(4):
        for flip in (False, True):
            v = torch.rot90(x, k, (2, 3))
            logits = logits + F.softmax(model(v.flip(3) if flip else v), 1)
    return logits.argmax(1).numpy()


def run(args, seed: int, x_real: torch.Tensor, y_real: np.ndarray) -> np.ndarray:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    images, labels = render(args.per_class, args.image_size, seed=1000 + seed)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(labels.astype(np.int64))
    print(f"seed {seed}: rendered {len(x)} images in {time.time() - t0:.1f}s")
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    model = MODELS[args.model]()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    steps = args.epochs * math.ceil(len(x) / args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        correct, total, t0 = 0, 0, time.time()
        for i in range(0, len(x), args.batch_size):
            idx = perm[i:i + args.batch_size]
            xb = (augment(x[idx], gen) - mean) / std
            out = model(xb)
            loss = F.cross_entropy(out, y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += int((out.argmax(1) == y[idx]).sum())
            total += len(idx)
        pred = predict(model, (x_real - mean) / std)
        print(f"  epoch {epoch + 1}: train acc {correct / total:.3f}  real acc "
              f"{(pred == y_real).mean():.3f}  ({time.time() - t0:.0f}s)", flush=True)
    return pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", type=int, default=400)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="small")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not REAL.exists():
        raise SystemExit(f"{REAL}: the real sample is missing; it lives in ../shared/data")
    torch.set_num_threads(args.threads)
    x_real, y_real = load_real(args.image_size)
    per_class = []
    for seed in args.seeds:
        pred = run(args, seed, x_real, y_real)
        hits = pred == y_real
        per_class.append([hits[y_real == c].mean() for c in range(NUM_CLASSES)])
        conf = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=int)
        np.add.at(conf, (y_real, pred), 1)
        print(f"seed {seed}: real accuracy {hits.mean():.3f}; confusion (rows = true):\n{conf}")
    acc = np.array(per_class)  # (seeds, classes)
    print(f"\nreal accuracy over seeds {args.seeds}: mean {acc.mean():.3f} "
          f"(per seed {', '.join(f'{a:.3f}' for a in acc.mean(1))})")
    for c, name in enumerate(CLASS_NAMES):
        print(f"  {c} {name:26s} {acc[:, c].mean():.2f}")


if __name__ == "__main__":
    main()
