"""Stage plot: report.md and its pictures, the offline HTML template of ``dvc plots show``, and
every variant's headline numbers in one ``metrics.json`` (deepgal.pipeline_report).

Per variant it reads exactly the nine files of results/<variant>/ (metrics.json, cv.json,
predictions.csv, history.csv, embeddings.csv, train.json, selection.json, calibration.json,
gradcam.npz), so dvc.yaml can name the folder; metrics.json carries the cross-validation
figures of cv.json (cv_acc, cv_se, cv_f1, cv_spread) when cv ran.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepgal import config, stage
from deepgal.pipeline_report import make_report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", type=Path, required=True, help="results/ (one folder a variant)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="reports/ (report.md + plots/)")
    p.add_argument(
        "--metrics",
        type=Path,
        required=True,
        help="metrics.json: every variant's headline numbers (DVC metrics)",
    )
    p.add_argument(
        "--html-template",
        type=Path,
        required=True,
        help="where to write the offline template of `dvc plots show`",
    )
    args = p.parse_args()
    params = config.load_params()
    make_report(
        list(params.get("variants") or {}),
        args.results,
        args.data,
        args.split,
        args.out,
        args.metrics,
        args.html_template,
        params,
    )
    return 0


if __name__ == "__main__":
    stage.run(main)
