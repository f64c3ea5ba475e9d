"""Captioned thumbnail galleries: the PNGs of `deepgal similar`, `deepgal explain` and the
report's Grad-CAM gallery."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .common import bare, check_images, new_figure, save_png

CELL_IN = 2.0  # inches per thumbnail
CAPTION_IN = 0.5  # room under each thumbnail for two short lines


@dataclass(frozen=True)
class Cell:
    """One thumbnail: ``image`` (H, W, 3) uint8, a ``caption`` (may hold a newline),
    optionally a ``heat`` map (h, w) float in [0, 1] drawn over it (stretched to the image),
    and ``frame``: a colour to outline it with (the query of a look-alike search)."""

    image: np.ndarray
    caption: str
    heat: np.ndarray | None = None
    frame: str | None = None


def plot_gallery(
    cells: Sequence[Cell], title: str, path: str | Path, max_cols: int = 7, pairs: bool = False
) -> Figure:
    """``cells`` left to right in rows of at most ``max_cols``, the rows as even as can be
    (``pairs``: an even number per row, so pairs of cells stay together), under ``title``;
    writes a PNG atomically."""
    if not cells:
        raise ValueError("no images to draw in the gallery")
    unit = 2 if pairs else 1
    units = math.ceil(len(cells) / unit)
    per_row = max(1, max_cols // unit)
    nrows = math.ceil(units / per_row)
    ncols = math.ceil(units / nrows) * unit
    fig = new_figure(CELL_IN * ncols, (CELL_IN + CAPTION_IN) * nrows + 0.75)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, cell in zip(axes.flat, cells, strict=False):  # trailing axes stay blank
        img = check_images(cell.image, f"gallery image '{cell.caption}'", ndim=3)
        h, w = img.shape[:2]
        ax.axis("on")
        bare(ax)
        ax.imshow(img, extent=(0, w, h, 0))
        if cell.heat is not None:
            # Bilinear upsampling of the coarse map, half transparent over the galaxy.
            ax.imshow(
                np.clip(cell.heat, 0, 1),
                cmap="jet",
                alpha=0.45,
                vmin=0,
                vmax=1,
                extent=(0, w, h, 0),
                interpolation="bilinear",
            )
        if cell.frame:
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color(cell.frame)
                spine.set_linewidth(3)
        ax.set_xlabel(cell.caption, fontsize=8)
    # Wrapped to the figure's width (~9 characters an inch at 11 pt): a narrow gallery of a
    # few images would otherwise cut a long title at both ends.
    fig.suptitle(textwrap.fill(title, max(30, int(CELL_IN * ncols * 9))), fontsize=11)
    save_png(fig, path)
    return fig
