"""Shared fixtures: small real Galaxy10-layout files and the real 50-image sample; the
Hypothesis profile of the run."""

from __future__ import annotations

import os
import random
import shutil
import signal
from collections import defaultdict
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
    # A suite started in the background (`nohup bash .ci/run &`, a non-interactive shell's `&`)
    # inherits SIGINT ignored, and Python then keeps it ignored: the Ctrl-C tests (and every
    # child the tests start, which inherit it too) would test the launcher, not the code. Give
    # this process, hence its children, the interactive default back.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
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


# Module fixtures' folders (tmp_path_factory.mktemp) outlive their module until the session
# ends, unlike tmp_path's, which pytest removes after each passing test: the serial slow tier
# piles up ~10 GB of temporary repositories that way, and a CI disk with less free than that
# fails the tier's last files at setup. So a module's folders go when its module fixtures have
# torn down, kept (as retention policy "failed" keeps them) when a test in the module failed.
_MODULE_DIRS: dict[str, list[Path]] = defaultdict(list)
_FAILED_FILES: set[str] = set()
_FIXTURE_SCOPES: list[tuple[str, str]] = []  # (scope, file) of the fixtures being set up


def _file_of(nodeid: str) -> str:
    return nodeid.split("::")[0]


def pytest_sessionstart(session) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or factory._retention_policy != "failed":
        return
    mktemp = factory.mktemp

    def tracked(basename: str, numbered: bool = True) -> Path:
        path = mktemp(basename, numbered)
        if _FIXTURE_SCOPES and _FIXTURE_SCOPES[-1][0] == "module":
            _MODULE_DIRS[_FIXTURE_SCOPES[-1][1]].append(path)
        return path

    factory.mktemp = tracked


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    _FIXTURE_SCOPES.append((fixturedef.scope, _file_of(request.node.nodeid)))
    try:
        return (yield)
    finally:
        _FIXTURE_SCOPES.pop()


def pytest_runtest_logreport(report) -> None:
    if report.failed:
        _FAILED_FILES.add(_file_of(report.nodeid))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)
    finally:
        here = _file_of(item.nodeid)
        if (nextitem is None or _file_of(nextitem.nodeid) != here) and here not in _FAILED_FILES:
            for path in _MODULE_DIRS.pop(here, []):
                shutil.rmtree(path, ignore_errors=True)


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
