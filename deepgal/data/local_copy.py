"""A copy of ``Galaxy10_DECals.h5`` the user already has (``data.local_path``), e.g. astroNN's
cache: copied into the pipeline, checked by SHA-256 while copying, renamed into place.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from .download import DownloadError, free_bytes, sha256_file

log = logging.getLogger(__name__)


def copy_verified(
    src: str | Path, dest: str | Path, sha256: str, chunk_bytes: int = 1 << 20
) -> Path:
    """Copy a file the user already has (``data.local_path``) to ``dest``, checked by SHA-256.

    The hash is computed while copying (one read), into ``<dest>.tmp``, renamed into place only
    when it matches: ``dest`` is never half-written, and a mismatch leaves it as it was. A
    copy, not a hard link: DVC moves ``dest`` into its cache and makes it read-only, which
    through a link would change the user's own file. ``~`` in ``src`` is expanded.
    """
    src, dest, expected = Path(src).expanduser(), Path(dest), sha256.lower()
    if not src.is_file():
        raise DownloadError(
            f"data.local_path: {src} is not a file; fix the path in params.yaml "
            "or set it to null to download from data.url"
        )
    if dest.exists() and sha256_file(dest, chunk_bytes) == expected:
        log.info("%s is already here with the expected SHA-256; not copying", dest)
        return dest
    size = src.stat().st_size
    if free_bytes(dest) < size:
        raise DownloadError(
            f"{dest.parent}: not enough free space to copy {src} "
            f"({size / 1e9:.2f} GB); free some space and re-run"
        )
    from ..progress import Progress

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp, h = dest.with_name(dest.name + ".tmp"), hashlib.sha256()
    try:
        with (
            open(src, "rb") as fin,
            open(tmp, "wb") as fout,
            Progress(size, f"copy {src.name}", "B") as bar,
        ):
            while chunk := fin.read(chunk_bytes):
                h.update(chunk)
                fout.write(chunk)
                bar.update(len(chunk))
        if h.hexdigest() != expected:
            raise DownloadError(
                f"data.local_path: {src} has SHA-256 {h.hexdigest()}, expected {expected} "
                f"(data.sha256); it is not the Galaxy10 DECaLS file (or it is damaged). "
                f"{dest} was left as it was."
            )
        os.replace(tmp, dest)
    except OSError as e:
        raise DownloadError(
            f"cannot copy {src} to {dest}: {e}; check the free space and permissions, then re-run"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)
    log.info("copied %s to %s (SHA-256 verified)", src, dest)
    return dest
