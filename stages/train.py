"""Stage train@<variant>: train one model variant, checkpoint it, log every epoch to DVC + MLflow.

With ``nproc`` > 1 (train.nproc or variants.<name>.nproc) the stage runs this same command
under torchrun, ``nproc`` processes (DDP; see deepgal.distributed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepgal import config, distributed, stage
from deepgal.training import TrainingDiverged, TrainingInterrupted, TrainPaths, train_variant


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", required=True)
    p.add_argument("--data", type=Path, required=True, help="Galaxy10-layout HDF5 file")
    p.add_argument("--source", type=Path, required=True, help="source.json from download")
    p.add_argument("--split", type=Path, required=True, help="folder written by the split stage")
    p.add_argument("--out", type=Path, required=True, help="models/<variant>: checkpoints, run id")
    p.add_argument(
        "--results", type=Path, required=True, help="results/<variant>: history.csv and train.json"
    )
    args = p.parse_args()
    run = config.resolve_variant(config.load_params(), args.variant)
    if distributed.wanted(run.nproc) and not distributed.under_torchrun():
        distributed.launch(run.nproc)
        return 0

    paths = TrainPaths(args.data, args.source, args.split, args.out, args.results)
    try:
        train_variant(run, paths)
    except TrainingInterrupted as e:
        print(f"error: {args.variant}: {e}", file=sys.stderr)
        return 130
    except TrainingDiverged as e:
        print(f"error: {args.variant}: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        if not (distributed.under_torchrun() and distributed.is_peer_failure(e)):
            raise
        return distributed.report_peer_failure(args.variant, e)
    return 0


if __name__ == "__main__":
    stage.run(main)
