"""The real download stage (`dvc repro download`) against a loopback server that misbehaves.

A connection cut at several seeded random offsets still yields the file with the right SHA-256,
every cut resumed from what reached the disk (nothing lost, at most one chunk fetched twice);
a server serving wrong bytes never yields `data/galaxy10.h5` and leaves no partial files.
"""
from __future__ import annotations

import hashlib
import json
import random

import pytest

from tests.conftest import make_h5
from tests.httpserver import serve_bytes
from tests.pipeline_repo import dvc, make_repo

from .conftest import no_traceback

pytestmark = pytest.mark.slow

CHUNK = 1 << 20  # the stage streams in 1 MiB pieces: a partial last piece is not kept


@pytest.fixture(scope="module")
def galaxy(tmp_path_factory) -> tuple[bytes, str]:
    """A real Galaxy10-layout file of ~4.7 MiB (random pixels do not compress)."""
    path = make_h5(tmp_path_factory.mktemp("served") / "g.h5", n_per_class=40, size=64, seed=3)
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def real_source(url: str, sha: str) -> dict:
    return {"data": {"source": "galaxy10_decals", "url": url, "sha256": sha, "retries": 8,
                     "timeout_s": 10}}


def leftovers(data_dir) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir() if p.name != ".gitignore")


def test_download_cut_repeatedly_completes_with_right_checksum(tmp_path, galaxy):
    data, sha = galaxy
    rng = random.Random(20240611)
    # Body bytes sent per request before the socket is shut: most cuts fall after a whole
    # chunk (progress), one inside the first chunk (no progress: costs a retry, not the file).
    drops = [rng.randint(CHUNK + 1, 2 * CHUNK - 1) for _ in range(3)]
    drops.insert(1, rng.randint(1, CHUNK - 1))
    with serve_bytes(data, drop_after_bytes=drops) as server:
        repo = make_repo(tmp_path / "repo", real_source(server.url, sha))
        out = dvc(["repro", "download"], repo)
        reqs = server.requests
        again = dvc(["repro", "download"], repo)
        assert len(server.requests) == len(reqs), "an up-to-date download fetched again"
    log = out.stdout + out.stderr
    dest = repo / "data/galaxy10.h5"
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha
    assert dest.read_bytes() == data
    assert leftovers(repo / "data") == ["galaxy10.h5", "source.json"]
    info = json.loads((repo / "data/source.json").read_text())
    assert info["source"] == "galaxy10_decals" and info["sha256"] == sha
    assert info["n_images"] == 400
    assert "didn't change" in again.stdout

    # Every cut was resumed with Range from the bytes on disk, never from zero.
    assert len(reqs) == len(drops) + 1
    assert [r.bytes_sent for r in reqs[:-1]] == drops
    assert reqs[0].range is None
    start, refetched = 0, 0
    for prev, cur in zip(reqs, reqs[1:]):
        assert cur.range and cur.status == 206, cur
        got = int(cur.range.removeprefix("bytes=").rstrip("-"))
        assert start + prev.bytes_sent - CHUNK < got <= start + prev.bytes_sent
        assert got >= start  # never backwards
        refetched += start + prev.bytes_sent - got
        start = got
    assert start + reqs[-1].bytes_sent == len(data)
    assert refetched < len(drops) * CHUNK
    assert log.count("retry") >= len(drops), log[-3000:]


def test_wrong_bytes_never_become_the_data_file(tmp_path, galaxy):
    data, sha = galaxy
    with serve_bytes(data, corrupt=True) as server:  # same length, every byte inverted
        repo = make_repo(tmp_path / "repo", real_source(server.url, sha))
        out = dvc(["repro", "download"], repo, check=False)
    log = out.stdout + out.stderr
    assert out.returncode != 0, log[-3000:]
    assert no_traceback(log), log[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, log[-3000:]
    assert server.url in errors[0] and f"expected {sha}" in errors[0]
    assert "data.sha256" in errors[0] and "Re-run" in errors[0]  # says what to do
    assert leftovers(repo / "data") == [], "a partial or unverified file was left behind"
