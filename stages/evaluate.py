"""Stage evaluate@<variant>: scores on val and test, and the embeddings the maps need.

One pass of the selected model over the file gives both: the penultimate embedding of each
val/test image and of a seeded sample of ``evaluate.map_train`` train images (``features.npz``,
what ``reduce`` maps) and, from the same forward pass, the class probabilities of val and test
(with ``evaluate.tta``, a second pass over val and test averages the 8 rotation/flip views
instead). Scoring and embedding used to be two stages; one process loads torch, the network
and the weights once, and reads each image once.

Writes, all before talking to MLflow (an unreachable tracker is one warning, not a failure):
``metrics.json`` (the headline numbers DVC declares as metrics), ``eval.json`` (details),
``predictions.csv`` (one row per image), ``<split>.png`` confusion matrices and
``features.npz`` (``features`` (N, D) float32, ``index``, ``label``, ``split`` per row) and
``calibration.json`` (the checkpoint's temperature; per split ECE, NLL and reliability bins
before and after it). Probabilities (scores, predictions.csv) are the calibrated ones.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from deepgal import config, stage
from deepgal.calibration import Calibration, apply_temperature, measure
from deepgal.data import galaxy10, split as split_io
from deepgal.handoff import (CalibrationReport, Features, History, Predictions, Selection,
                             VariantMetrics)
from deepgal.inference import load_model
from deepgal.inference.source import run_on_file
from deepgal.metrics import headline, score
from deepgal.plots.confusion import plot_confusion
from deepgal.utils import pick_device, write_json

log = logging.getLogger("evaluate")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", required=True)
    p.add_argument("--selection", type=Path, required=True, help="results/<variant>/selection.json")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="models/<variant>/selected.pt: the selected checkpoint, calibrated")
    p.add_argument("--calibration", type=Path, required=True,
                   help="results/<variant>/calibration.json")
    p.add_argument("--history", type=Path, required=True, help="results/<variant>/history.csv")
    p.add_argument("--run", type=Path, required=True, help="models/<variant>/mlflow_run.json")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", type=Path, required=True)
    p.add_argument("--metrics", type=Path, required=True, help="results/<variant>/metrics.json")
    p.add_argument("--out", type=Path, required=True, help="results/<variant>/eval.json")
    p.add_argument("--predictions", type=Path, required=True,
                   help="results/<variant>/predictions.csv")
    p.add_argument("--plots", type=Path, required=True, help="folder for <split>.png confusion matrices")
    p.add_argument("--features", type=Path, required=True, help="models/<variant>/features.npz")
    args = p.parse_args()
    base, cfg = config.load_section("base"), config.load_section("evaluate")

    galaxy10.validate(args.data)
    labels = galaxy10.read_labels(args.data)
    sel = Selection.read(args.selection)
    every = {name: split_io.read_split(args.split, name) for name in split_io.SPLITS}
    # The maps need only a sample of train; val and test are always embedded whole.
    every["train"] = split_io.sample_rows(every["train"], cfg.map_train, base.seed)
    # split.test = 0 reproduces the report: no test split, no test scores.
    splits = {s: every[s] for s in ("val", "test") if len(every[s])}
    device = pick_device(base.device)
    model, pre, ckpt = load_model(args.checkpoint, device)
    t0 = time.perf_counter()
    both = run_on_file(model, args.data, pre, device, every, cfg.batch_size, "features+probs",
                       desc=f"evaluate {args.variant}")
    seconds = time.perf_counter() - t0
    dim = model.feature_dim
    Features.from_splits({s: v[:, :dim] for s, v in both.items()}, every,
                         labels).write(args.features)
    n = sum(map(len, every.values()))
    log.info("%d embeddings of dim %d in %.1f s (%.0f images/s)", n, dim, seconds,
             n / max(seconds, 1e-9))
    probs = ({s: both[s][:, dim:] for s in splits} if not cfg.tta else
             run_on_file(model, args.data, pre, device, splits, cfg.batch_size, "probs", True,
                         desc=f"evaluate {args.variant} (8-view TTA)"))
    calib = measure(Calibration.from_checkpoint(ckpt, args.checkpoint), probs,
                    {s: labels[idx] for s, idx in splits.items()})
    probs = {s: apply_temperature(p, calib["temperature"]) for s, p in probs.items()}
    CalibrationReport(**calib).write(args.calibration)
    result = {s: score(labels[idx], probs[s]) for s, idx in splits.items()}
    result |= {"epoch": sel.epoch, "tta": cfg.tta}
    train_min = History.read(args.history).seconds() / 60
    VariantMetrics(**headline(result), epoch=sel.epoch, train_min=train_min).write(args.metrics)
    write_json(args.out, result)
    Predictions.from_parts({s: (idx, labels[idx], probs[s])
                            for s, idx in splits.items()}).write(args.predictions)
    pngs = []
    for name in splits:
        pngs.append(args.plots / f"{name}.png")
        plot_confusion(result[name]["confusion"], galaxy10.CLASS_NAMES, f"{args.variant} {name} "
                       f"(epoch {sel.epoch}{', 8-view TTA' if cfg.tta else ''})", pngs[-1])
        log.info("%s %s: accuracy %.3f macro-F1 %.3f", args.variant, name,
                 result[name]["accuracy"], result[name]["macro_f1"])
    report_to_tracker(args, result, calib, [args.metrics, args.out, args.calibration, *pngs])
    return 0


def report_to_tracker(args, result: dict, calib: dict, files: list[Path]) -> None:
    """Best effort, after every local output exists: a tracker that is away is one warning."""
    from deepgal import tracking  # imported only here: MLflow loads after the local outputs

    sink = tracking.open_run(args.run)
    if not sink:
        return
    flat = {f"eval/{s}/{k}": result[s][k] for s in ("val", "test") if s in result
            for k in ("accuracy", "macro_f1")}
    flat |= {f"eval/{s}/recall/{c}": m["recall"] for s in ("val", "test") if s in result
             for c, m in result[s]["per_class"].items()}
    flat |= {f"eval/{s}/{k}_{w}": calib[s][f"{k}_{w}"] for s in ("val", "test") if s in calib
             for k in ("ece", "nll") for w in ("before", "after")}
    sink.log_metrics(flat | {"eval/temperature": calib["temperature"]})
    for f in files:
        sink.log_artifact(f, "evaluate")


if __name__ == "__main__":
    stage.run(main)
