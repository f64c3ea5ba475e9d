"""Stage evaluate@<variant>: scores on val and test, and the embeddings the maps need, from one
pass of the selected, calibrated checkpoint (deepgal.evaluation says what each output holds)."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepgal import config, stage
from deepgal.evaluation import EvaluatePaths, evaluate_variant


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", required=True)
    p.add_argument("--selection", type=Path, required=True, help="results/<variant>/selection.json")
    p.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="models/<variant>/selected.pt: the selected checkpoint, calibrated",
    )
    p.add_argument(
        "--calibration", type=Path, required=True, help="results/<variant>/calibration.json"
    )
    p.add_argument("--history", type=Path, required=True, help="results/<variant>/history.csv")
    p.add_argument("--run", type=Path, required=True, help="models/<variant>/mlflow_run.json")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", type=Path, required=True)
    p.add_argument("--metrics", type=Path, required=True, help="results/<variant>/metrics.json")
    p.add_argument("--out", type=Path, required=True, help="reports/<variant>/eval.json")
    p.add_argument(
        "--predictions", type=Path, required=True, help="results/<variant>/predictions.csv"
    )
    p.add_argument(
        "--plots", type=Path, required=True, help="folder for <split>.png confusion matrices"
    )
    p.add_argument("--features", type=Path, required=True, help="models/<variant>/features.h5")
    p.add_argument(
        "--gradcam", type=Path, required=True, help="results/<variant>/gradcam.npz: report's maps"
    )
    args = p.parse_args()
    paths = EvaluatePaths(
        selection=args.selection,
        checkpoint=args.checkpoint,
        history=args.history,
        run=args.run,
        data=args.data,
        split=args.split,
        metrics=args.metrics,
        calibration=args.calibration,
        details=args.out,
        predictions=args.predictions,
        plots=args.plots,
        features=args.features,
        gradcam=args.gradcam,
    )
    evaluate_variant(
        args.variant, paths, config.load_section("evaluate"), config.load_section("base")
    )
    return 0


if __name__ == "__main__":
    stage.run(main)
