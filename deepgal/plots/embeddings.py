"""2-D maps of the feature embeddings, coloured by class.

- :func:`plot_embedding_grid`: one variant, one panel per method (rows: UMAP, t-SNE, PCA) and
  split (columns: train, val, test), one shared class legend;
- :func:`plot_variant_maps`: one method and split (the val UMAP by default) of every variant
  side by side, so their class separation compares at a glance.

Both read the reduce stage's long frame (``embeddings.csv``: ``split, method, index, label, x,
y``), where each method is ONE map fitted on train with val and test placed on it
(:mod:`deepgal.reduce`): so a val or test panel draws the train points in grey behind its own,
on the train panel's axes. Given the evaluate stage's predictions (``split, index, label,
pred``), the val and test points the model got wrong get a black ring: a reader sees which
train cluster each error fell into.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from deepgal.data.galaxy10 import CLASS_NAMES
from deepgal.plots.common import DPI, class_color, class_legend, new_figure, save_png

PANEL_IN = 3.5  # inches per square map
LEGEND_IN = 2.75  # room on the right for the ten class names
TITLE_IN = 0.75  # room above for the title
MAX_COLS = 3  # variant maps per row
METHOD_ORDER = ("umap", "tsne", "pca")
METHOD_LABELS = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
SPLIT_ORDER = ("train", "val", "test")
EMBEDDING_COLUMNS = ("split", "method", "index", "label", "x", "y")
CONTEXT_COLOR = "#d9d9d9"  # train points behind val/test on a shared map
MISTAKE_RING = Line2D(
    [], [], marker="o", linestyle="", markersize=7, markerfacecolor="none", markeredgecolor="black"
)


def _ordered(present: Collection[str], order: Sequence[str]) -> list[str]:
    """``present`` in ``order`` first, then any other value sorted."""
    return [v for v in order if v in present] + sorted(set(present) - set(order))


def _check_embedding(emb: pd.DataFrame, what: str) -> pd.DataFrame:
    missing = [c for c in EMBEDDING_COLUMNS if c not in emb.columns]
    if missing:
        raise ValueError(
            f"{what} lacks columns {missing}; got {list(emb.columns)} "
            f"(expected the reduce stage's {list(EMBEDDING_COLUMNS)})"
        )
    if emb.empty:
        raise ValueError(f"{what} has no rows")
    return emb


def _mistakes(part: pd.DataFrame, predictions: pd.DataFrame | None) -> np.ndarray:
    """(len(part),) bool: rows whose (split, index) the model predicted wrong."""
    if predictions is None:
        return np.zeros(len(part), dtype=bool)
    wrong = predictions.loc[predictions["pred"] != predictions["label"], ["split", "index"]]
    keys = pd.MultiIndex.from_frame(wrong.astype({"split": str, "index": np.int64}))
    return pd.MultiIndex.from_frame(
        part[["split", "index"]].astype({"split": str, "index": np.int64})
    ).isin(keys)


def _context(of_method: pd.DataFrame) -> pd.DataFrame | None:
    """The train points of one method's map, drawn behind the other splits; None if absent."""
    train = of_method[of_method["split"] == "train"]
    return None if train.empty else train


def _extra_legend(rings: bool, context: bool) -> list:
    extra = [(MISTAKE_RING, "misclassified")] if rings else []
    if context:
        extra.append(
            (
                Line2D([], [], marker="o", linestyle="", markersize=7, color=CONTEXT_COLOR),
                "train (behind val/test)",
            )
        )
    return extra


def _dot_size(n: int) -> float:
    return float(np.clip(2500 / max(n, 1), 0.5, 20.0))  # dense maps need small dots


def _scatter(
    ax: Axes, part: pd.DataFrame, wrong: np.ndarray, context: pd.DataFrame | None = None
) -> None:
    """Points of ``part`` in class colours, ``wrong`` ones ringed, ``context`` grey behind."""
    if context is not None:
        ax.scatter(
            context["x"],
            context["y"],
            c=CONTEXT_COLOR,
            s=_dot_size(len(context)),
            linewidths=0,
            rasterized=True,
        )
    labels = part["label"].to_numpy(dtype=np.int64)
    xy = part[["x", "y"]].to_numpy(dtype=np.float32)
    # One scatter in a fixed shuffled order: drawing class by class would bury the first
    # classes under the last ones wherever clusters overlap.
    order = np.random.default_rng(0).permutation(len(labels))
    size = _dot_size(len(labels))
    ax.scatter(
        xy[order, 0],
        xy[order, 1],
        c=[class_color(k) for k in labels[order]],
        s=size,
        alpha=0.8,
        linewidths=0,
        rasterized=True,
    )
    if wrong.any():
        ax.scatter(
            xy[wrong, 0],
            xy[wrong, 1],
            facecolors="none",
            edgecolors="black",
            s=max(4 * size, 12.0),
            linewidths=0.6,
            rasterized=True,
        )
    ax.set_xticks([])
    ax.set_yticks([])


