"""The synthetic data set: class counts, seeded labels, batched rendering, the Galaxy10 file."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from deepgal.data.galaxy10 import NUM_CLASSES, REAL_CLASS_COUNTS, write_galaxy10_blocks
from deepgal.data.synthetic.catalogue import positions, pxscale, redshift
from deepgal.data.synthetic.galaxy import render_batch
from deepgal.data.synthetic.params import draw
from deepgal.progress import Progress

log = logging.getLogger("deepgal.synthetic")

BALANCES = ("equal", "real")
MIN_IMAGE_SIZE = 16
# Images per vectorised batch: ~100 MB of float32 work arrays at 256 px; bigger batches are
# no faster. Fixed, so that write_synthetic's chunks and render agree byte for byte.
BATCH_PIXELS = 64 * 64 * 256


def class_counts(per_class: int, balance: str) -> list[int]:
    """Images per class (10,): ``equal`` -> ``[per_class] * 10``; ``real`` -> proportions of
    the real Galaxy10 DECaLS file with the same total (10 * per_class), each class >= 2."""
    _check_int("per_class", per_class, 1)
    if balance not in BALANCES:
        raise ValueError(f"balance = {balance!r}: expected one of {', '.join(BALANCES)}")
    if balance == "equal":
        return [per_class] * NUM_CLASSES
    total = per_class * NUM_CLASSES
    if total < 2 * NUM_CLASSES:
        raise ValueError(
            f"per_class = {per_class}: balance 'real' needs per_class >= 2 so "
            "that every class gets at least 2 images"
        )
    real = np.asarray(REAL_CLASS_COUNTS, dtype=np.float64)
    # Largest-remainder rounding of the free images above the floor of 2 per class.
    share = real / real.sum() * (total - 2 * NUM_CLASSES)
    counts = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[: total - 2 * NUM_CLASSES - counts.sum()]] += 1
    return [int(c) + 2 for c in counts]


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} = {value!r}: expected an integer >= {minimum}")


def _labels(counts: Sequence[int], seed: int) -> np.ndarray:
    """Labels (N,) uint8 with ``counts[c]`` of class c, in a seeded shuffled order."""
    labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.uint8), counts)
    return labels[np.random.default_rng([seed, 0]).permutation(len(labels))]


def _counts(n_per_class: int | Sequence[int]) -> list[int]:
    if isinstance(n_per_class, (int, np.integer)) and not isinstance(n_per_class, bool):
        _check_int("n_per_class", n_per_class, 1)
        return [int(n_per_class)] * NUM_CLASSES
    counts = list(n_per_class)
    if len(counts) != NUM_CLASSES:
        raise ValueError(
            f"n_per_class has {len(counts)} entries: expected one count per class ({NUM_CLASSES})"
        )
    for c, n in enumerate(counts):
        _check_int(f"n_per_class[{c}]", n, 0)
    if sum(counts) == 0:
        raise ValueError("n_per_class sums to 0: nothing to render")
    return [int(n) for n in counts]


def _render_chunk(labels: np.ndarray, start: int, image_size: int, seed: int) -> np.ndarray:
    """Images ``start .. start + len(labels)`` (b, S, S, 3) uint8: each image's randomness comes
    from ``(seed, its index)`` alone, so any process renders the same bytes."""
    idx = np.arange(start, start + len(labels))
    return render_batch(labels.astype(np.int64), draw(seed, idx, image_size), image_size)


def _batches(
    labels: np.ndarray, image_size: int, seed: int, workers: int | None = None
) -> Iterator[np.ndarray]:
    """Yield rendered chunks (b, S, S, 3) uint8 of the images of ``labels``, in order.

    Large renders use ``workers`` processes (default: one per CPU): the renderer is numpy on
    one core, and the chunks are independent, so the real-size set (17,740 x 256 px) renders
    ~2x faster on 2 cores with the same bytes. Small ones (< 2 chunks per worker) stay here."""
    step = max(1, BATCH_PIXELS // (image_size * image_size))
    starts = range(0, len(labels), step)
    n = (os.cpu_count() or 1) if workers is None else max(1, workers)
    if n == 1 or len(starts) < 2 * n:
        for start in starts:
            yield _render_chunk(labels[start : start + step], start, image_size, seed)
        return
    # fork where there is one (Linux): no re-import, and it works from a REPL or `python -`;
    # the workers only run numpy on their arguments. spawn elsewhere.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context(method)) as pool:
        # Bounded look-ahead: at most 4 chunks per worker wait to be consumed.
        pending: deque = deque()
        for start in starts:
            pending.append(
                pool.submit(_render_chunk, labels[start : start + step], start, image_size, seed)
            )
            if len(pending) >= 4 * n:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _check_common(image_size: int, seed: int) -> None:
    _check_int("image_size", image_size, MIN_IMAGE_SIZE)
    _check_int("seed", seed, 0)


def render_catalogue(
    n_per_class: int | Sequence[int], image_size: int, seed: int, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Render synthetic Galaxy10 images with their catalogue.

    Returns images (N, S, S, 3) uint8, labels (N,) uint8 and the columns ``ra``, ``dec``
    (degrees, with planted duplicates: see :mod:`deepgal.data.synthetic.catalogue`),
    ``redshift`` and ``pxscale`` (arcsec per pixel of these S px images), each (N,) float64.
    Long renders report progress (deepgal.progress) and use ``workers`` processes (default:
    one per CPU; the bytes do not depend on it).
    """
    labels, blocks, columns = _catalogue(n_per_class, image_size, seed, workers)
    images = np.empty((len(labels), image_size, image_size, 3), dtype=np.uint8)
    pos = 0
    for chunk in blocks:
        images[pos : pos + len(chunk)] = chunk
        pos += len(chunk)
    return images, labels, columns


