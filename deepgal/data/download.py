"""Fetch one file over HTTP(S): resumable, retried, checksummed, renamed into place atomically.

The ``download`` stage uses it for ``Galaxy10_DECals.h5`` (2.7 GB from Zenodo), but this module
knows nothing of that file: URL, destination and SHA-256 are arguments.

- Bytes stream into ``<dest>.part``; a retry, or the next run, resumes from its size with
  ``Range``. The SHA-256 is fed while streaming, so a 2.7 GB file is not read twice.
- Transient failures (connection refused or reset, DNS, timeouts, cut-off transfers, 5xx, 429)
  are retried with exponential back-off. An attempt that added bytes resets the count: a flaky
  but working link still finishes the file, while a dead one gives up after ``retries`` retries,
  i.e. ``backoff_s * (2**retries - 1)`` seconds of waiting (31 s with the defaults).
- Any other HTTP error (404, 403, ...) fails at once: retrying cannot fix a wrong URL.
- Only a file whose SHA-256 matches is renamed to ``dest``; ``dest`` is never half-written.
- :func:`preflight` checks, in seconds, that the host answers and the disk has room, before
  any long work. A copy the user already has is taken instead by
  :func:`deepgal.data.local_copy.copy_verified`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from time import sleep
from urllib.parse import urlparse

import requests
from tqdm import tqdm

from ..errors import DeepgalError

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
# requests' names for "the network or the server may recover": refused/reset/DNS
# (ConnectionError), connect/read timeouts, and a body cut off mid-way (ChunkedEncodingError).
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class DownloadError(DeepgalError, RuntimeError):
    """A download that failed for good; the message names the URL or file and what to do."""


class _Transient(Exception):
    """A failed attempt worth retrying that requests does not raise itself (5xx, short body)."""


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Lower-case hex SHA-256 of the file at ``path``, read ``chunk_bytes`` at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class _Job:
    """What :func:`download` was asked for, passed to its helpers in one piece."""

    url: str
    dest: Path
    expected: str  # lower-case hex SHA-256
    timeout_s: float
    retries: int
    backoff_s: float
    chunk_bytes: int
    progress: bool


class _Part:
    """``<dest>.part`` and the SHA-256 of the bytes in it, kept in step across attempts."""

    def __init__(self, path: Path, chunk_bytes: int):
        self.path = path
        self.hasher = hashlib.sha256()
        self.size = 0
        if path.exists():  # resume: hash what an earlier run left
            with open(path, "rb") as f:
                while chunk := f.read(chunk_bytes):
                    self.append_hash(chunk)

    def append_hash(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.size += len(chunk)

    def digest(self) -> str:
        return self.hasher.hexdigest()

    def reset(self) -> None:
        self.path.write_bytes(b"")
        self.hasher, self.size = hashlib.sha256(), 0

    def write(self, chunks: Iterable[bytes], bar: tqdm) -> None:
        with open(self.path, "ab") as f:
            for chunk in chunks:
                try:
                    f.write(chunk)
                except OSError as e:
                    raise DownloadError(
                        f"cannot write {self.path}: {e}; free some disk space "
                        "or fix the permissions, then re-run (it resumes)"
                    ) from e
                self.append_hash(chunk)
                bar.update(len(chunk))


def download(
    url: str,
    dest: str | Path,
    sha256: str,
    *,
    timeout_s: float = 20,
    retries: int = 5,
    backoff_s: float = 1.0,
    chunk_bytes: int = 1 << 20,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` unless it is already there with SHA-256 ``sha256``.

    ``timeout_s`` bounds each connect and each read; ``retries`` is how many failed attempts in
    a row that got no further than before are retried, waiting ``backoff_s * 2**(k-1)`` before
    the k-th (a dead network gives up after ``backoff_s * (2**retries - 1)`` s of waiting).
    Returns ``dest``. Raises ``ValueError`` for a bad argument and :class:`DownloadError` when
    the file cannot be fetched or does not match ``sha256`` (``dest`` is then left as it was).
    """
    _check_args(url, sha256, timeout_s, retries, backoff_s, chunk_bytes)
    dest, expected = Path(dest), sha256.lower()
    if _already_there(dest, expected, chunk_bytes):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    job = _Job(url, dest, expected, timeout_s, retries, backoff_s, chunk_bytes, progress)
    part = _Part(dest.with_name(dest.name + ".part"), chunk_bytes)
    resumed = part.size > 0
    if resumed:
        log.info("resuming %s from the %d bytes in %s", url, part.size, part.path)
    with requests.Session() as session:
        # Byte ranges must index the file itself, not a gzip of it.
        session.headers["Accept-Encoding"] = "identity"
        _fetch(session, job, part)
        if part.digest() != expected and resumed:
            # The .part may be from another version of the file: start over once, from zero.
            log.warning(
                "%s has the wrong SHA-256 after resuming an old %s; starting over", url, part.path
            )
            part.reset()
            _fetch(session, job, part)
    actual = part.digest()
    if actual != expected:
        part.path.unlink(missing_ok=True)
        raise DownloadError(
            f"{url} downloaded, but its SHA-256 is {actual}, expected {expected}; the download "
            f"was deleted and {dest} left as it was. Re-run to download again; if this persists, "
            "the URL or `data.sha256` in params.yaml is wrong."
        )
    os.replace(part.path, dest)
    log.info("%s verified (SHA-256 %s) and saved to %s", url, actual, dest)
    return dest


