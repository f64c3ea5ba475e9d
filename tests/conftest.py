"""Shared fixtures: small real Galaxy10-layout files and the real 50-image sample."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from deepgal.data.galaxy10 import write_galaxy10

REPO = Path(__file__).resolve().parents[1]
# In-process UMAP (tests/test_reduce.py) shares the stages' on-disk JIT cache.
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))
REAL_SAMPLE = REPO.parent / "shared" / "data" / "galaxy10_decals_sample50.h5"


def make_h5(path: Path, n_per_class: int = 6, size: int = 16, seed: int = 0) -> Path:
    """A real HDF5 file in the Galaxy10 layout with random pixels, classes interleaved."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(10), n_per_class).astype(np.uint8)
    images = rng.integers(0, 256, (len(labels), size, size, 3), dtype=np.uint8)
    write_galaxy10(path, images, labels)
    return path


@pytest.fixture
def small_h5(tmp_path) -> Path:
    return make_h5(tmp_path / "small.h5")


@pytest.fixture
def real_sample() -> Path:
    if not REAL_SAMPLE.exists():
        pytest.skip(f"{REAL_SAMPLE} not present (it lives in ../shared, outside the repo)")
    return REAL_SAMPLE
