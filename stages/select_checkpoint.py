"""Stage select@<variant>: the best checkpoint that is not overfitted, into selection.json + MLflow.

(Not named select.py: a script folder on sys.path would shadow the standard `select` module.)
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from deepgal import config, stage, tracking
from deepgal.selection import choose
from deepgal.utils import write_json

log = logging.getLogger("select")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", required=True)
    p.add_argument("--checkpoints", type=Path, required=True, help="models/<variant>/checkpoints")
    p.add_argument("--history", type=Path, required=True, help="results/<variant>/history.csv")
    p.add_argument("--run", type=Path, required=True, help="models/<variant>/mlflow_run.json")
    p.add_argument("--out", type=Path, required=True, help="results/<variant>/selection.json")
    args = p.parse_args()
    cfg = config.load_section("select")

    history = pd.read_csv(args.history).to_dict("records")
    sel = choose(args.checkpoints, history, cfg.max_gap, cfg.max_val_loss_rise)
    sel["variant"] = args.variant
    sel["run_id"] = json.loads(args.run.read_text()).get("run_id")
    log.info("%s: epoch %d (val accuracy %.3f, gap %.3f): %s", args.variant, sel["epoch"],
             sel["val_accuracy"], sel["gap"], sel["reason"])
    sink = tracking.open_run(args.run)
    if sink:
        sink.log_metrics({"select/epoch": sel["epoch"], "select/val_accuracy": sel["val_accuracy"],
                          "select/gap": sel["gap"]})
        sink.set_tags({"deepgal.selected_checkpoint": Path(sel["checkpoint"]).name,
                       "deepgal.selection_reason": sel["reason"][:500]})
        if cfg.register:
            sel["registered"] = sink.register_checkpoint(sel["checkpoint"],
                                                         f"deepgal-{args.variant}")
    write_json(args.out, sel)
    if sink:
        sink.log_artifact(args.out)
    return 0


if __name__ == "__main__":
    stage.run(main, extra_errors=(tracking.TrackingError,))