def _already_there(dest: Path, expected: str, chunk_bytes: int) -> bool:
    """True when ``dest`` exists with SHA-256 ``expected`` (lower-case hex); a ``dest`` with
    another SHA-256 is logged and left in place until the new download verifies."""
    if not dest.exists():
        return False
    actual = sha256_file(dest, chunk_bytes)
    if actual == expected:
        log.info("%s is already here with the expected SHA-256; not downloading", dest)
        return True
    log.warning(
        "%s exists but its SHA-256 is %s, not %s; downloading it again (the old "
        "file stays until the new one verifies)",
        dest,
        actual,
        expected,
    )
    return False


def _fetch(session: requests.Session, job: _Job, part: _Part) -> None:
    """Attempt after attempt until ``part`` holds the whole body; raise DownloadError if not."""
    url, dest, retries = job.url, job.dest, job.retries
    attempts, failures, high_water = 0, 0, part.size
    while True:
        attempts += 1
        try:
            return _attempt(session, job, part)
        except requests.HTTPError as e:
            status = e.response.status_code
            raise DownloadError(
                f"{url} answered HTTP {status} {e.response.reason}; not retried, since this "
                f"is not a passing fault. Check `data.url` in params.yaml, or download the file "
                f"by hand to {dest} and re-run (`dvc repro` verifies its SHA-256)."
            ) from e
        except (*_NETWORK_ERRORS, _Transient) as e:
            # Progress means bytes beyond any earlier attempt's; only that resets the count.
            failures = 1 if part.size > high_water else failures + 1
            high_water = max(high_water, part.size)
            if failures > retries:
                raise DownloadError(
                    f"could not download {url} after {attempts} attempts ({failures} in a row "
                    f"without progress); last error: {e}. Check the network connection (and "
                    f"proxy settings), then re-run: the {part.size} bytes in {part.path} are "
                    f"kept and resumed. Or download the file by hand to {dest} and re-run "
                    "(`dvc repro` verifies its SHA-256); offline, point `data.local_path` at "
                    "a copy of the file you already have."
                ) from e
            delay = job.backoff_s * 2 ** (failures - 1)
            log.warning(
                "%s: attempt %d failed (%s); retry %d of %d in %.3g s",
                url,
                attempts,
                e,
                failures,
                retries,
                delay,
            )
            sleep(delay)


def _attempt(session: requests.Session, job: _Job, part: _Part) -> None:
    """One GET from byte ``part.size`` to the end, appended to ``part``."""
    while True:
        headers = {"Range": f"bytes={part.size}-"} if part.size else {}
        with session.get(
            job.url, headers=headers, stream=True, timeout=(job.timeout_s, job.timeout_s)
        ) as resp:
            status = resp.status_code
            if status == 416 and part.size:
                if part.digest() == job.expected:
                    log.info("%s already holds the whole file", part.path)
                    return
                log.warning(
                    "%s holds %d bytes the server cannot continue from (HTTP 416); starting over",
                    part.path,
                    part.size,
                )
                part.reset()
                continue  # no Range this time, so no second 416
            if status == 429 or status >= 500:
                raise _Transient(f"HTTP {status} {resp.reason}")
            if status not in (200, 206):
                raise requests.HTTPError(f"HTTP {status}", response=resp)
            total = _total_size(resp, part)
            with tqdm(
                total=total,
                initial=part.size,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=job.dest.name,
                disable=None if job.progress else True,
            ) as bar:
                part.write(resp.iter_content(chunk_size=job.chunk_bytes), bar)
            # urllib3 2 raises on a short body itself; urllib3 1.x (still allowed) ends quietly.
            if total is not None and part.size != total:
                raise _Transient(f"connection closed after {part.size} of {total} bytes")
            return


