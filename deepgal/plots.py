"""Report figures: embedding scatters, training curves, confusion matrices (this module) and the
sample grid and augmentation preview (:mod:`deepgal.plots_images`, re-exported here).

Every ``plot_*`` function writes one PNG atomically (parent dirs created) and returns the
matplotlib Figure, so callers and tests can inspect titles and legends. A class has the same
colour in every figure (:data:`deepgal.plots_common.CLASS_COLORS`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from deepgal.data.galaxy10 import CLASS_NAMES
from deepgal.plots_common import (CLASS_COLORS, DPI, VARIANT_COLORS, class_color, new_figure,
                                  save_png)
from deepgal.plots_images import plot_augmentation_preview, plot_sample_grid

__all__ = ["plot_embedding", "plot_curves", "plot_confusion", "plot_sample_grid",
           "plot_augmentation_preview", "CLASS_COLORS"]

EMBEDDING_SIZE = (9.0, 6.5)  # inches; the legend of ten long class names sits on the right
CURVES_SIZE = (13.0, 5.0)
CONFUSION_SIZE = (9.0, 8.0)
HISTORY_COLUMNS = ("epoch", "train/accuracy", "val/accuracy", "train/loss", "val/loss")
_METHOD_LABELS = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PC"}


def plot_embedding(df: pd.DataFrame, title: str, path: str | Path,
                   class_names: Sequence[str] = CLASS_NAMES, dpi: int = DPI) -> Figure:
    """Scatter of one split/method of the reduce output, coloured by class.

    ``df`` has columns ``label`` (int 0..9), ``x``, ``y`` and optionally ``method``
    (one value); the legend lists the names of the classes present, in class order.
    """
    for col in ("label", "x", "y"):
        if col not in df.columns:
            raise ValueError(f"embedding frame lacks column '{col}'; got {list(df.columns)}")
    labels = df["label"].to_numpy(dtype=np.int64)
    xy = df[["x", "y"]].to_numpy(dtype=np.float32)
    fig = new_figure(*EMBEDDING_SIZE, dpi=dpi)
    ax = fig.add_subplot()
    # One scatter in a fixed shuffled order: drawing class by class would bury the first
    # classes under the last ones wherever clusters overlap.
    order = np.random.default_rng(0).permutation(len(labels))
    size = float(np.clip(6000 / max(len(labels), 1), 1.0, 30.0))  # dense maps need small dots
    ax.scatter(xy[order, 0], xy[order, 1], c=[class_color(k) for k in labels[order]],
               s=size, alpha=0.75, linewidths=0, rasterized=True)
    methods = df["method"].unique() if "method" in df.columns else []
    axis = _METHOD_LABELS.get(str(methods[0]), str(methods[0])) if len(methods) == 1 else "dim"
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    ax.set_title(title)
    present = sorted(set(labels.tolist()))
    handles = [Line2D([], [], marker="o", linestyle="", markersize=7, color=class_color(k))
               for k in present]
    fig.legend(handles, [class_names[k] for k in present], loc="outside right upper",
               title="class", frameon=False)
    save_png(fig, path)
    return fig


def plot_curves(histories: Mapping[str, pd.DataFrame], path: str | Path,
                dpi: int = DPI) -> Figure:
    """Accuracy (left) and loss (right) per epoch of every variant on one figure.

    ``histories`` maps variant name to its ``history.csv`` frame (columns ``epoch``,
    ``train/accuracy``, ``val/accuracy``, ``train/loss``, ``val/loss``). Train is dashed, val
    solid; one colour per variant, named in the legend.
    """
    if not histories:
        raise ValueError("no histories to plot; expected {variant: history DataFrame}")
    for variant, h in histories.items():
        missing = [c for c in HISTORY_COLUMNS if c not in h.columns]
        if missing:
            raise ValueError(f"history of '{variant}' lacks columns {missing}; "
                             f"got {list(h.columns)}")
    fig = new_figure(*CURVES_SIZE, dpi=dpi)
    ax_acc, ax_loss = fig.subplots(1, 2)
    handles = []
    for i, (variant, h) in enumerate(histories.items()):
        color = VARIANT_COLORS[i % len(VARIANT_COLORS)]
        for ax, metric in ((ax_acc, "accuracy"), (ax_loss, "loss")):
            # Markers keep a one-epoch history visible as points.
            ax.plot(h["epoch"], h[f"train/{metric}"], color=color, linestyle="--",
                    marker=".", markersize=4)
            ax.plot(h["epoch"], h[f"val/{metric}"], color=color, linestyle="-",
                    marker=".", markersize=4)
        handles.append(Line2D([], [], color=color, linewidth=2.5, label=variant))
    handles += [Line2D([], [], color="black", linestyle="--", label="train"),
                Line2D([], [], color="black", linestyle="-", label="val")]
    for ax, metric in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per epoch")
        ax.grid(alpha=0.3)
    ax_acc.set_ylim(0, 1)
    # A model that blows up for an epoch (BatchNorm statistics of a barely trained deep net)
    # has a loss 1e8 times the others: a log axis keeps every curve readable.
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss (log scale)")
    fig.suptitle("Training curves of all variants (train dashed, val solid)")
    fig.legend(handles=handles, loc="outside right upper", title="variant", frameon=False)
    save_png(fig, path)
    return fig


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], title: str, path: str | Path,
                   normalize: bool = True, dpi: int = DPI) -> Figure:
    """Confusion matrix ``cm`` (K, K) ints, rows = true class, columns = predicted class.

    With ``normalize`` the colours are row shares (recall per class) and each cell reads
    "share% (count)"; otherwise colours and text are counts. Empty rows stay zero, not NaN.
    """
    cm = np.asarray(cm)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix has shape {cm.shape}; expected ({k}, {k}) "
                         "for the class names given")
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
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.set_xticks(range(k), labels=list(class_names), rotation=40, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    save_png(fig, path)
    return fig
