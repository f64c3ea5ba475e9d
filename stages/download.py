"""Stage download: fetch the real Galaxy10 DECaLS file, or render the embedded synthetic galaxies.

Either way the output is one file in the Galaxy10 layout plus ``source.json`` (what it is and
its SHA-256), so every later stage reads one format.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from deepgal import config, stage
from deepgal.data import galaxy10
from deepgal.data.download import DownloadError, download, sha256_file
from deepgal.data.synthetic import write_synthetic
from deepgal.utils import write_json

log = logging.getLogger("download")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="Galaxy10-layout HDF5 file to write")
    p.add_argument("--info", type=Path, required=True, help="source.json to write")
    args = p.parse_args()
    params = config.load_params()
    base, data = config.load_section("base", params), config.load_section("data", params)

    if data.source == "galaxy10_decals":
        download(data.url, args.out, data.sha256, timeout_s=data.timeout_s, retries=data.retries)
        digest = data.sha256.lower()
    else:
        s = data.synthetic
        log.info("rendering %d synthetic galaxies per class at %d px (seed %d)",
                 s.per_class, s.image_size, base.seed)
        write_synthetic(args.out, per_class=s.per_class, image_size=s.image_size,
                        seed=base.seed, balance=s.balance)
        digest = sha256_file(args.out)
    info = galaxy10.validate(args.out)
    write_json(args.info, {"source": data.source, "sha256": digest, **info.as_dict()})
    log.info("%s: %d images of %dx%d px", args.out, info.n_images, info.height, info.width)
    return 0


if __name__ == "__main__":
    stage.run(main, extra_errors=(DownloadError,))
