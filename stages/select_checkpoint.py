"""Stage select@<variant>: the best checkpoint that is not overfitted, calibrated on val, into
selection.json, then MLflow (deepgal.select_checkpoint says what and why).
(Not named select.py: a script folder on sys.path would shadow the standard `select` module.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepgal import config, stage, tracking
from deepgal.select_checkpoint import SelectPaths, select_variant


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", required=True)
    p.add_argument("--checkpoints", type=Path, required=True, help="models/<variant>/checkpoints")
    p.add_argument("--history", type=Path, required=True, help="results/<variant>/history.csv")
    p.add_argument("--run", type=Path, required=True, help="models/<variant>/mlflow_run.json")
    p.add_argument("--out", type=Path, required=True, help="results/<variant>/selection.json")
    p.add_argument(
        "--selected",
        type=Path,
        required=True,
        help="models/<variant>/selected.pt: the chosen checkpoint, calibrated",
    )
    p.add_argument("--data", type=Path, help="Galaxy10 file: the MLflow model's input example")
    p.add_argument("--split", type=Path, help="split folder: which images are validation")
    args = p.parse_args()
    paths = SelectPaths(
        checkpoints=args.checkpoints,
        history=args.history,
        run=args.run,
        out=args.out,
        selected=args.selected,
        data=args.data,
        split=args.split,
    )
    select_variant(args.variant, paths, config.load_section("select"), config.load_section("base"))
    return 0


if __name__ == "__main__":
    stage.run(main, extra_errors=(tracking.TrackingError,))
