"""A confusion matrix as a PNG: rows true class, columns predicted, cells "share% (count)"."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from deepgal.plots.common import DPI, new_figure, save_png

CONFUSION_SIZE = (9.0, 8.0)  # inches


def plot_confusion(
    cm: np.ndarray,
    class_names: Sequence[str],
    title: str,
    path: str | Path,
    normalize: bool = True,
    dpi: int = DPI,
) -> Figure:
    """Confusion matrix ``cm`` (K, K) ints, rows = true class, columns = predicted class.

    With ``normalize`` the colours are row shares (recall per class) and each cell reads
    "share% (count)"; otherwise colours and text are counts. Empty rows stay zero, not NaN.
    """
    cm = np.asarray(cm)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(
            f"confusion matrix has shape {cm.shape}; expected ({k}, {k}) for the class names given"
        )
    counts = cm.astype(np.int64)
    support = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    values = shares if normalize else counts
    fig = new_figure(*CONFUSION_SIZE, dpi=dpi)
    ax = fig.add_subplot()
    vmax = 1.0 if normalize else max(int(counts.max()), 1)
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
    fig.colorbar(im, ax=ax, label="share of true class" if normalize else "count", shrink=0.8)
    for i in range(k):
        for j in range(k):
            text = f"{shares[i, j]:.0%}\n({counts[i, j]})" if normalize else f"{counts[i, j]}"
            # White text where the cell is dark enough to hide black text.
            dark = values[i, j] > 0.6 * vmax
            ax.text(
                j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black"
            )
    ax.set_xticks(range(k), labels=list(class_names), rotation=40, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    save_png(fig, path)
    return fig
