"""Broken input files as `data/galaxy10.h5`, through the real split stage (and `dvc repro`).

Each must be rejected with one `error:` line naming the file, exit status 1, no traceback and
no split output. (Unit-level checks of `galaxy10.validate` are in tests/test_galaxy10.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import make_h5
from tests.pipeline_repo import dvc, env_for, make_repo

from .conftest import no_traceback

pytestmark = pytest.mark.slow

N, SIZE = 30, 16  # 3 per class: the fewest that splits 0.8/0.1/0.1


def good() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "images": rng.integers(0, 256, (N, SIZE, SIZE, 3), dtype=np.uint8),
        "ans": np.tile(np.arange(10), N // 10).astype(np.uint8),
        "ra": rng.uniform(0, 360, N),
        "dec": rng.uniform(-30, 30, N),
    }


def with_(**changes):
    def make(path: Path) -> None:
        d = {**good(), **changes}
        with h5py.File(path, "w") as f:
            for k, v in d.items():
                if v is not None:
                    f.create_dataset(k, data=v)

    return make


def nan_at(key: str, row: int, value: float = np.nan):
    col = good()[key]
    col[row] = value
    return with_(**{key: col})


def cut(fraction: float):
    def make(path: Path) -> None:
        full = make_h5(path.with_suffix(".full"), n_per_class=20, size=32)
        data = full.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
        full.unlink()

    return make


# name -> (writer, a phrase the message must contain)
BAD = {
    "images_float32": (with_(images=good()["images"].astype(np.float32)), "expected uint8"),
    "images_int16": (with_(images=good()["images"].astype(np.int16)), "expected uint8"),
    "images_no_channels": (with_(images=np.zeros((N, SIZE, SIZE), np.uint8)), "(N, H, W, 3)"),
    "images_4_channels": (with_(images=np.zeros((N, SIZE, SIZE, 4), np.uint8)), "(N, H, W, 3)"),
    "images_tiny": (with_(images=np.zeros((N, 4, 4, 3), np.uint8)), "at least 8x8"),
    "zero_images": (
        with_(
            images=np.zeros((0, SIZE, SIZE, 3), np.uint8),
            ans=np.zeros(0, np.uint8),
            ra=None,
            dec=None,
        ),
        "zero images",
    ),
    "label_10": (with_(ans=np.r_[np.zeros(N - 1), 10].astype(np.uint8)), f"ans[{N - 1}] = 10"),
    "label_255": (with_(ans=np.full(N, 255, np.uint8)), "ans[0] = 255"),
    "label_negative": (with_(ans=np.r_[-1, np.zeros(N - 1)].astype(np.int16)), "ans[0] = -1"),
    "labels_float": (with_(ans=np.zeros(N, np.float32)), "expected integer labels"),
    "labels_short": (with_(ans=np.zeros(N - 1, np.uint8)), f"{N} images but {N - 1} labels"),
    "no_labels": (with_(ans=None), "missing dataset 'ans'"),
    "no_images": (with_(images=None), "missing dataset 'images'"),
    "ra_nan": (nan_at("ra", 3), "'ra' is not finite at row 3"),
    "dec_nan": (nan_at("dec", 7), "'dec' is not finite at row 7"),
    "dec_inf": (nan_at("dec", 0, np.inf), "'dec' is not finite at row 0"),
    "ra_wrong_length": (with_(ra=np.zeros(N + 1)), "'ra' has shape"),
    "dec_past_the_pole": (nan_at("dec", 2, 95.0), "'dec' is 95.0 at row 2"),
    "truncated_half": (cut(0.5), "truncated"),
    "truncated_header": (cut(0.001), "truncated"),
    "empty_file": (lambda p: p.write_bytes(b""), "not an HDF5 file"),
    "not_hdf5_text": (lambda p: p.write_text("ra,dec,label\n1,2,3\n"), "not an HDF5 file"),
    "not_hdf5_png": (
        lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(1000)),
        "not an HDF5 file",
    ),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = make_repo(tmp_path_factory.mktemp("bad") / "repo")
    (root / "data/source.json").write_text(json.dumps({"source": "synthetic", "sha256": "0"}))
    return root


def split_cmd(data: str, out: str) -> list[str]:
    return [
        sys.executable,
        "stages/split.py",
        "--data",
        data,
        "--source",
        "data/source.json",
        "--out",
        out,
    ]


def test_every_bad_file_is_rejected_by_the_split_stage(repo):
    (repo / "bad").mkdir(exist_ok=True)
    # Two at a time: each is its own process (startup dominates), the machine has two cores.
    names = sorted(BAD)
    results = {}
    for i in range(0, len(names), 2):
        running = {}
        for name in names[i : i + 2]:
            writer, _ = BAD[name]
            writer(repo / "bad" / f"{name}.h5")
            running[name] = subprocess.Popen(
                split_cmd(f"bad/{name}.h5", f"bad/split_{name}"),
                cwd=repo,
                env=env_for(repo),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        for name, p in running.items():
            out, err = p.communicate(timeout=300)
            results[name] = (p.returncode, out, err)
    failures = []
    for name in names:
        code, out, err = results[name]
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        ok = (
            code == 1
            and no_traceback(err)
            and len(lines) == 1
            and f"bad/{name}.h5" in lines[0]
            and BAD[name][1] in lines[0]
            and not (repo / "bad" / f"split_{name}").exists()
        )
        if not ok:
            failures.append(f"{name}: exit {code}\n{err[-1500:]}")
    assert not failures, "\n\n".join(failures)
    assert len(results) == len(BAD) == 23


def test_good_file_passes_the_same_stage(repo):
    """The control: the harness above is not rejecting everything."""
    with_()(repo / "good.h5")
    p = subprocess.run(
        split_cmd("good.h5", "split_good"),
        cwd=repo,
        env=env_for(repo),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert (repo / "split_good/stats.json").exists()


def test_dvc_repro_split_rejects_a_bad_download(repo):
    dvc(["repro", "download"], repo)
    nan_at("dec", 5)(repo / "data/galaxy10.h5")  # replace what download made
    out = dvc(["repro", "--single-item", "split"], repo, check=False)
    assert out.returncode != 0
    assert no_traceback(out.stderr), out.stderr[-3000:]
    [error] = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert "data/galaxy10.h5" in error and "'dec' is not finite at row 5" in error
    assert not (repo / "data/split").exists()


def test_a_class_that_is_one_galaxy_is_rejected_before_any_work(repo):
    """All three Cigar Shaped rows at one position are one galaxy: it cannot be in train, val
    and test at once, and the message says so in terms of split.group_arcsec."""
    d = good()
    d["ra"][d["ans"] == 4], d["dec"][d["ans"] == 4] = 150.0, 2.0
    with_(**d)(repo / "one_galaxy.h5")
    p = subprocess.run(
        split_cmd("one_galaxy.h5", "split_one"),
        cwd=repo,
        env=env_for(repo),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1 and no_traceback(p.stderr), p.stderr[-3000:]
    [error] = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert "class 4 (Cigar Shaped Smooth) has 3 image(s) in 1 group(s)" in error
    assert "split.group_arcsec" in error
    assert "merged 3 rows into 1 groups" in p.stderr
    assert not (repo / "split_one").exists()
