"""Stage evaluate@<variant>: accuracy, macro-F1, per-class scores and confusion on val and test.

Writes, all before talking to MLflow (an unreachable tracker is one warning, not a failure):
``metrics.json`` (the headline numbers DVC declares as metrics), ``eval.json`` (details),
``predictions.csv`` (one row per image) and ``<split>.png`` confusion matrices.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from deepgal import config, stage
from deepgal.data import galaxy10, split as split_io
from deepgal.inference import load_model
from deepgal.inference.source import run_on_file
from deepgal.metrics import headline, score
from deepgal.plots.confusion import plot_confusion
from deepgal.plots.predictions import write_predictions
from deepgal.utils import pick_device, write_json

log = logging.getLogger("evaluate")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", required=True)
    p.add_argument("--selection", type=Path, required=True, help="results/<variant>/selection.json")
    p.add_argument("--history", type=Path, required=True, help="results/<variant>/history.csv")
    p.add_argument("--run", type=Path, required=True, help="models/<variant>/mlflow_run.json")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", type=Path, required=True)
    p.add_argument("--metrics", type=Path, required=True, help="results/<variant>/metrics.json")
    p.add_argument("--out", type=Path, required=True, help="results/<variant>/eval.json")
    p.add_argument("--predictions", type=Path, required=True,
                   help="results/<variant>/predictions.csv")
    p.add_argument("--plots", type=Path, required=True, help="folder for <split>.png confusion matrices")
    args = p.parse_args()
    base, cfg = config.load_section("base"), config.load_section("evaluate")

    galaxy10.validate(args.data)
    labels = galaxy10.read_labels(args.data)
    sel = json.loads(args.selection.read_text())
    # split.test = 0 reproduces the report: no test split, no test scores.
    splits = {s: idx for s in ("val", "test") if len(idx := split_io.read_split(args.split, s))}
    device = pick_device(base.device)
    model, pre, _ = load_model(sel["checkpoint"], device)
    probs = run_on_file(model, args.data, pre, device, splits, cfg.batch_size, "probs", cfg.tta,
                        desc=f"evaluate {args.variant}")
    result = {s: score(labels[idx], probs[s]) for s, idx in splits.items()}
    result |= {"epoch": sel["epoch"], "tta": cfg.tta}
    train_min = float(pd.read_csv(args.history)["seconds"].sum()) / 60
    write_json(args.metrics, headline(result) | {"epoch": sel["epoch"], "train_min": train_min})
    write_json(args.out, result)
    write_predictions(args.predictions, {s: (idx, labels[idx], probs[s]) for s, idx in splits.items()})
    pngs = []
    for name in splits:
        pngs.append(args.plots / f"{name}.png")
        plot_confusion(result[name]["confusion"], galaxy10.CLASS_NAMES, f"{args.variant} {name} "
                       f"(epoch {sel['epoch']}{', 8-view TTA' if cfg.tta else ''})", pngs[-1])
        log.info("%s %s: accuracy %.3f macro-F1 %.3f", args.variant, name,
                 result[name]["accuracy"], result[name]["macro_f1"])
    report_to_tracker(args, result, [args.metrics, args.out, *pngs])
    return 0


def report_to_tracker(args, result: dict, files: list[Path]) -> None:
    """Best effort, after every local output exists: a tracker that is away is one warning."""
    from deepgal import tracking  # imported only here: MLflow loads after the local outputs

    sink = tracking.open_run(args.run)
    if not sink:
        return
    flat = {f"eval/{s}/{k}": result[s][k] for s in ("val", "test") if s in result
            for k in ("accuracy", "macro_f1")}
    flat |= {f"eval/{s}/recall/{c}": m["recall"] for s in ("val", "test") if s in result
             for c, m in result[s]["per_class"].items()}
    sink.log_metrics(flat)
    for f in files:
        sink.log_artifact(f, "evaluate")


if __name__ == "__main__":
    stage.run(main)
