"""Stage params: check all of params.yaml before any other stage runs.

DVC removes a stage's outputs just before it runs that stage, so a bad value caught only by
the stage that reads it (`dvc exp run -S train.lr=-1`) used to cost that stage's last results
(train.json, history.csv: not in DVC's cache). This stage is upstream of every other one and
runs whenever params.yaml changes: a bad value stops `dvc repro` here, before anything is
removed. Its output is a constant marker, so a passing check re-runs nothing downstream."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from deepgal import config, stage
from deepgal.utils import atomic_write_text

log = logging.getLogger("params")
MARKER = "params.yaml passed deepgal's checks (stages/check_params.py)\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--out", type=Path, required=True, help="marker file (constant content)")
    args = p.parse_args()
    try:
        params = config.load_params(args.params)
        config.validate_all(params)
    except config.ConfigError as e:
        # After a failed `dvc exp run -S`, git's index can show params.yaml unchanged though
        # the file holds the bad value, so `git checkout` alone restores nothing (README).
        raise config.ConfigError(
            f"{e}. Fix it in {args.params}, or put the committed one back "
            f"with `touch {args.params} && git checkout -- {args.params}`",
            e.key,
        ) from None
    if not args.out.exists() or args.out.read_text() != MARKER:
        atomic_write_text(args.out, MARKER)
    log.info("%s: every section and variant valid", args.params)
    return 0


if __name__ == "__main__":
    stage.run(main)
