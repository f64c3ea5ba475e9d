"""Stage labelled: check the user's labelled set at ``data.path`` and digest it.

DVC tracks ``data.path`` as this stage's dependency, so adding one image re-runs this stage,
whose changed ``data/labelled.json`` re-runs ``download`` (the conversion) and what depends on
it. With another ``data.source`` the output is constant: nothing downstream re-runs."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from deepgal import config, stage
from deepgal.data.labelled_source import manifest
from deepgal.utils import atomic_write_text

log = logging.getLogger("labelled")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="labelled.json to write")
    args = p.parse_args()
    data = config.load_section("data", config.load_params())
    info = manifest(data.source, data.path, data.path_sha256)
    text = json.dumps(info, indent=2) + "\n"
    if not args.out.exists() or args.out.read_text() != text:
        atomic_write_text(args.out, text)
    if "sha256" in info:
        log.info("%s: %d images, digest %s", data.path, info["n_images"], info["sha256"])
    return 0


if __name__ == "__main__":
    stage.run(main)