def _catalogue(
    n_per_class: int | Sequence[int], image_size: int, seed: int, workers: int | None = None
) -> tuple[np.ndarray, Iterator[np.ndarray], dict[str, np.ndarray]]:
    """(labels, the rendered chunks in order, as a generator with a progress bar, the
    catalogue columns): what :func:`render_catalogue` assembles and :func:`write_synthetic`
    writes chunk by chunk."""
    counts = _counts(n_per_class)
    _check_common(image_size, seed)
    labels = _labels(counts, seed)
    ra, dec, planted = positions(labels, seed)
    log.info(
        'planted %d exact and %d near (0.1-0.5") duplicate positions',
        planted["exact"],
        planted["near"],
    )
    columns = {
        "ra": ra,
        "dec": dec,
        "redshift": redshift(len(labels), seed),
        "pxscale": pxscale(len(labels), image_size),
    }

    def blocks() -> Iterator[np.ndarray]:
        with Progress(total=len(labels), desc="render", unit="img") as bar:
            for chunk in _batches(labels, image_size, seed, workers):
                bar.update(len(chunk))
                yield chunk

    return labels, blocks(), columns


def render(
    n_per_class: int | Sequence[int], image_size: int, seed: int, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Render synthetic Galaxy10 images.

    n_per_class: images per class, one int for all classes or a sequence of 10 counts.
    Returns images (N, S, S, 3) uint8 (S = image_size) and labels (N,) uint8 in 0..9, the
    classes shuffled in a seeded order. Same arguments -> identical bytes, whatever
    ``workers`` (processes for large renders; default one per CPU).
    """
    images, labels, _ = render_catalogue(n_per_class, image_size, seed, workers)
    return images, labels


def write_synthetic(
    path: str | Path, per_class: int, image_size: int, seed: int, balance: str = "equal"
) -> None:
    """Render ``class_counts(per_class, balance)`` images and write them in the Galaxy10
    layout at ``path`` (atomically): images, ans, ra, dec, redshift, pxscale. Same image
    bytes as :func:`render` with those counts."""
    counts = class_counts(per_class, balance)
    # chunk by chunk into the file: memory is the workers' look-ahead, not the N images
    labels, blocks, columns = _catalogue(counts, image_size, seed)
    write_galaxy10_blocks(path, (image_size, image_size), blocks, labels, extra=columns)
