"""Stage download: fetch the real Galaxy10 DECaLS file, render the embedded synthetic galaxies,
or convert the user's labelled set (``data.source: labelled``, ``data.path``).

Either way the output is one file in the Galaxy10 layout plus ``source.json`` (what it is and
its SHA-256; deepgal.data.acquire). With ``data.local_path`` the real file is copied from a
copy the user already has (verified by SHA-256) instead of downloaded.

``--check`` changes nothing: it checks in seconds that the source is usable (the host answers,
the disk has room, the local copy exists), with ``-S key=value`` as ``dvc exp run -S`` would
set them. Run it before switching source: DVC deletes a stage's outputs before running it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepgal import config, stage
from deepgal.data.acquire import acquire, check_source
from deepgal.data.download import DownloadError


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="Galaxy10-layout HDF5 file to write")
    p.add_argument("--info", type=Path, help="source.json to write (not with --check)")
    p.add_argument("--check", action="store_true", help="only check the source; change nothing")
    p.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --check: a params override, as `dvc exp run -S`",
    )
    args = p.parse_args()
    if not args.check and (args.set_param or args.info is None):
        p.error(
            "without --check, --info is required and -S is not allowed (DVC passes "
            "params through params.yaml)"
        )
    params = config.apply_overrides(config.load_params(), args.set_param)
    base, data = config.load_section("base", params), config.load_section("data", params)
    if args.check:
        print(f"ok: {check_source(data, args.out)}")
        return 0
    acquire(data, base, args.out, args.info)
    return 0


if __name__ == "__main__":
    stage.run(main, extra_errors=(DownloadError,))
