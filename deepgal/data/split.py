"""Stratified, seeded train/val/test indices and the train split's per-channel statistics.

The split stage writes **indices** into the HDF5 file (never copies of images) plus the mean/std
that every model's preprocessing normalises with.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .galaxy10 import CLASS_NAMES, NUM_CLASSES, READ_CHUNK, read_images

SPLITS = ("train", "val", "test")


class SplitError(ValueError):
    """Fractions that cannot split the given labels; the message names the class and count."""


def stratified_split(labels: np.ndarray, fractions: dict[str, float],
                     seed: int) -> dict[str, np.ndarray]:
    """Split row indices per class with the given fractions.

    labels: (N,) int. fractions: {"train": .8, "val": .1, "test": .1}, summing to 1.
    Returns {split: sorted (n_split,) int64 indices}. Every split with a fraction > 0 gets at
    least one image of every class present, so a class with too few images is an error.
    """
    for name, frac in fractions.items():
        if not 0.0 <= frac <= 1.0:
            raise SplitError(f"split.{name}: {frac!r} must be a fraction in [0, 1]")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise SplitError(f"split fractions must sum to 1, got {total:g} ({fractions})")
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        n = len(idx)
        if n == 0:
            continue
        idx = rng.permutation(idx)
        sizes = {}
        for s in ("val", "test"):
            f = fractions.get(s, 0.0)
            sizes[s] = max(1, int(round(n * f))) if f > 0 else 0
        sizes["train"] = n - sizes["val"] - sizes["test"]
        if sizes["train"] < 1:
            need = 1 + (fractions.get("val", 0) > 0) + (fractions.get("test", 0) > 0)
            raise SplitError(
                f"class {c} ({CLASS_NAMES[c]}) has {n} image(s), too few to split into "
                f"{', '.join(s for s in SPLITS if fractions.get(s, 0) > 0)}: it needs at least "
                f"{need}. Use more images (data.synthetic.per_class) or set split.test to 0.")
        start = 0
        for s in SPLITS:
            out[s].append(idx[start:start + sizes[s]])
            start += sizes[s]
    return {s: np.sort(np.concatenate(parts)).astype(np.int64) if parts
            else np.empty(0, np.int64) for s, parts in out.items()}


def channel_stats(h5_path: str | Path, indices: np.ndarray,
                  chunk: int = READ_CHUNK) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the given images, in units of pixel/255.

    Reads ``chunk`` images at a time and accumulates float64 sums, so memory stays at one
    uint8 chunk plus its float copy: never the whole split as float.
    """
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    indices = np.sort(np.asarray(indices, dtype=np.int64))
    for start in range(0, len(indices), chunk):
        block = read_images(h5_path, indices[start:start + chunk])
        x = block.reshape(-1, 3).astype(np.float64) / 255.0
        total += x.sum(0)
        total_sq += (x * x).sum(0)
        count += x.shape[0]
    if count == 0:
        raise SplitError(f"{h5_path}: the train split is empty; cannot compute statistics")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.tolist(), std.tolist()


def write_split(out_dir: str | Path, splits: dict[str, np.ndarray], labels: np.ndarray,
                mean: list[float], std: list[float], source: dict) -> None:
    """Write ``<split>.npy`` index files and ``stats.json``; each file atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for s, idx in splits.items():
        tmp = out_dir / f".{s}.npy.tmp"
        with open(tmp, "wb") as f:
            np.save(f, idx)
        os.replace(tmp, out_dir / f"{s}.npy")
    stats = {
        "mean": mean, "std": std, "source": source,
        "counts": {s: {name: int((labels[idx] == c).sum()) for c, name in enumerate(CLASS_NAMES)}
                   for s, idx in splits.items()},
        "sizes": {s: int(len(idx)) for s, idx in splits.items()},
    }
    tmp = out_dir / ".stats.json.tmp"
    tmp.write_text(json.dumps(stats, indent=2) + "\n")
    os.replace(tmp, out_dir / "stats.json")


def read_split(split_dir: str | Path, name: str) -> np.ndarray:
    """Indices (n,) int64 of split ``name`` written by :func:`write_split`."""
    path = Path(split_dir) / f"{name}.npy"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; run `dvc repro split`")
    return np.load(path, allow_pickle=False)


def read_stats(split_dir: str | Path) -> dict:
    path = Path(split_dir) / "stats.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; run `dvc repro split`")
    return json.loads(path.read_text())