def plot_embedding_grid(
    emb: pd.DataFrame,
    title: str,
    path: str | Path,
    predictions: pd.DataFrame | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    dpi: int = DPI,
) -> Figure:
    """One variant's maps: a row per method, a column per split, one class legend.

    ``emb``: the reduce output (columns ``split, method, index, label, x, y``), one map per
    method: the val/test panels show that method's train points in grey behind theirs and
    share the train panel's axes. ``predictions``: optional frame with ``split, index, label,
    pred``: wrong val/test points are ringed in black.
    """
    _check_embedding(emb, f"embeddings for '{title}'")
    methods = _ordered(set(emb["method"]), METHOD_ORDER)
    splits = _ordered(set(emb["split"]), SPLIT_ORDER)
    fig = new_figure(
        PANEL_IN * len(splits) + LEGEND_IN, PANEL_IN * len(methods) + TITLE_IN, dpi=dpi
    )
    axes = fig.subplots(len(methods), len(splits), squeeze=False)
    for r, method in enumerate(methods):
        of_method = emb[emb["method"] == method]
        train = _context(of_method)
        for c, split in enumerate(splits):
            ax = axes[r, c]
            part = of_method[of_method["split"] == split]
            _scatter(ax, part, _mistakes(part, predictions), None if split == "train" else train)
            if c > 0:
                ax.sharex(axes[r, 0])
                ax.sharey(axes[r, 0])
            if r == 0:
                ax.set_title(f"{split} ({len(part):,} images)")
            if c == 0:
                ax.set_ylabel(METHOD_LABELS.get(method, method), fontsize=11)
    class_legend(
        fig,
        emb["label"],
        class_names,
        _extra_legend(predictions is not None, "train" in splits and len(splits) > 1),
    )
    fig.suptitle(title, fontsize=14)
    save_png(fig, path)
    return fig


def plot_variant_maps(
    maps: Mapping[str, pd.DataFrame],
    path: str | Path,
    method: str = "umap",
    split: str = "val",
    captions: Mapping[str, str] | None = None,
    predictions: Mapping[str, pd.DataFrame] | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    dpi: int = DPI,
) -> Figure:
    """The ``method`` map of ``split`` for every variant of ``maps`` (variant -> its
    embeddings frame), in the order given, rows of up to three, one class legend; behind a
    val or test split, that map's train points in grey.

    ``captions`` (variant -> text, e.g. its val accuracy) go under each variant's name;
    ``predictions`` (variant -> predictions frame) ring the points each variant got wrong.
    """
    if not maps:
        raise ValueError("no embeddings to compare; expected {variant: embeddings frame}")
    parts = {}
    for variant, emb in maps.items():
        _check_embedding(emb, f"embeddings of '{variant}'")
        part = emb[(emb["method"] == method) & (emb["split"] == split)]
        if part.empty:
            raise ValueError(
                f"embeddings of '{variant}' have no {method} map of {split}; "
                f"they have {sorted(set(zip(emb['method'], emb['split'], strict=True)))}"
            )
        parts[variant] = part
    ncols = min(len(parts), MAX_COLS)
    nrows = math.ceil(len(parts) / ncols)
    fig = new_figure(PANEL_IN * ncols + LEGEND_IN, PANEL_IN * nrows + TITLE_IN, dpi=dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(parts) :]:
        ax.axis("off")
    labels: set[int] = set()
    drew_context = False
    for ax, (variant, part) in zip(axes.flat, parts.items(), strict=False):
        preds = (predictions or {}).get(variant)
        context = (
            None if split == "train" else _context(maps[variant][maps[variant]["method"] == method])
        )
        drew_context |= context is not None
        _scatter(ax, part, _mistakes(part, preds), context)
        caption = (captions or {}).get(variant)
        ax.set_title(f"{variant}\n{caption}" if caption else variant)
        labels |= set(part["label"].astype(int))
    class_legend(fig, labels, class_names, _extra_legend(bool(predictions), drew_context))
    fig.suptitle(
        f"{METHOD_LABELS.get(method, method)} of the {split} split, every variant", fontsize=14
    )
    save_png(fig, path)
    return fig
