"""Inference over rows of a Galaxy10-layout HDF5 file: each needed row read once, in file order.

Why: h5py fancy indexing (``ds[[i, j, ...]]``) reads 256 px rows at 30-60 images/s, 200x
slower than reading the same rows as slices, which would bind evaluation and features to the
reader, not the model. Here the requested rows of all splits are merged, sorted and read as runs of consecutive rows
(``ds[a:b]``, one plain hyperslab each), ``chunk`` rows at a time, and the model runs on each
chunk as it arrives: memory holds one uint8 chunk and the outputs, never a whole split.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np
import torch

from ..data.galaxy10 import IMAGES_KEY, READ_CHUNK, read_runs
from ..progress import Progress
from ..transforms import Preprocess
from . import output_dim, run_model


def iter_rows(
    path: str | Path, indices: np.ndarray, chunk: int = READ_CHUNK, key: str = IMAGES_KEY
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(pos, images)`` covering rows ``indices`` (k,) of ``path[key]``, in file order.

    ``pos`` (m,) int64 are positions into ``indices``; ``images`` (m, H, W, 3) uint8 holds rows
    ``indices[pos]``; m <= ``chunk``. Indices may come in any order and repeat.
    """
    indices = np.asarray(indices, dtype=np.int64)
    order = np.argsort(indices, kind="stable")
    rows = indices[order]
    with h5py.File(path, "r") as f:
        ds = f[key]
        if len(rows) and (rows[0] < 0 or rows[-1] >= ds.shape[0]):
            bad = rows[0] if rows[0] < 0 else rows[-1]
            raise ValueError(
                f"{path}: row {bad} is outside '{key}' ({ds.shape[0]} rows); "
                "was the split made from another file? Run `dvc repro split`"
            )
        for start in range(0, len(rows), chunk):
            yield order[start : start + chunk], read_runs(ds, rows[start : start + chunk])


def iter_on_file(
    model: torch.nn.Module,
    path: str | Path,
    pre: Preprocess,
    device: torch.device,
    indices: np.ndarray,
    batch_size: int = 256,
    output: str = "probs",
    tta: bool = False,
    chunk: int = READ_CHUNK,
    desc: str = "inference",
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`deepgal.inference.run_model` on rows ``indices`` (n,) of a Galaxy10 file, each row
    read once, in file order: yields ``(pos, outputs)``, ``pos`` (m,) positions into
    ``indices`` and ``outputs`` (m, C or D) float32, ``chunk`` rows at a time. For callers that
    must not hold every output at once (the evaluate stage's features at scale)."""
    indices = np.asarray(indices, dtype=np.int64)
    with Progress(len(indices), desc, unit="img") as bar:
        for pos, images in iter_rows(path, indices, chunk):
            yield pos, run_model(model, images, pre, device, batch_size, output, tta)
            bar.update(len(pos))


def run_on_file(
    model: torch.nn.Module,
    path: str | Path,
    pre: Preprocess,
    device: torch.device,
    indices: Mapping[str, np.ndarray] | np.ndarray,
    batch_size: int = 256,
    output: str = "probs",
    tta: bool = False,
    chunk: int = READ_CHUNK,
    desc: str = "inference",
) -> dict[str, np.ndarray] | np.ndarray:
    """:func:`deepgal.inference.run_model` on rows of a Galaxy10 file, reading each row once.

    ``indices``: one (n,) array, or ``{split: (n_split,) indices}`` to score several splits in
    one pass over the file (rows are merged, read in file order, and the outputs handed back
    per split in each split's own order). Returns float32 (n, C or D), or a dict of them.
    Progress (``desc``) is shown on long inputs.
    """
    named = isinstance(indices, Mapping)
    parts = (
        {k: np.asarray(v, dtype=np.int64) for k, v in indices.items()}
        if named
        else {"": np.asarray(indices, dtype=np.int64)}
    )
    everything = np.concatenate(list(parts.values())) if parts else np.empty(0, np.int64)
    dim = output_dim(model, output)
    out = np.empty((len(everything), dim), dtype=np.float32)
    for pos, values in iter_on_file(
        model, path, pre, device, everything, batch_size, output, tta, chunk, desc
    ):
        out[pos] = values
    bounds = np.cumsum([0] + [len(v) for v in parts.values()])
    split_out = {k: out[lo:hi] for k, lo, hi in zip(parts, bounds[:-1], bounds[1:], strict=True)}
    return split_out if named else split_out[""]
