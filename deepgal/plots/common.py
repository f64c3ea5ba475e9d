"""What every deepgal figure shares: the class and variant palettes, figure creation, the
class legend, thumbnails' bare axes and atomic PNG saving.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas, never through
``pyplot``: no global figure registry to leak from a loop of plots, no backend to pick, and the
returned Figure can be inspected by tests after it is saved.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from deepgal.data.galaxy10 import CLASS_NAMES
from deepgal.utils import atomic_write_bytes

DPI = 150
# matplotlib's tab10, fixed here so class k has the same colour in every figure and every
# matplotlib version (class order as in CLASS_NAMES).
CLASS_COLORS: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
# Variants get a different qualitative set (Dark2) so a curve is never mistaken for a class.
VARIANT_COLORS: tuple[str, ...] = (
    "#1b9e77",
    "#d95f02",
    "#7570b3",
    "#e7298a",
    "#66a61e",
    "#e6ab02",
    "#a6761d",
    "#666666",
)
assert len(CLASS_COLORS) == len(CLASS_NAMES)


def class_color(label: int) -> str:
    """Hex colour of class ``label`` (0..9)."""
    return CLASS_COLORS[int(label) % len(CLASS_COLORS)]


def new_figure(width_in: float, height_in: float, dpi: int = DPI) -> Figure:
    """A constrained-layout Figure with an Agg canvas.

    Its PNG is int(width_in * dpi) x int(height_in * dpi) pixels (Agg truncates), so sizes here
    are multiples of 0.25 in to come out exact.
    """
    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def class_legend(
    fig: Figure,
    present: Iterable[int],
    class_names: Sequence[str] = CLASS_NAMES,
    extra: Sequence[tuple[Artist, str]] = (),
) -> None:
    """One legend on the right of ``fig`` naming the classes ``present`` (in class order, in
    their colours), then any ``extra`` (handle, label) entries."""
    labels = sorted({int(k) for k in present})
    handles = [
        Line2D([], [], marker="o", linestyle="", markersize=7, color=class_color(k)) for k in labels
    ]
    names = [class_names[k] for k in labels]
    handles += [h for h, _ in extra]
    names += [name for _, name in extra]
    fig.legend(handles, names, loc="outside right upper", title="class", frameon=False)


def bare(ax: Axes) -> None:
    """No ticks or frame, but unlike axis('off') the axis labels (a row's name) stay visible."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def check_images(images: np.ndarray, what: str, ndim: int) -> np.ndarray:
    """``images`` as an array, or ValueError naming ``what`` unless uint8 RGB with ``ndim``
    dimensions ((N, H, W, 3) for 4, (H, W, 3) for 3)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != ndim or images.shape[-1] != 3:
        shape = "(N, H, W, 3)" if ndim == 4 else "(H, W, 3)"
        raise ValueError(f"{what} must be uint8 RGB {shape}; got {images.dtype} {images.shape}")
    return images


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically and return the path.

    The PNG is rendered in memory and handed to :func:`deepgal.utils.atomic_write_bytes`, so a
    crash never leaves a half-written image for DVC to cache. Parent dirs are created.
    """
    buf = io.BytesIO()
    # No bbox_inches="tight": the file keeps the figure's exact pixel size.
    # zlib level 1: ~4x faster to encode than PIL's default 6 (which took ~4 s of the plot
    # stage's 21 s for galleries of photographs) for files ~1.5x larger.
    fig.savefig(buf, format="png", dpi=fig.dpi, pil_kwargs={"compress_level": 1})
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
