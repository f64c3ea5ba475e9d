"""Contact sheet of the embedded galaxies next to real Galaxy10 DECaLS images.

One row per class: ``--synthetic`` rendered images, then ``--real`` images of the real sample
(``../shared/data``; skipped if absent). Writes ``docs/contact_sheet.png``.

    python benchmarks/contact_sheet.py --size 128
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from deepgal.data.galaxy10 import CLASS_NAMES, NUM_CLASSES  # noqa: E402
from deepgal.data.synthetic import render  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "galaxy10_decals_sample50.h5"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--synthetic", type=int, default=4)
    ap.add_argument("--real", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "contact_sheet.png")
    args = ap.parse_args()
    images, labels = render(args.synthetic, args.size, args.seed)
    real_x, real_y = None, None
    if REAL.exists():
        with h5py.File(REAL, "r") as f:
            real_x, real_y = f["images"][:], f["ans"][:]
    n_real = args.real if real_x is not None else 0
    cols = args.synthetic + n_real
    fig, axes = plt.subplots(
        NUM_CLASSES,
        cols,
        figsize=(1.5 * cols + 2.2, 1.5 * NUM_CLASSES),
        gridspec_kw={"wspace": 0.03, "hspace": 0.03},
    )
    for c in range(NUM_CLASSES):
        row = [images[i] for i in np.flatnonzero(labels == c)[: args.synthetic]]
        if n_real:
            row += [real_x[i] for i in np.flatnonzero(real_y == c)[:n_real]]
        for k, ax in enumerate(axes[c]):
            ax.imshow(row[k], interpolation="antialiased")
            ax.set_xticks([])
            ax.set_yticks([])
            if k == args.synthetic:  # a red line between the synthetic and the real columns
                ax.spines["left"].set_color("red")
                ax.spines["left"].set_linewidth(2)
        axes[c, 0].set_ylabel(
            f"{c} {CLASS_NAMES[c]}", rotation=0, ha="right", va="center", fontsize=9
        )
    axes[0, 0].set_title("synthetic", fontsize=10, loc="left")
    if n_real:
        axes[0, args.synthetic].set_title("real (Galaxy10 DECaLS)", fontsize=10, loc="left")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
