"""What astronomers have, as input to ``deepgal predict``: an HDF5 file with ``images`` only (no
labels) or a folder of JPEG/PNG cut-outs (the Legacy Surveys viewer's format), of any size.

A folder's images are read with Pillow, centre-cropped to a square and resized (Pillow's
bilinear filter, antialiased when shrinking, as the training path's resize) to the side at which
the checkpoint's centre crop is its input size: ``round(input_size / crop)``. From there the
checkpoint's own preprocessing runs as for any Galaxy10 file. Files are read a chunk at a time,
so a folder of any length needs memory for one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from ..data.galaxy10 import IMAGES_KEY, LABELS_KEY
from ..errors import DeepgalError
from ..progress import Progress
from ..transforms import Preprocess
from . import run_model
from .source import run_on_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FOLDER_CHUNK = 256  # files decoded per run_model call


class CutoutError(DeepgalError, ValueError):
    """An input that cannot be predicted on; the message names the file and what to do."""


@dataclass(frozen=True)
class Cutouts:
    """Validated input: ``names`` (N,) row names (file names, or HDF5 row numbers as str),
    ``labels`` (N,) int64 when the HDF5 file has ``ans``, else None."""

    path: Path
    kind: str  # "hdf5" | "folder"
    names: tuple[str, ...]
    labels: np.ndarray | None = None


def open_cutouts(path: str | Path) -> Cutouts:
    """Check ``path`` (an HDF5 file or a folder of .jpg/.jpeg/.png) before any model loads."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(
            p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise CutoutError(f"{path}: no {'/'.join(IMAGE_SUFFIXES)} files in this folder")
        return Cutouts(path, "folder", tuple(files))
    if not h5py.is_hdf5(path):
        raise CutoutError(f"{path}: neither a folder of JPEG/PNG cut-outs nor an HDF5 file")
    try:
        return _open_h5(path)
    except OSError as e:  # h5py raises OSError for truncated/corrupt files past the header
        raise CutoutError(
            f"{path}: unreadable HDF5 data ({e}); the file is probably "
            "truncated: copy or download it again"
        ) from e


def _open_h5(path: Path) -> Cutouts:
    with h5py.File(path, "r") as f:
        if IMAGES_KEY not in f:
            raise CutoutError(
                f"{path}: no '{IMAGES_KEY}' dataset (found: {sorted(f.keys())}); "
                "predict needs uint8 images (N, H, W, 3)"
            )
        ds = f[IMAGES_KEY]
        if ds.dtype != np.uint8 or ds.ndim != 4 or ds.shape[3] != 3 or ds.shape[0] == 0:
            raise CutoutError(
                f"{path}: '{IMAGES_KEY}' is {ds.dtype} {ds.shape}; expected "
                "uint8 (N, H, W, 3) with N > 0"
            )
        if ds.shape[1] != ds.shape[2]:
            raise CutoutError(
                f"{path}: images are {ds.shape[1]}x{ds.shape[2]} px; square cut-outs are expected"
            )
        n = ds.shape[0]
        labels = f[LABELS_KEY][:].astype(np.int64) if LABELS_KEY in f else None
    if labels is not None and labels.shape != (n,):
        raise CutoutError(f"{path}: '{LABELS_KEY}' has shape {labels.shape}, expected ({n},)")
    return Cutouts(path, "hdf5", tuple(str(i) for i in range(n)), labels)


def load_cutout(path: Path, side: int) -> np.ndarray:
    """One JPEG/PNG -> (side, side, 3) uint8: RGB, centre square, resized."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2
            im = im.crop((left, top, left + s, top + s))
            if s != side:
                im = im.resize((side, side), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise CutoutError(
            f"{path}: not a readable JPEG/PNG image ({e}); remove or replace it"
        ) from e


def folder_side(pre: Preprocess) -> int:
    """Side in px a folder's cut-out is resized to: the checkpoint's centre crop of it is
    then ``pre.input_size``."""
    return round(pre.input_size / pre.crop)


def predict(
    cut: Cutouts,
    model: torch.nn.Module,
    pre: Preprocess,
    device: torch.device,
    batch_size: int = 256,
    tta: bool = False,
    output: str = "probs",
    desc: str = "predict",
) -> np.ndarray:
    """Class probabilities (N, C) float32 of every cut-out, rows in ``cut.names`` order; or
    another of :data:`deepgal.inference.OUTPUTS` (``"features"``: the embedding (N, D))."""
    if cut.kind == "hdf5":
        return run_on_file(
            model,
            cut.path,
            pre,
            device,
            np.arange(len(cut.names)),
            batch_size,
            output,
            tta,
            desc=desc,
        )
    side = folder_side(pre)
    out = []
    with Progress(len(cut.names), desc, unit="img") as bar:
        for start in range(0, len(cut.names), FOLDER_CHUNK):
            names = cut.names[start : start + FOLDER_CHUNK]
            images = np.stack([load_cutout(cut.path / n, side) for n in names])
            out.append(run_model(model, images, pre, device, batch_size, output, tta))
            bar.update(len(names))
    return np.concatenate(out)
