"""Streamed splits (``train.stream``): a split read from the HDF5 file a block of rows at a
time, so training's memory is a configured buffer, not the split.

An epoch's order is a **block shuffle**, the scheme of the streaming loaders (litdata, MosaicML
``streaming``): the split's rows, in file order, are cut into blocks of ``block`` rows; the
blocks are permuted (seeded by the epoch), then taken ``window`` at a time, and the rows inside
each window are permuted. An epoch reads every block once, in one contiguous HDF5 read per
block, and memory holds at most ``2 * window`` blocks (:class:`StreamedImages`' cache: a batch
may straddle two windows) whatever the number of images. Same seed and epoch, same order: a
resume at step k is as exact as in memory.
Under DDP, rank r takes blocks r, r + world, ... of the permuted blocks (:func:`epoch_order`),
so each rank reads only its own blocks.

Why not litdata, which docs/streaming.md measured and recommends as the format: its order
depends on the number of loader workers and under DDP it drops up to 1.9 % of the samples per
epoch, both against deepgal's exact resume and "every image once per epoch"; and a conversion
to shards doubles the data on disk (62 GB for Galaxy Zoo DECaLS). Its scheme (chunk permutation
plus an in-buffer shuffle) is the ~60 lines below, on the HDF5 file the user already has, read
with h5py by :func:`deepgal.data.galaxy10.read_images`.

Held as uint8, shrunk on the CPU by :func:`deepgal.transforms.presize` as each piece is read
(the same bytes the in-memory path holds), so a block is the model's input size, not 256 px.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import galaxy10
from ..transforms import Preprocess, presize

WINDOW = 4  # blocks shuffled together: the in-buffer shuffle spans WINDOW / n_blocks of an epoch
AUTO_SHARE = 0.25  # with CUDA, ``auto`` streams a split past this share of the RAM


@dataclass(frozen=True)
class StreamPlan:
    block: int  # rows per block
    window: int = WINDOW  # blocks held (and shuffled together)


def plan_for(
    buffer_mb: float, row_bytes: int, batch_size: int, n: int, world: int = 1
) -> StreamPlan:
    """Blocks sized so the cache (``2 * WINDOW`` blocks) fits ``buffer_mb``, never smaller than
    one batch, and small enough that every rank gets at least 4 blocks an epoch (the ranks'
    shares then differ by at most a quarter)."""
    rows = int(buffer_mb * 2**20 / (2 * WINDOW) / max(row_bytes, 1))
    rows = min(rows, math.ceil(n / (4 * world)))
    return StreamPlan(block=max(rows, batch_size, 1))


def wants_stream(
    mode: str, nbytes: int, buffer_bytes: int, cuda: bool = False, ram_bytes: int | None = None
) -> bool:
    """``train.stream``: ``always``/``never`` as written. ``auto``: on the CPU, stream a split whose
    uint8 bytes pass the buffer (streaming measured no slower there, BENCHMARKS.md, and the
    buffer is then the bound); with CUDA, only one that passes :data:`AUTO_SHARE` of the RAM
    (a split that fits is faster resident on the GPU)."""
    if mode in ("always", "never"):
        return mode == "always"
    if not cuda:
        return nbytes > buffer_bytes
    if ram_bytes is None:
        ram_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return nbytes > AUTO_SHARE * ram_bytes


def epoch_order(
    n: int, plan: StreamPlan, gen: torch.Generator, rank: int = 0, world: int = 1
) -> torch.Tensor:
    """Positions (k,) int64 of an ``n``-row streamed split in one epoch's order, for ``rank``.

    ``gen`` must be in the same state on every rank (the block permutation is drawn first);
    the ranks' positions are disjoint and together every position once.
    """
    n_blocks = math.ceil(n / plan.block)
    blocks = torch.randperm(n_blocks, generator=gen)[rank::world]
    parts = []
    for w in range(0, len(blocks), plan.window):
        rows = torch.cat(
            [
                torch.arange(b * plan.block, min((b + 1) * plan.block, n))
                for b in blocks[w : w + plan.window].tolist()
            ]
        )
        parts.append(rows[torch.randperm(len(rows), generator=gen)])
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)


def read_presized(
    path: str | Path,
    rows: np.ndarray,
    pre: Preprocess | None,
    zoom_bound: float = 1.0,
    chunk: int = galaxy10.READ_CHUNK,
) -> torch.Tensor:
    """Rows ``rows`` of the file's images as (k, h, w, 3) uint8, each ``chunk`` rows shrunk by
    :func:`presize` as it is read (``pre`` None: full size), so memory is the result plus
    one chunk at full size."""
    if pre is None or len(rows) == 0:
        return torch.from_numpy(galaxy10.read_images(path, rows))
    images = None
    for start in range(0, len(rows), chunk):
        part = torch.from_numpy(galaxy10.read_images(path, rows[start : start + chunk]))
        part = presize(part, pre, zoom_bound)
        if images is None:
            images = torch.empty((len(rows), *part.shape[1:]), dtype=torch.uint8)
        images[start : start + len(part)] = part
    return images


class StreamedImages:
    """(N, h, w, 3) uint8 images of file rows ``rows`` (sorted), read a block at a time.

    Quacks like the uint8 tensor of the in-memory path where training and scoring touch it:
    ``len``, ``shape``, ``index_select(0, positions)`` and ``[a:b]`` return tensors. A cache
    of at most ``2 * plan.window`` blocks (least recently used goes first) bounds the memory.
    """

    def __init__(
        self,
        path: str | Path,
        rows: np.ndarray,
        plan: StreamPlan,
        pre: Preprocess | None = None,
        zoom_bound: float = 1.0,
    ):
        self.path, self.plan, self.pre, self.zoom_bound = Path(path), plan, pre, zoom_bound
        self.rows = np.asarray(rows, dtype=np.int64)
        if len(self.rows) and (np.diff(self.rows) <= 0).any():
            raise ValueError("StreamedImages needs its rows sorted and unique (file order)")
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.blocks_read = 0  # for tests and benchmarks: each block once per epoch
        first = read_presized(self.path, self.rows[:1], pre, zoom_bound)
        self.shape = (len(self.rows), *first.shape[1:])
        self.dtype = torch.uint8
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.rows)

    def _block(self, b: int) -> torch.Tensor:
        if b in self._cache:
            self._cache.move_to_end(b)
            return self._cache[b]
        lo, hi = b * self.plan.block, min((b + 1) * self.plan.block, len(self.rows))
        while len(self._cache) >= 2 * self.plan.window:
            self._cache.popitem(last=False)
        block = read_presized(self.path, self.rows[lo:hi], self.pre, self.zoom_bound)
        self._cache[b] = block
        self.blocks_read += 1
        return block

    def index_select(self, dim: int, positions: torch.Tensor) -> torch.Tensor:
        if dim != 0:
            raise ValueError("StreamedImages selects rows only (dim 0)")
        pos = torch.as_tensor(positions, dtype=torch.int64).cpu()
        if len(pos) and (int(pos.min()) < 0 or int(pos.max()) >= len(self)):
            raise IndexError(f"positions outside [0, {len(self)})")
        out = torch.empty((len(pos), *self.shape[1:]), dtype=torch.uint8)
        blocks = pos // self.plan.block
        for b in torch.unique(blocks).tolist():  # ascending: sequential reads in a slice
            mask = blocks == b
            out[mask] = self._block(b).index_select(0, pos[mask] - b * self.plan.block)
        return out

    def __getitem__(self, key: slice) -> torch.Tensor:
        if not isinstance(key, slice):
            return self.index_select(0, torch.as_tensor(key))
        return self.index_select(0, torch.arange(len(self))[key])


def take(images: torch.Tensor | StreamedImages, rows: slice) -> torch.Tensor | StreamedImages:
    """``images[rows]``; for streamed images a streamed view of those rows (nothing read yet)."""
    if isinstance(images, StreamedImages):
        return StreamedImages(
            images.path, images.rows[rows], images.plan, images.pre, images.zoom_bound
        )
    return images[rows]
