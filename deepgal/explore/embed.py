"""The penultimate embedding of every image of a file, computed once per (checkpoint, file).

An embedding is ``Net.features`` (N, D) float32 from :func:`deepgal.inference.run_model`
(through :func:`deepgal.inference.cutouts.predict`, so an HDF5 file and a folder of cut-outs go
through the checkpoint's own preprocessing exactly as ``deepgal predict`` sends them). It is
cached as ``<cache>/<checkpoint sha256>-<file sha256>[-tta]-v<FORMAT>.npy``: keyed by the
bytes of both, so a retrained checkpoint or an edited file never meets a stale embedding,
and written atomically, so an interrupted run leaves no half-written cache file.
The default cache folder is ``$DEEPGAL_CACHE``, else ``$XDG_CACHE_HOME/deepgal``, else
``~/.cache/deepgal``, with embeddings under ``embeddings/``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ..data.galaxy10 import read_images
from ..inference.cutouts import Cutouts, folder_side, load_cutout, predict
from ..utils import atomic_write_bytes

log = logging.getLogger(__name__)
FORMAT = 1  # bump when what an embedding file holds changes, to retire old cache files


def default_cache_dir() -> Path:
    if os.environ.get("DEEPGAL_CACHE"):
        return Path(os.environ["DEEPGAL_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "deepgal"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def digest(path: Path, names: tuple[str, ...] | None = None) -> str:
    """sha256 hex of a file's bytes; of a folder, over its files ``names`` (each name and the
    sha256 of its bytes, in the order given)."""
    if names is None:
        return _file_sha256(path)
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b"\0" + bytes.fromhex(_file_sha256(path / name)))
    return h.hexdigest()


class Model:
    """A checkpoint loaded on first use: ``model``, ``pre`` (Preprocess), ``ckpt`` (dict),
    ``class_names``. Loading raises CheckpointError naming the file if it is not one."""

    def __init__(self, path: Path, device: torch.device):
        self.path, self.device = Path(path), device

    @cached_property
    def _loaded(self):
        from ..inference import load_model

        return load_model(self.path, self.device)

    model = property(lambda self: self._loaded[0])
    pre = property(lambda self: self._loaded[1])
    ckpt = property(lambda self: self._loaded[2])

    @property
    def class_names(self) -> tuple[str, ...]:
        from ..data.galaxy10 import CLASS_NAMES

        return tuple(self.ckpt.get("class_names", CLASS_NAMES))

    @cached_property
    def digest(self) -> str:
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such checkpoint")
        return digest(self.path)


def cache_file(cache_dir: Path, model: Model, cut: Cutouts, tta: bool) -> Path:
    data = digest(cut.path, cut.names if cut.kind == "folder" else None)
    name = f"{model.digest[:20]}-{data[:20]}{'-tta' if tta else ''}-v{FORMAT}.npy"
    return Path(cache_dir) / "embeddings" / name


def file_embedding(
    model: Model, cut: Cutouts, cache_dir: Path, batch_size: int = 256, tta: bool = False
) -> np.ndarray:
    """Embedding (N, D) float32 of every image of ``cut``, rows in ``cut.names`` order: read
    from the cache when this checkpoint has embedded these bytes before, else computed and
    cached. ``tta``: averaged over the 8 rotation/flip views (near rotation-invariant)."""
    path = cache_file(cache_dir, model, cut, tta)
    if path.is_file():
        try:
            vectors = np.load(path, allow_pickle=False)
            if vectors.ndim == 2 and len(vectors) == len(cut.names):
                log.info("embedding of %s read from the cache %s", cut.path, path)
                return vectors
        except (OSError, ValueError) as e:  # damaged by something outside deepgal
            log.warning("%s: unreadable cache file (%s); computing it again", path, e)
    vectors = predict(
        cut, model.model, model.pre, model.device, batch_size, tta, output="features", desc="embed"
    )
    buf = io.BytesIO()
    np.save(buf, vectors, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
    log.info("embedding of %s (%d x %d) cached in %s", cut.path, *vectors.shape, path)
    return vectors


def row_images(model: Model, cut: Cutouts, rows: np.ndarray, side: int | None = None) -> np.ndarray:
    """Images (len(rows), H, W, 3) uint8 of ``cut``'s rows as stored (HDF5); a folder's
    cut-outs centre-cropped and resized to ``side`` px (default: as the model is given them)."""
    rows = np.asarray(rows, dtype=np.int64)
    if cut.kind == "hdf5":
        return read_images(cut.path, rows)
    side = side or folder_side(model.pre)
    return np.stack([load_cutout(cut.path / cut.names[r], side) for r in rows])


def image_embedding(model: Model, path: Path, tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A JPEG/PNG of any size -> (its image (S', S', 3) uint8 as the model is given it,
    its embedding (D,) float32), through the checkpoint's own preprocessing."""
    from ..inference import run_model

    image = load_cutout(Path(path), folder_side(model.pre))
    vec = run_model(model.model, image[None], model.pre, model.device, 1, "features", tta)
    return image, vec[0]
