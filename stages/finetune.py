"""Stage finetune@<variant>: adapt the selected checkpoint to the labelled set at finetune.data
(k-fold CV on the set, a temperature on its out-of-fold logits, then a fit on every image;
deepgal.adapt.stage says what and why). Off while finetune.data holds only a README.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepgal import config, stage, tracking
from deepgal.adapt.stage import FinetunePaths, finetune_variant


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", required=True)
    p.add_argument("--selected", type=Path, required=True, help="models/<variant>/selected.pt")
    p.add_argument("--run", type=Path, required=True, help="models/<variant>/mlflow_run.json")
    p.add_argument("--out", type=Path, required=True, help="models/<variant>/finetuned.pt")
    p.add_argument("--report", type=Path, required=True, help="results/<variant>/finetune.json")
    args = p.parse_args()
    params = config.load_params()
    paths = FinetunePaths(selected=args.selected, run=args.run, out=args.out, report=args.report)
    finetune_variant(
        args.variant,
        paths,
        config.load_section("finetune", params),
        config.resolve_variant(params, args.variant),
        config.load_section("base", params),
    )
    return 0


if __name__ == "__main__":
    stage.run(main, extra_errors=(tracking.TrackingError,))
