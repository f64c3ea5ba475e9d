"""A fixed wavelet front end on the 700 real galaxies: scattering + logistic regression, k-fold CV.

Probe W1 of docs/experiments/real700.md (session 7): how much of what the 100-epoch resnet18
learns (67.3 % +TTA) a *fixed* filter bank carries. Each image's 0.6 centre crop is resized to
``--side`` px (antialiased), every colour is scattered (``kymatio``'s 2-D scattering, J scales,
8 orientations, order 2), log(1 + 10 S) is average-pooled to ``--pool`` x ``--pool`` per
coefficient, standardised, and read by a multinomial logistic regression whose C is picked by
an inner 3-fold CV on the training fold only (the 8 views of an image kept in one inner fold).
The 8 dihedral views of every training image are training rows; at test the 8 views'
probabilities are averaged ("tta"; "plain" is the unrotated view). Folds: the library's own
(``deepgal.data.folds.cv_folds``, identical images grouped), so rows compare with
``benchmarks/real_recipe.py``'s.

    pip install kymatio
    python benchmarks/scattering_probe.py --threads 2 --probs /tmp/w1_probs

kymatio 0.3.0's ``kymatio.torch`` import fails with SciPy >= 1.17 (``sph_harm`` was removed,
for its 3-D transform); the 2-D frontend is imported on its own here.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from deepgal.crossval import identical_images
from deepgal.data.folds import cv_folds
from deepgal.data.labelled import read_labelled

REAL700 = Path(__file__).resolve().parents[2] / "shared" / "data" / "galaxy10_decals_real700"


def scatter_views(images: np.ndarray, side: int, pool: int, J: int) -> np.ndarray:
    """(8, N, D) float32: pooled log-scattering of the 8 dihedral views of (N, H, W, 3) uint8."""
    from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

    h = images.shape[1]
    c = round(h * 0.6)
    o = (h - c) // 2
    # Crop the uint8 frames first: a float copy of the centre only (0.36 of the pixels).
    x = torch.from_numpy(images[:, o : o + c, o : o + c]).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
    scat = ScatteringTorch2D(J=J, shape=(side, side), L=8, max_order=2)
    views = []
    for k in range(8):
        v = torch.rot90(x, k % 4, (2, 3))
        if k >= 4:
            v = v.flip(3)
        out = []
        for i in range(0, len(v), 50):
            s = torch.log1p(scat(v[i : i + 50].contiguous()) * 10)  # (n, 3, K, h, w)
            out.append(F.adaptive_avg_pool2d(s.flatten(1, 2), pool).flatten(1))
        views.append(torch.cat(out).numpy())
    return np.stack(views)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REAL700)
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--pool", type=int, default=2)
    ap.add_argument("--J", type=int, default=3)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--probs", type=Path, help="write each fold's held-out probabilities here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    images, labels, _ = read_labelled(args.data)
    y = labels.astype(np.int64)
    t0 = time.time()
    feats = scatter_views(images, args.side, args.pool, args.J)
    print(f"scattering {feats.shape} in {time.time() - t0:.0f} s", flush=True)
    accs, taccs, probs, truth = [], [], [], []
    splits = cv_folds(y, args.folds, args.seed, identical_images(images), str(args.data))
    for k, (tr, te) in enumerate(splits):
        x_tr = feats[:, tr].reshape(-1, feats.shape[2])
        y_tr = np.tile(y[tr], 8)
        scaler = StandardScaler().fit(x_tr)
        inner = GroupKFold(3).split(x_tr, y_tr, np.tile(np.arange(len(tr)), 8))
        clf = LogisticRegressionCV(
            Cs=[0.003, 0.01, 0.03], cv=inner, max_iter=300, n_jobs=args.threads
        )
        clf.fit(scaler.transform(x_tr), y_tr)
        p = np.mean([clf.predict_proba(scaler.transform(feats[v, te])) for v in range(8)], 0)
        p0 = clf.predict_proba(scaler.transform(feats[0, te]))
        accs.append((p0.argmax(1) == y[te]).mean())
        taccs.append((p.argmax(1) == y[te]).mean())
        probs.append(p)
        truth.append(y[te])
        if args.probs:
            args.probs.mkdir(parents=True, exist_ok=True)
            np.savez(args.probs / f"fold{k}.npz", held=te, plain=p0, tta=p)
        print(
            f"fold {k}: C {clf.C_[0]} acc {accs[-1]:.3f} tta {taccs[-1]:.3f} "
            f"({time.time() - t0:.0f} s)",
            flush=True,
        )
    p, t = np.concatenate(probs), np.concatenate(truth)
    a = (p.argmax(1) == t).mean()
    print(
        f"side {args.side} pool {args.pool} J {args.J}: plain {np.mean(accs):.3f}, "
        f"tta {a:.3f} +- {np.sqrt(a * (1 - a) / len(t)):.3f}, spread {np.std(taccs):.3f}, "
        f"macro-F1 {f1_score(t, p.argmax(1), average='macro'):.3f}"
    )


if __name__ == "__main__":
    main()
