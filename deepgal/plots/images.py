"""Image figures: a grid of sample galaxies per class, one galaxy under each augmentation, and
a gallery of the most confused class pairs (real images of class A the model called B).

Each writes one PNG atomically and returns the Figure (see :mod:`deepgal.plots.common`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from deepgal.data.galaxy10 import CLASS_NAMES
from deepgal.plots.common import DPI, bare, check_images, class_color, new_figure, save_png

CELL_IN = 1.25  # inches per thumbnail in the sample grid
LABEL_IN = 2.5  # room for the longest class name left of the grid
PANEL_IN = 3.0  # inches per augmentation panel
MAX_PANEL_COLS = 4
GAP_IN = 0.5  # between the mistakes and the reference images of the predicted class


def plot_sample_grid(
    images: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    per_class: int = 6,
    class_names: Sequence[str] = CLASS_NAMES,
    dpi: int = DPI,
) -> Figure:
    """Grid of ``images`` (N, H, W, 3) uint8: one row per class (named on the left, in its
    class colour), the first ``per_class`` images of that class in the given order.

    ``labels`` (N,) ints 0..K-1. Every class gets a row; a class with fewer images leaves
    blank cells, so grids of different data sets line up.
    """
    images = check_images(images, "images", ndim=4)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(images),):
        raise ValueError(
            f"need labels (N,) for images (N, H, W, 3); got {labels.shape} for {images.shape}"
        )
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1; got {per_class}")
    k = len(class_names)
    fig = new_figure(LABEL_IN + CELL_IN * per_class, CELL_IN * k + 0.5, dpi=dpi)
    axes = fig.subplots(k, per_class, squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.02})
    for c in range(k):
        rows = np.flatnonzero(labels == c)[:per_class]
        for j in range(per_class):
            ax = axes[c, j]
            bare(ax)
            if j < len(rows):
                ax.imshow(images[rows[j]])  # default antialiasing: thumbnails are downscaled
        axes[c, 0].set_ylabel(
            class_names[c], rotation=0, ha="right", va="center", fontsize=9, color=class_color(c)
        )
    fig.suptitle(f"Sample images per class (first {per_class} of each)")
    save_png(fig, path)
    return fig


def plot_augmentation_preview(
    panels: Sequence[tuple[str, np.ndarray]], path: str | Path, dpi: int = DPI
) -> Figure:
    """One galaxy under each augmentation: ``panels`` is a list of (title, image (H, W, 3)
    uint8), drawn left to right in rows of at most four, each under its title."""
    if not panels:
        raise ValueError("no panels to draw; expected [(title, image (H, W, 3) uint8), ...]")
    images = [check_images(img, f"panel '{title}'", ndim=3) for title, img in panels]
    ncols = min(len(panels), MAX_PANEL_COLS)
    nrows = math.ceil(len(panels) / ncols)
    fig = new_figure(PANEL_IN * ncols, PANEL_IN * nrows + 0.5, dpi=dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, _), img in zip(axes.flat, panels, images, strict=False):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=10)
    fig.suptitle("One galaxy under each augmentation")
    save_png(fig, path)
    return fig


@dataclass(frozen=True)
class ConfusedPair:
    """Images of class ``true`` the model called ``pred``: ``mistakes`` are their data-file
    indices (int64, most confident first), ``references`` indices of correctly classified
    images of ``pred`` (most confident first), so a reader sees what the model took them for;
    ``count`` of ``support`` images of ``true`` went this way."""

    true: int
    pred: int
    count: int
    support: int
    mistakes: np.ndarray
    references: np.ndarray


def pick_confused(
    predictions: pd.DataFrame,
    pairs: Sequence[tuple[int, int]],
    per_pair: int = 6,
    references: int = 2,
) -> list[ConfusedPair]:
    """For each (true, pred) class pair, the images to show from ``predictions`` (one split's
    rows of the predictions file: ``index, label, pred, confidence``).

    Mistakes and references are ranked by ``confidence``, highest first: the model's surest
    errors are the most telling (and, on real data, where a label may be wrong).
    """
    ranked = predictions.sort_values(["confidence", "index"], ascending=[False, True])
    out = []
    for true, pred in pairs:
        wrong = ranked[(ranked["label"] == true) & (ranked["pred"] == pred)]
        right = ranked[(ranked["label"] == pred) & (ranked["pred"] == pred)]
        out.append(
            ConfusedPair(
                true=int(true),
                pred=int(pred),
                count=len(wrong),
                support=int((predictions["label"] == true).sum()),
                mistakes=wrong["index"].to_numpy(np.int64)[:per_pair],
                references=right["index"].to_numpy(np.int64)[:references],
            )
        )
    return out


def plot_confused_pairs(
    pairs: Sequence[ConfusedPair],
    images: Mapping[int, np.ndarray],
    title: str,
    path: str | Path,
    confidence: Mapping[int, float] | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    dpi: int = DPI,
) -> Figure:
    """A row per pair: its name and count, the misclassified images, then (after a gap) images
    of the predicted class the model got right.

    ``images`` maps a data-file index to its image (H, W, 3) uint8 and must hold every index
    of ``pairs``; ``confidence`` (index -> probability of the predicted class) captions the
    thumbnails. Rows are as wide as the longest one, so pairs with fewer images leave blanks.
    """
    needed = _check_pair_images(pairs, images)
    n_wrong = max(1, max(len(p.mistakes) for p in pairs))
    n_ref = max(len(p.references) for p in pairs)
    side = max(max(images[i].shape[:2]) for i in needed) if needed else 1
    strip_in = CELL_IN * n_wrong + (GAP_IN + CELL_IN * n_ref if n_ref else 0)
    fig = new_figure(LABEL_IN + strip_in, (CELL_IN + 0.25) * len(pairs) + 1.0, dpi=dpi)
    grid = fig.add_gridspec(len(pairs), 2, width_ratios=[LABEL_IN, strip_in], wspace=0.02)
    for r, pair in enumerate(pairs):
        label_ax = fig.add_subplot(grid[r, 0])
        label_ax.axis("off")
        _label_pair(label_ax, pair, class_names)
        # The row's thumbnails as ONE image (a few axes per figure instead of ~60: drawing
        # and laying out an axes costs ~10 ms, which made this the plot stage's slowest part).
        ax = fig.add_subplot(grid[r, 1])
        bare(ax)
        strip, centres = _thumbnail_strip(images, pair, n_wrong, n_ref, side)
        ax.imshow(strip, interpolation="antialiased")
        _caption_thumbnails(ax, centres, confidence or {}, side)
        if r == 0:
            _head_strips(ax, n_wrong, n_ref, side)
    fig.suptitle(title, fontsize=13)
    save_png(fig, path)
    return fig


def _check_pair_images(pairs: Sequence[ConfusedPair], images: Mapping[int, np.ndarray]) -> list:
    """Every data-file index the pairs show (mistakes, then references, pair by pair), after
    checking that there are pairs and an (H, W, 3) uint8 image for each index."""
    if not pairs:
        raise ValueError("no confused pairs to draw (no misclassified images?)")
    needed = [int(i) for p in pairs for i in (*p.mistakes, *p.references)]
    lacking = sorted(set(needed) - set(images))
    if lacking:
        raise ValueError(
            f"no image given for data-file indices {lacking[:5]}"
            f"{' ...' if len(lacking) > 5 else ''}"
        )
    for i in needed:
        check_images(images[i], f"image {i}", ndim=3)
    return needed


def _label_pair(ax, pair: ConfusedPair, class_names: Sequence[str]) -> None:
    """Write a row's label, right-aligned in ``ax``: the true class and the predicted class
    (bold, in their class colours) around "predicted as", then the count and its share."""
    share = pair.count / pair.support if pair.support else 0.0
    lines = (
        (0.72, class_names[pair.true], pair.true),
        (0.5, "predicted as", None),
        (0.28, class_names[pair.pred], pair.pred),
        (0.06, f"{pair.count} of {pair.support} ({share:.0%})", None),
    )
    for y, text, cls in lines:
        style = (
            {"fontsize": 8}
            if cls is None
            else {"fontsize": 10, "fontweight": "bold", "color": class_color(cls)}
        )
        ax.text(1.0, y, text, ha="right", va="center", transform=ax.transAxes, **style)


def _caption_thumbnails(ax, centres, confidence: Mapping[int, float], side: int) -> None:
    """Caption each thumbnail of a strip (``centres``: (index, x pixel) pairs) under it with
    its data-file index and, when known, its ``confidence``."""
    for idx, x in centres:
        p = confidence.get(idx)
        ax.text(
            x,
            side * 1.02,
            f"#{idx}" + (f"  p={p:.2f}" if p is not None else ""),
            ha="center",
            va="top",
            fontsize=7,
        )


def _head_strips(ax, n_wrong: int, n_ref: int, side: int) -> None:
    """Title the first row's two parts: the mistakes, and (if any) the references."""
    ax.text(0, -side * 0.04, "misclassified,\nmost confident first", fontsize=9, va="bottom")
    if n_ref:
        ax.text(
            _ref_start(n_wrong, side),
            -side * 0.04,
            "the predicted class,\ncorrectly classified",
            fontsize=9,
            va="bottom",
        )


