"""Stage cv@<variant>: k-fold cross-validation of the variant's whole recipe on every image
of the data file (params cv; off by default: then it writes the constant "off" cv.json)."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepgal import config, stage
from deepgal.crossval_stage import cross_validate


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", required=True)
    p.add_argument("--data", type=Path, required=True, help="Galaxy10-layout HDF5 file")
    p.add_argument(
        "--run",
        type=Path,
        required=True,
        help="models/<variant>/mlflow_run.json: the run to nest the fold runs under",
    )
    p.add_argument("--out", type=Path, required=True, help="results/<variant>/cv.json")
    args = p.parse_args()
    cross_validate(args.variant, args.data, args.out, args.run, config.load_params())
    return 0


if __name__ == "__main__":
    stage.run(main)
