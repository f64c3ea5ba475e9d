"""Shared fixtures: small real Galaxy10-layout files and the real 50-image sample; the
Hypothesis profile of the run."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from deepgal.data.galaxy10 import write_galaxy10

REPO = Path(__file__).resolve().parents[1]

# Hypothesis: in CI (DEEPGAL_CI or CI set) the examples are derandomised: each property test
# draws from a seed fixed by the test's own code, not from the clock, and the example database
# is off, so a red CI run is red again on any machine. To replay one, run it with the same
# profile:  DEEPGAL_CI=1 python -m pytest 'tests/test_metrics.py::<test>'
# Elsewhere ("dev") one random seed per session is drawn and printed in the header; replay with
#     python -m pytest --hypothesis-seed=<that seed> <test>
# A failure also prints ``@reproduce_failure('<version>', b'...')`` (print_blob): pasted above
# the test, it replays that exact example. No deadline in either profile: a per-example time
# limit fails tests by the machine's load, not by their result.
# HYPOTHESIS_PROFILE=ci|dev overrides the choice.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
settings.register_profile("dev", print_blob=True, deadline=None)
HYPOTHESIS_PROFILE = os.environ.get(
    "HYPOTHESIS_PROFILE", "ci" if os.environ.get("DEEPGAL_CI") or os.environ.get("CI") else "dev"
)
settings.load_profile(HYPOTHESIS_PROFILE)


@pytest.hookimpl(tryfirst=True)  # before Hypothesis' plugin reads --hypothesis-seed
def pytest_configure(config) -> None:
    # Under pytest-xdist each worker is a fresh pytest: it takes the controller's seed (sent by
    # pytest_configure_node below), so the one seed the header prints replays every worker.
    sent = getattr(config, "workerinput", {}).get("hypothesis_seed")
    if sent is not None:
        config.option.hypothesis_seed = sent
    elif not settings.default.derandomize and config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(random.SystemRandom().randrange(2**32))


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: absent when xdist is not installed
def pytest_configure_node(node) -> None:
    node.workerinput["hypothesis_seed"] = node.config.getoption("hypothesis_seed", None)


def pytest_collection_modifyitems(items) -> None:
    # Files marked `first` (module fixtures that run for minutes) are handed out first, so a
    # parallel run (`-n auto --dist loadfile`) does not end with one worker alone on them.
    items.sort(key=lambda item: item.get_closest_marker("first") is None)


def pytest_report_header(config) -> str:
    if settings.default.derandomize:
        how = "derandomize=True: each test's seed is fixed by its code"
    else:
        how = f"seed {config.getoption('hypothesis_seed', None)}: replay with --hypothesis-seed"
    return f"hypothesis profile {HYPOTHESIS_PROFILE!r}, {how} (see tests/conftest.py)"


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