def _ref_start(n_wrong: int, side: int) -> int:
    """Pixel column where a strip's reference images begin (after the mistakes and the gap)."""
    return n_wrong * side + round(side * GAP_IN / CELL_IN)


def _thumbnail_strip(
    images: Mapping[int, np.ndarray], pair: ConfusedPair, n_wrong: int, n_ref: int, side: int
) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """One row of the gallery as an image (side, width, 3) uint8 on white: the pair's mistakes
    in ``n_wrong`` cells, a gap, its references in ``n_ref`` cells (unused cells stay white;
    smaller images sit centred in their cell). Also ``[(index, x centre)]`` per thumbnail."""
    width = _ref_start(n_wrong, side) + n_ref * side if n_ref else n_wrong * side
    strip = np.full((side, width, 3), 255, np.uint8)
    centres = []
    for start, shown in ((0, pair.mistakes), (_ref_start(n_wrong, side), pair.references)):
        for j, idx in enumerate(int(i) for i in shown):
            img = images[idx]
            h, w = img.shape[:2]
            x0 = start + j * side + (side - w) // 2
            y0 = (side - h) // 2
            strip[y0 : y0 + h, x0 : x0 + w] = img
            centres.append((idx, start + j * side + side / 2 - 0.5))
    return strip, centres
