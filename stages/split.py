"""Stage split: stratified, seeded train/val/test indices, galaxies close on the sky kept
together, and the train split's channel stats."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from deepgal import config, stage
from deepgal.data import galaxy10
from deepgal.data.split import (SplitError, channel_stats, group_rows, identical_groups,
                                stratified_split, write_split)

log = logging.getLogger("split")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True, help="Galaxy10-layout HDF5 file")
    p.add_argument("--source", type=Path, required=True, help="source.json from download")
    p.add_argument("--out", type=Path, required=True, help="folder for <split>.npy + stats.json")
    args = p.parse_args()
    params = config.load_params()
    base, cfg = config.load_section("base", params), config.load_section("split", params)

    galaxy10.validate(args.data)
    labels = galaxy10.read_labels(args.data)
    coords = galaxy10.read_coordinates(args.data)
    # No sky positions (a user's folder of cut-outs): the same pixels are the same galaxy.
    identical = identical_groups(args.data) if coords is None else None
    groups, grouping = group_rows(labels, coords, cfg.group_arcsec, identical)
    if grouping["coordinates"]:
        log.info("merged %d rows into %d groups (galaxies within %g arcsec; %d with mixed "
                 "labels); %d groups in all", grouping["rows_in_merged_groups"],
                 grouping["merged_groups"], cfg.group_arcsec, grouping["mixed_label_groups"],
                 grouping["groups"])
    else:
        log.info("no ra/dec in %s: rows with identical pixels are one galaxy (%d rows merged "
                 "into %d groups; %d with mixed labels)", args.data,
                 grouping["rows_in_merged_groups"], grouping["merged_groups"],
                 grouping["mixed_label_groups"])
    fractions = {"train": cfg.train, "val": cfg.val, "test": cfg.test}
    splits = stratified_split(labels, fractions, base.seed, groups)
    mean, std = channel_stats(args.data, splits["train"])
    source = json.loads(args.source.read_text())
    write_split(args.out, splits, labels, mean, std,
                source={"source": source["source"], "sha256": source["sha256"]},
                grouping=grouping)
    log.info("split %s; train mean %s std %s",
             {k: len(v) for k, v in splits.items()},
             [round(m, 4) for m in mean], [round(s, 4) for s in std])
    return 0


if __name__ == "__main__":
    stage.run(main, extra_errors=(SplitError,))
