"""Stage split: stratified, seeded train/val/test indices, galaxies close on the sky kept
together, and the train split's channel stats."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from deepgal import config, stage
from deepgal.data.split import SplitError, split_file
from deepgal.handoff import Source

log = logging.getLogger("split")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True, help="Galaxy10-layout HDF5 file")
    p.add_argument("--source", type=Path, required=True, help="source.json from download")
    p.add_argument("--out", type=Path, required=True, help="folder for <split>.npy + stats.json")
    args = p.parse_args()
    params = config.load_params()
    base, cfg = config.load_section("base", params), config.load_section("split", params)
    done = split_file(
        args.data,
        Source.read(args.source),
        args.out,
        {"train": cfg.train, "val": cfg.val, "test": cfg.test},
        base.seed,
        cfg.group_arcsec,
    )
    log.info(
        "split %s; train mean %s std %s",
        {k: len(v) for k, v in done["splits"].items()},
        [round(m, 4) for m in done["mean"]],
        [round(s, 4) for s in done["std"]],
    )
    return 0


if __name__ == "__main__":
    stage.run(main, extra_errors=(SplitError,))
