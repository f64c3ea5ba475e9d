"""Stage download: fetch the real Galaxy10 DECaLS file, render the embedded synthetic galaxies,
or convert the user's labelled set (``data.source: labelled``, ``data.path``).

Either way the output is one file in the Galaxy10 layout plus ``source.json`` (what it is and
its SHA-256), so every later stage reads one format. With ``data.local_path`` the real file is
copied from a copy the user already has (verified by SHA-256) instead of downloaded.

``--check`` changes nothing: it checks in seconds that the source is usable (the host answers,
the disk has room, the local copy exists), with ``-S key=value`` as ``dvc exp run -S`` would
set them. Run it before switching source: DVC deletes a stage's outputs before running it.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from deepgal import config, stage
from deepgal.data import galaxy10
from deepgal.data.download import DownloadError, download, preflight, sha256_file
from deepgal.data.labelled_source import convert, manifest
from deepgal.data.local_copy import copy_verified
from deepgal.data.synthetic import write_synthetic
from deepgal.handoff import Source

log = logging.getLogger("download")


def check(data: config.DataCfg, out: Path) -> str:
    """One line saying the source is usable; DownloadError saying what is not."""
    if data.source == "synthetic":
        return "data.source is synthetic: rendered here, nothing to fetch"
    if data.source == "labelled":
        info = manifest(data.source, data.path, data.path_sha256)
        return f"data.path {data.path}: {info['n_images']} labelled images ({info['kind']})"
    if data.local_path:
        src = Path(data.local_path).expanduser()
        if not src.is_file():
            raise DownloadError(f"data.local_path: {src} is not a file")
        return f"data.local_path {src} exists ({src.stat().st_size / 1e9:.2f} GB); " \
               "its SHA-256 is checked when the stage copies it"
    return preflight(data.url, out, timeout_s=min(data.timeout_s, 5.0))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="Galaxy10-layout HDF5 file to write")
    p.add_argument("--info", type=Path, help="source.json to write (not with --check)")
    p.add_argument("--check", action="store_true", help="only check the source; change nothing")
    p.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                   help="with --check: a params override, as `dvc exp run -S`")
    args = p.parse_args()
    if not args.check and (args.set_param or args.info is None):
        p.error("without --check, --info is required and -S is not allowed (DVC passes "
                "params through params.yaml)")
    params = config.apply_overrides(config.load_params(), args.set_param)
    base, data = config.load_section("base", params), config.load_section("data", params)
    if args.check:
        print(f"ok: {check(data, args.out)}")
        return 0

    if data.source == "galaxy10_decals":
        if data.local_path:
            copy_verified(data.local_path, args.out, data.sha256)
        else:
            download(data.url, args.out, data.sha256, timeout_s=data.timeout_s,
                     retries=data.retries)
        digest = data.sha256.lower()
    elif data.source == "labelled":
        log.info("converting the labelled set at %s (image_size %s)", data.path, data.image_size)
        convert(data.path, args.out, data.image_size)
        digest = sha256_file(args.out)
    else:
        s = data.synthetic
        log.info("rendering %d synthetic galaxies per class at %d px (seed %d)",
                 s.per_class, s.image_size, base.seed)
        write_synthetic(args.out, per_class=s.per_class, image_size=s.image_size,
                        seed=base.seed, balance=s.balance)
        digest = sha256_file(args.out)
    info = galaxy10.validate(args.out)
    Source(source=data.source, sha256=digest,
           labelled_path=data.path if data.source == "labelled" else None,
           **info.as_dict()).write(args.info)
    log.info("%s: %d images of %dx%d px", args.out, info.n_images, info.height, info.width)
    return 0


if __name__ == "__main__":
    stage.run(main, extra_errors=(DownloadError,))
