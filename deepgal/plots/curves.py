"""Accuracy and loss per epoch of every variant on one figure."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from deepgal.plots.common import DPI, VARIANT_COLORS, new_figure, save_png

CURVES_SIZE = (13.0, 5.0)  # inches
HISTORY_COLUMNS = ("epoch", "train/accuracy", "val/accuracy", "train/loss", "val/loss")


def plot_curves(histories: Mapping[str, pd.DataFrame], path: str | Path, dpi: int = DPI) -> Figure:
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
            raise ValueError(
                f"history of '{variant}' lacks columns {missing}; got {list(h.columns)}"
            )
    fig = new_figure(*CURVES_SIZE, dpi=dpi)
    ax_acc, ax_loss = fig.subplots(1, 2)
    handles = []
    for i, (variant, h) in enumerate(histories.items()):
        color = VARIANT_COLORS[i % len(VARIANT_COLORS)]
        for ax, metric in ((ax_acc, "accuracy"), (ax_loss, "loss")):
            # Markers keep a one-epoch history visible as points.
            ax.plot(
                h["epoch"],
                h[f"train/{metric}"],
                color=color,
                linestyle="--",
                marker=".",
                markersize=4,
            )
            ax.plot(
                h["epoch"], h[f"val/{metric}"], color=color, linestyle="-", marker=".", markersize=4
            )
        handles.append(Line2D([], [], color=color, linewidth=2.5, label=variant))
    handles += [
        Line2D([], [], color="black", linestyle="--", label="train"),
        Line2D([], [], color="black", linestyle="-", label="val"),
    ]
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
