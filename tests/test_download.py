"""deepgal.data.download against a real loopback HTTP server with injected faults."""

from __future__ import annotations

import hashlib
import http.server
import itertools
import threading
from pathlib import Path

import numpy as np
import pytest

from deepgal.data import download as download_mod
from deepgal.data.download import DownloadError, download, preflight, sha256_file
from deepgal.data.galaxy10 import validate, write_galaxy10
from deepgal.data.local_copy import copy_verified

from .httpserver import serve_bytes
from .ports import refused_url

CHUNK = 4096
FAST = dict(backoff_s=0.01, chunk_bytes=CHUNK, progress=False, timeout_s=5)


@pytest.fixture(scope="module")
def galaxy(tmp_path_factory) -> tuple[bytes, str]:
    """A real Galaxy10-layout file of 100 random 32x32 images (~310 kB) and its SHA-256."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("src") / "Galaxy10_DECals.h5"
    write_galaxy10(
        path, rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 100)
    )
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "data" / "Galaxy10_DECals.h5"


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


@pytest.fixture(autouse=True)
def sleeps(monkeypatch) -> list[float]:
    """Record back-off waits instead of sleeping; a runaway retry loop fails instead of hanging."""
    waits: list[float] = []

    def record(seconds: float) -> None:
        waits.append(seconds)
        assert len(waits) < 100, "download() is retrying without end"

    monkeypatch.setattr(download_mod, "sleep", record)
    return waits


def test_clean_download_verifies_and_validates(galaxy, dest):
    data, sha = galaxy
    with serve_bytes(data) as server:
        out = download(server.url, dest, sha.upper(), **FAST)  # hex case does not matter
    assert out == dest and dest.read_bytes() == data
    assert sha256_file(dest) == sha == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert validate(dest).n_images == 100
    assert not part_of(dest).exists()
    assert [(r.method, r.range, r.status) for r in server.requests] == [("GET", None, 200)]


def test_dropped_connection_resumes_with_range(galaxy, dest, sleeps):
    data, sha = galaxy
    drop = 8 * CHUNK  # chunk-aligned, so every byte before the cut reaches the disk
    with serve_bytes(data, drop_after_bytes=[drop]) as server:
        download(server.url, dest, sha, **FAST)
    first, second = server.requests
    assert (first.range, first.bytes_sent) == (None, drop)
    assert (second.range, second.status) == (f"bytes={drop}-", 206)
    assert first.bytes_sent + second.bytes_sent == len(data)  # nothing fetched twice
    assert dest.read_bytes() == data
    assert sleeps == [0.01]


def test_repeated_random_drops_still_complete(galaxy, dest, sleeps):
    data, sha = galaxy
    drops = np.random.default_rng(7).integers(1, len(data) // 16, size=8).tolist()
    drops.insert(3, 100)  # one cut inside the first chunk: no progress that time
    # Fewer retries than drops: an attempt that adds bytes does not use up a retry.
    with serve_bytes(data, drop_after_bytes=drops) as server:
        download(server.url, dest, sha, retries=3, **FAST)
    assert dest.read_bytes() == data
    reqs = server.requests
    assert len(reqs) == len(drops) + 1
    start = 0
    for prev, cur in itertools.pairwise(reqs):
        got = int(cur.range.removeprefix("bytes=").rstrip("-")) if cur.range else 0
        # Resumes from what reached the disk: all sent bytes but a partial last chunk.
        assert start + prev.bytes_sent - CHUNK < got <= start + prev.bytes_sent
        start = got
    assert start + reqs[-1].bytes_sent == len(data)


def test_drops_without_progress_use_up_retries(galaxy, dest, sleeps):
    data, sha = galaxy
    with serve_bytes(data, drop_after_bytes=10) as server:  # less than a chunk, every time
        with pytest.raises(DownloadError, match="after 3 attempts"):
            download(server.url, dest, sha, retries=2, **FAST)
    assert len(server.requests) == 3
    assert sleeps == [0.01, 0.02]
    assert not dest.exists()


@pytest.mark.parametrize("status", [404, 403, 410])
def test_client_error_fails_at_once(galaxy, dest, sleeps, status):
    data, sha = galaxy
    with serve_bytes(data, status_override=status) as server:
        with pytest.raises(DownloadError) as err:
            download(server.url, dest, sha, retries=5, **FAST)
    msg = str(err.value)
    assert f"HTTP {status}" in msg and server.url in msg and "not retried" in msg
    assert len(server.requests) == 1 and sleeps == []
    assert not dest.exists()


def test_server_error_twice_then_ok(galaxy, dest, sleeps):
    data, sha = galaxy
    with serve_bytes(data, status_override=[500, 503]) as server:
        download(server.url, dest, sha, **FAST)
    assert [r.status for r in server.requests] == [500, 503, 200]
    assert sleeps == [0.01, 0.02]  # exponential back-off
    assert dest.read_bytes() == data


@pytest.mark.parametrize("status", [500, 502, 429])
def test_retries_are_bounded(galaxy, dest, sleeps, status):
    data, sha = galaxy
    with serve_bytes(data, status_override=status) as server:
        with pytest.raises(DownloadError) as err:
            download(server.url, dest, sha, retries=3, **FAST)
    msg = str(err.value)
    assert "after 4 attempts" in msg and f"HTTP {status}" in msg and "by hand" in msg
    assert len(server.requests) == 4 and sleeps == [0.01, 0.02, 0.04]
    assert not dest.exists()


def test_wrong_checksum_leaves_nothing(galaxy, dest):
    data, sha = galaxy
    with serve_bytes(data, corrupt=True) as server:
        with pytest.raises(DownloadError) as err:
            download(server.url, dest, sha, **FAST)
    served = hashlib.sha256(bytes(255 - b for b in data)).hexdigest()
    msg = str(err.value)
    assert sha in msg and served in msg and "data.sha256" in msg
    assert not dest.exists() and not part_of(dest).exists()
    assert list(dest.parent.iterdir()) == []


def test_server_ignoring_range_restarts_cleanly(galaxy, dest, sleeps):
    data, sha = galaxy
    with serve_bytes(data, drop_after_bytes=[5 * CHUNK], ignore_range=True) as server:
        download(server.url, dest, sha, **FAST)
    first, second = server.requests
    assert second.range == f"bytes={5 * CHUNK}-" and second.status == 200
    assert dest.read_bytes() == data


def test_no_range_support_and_drops_at_same_point_gives_up(galaxy, dest, sleeps):
    data, sha = galaxy
    # Each attempt starts over and dies at the same byte: bytes come, but no progress.
    with serve_bytes(data, drop_after_bytes=5 * CHUNK, ignore_range=True) as server:
        with pytest.raises(DownloadError, match="after 3 attempts"):
            download(server.url, dest, sha, retries=2, **FAST)
    assert [r.bytes_sent for r in server.requests] == [5 * CHUNK] * 3


def test_misaligned_content_range_starts_over(galaxy, dest, sleeps):
    data, sha = galaxy
    with serve_bytes(data, drop_after_bytes=[5 * CHUNK], misalign_range=True) as server:
        download(server.url, dest, sha, **FAST)
    assert [(r.range, r.status) for r in server.requests] == [
        (None, 200),
        (f"bytes={5 * CHUNK}-", 206),
        (None, 200),
    ]
    assert dest.read_bytes() == data


def test_existing_good_file_makes_no_request(galaxy, dest):
    data, sha = galaxy
    dest.parent.mkdir(parents=True)
    dest.write_bytes(data)
    mtime = dest.stat().st_mtime_ns
    with serve_bytes(data) as server:
        assert download(server.url, dest, sha, **FAST) == dest
    assert server.requests == []
    assert dest.stat().st_mtime_ns == mtime


def test_existing_bad_file_is_downloaded_again(galaxy, dest):
    data, sha = galaxy
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"not the file")
    with serve_bytes(data) as server:
        download(server.url, dest, sha, **FAST)
    assert len(server.requests) == 1 and dest.read_bytes() == data


def test_existing_bad_file_kept_until_new_one_verifies(galaxy, dest):
    data, sha = galaxy
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"old bytes")
    with serve_bytes(data, status_override=404) as server:
        with pytest.raises(DownloadError):
            download(server.url, dest, sha, **FAST)
    assert dest.read_bytes() == b"old bytes"


def test_connection_refused_fails_fast(galaxy, dest, sleeps):
    _, sha = galaxy
    with refused_url() as url:
        with pytest.raises(DownloadError) as err:
            download(url, dest, sha, retries=2, **FAST)
    assert sleeps == [0.01, 0.02]  # the back-off and nothing else: no wait for a timeout
    msg = str(err.value)
    assert "after 3 attempts" in msg and url in msg and "network" in msg
    assert "`data.local_path`" in msg  # the way forward without a network
    assert not dest.exists()


def test_no_network_with_defaults_waits_under_a_minute(galaxy, dest, sleeps):
    _, sha = galaxy
    with refused_url("/x.h5") as url:
        with pytest.raises(DownloadError, match="after 6 attempts"):
            download(url, dest, sha, progress=False)
    assert sleeps == [1, 2, 4, 8, 16] and sum(sleeps) < 60


def test_stall_past_read_timeout_is_retried(galaxy, dest, sleeps):
    """The first answer stops after its headers until the test releases it, which it does
    only after the download returned: the client must give up on its own read timeout."""
    data, sha = galaxy
    with serve_bytes(data, hold=["body"]) as server:
        download(server.url, dest, sha, **{**FAST, "timeout_s": 1})
        first, second = server.requests  # read while the first is still held
        assert (first.held, first.status, first.bytes_sent) == (True, 200, 0)
        assert (second.held, second.range, second.bytes_sent) == (False, None, len(data))
    assert sleeps == [0.01] and dest.read_bytes() == data


def test_part_from_earlier_run_is_resumed(galaxy, dest):
    data, sha = galaxy
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(data[:12345])
    with serve_bytes(data) as server:
        download(server.url, dest, sha, **FAST)
    [req] = server.requests
    assert (req.range, req.status, req.bytes_sent) == ("bytes=12345-", 206, len(data) - 12345)
    assert dest.read_bytes() == data and not part_of(dest).exists()


def test_complete_part_is_just_verified(galaxy, dest):
    data, sha = galaxy
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(data)
    with serve_bytes(data) as server:
        download(server.url, dest, sha, **FAST)
    assert [(r.range, r.status) for r in server.requests] == [(f"bytes={len(data)}-", 416)]
    assert dest.read_bytes() == data


def test_stale_part_larger_than_file_recovers(galaxy, dest):
    data, sha = galaxy
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(data + b"junk" * 1000)
    with serve_bytes(data) as server:
        download(server.url, dest, sha, **FAST)
    assert [r.status for r in server.requests] == [416, 200]
    assert dest.read_bytes() == data and not part_of(dest).exists()


def test_part_of_another_file_restarts_once(galaxy, dest):
    data, sha = galaxy
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(b"x" * 1000)  # e.g. an older version of the file
    with serve_bytes(data) as server:
        download(server.url, dest, sha, **FAST)
    assert [(r.range, r.status) for r in server.requests] == [("bytes=1000-", 206), (None, 200)]
    assert dest.read_bytes() == data


@pytest.mark.parametrize(
    "kwargs, named",
    [
        (dict(url="ftp://example.org/g.h5"), "ftp://example.org/g.h5"),
        (dict(url="zenodo.org/g.h5"), "zenodo.org/g.h5"),
        (dict(sha256="abc123"), "abc123"),
        (dict(sha256="g" * 64), "g" * 64),
        (dict(retries=-1), "retries"),
        (dict(timeout_s=0), "timeout_s"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, named):
    args = dict(url="https://example.org/g.h5", dest=tmp_path / "g.h5", sha256="0" * 64) | kwargs
    with pytest.raises(ValueError) as err:
        download(**args)
    assert named in str(err.value)
    assert list(tmp_path.iterdir()) == []


# -- pre-flight: seconds, before DVC deletes anything -------------------------------------------


class _HugeFile(http.server.BaseHTTPRequestHandler):
    """Answers HEAD for a 1 PB file: no disk here can hold it."""

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", str(10**15))
        self.end_headers()

    def log_message(self, *args):
        pass


def test_preflight_passes_and_reports_size(galaxy, dest):
    data, _ = galaxy
    with serve_bytes(data) as server:
        summary = preflight(server.url, dest, timeout_s=5)
        assert [r.method for r in server.requests] == ["HEAD"]  # no body fetched
    assert f"{len(data) / 1e9:.2f} GB to fetch" in summary and "GB free" in summary
    assert not dest.parent.exists()  # created nothing


def test_preflight_offline_says_what_to_do(dest, sleeps):
    with refused_url() as url:
        with pytest.raises(
            DownloadError,
            match=r"127\.0\.0\.1:\d+ does not answer.*offline.*"
            r"Nothing was changed.*data\.local_path",
        ):
            preflight(url, dest, timeout_s=2)
    assert sleeps == [] and not dest.parent.exists()


def test_preflight_gives_up_on_a_silent_host_after_one_request(galaxy, dest, sleeps):
    """The host takes the request and never answers (until released after the check)."""
    data, _ = galaxy
    with serve_bytes(data, hold="reply") as server:
        with pytest.raises(DownloadError, match=r"does not answer \((ReadTimeout|Timeout)"):
            preflight(server.url, dest, timeout_s=0.5)
        assert [(r.method, r.held, r.status) for r in server.requests] == [("HEAD", True, 0)]
    assert sleeps == [] and not dest.parent.exists()


def test_preflight_not_found_and_no_room(galaxy, dest):
    data, _ = galaxy
    with serve_bytes(data) as server:
        with pytest.raises(DownloadError, match=r"HTTP 404.*data\.url"):
            preflight(server.url + ".missing", dest)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HugeFile)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/Galaxy10_DECals.h5"
        with pytest.raises(
            DownloadError,
            match=r"GB free, but .* is 1000000\.00 GB.*free some "
            r"space.*Nothing was changed",
        ):
            preflight(url, dest)
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- a copy the user already has (data.local_path) ----------------------------------------------


def test_copy_verified_copies_and_checks(galaxy, tmp_path, dest):
    data, sha = galaxy
    src = tmp_path / "astroNN" / "Galaxy10_DECals.h5"
    src.parent.mkdir()
    src.write_bytes(data)
    src.chmod(0o644)
    assert copy_verified(src, dest, sha.upper(), chunk_bytes=CHUNK) == dest
    assert dest.read_bytes() == data and not dest.samefile(src)  # a copy, not a link
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # no .tmp left
    assert src.stat().st_mode & 0o777 == 0o644 and src.read_bytes() == data
    validate(dest)
    mtime = dest.stat().st_mtime_ns
    copy_verified(src, dest, sha)  # already there: not copied again
    assert dest.stat().st_mtime_ns == mtime


def test_copy_verified_expands_home(galaxy, tmp_path, monkeypatch, dest):
    data, sha = galaxy
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".astroNN" / "datasets").mkdir(parents=True)
    (tmp_path / ".astroNN" / "datasets" / "Galaxy10_DECals.h5").write_bytes(data)
    copy_verified("~/.astroNN/datasets/Galaxy10_DECals.h5", dest, sha)
    assert dest.read_bytes() == data


def test_copy_verified_wrong_file_leaves_dest_as_it_was(galaxy, tmp_path, dest):
    data, sha = galaxy
    src = tmp_path / "other.h5"
    src.write_bytes(data[:-1] + b"x")
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"old bytes")
    with pytest.raises(
        DownloadError,
        match=rf"data\.local_path: .*other\.h5 has SHA-256 "
        rf"[0-9a-f]{{64}}, expected {sha}",
    ):
        copy_verified(src, dest, sha)
    assert dest.read_bytes() == b"old bytes"
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]
    with pytest.raises(DownloadError, match=r"data\.local_path: .*nowhere\.h5 is not a file"):
        copy_verified(tmp_path / "nowhere.h5", dest, sha)
