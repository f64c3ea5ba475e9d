"""Stage select@<variant>: the best checkpoint that is not overfitted, into selection.json, then
MLflow (the variant's run gets the choice and the checkpoint as a loadable MLflow model).

The chosen checkpoint's inference part is copied to ``--selected`` with a temperature fitted on
the validation split (deepgal.calibration; temperature 1 when val is empty), the file every
later reader uses: evaluate, ``deepgal predict``, the MLflow model.

selection.json is written first: an unreachable tracker is a warning, never a failed stage.
A checkpoint whose val accuracy is within noise of chance (the report's test: one-sided
binomial, p >= 0.01 against the commonest val class's share) is not logged as a model nor
registered: on the laptop default that is the deep variants after one CPU epoch, which the
report lists as "not learned at this budget"; a model store of chance-level classifiers (and
a registry alias "best" on one) would mislead, and logging each cost 4-6 s.
``select.log_model: always`` logs every selected checkpoint.
(Not named select.py: a script folder on sys.path would shadow the standard `select` module.)
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from deepgal import config, stage, tracking
from deepgal.handoff import History, MlflowRun, Selection
from deepgal.report import ALPHA, chance_p_value
from deepgal.selection import choose

log = logging.getLogger("select")
EXAMPLE_IMAGES = 2  # real images stored with the MLflow model as its input example


def read_history(path: Path) -> list[dict]:
    return list(History.read(path).rows)


def input_example(data: Path | None, split: Path | None) -> np.ndarray | None:
    """A few validation images, (n, H, W, 3) uint8, or None without --data/--split."""
    if data is None or split is None:
        return None
    from deepgal.data import galaxy10, split as split_io

    idx = next((i for i in (split_io.read_split(split, s) for s in ("val", "train")) if len(i)))
    return galaxy10.read_images(data, np.sort(idx[:EXAMPLE_IMAGES]))


def chance_test(val_accuracy: float, data: Path | None, split: Path | None) -> float | None:
    """p-value of ``val_accuracy`` on the val split against chance, or None without the files."""
    if data is None or split is None:
        return None
    from deepgal.data import galaxy10, split as split_io

    labels = galaxy10.read_labels(data)[split_io.read_split(split, "val")]
    if not len(labels):
        return None
    chance = float(np.bincount(labels).max() / len(labels))
    return chance_p_value(round(val_accuracy * len(labels)), len(labels), chance)


def calibrate(checkpoint: str, dest: Path, data: Path | None, split: Path | None,
              device: str):
    """Write ``dest`` (``checkpoint`` with a temperature fitted on val); the Calibration."""
    from deepgal.data import split as split_io
    from deepgal.inference.calibrate import write_calibrated
    from deepgal.utils import pick_device

    val = split_io.read_split(split, "val") if split is not None else np.empty(0, np.int64)
    return write_calibrated(checkpoint, dest, data, val, pick_device(device))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", required=True)
    p.add_argument("--checkpoints", type=Path, required=True, help="models/<variant>/checkpoints")
    p.add_argument("--history", type=Path, required=True, help="results/<variant>/history.csv")
    p.add_argument("--run", type=Path, required=True, help="models/<variant>/mlflow_run.json")
    p.add_argument("--out", type=Path, required=True, help="results/<variant>/selection.json")
    p.add_argument("--selected", type=Path, required=True,
                   help="models/<variant>/selected.pt: the chosen checkpoint, calibrated")
    p.add_argument("--data", type=Path, help="Galaxy10 file: the MLflow model's input example")
    p.add_argument("--split", type=Path, help="split folder: which images are validation")
    args = p.parse_args()
    cfg, base = config.load_section("select"), config.load_section("base")

    sel = choose(args.checkpoints, read_history(args.history), cfg.max_gap,
                 cfg.max_val_loss_rise)
    sel["variant"] = args.variant
    sel["run_id"] = MlflowRun.read(args.run).run_id
    sel["chance_p_value"] = chance_test(sel["val_accuracy"], args.data, args.split)
    cal = calibrate(sel["checkpoint"], args.selected, args.data, args.split, base.device)
    sel |= {"selected": str(args.selected), "temperature": cal.temperature,
            "calibration": cal.source}
    Selection(**sel).write(args.out)
    log.info("%s: epoch %d (val accuracy %.3f, gap %.3f): %s; temperature %.3f (%s)",
             args.variant, sel["epoch"], sel["val_accuracy"], sel["gap"], sel["reason"],
             cal.temperature, cal.source)

    run = tracking.open_run(args.run)
    if run is None:
        return 0
    run.log_metrics({"select/epoch": sel["epoch"], "select/val_accuracy": sel["val_accuracy"],
                     "select/gap": sel["gap"], "select/temperature": cal.temperature})
    run.set_tags({"deepgal.selected_checkpoint": Path(sel["checkpoint"]).name,
                  "deepgal.selection_reason": sel["reason"][:500]})
    run.log_artifact(args.out, "selected")
    if (cfg.log_model == "learned" and sel["chance_p_value"] is not None
            and sel["chance_p_value"] >= ALPHA):
        log.warning("%s: val accuracy %.3f is within noise of chance (p = %.2f): not logged as "
                    "an MLflow model", args.variant, sel["val_accuracy"], sel["chance_p_value"])
        run.set_tags({"deepgal.model": f"not logged: val accuracy within noise of chance "
                                       f"(p = {sel['chance_p_value']:.2f})"})
        return 0
    from deepgal.mlflow_model import log_checkpoint_model  # torch + mlflow.pyfunc: only here

    example = input_example(args.data, args.split)
    if example is None:
        log.warning("no --data/--split: the MLflow model is logged without an input example")
    model = log_checkpoint_model(run, args.selected, sel["epoch"], example,
                                 f"deepgal-{args.variant}" if cfg.register else None)
    if model:
        log.info("MLflow model %s%s", model["model_uri"],
                 f", registered as {model['name']}@{model['alias']} (version {model['version']})"
                 if "version" in model else "")
    return 0


if __name__ == "__main__":
    stage.run(main, extra_errors=(tracking.TrackingError,))
