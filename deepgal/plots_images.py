"""Image figures: a grid of sample galaxies per class and one galaxy under each augmentation.

Both write one PNG atomically and return the Figure (see :mod:`deepgal.plots_common`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from deepgal.data.galaxy10 import CLASS_NAMES
from deepgal.plots_common import DPI, class_color, new_figure, save_png

CELL_IN = 1.25  # inches per thumbnail in the sample grid
LABEL_IN = 2.5  # room for the longest class name left of the grid
PANEL_IN = 3.0  # inches per augmentation panel
MAX_PANEL_COLS = 4


def _check_images(images: np.ndarray, what: str, ndim: int) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != ndim or images.shape[-1] != 3:
        shape = "(N, H, W, 3)" if ndim == 4 else "(H, W, 3)"
        raise ValueError(f"{what} must be uint8 RGB {shape}; got {images.dtype} {images.shape}")
    return images


def _bare(ax: Axes) -> None:
    """No ticks or frame, but unlike axis('off') the y-label (the row name) stays visible."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_sample_grid(images: np.ndarray, labels: np.ndarray, path: str | Path,
                     per_class: int = 6, class_names: Sequence[str] = CLASS_NAMES,
                     dpi: int = DPI) -> Figure:
    """Grid of ``images`` (N, H, W, 3) uint8: one row per class (named on the left, in its
    class colour), the first ``per_class`` images of that class in the given order.

    ``labels`` (N,) ints 0..K-1. Every class gets a row; a class with fewer images leaves
    blank cells, so grids of different data sets line up.
    """
    images = _check_images(images, "images", ndim=4)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(images),):
        raise ValueError(f"need labels (N,) for images (N, H, W, 3); "
                         f"got {labels.shape} for {images.shape}")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1; got {per_class}")
    k = len(class_names)
    fig = new_figure(LABEL_IN + CELL_IN * per_class, CELL_IN * k + 0.5, dpi=dpi)
    axes = fig.subplots(k, per_class, squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.02})
    for c in range(k):
        rows = np.flatnonzero(labels == c)[:per_class]
        for j in range(per_class):
            ax = axes[c, j]
            _bare(ax)
            if j < len(rows):
                ax.imshow(images[rows[j]])  # default antialiasing: thumbnails are downscaled
        axes[c, 0].set_ylabel(class_names[c], rotation=0, ha="right", va="center",
                              fontsize=9, color=class_color(c))
    fig.suptitle(f"Sample images per class (first {per_class} of each)")
    save_png(fig, path)
    return fig


def plot_augmentation_preview(panels: Sequence[tuple[str, np.ndarray]], path: str | Path,
                              dpi: int = DPI) -> Figure:
    """One galaxy under each augmentation: ``panels`` is a list of (title, image (H, W, 3)
    uint8), drawn left to right in rows of at most four, each under its title."""
    if not panels:
        raise ValueError("no panels to draw; expected [(title, image (H, W, 3) uint8), ...]")
    images = [_check_images(img, f"panel '{title}'", ndim=3) for title, img in panels]
    ncols = min(len(panels), MAX_PANEL_COLS)
    nrows = math.ceil(len(panels) / ncols)
    fig = new_figure(PANEL_IN * ncols, PANEL_IN * nrows + 0.5, dpi=dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, _), img in zip(axes.flat, panels, images):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=10)
    fig.suptitle("One galaxy under each augmentation")
    save_png(fig, path)
    return fig