def _total_size(resp: requests.Response, part: _Part) -> int | None:
    """Size of the whole file from the headers (None if unknown); align ``part`` with the body."""
    if resp.status_code == 200:
        if part.size:
            log.warning("%s ignored the Range request; starting over from byte 0", resp.url)
            part.reset()
        length = resp.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None
    content_range = resp.headers.get("Content-Range", "")
    m = _CONTENT_RANGE.fullmatch(content_range.strip())
    if not m or int(m[1]) != part.size:
        asked = part.size
        part.reset()
        raise _Transient(
            f"asked for bytes {asked}- but got Content-Range {content_range!r}; "
            "starting over from byte 0"
        )
    return None if m[3] == "*" else int(m[3])


def _check_args(
    url: str, sha256: str, timeout_s: float, retries: int, backoff_s: float, chunk_bytes: int
) -> None:
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"url must be an http:// or https:// URL, got {url!r}")
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
        raise ValueError(f"sha256 must be 64 hexadecimal characters, got {sha256!r}")
    for name, value, low in (("timeout_s", timeout_s, 0), ("chunk_bytes", chunk_bytes, 0)):
        if not value > low:
            raise ValueError(f"{name} must be > {low}, got {value!r}")
    for name, value in (("retries", retries), ("backoff_s", backoff_s)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")


def free_bytes(dest: Path) -> int:
    """Free bytes on the file system that will hold ``dest`` (its nearest existing parent)."""
    parent = dest.parent.resolve()
    while not parent.exists():
        parent = parent.parent
    return shutil.disk_usage(parent).free


def preflight(url: str, dest: str | Path, timeout_s: float = 5.0) -> str:
    """Check in seconds that ``url`` answers and that ``dest``'s disk can hold the file.

    One HEAD request (redirects followed, no retries, ``timeout_s`` per connect and read)
    gives the size; the free space must cover it (less what ``<dest>.part`` already holds).
    Returns a one-line summary; raises :class:`DownloadError` saying what to do. A server
    that does not tell the size passes with the space unchecked (said in the summary).
    """
    dest = Path(dest)
    try:
        resp = requests.head(
            url,
            allow_redirects=True,
            timeout=(timeout_s, timeout_s),
            headers={"Accept-Encoding": "identity"},
        )
    except _NETWORK_ERRORS as e:
        raise DownloadError(
            f"{urlparse(url).netloc} does not answer ({type(e).__name__}: {e}); you seem to be "
            f"offline, or `data.url` is wrong. Nothing was changed. Connect and re-run, or "
            f"point `data.local_path` at a copy of the file you already have."
        ) from e
    if resp.status_code >= 400 and resp.status_code not in (405, 501):  # HEAD not allowed: ok
        raise DownloadError(
            f"{url} answered HTTP {resp.status_code} {resp.reason}; check "
            "`data.url` in params.yaml. Nothing was changed."
        )
    length = resp.headers.get("Content-Length", "")
    if not length.isdigit():
        return f"{urlparse(url).netloc} answers; file size not given, free space unchecked"
    size = int(length)
    part = dest.with_name(dest.name + ".part")
    need = size - (part.stat().st_size if part.exists() else 0)
    free = free_bytes(dest)
    if free < need:
        raise DownloadError(
            f"{dest.parent}: {free / 1e9:.2f} GB free, but {url} is {size / 1e9:.2f} GB "
            f"({need / 1e9:.2f} GB still to fetch); free some space (DVC's cache needs as much "
            "again unless its cache.type is a link). Nothing was changed."
        )
    return f"{urlparse(url).netloc} answers; {size / 1e9:.2f} GB to fetch, {free / 1e9:.2f} GB free"
