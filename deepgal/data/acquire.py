"""The download stage's work: one Galaxy10-layout file from whichever source params name.

``data.source`` picks it: ``galaxy10_decals`` fetches the real file (or copies
``data.local_path``, verified by SHA-256), ``labelled`` converts the user's labelled set at
``data.path``, ``synthetic`` renders the embedded galaxies. Either way the output is one file
in the Galaxy10 layout plus ``source.json`` (:class:`deepgal.handoff.Source`: what it is and
its SHA-256), so every later stage reads one format.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import BaseCfg, DataCfg
from ..handoff import Source
from . import galaxy10
from .download import DownloadError, download, preflight, sha256_file
from .labelled_source import convert, manifest
from .local_copy import copy_verified
from .synthetic import write_synthetic

log = logging.getLogger("download")


def check_source(data: DataCfg, out: Path) -> str:
    """One line saying the source is usable (the host answers, the disk has room, the local
    copy exists), in seconds and changing nothing; DownloadError saying what is not."""
    if data.source == "synthetic":
        return "data.source is synthetic: rendered here, nothing to fetch"
    if data.source == "labelled":
        info = manifest(data.source, data.path, data.path_sha256)
        return f"data.path {data.path}: {info['n_images']} labelled images ({info['kind']})"
    if data.local_path:
        src = Path(data.local_path).expanduser()
        if not src.is_file():
            raise DownloadError(f"data.local_path: {src} is not a file")
        return (
            f"data.local_path {src} exists ({src.stat().st_size / 1e9:.2f} GB); "
            "its SHA-256 is checked when the stage copies it"
        )
    return preflight(data.url, out, timeout_s=min(data.timeout_s, 5.0))


def acquire(data: DataCfg, base: BaseCfg, out: Path, info: Path) -> Source:
    """Write the Galaxy10-layout file ``out`` from ``data.source`` and its ``info``
    (source.json); returns the Source record written."""
    if data.source == "galaxy10_decals":
        if data.local_path:
            copy_verified(data.local_path, out, data.sha256)
        else:
            download(data.url, out, data.sha256, timeout_s=data.timeout_s, retries=data.retries)
        digest = data.sha256.lower()
    elif data.source == "labelled":
        log.info("converting the labelled set at %s (image_size %s)", data.path, data.image_size)
        convert(data.path, out, data.image_size)
        digest = sha256_file(out)
    else:
        s = data.synthetic
        log.info(
            "rendering %d synthetic galaxies per class at %d px (seed %d)",
            s.per_class,
            s.image_size,
            base.seed,
        )
        write_synthetic(
            out, per_class=s.per_class, image_size=s.image_size, seed=base.seed, balance=s.balance
        )
        digest = sha256_file(out)
    found = galaxy10.validate(out)
    source = Source(
        source=data.source,
        sha256=digest,
        labelled_path=data.path if data.source == "labelled" else None,
        **found.as_dict(),
    )
    source.write(info)
    log.info("%s: %d images of %dx%d px", out, found.n_images, found.height, found.width)
    return source
