"""A variant's checkpoint choice, assembled: the select stage's whole job as one library call.

:func:`select_variant` picks the best checkpoint that is not overfitted (the rule is
:mod:`deepgal.selection`), copies its inference part to ``selected`` with a temperature fitted
on the validation split (deepgal.calibration; temperature 1 when val is empty), the file every
later reader uses (evaluate, ``deepgal predict``, the MLflow model), and writes
``selection.json`` before talking to MLflow: an unreachable tracker is a warning, never a
failed stage.

A checkpoint whose val accuracy is within noise of chance (the report's test: one-sided
binomial, p >= 0.01 against the commonest val class's share, :func:`chance_test`) is not
logged as a model nor registered: on the laptop default that is the deep variants after one
CPU epoch, which the report lists as "not learned at this budget"; a model store of
chance-level classifiers (and a registry alias "best" on one) would mislead, and logging each
cost 4-6 s. ``select.log_model: always`` logs every selected checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import tracking
from .config import BaseCfg, SelectCfg
from .handoff import History, MlflowRun, Selection
from .report import ALPHA, chance_p_value
from .selection import choose

log = logging.getLogger("select")
EXAMPLE_IMAGES = 2  # real images stored with the MLflow model as its input example


@dataclass(frozen=True)
class SelectPaths:
    checkpoints: Path  # models/<variant>/checkpoints
    history: Path  # results/<variant>/history.csv
    run: Path  # models/<variant>/mlflow_run.json
    out: Path  # results/<variant>/selection.json
    selected: Path  # models/<variant>/selected.pt: the chosen checkpoint, calibrated
    data: Path | None = None  # the Galaxy10 file: the chance test, the model's input example
    split: Path | None = None  # the split folder: which images are validation


def read_history(path: Path) -> list[dict]:
    """history.csv's rows, {column: float}, empty cells left out (:class:`History`)."""
    return list(History.read(path).rows)


def input_example(data: Path | None, split: Path | None) -> np.ndarray | None:
    """A few validation images, (n, H, W, 3) uint8, or None without ``data``/``split``."""
    if data is None or split is None:
        return None
    from .data import galaxy10
    from .data import split as split_io

    idx = next(i for i in (split_io.read_split(split, s) for s in ("val", "train")) if len(i))
    return galaxy10.read_images(data, np.sort(idx[:EXAMPLE_IMAGES]))


def chance_test(val_accuracy: float, data: Path | None, split: Path | None) -> float | None:
    """p-value of ``val_accuracy`` on the val split against chance (the commonest val class's
    share), or None without the files or with an empty val split."""
    if data is None or split is None:
        return None
    from .data import galaxy10
    from .data import split as split_io

    labels = galaxy10.read_labels(data)[split_io.read_split(split, "val")]
    if not len(labels):
        return None
    chance = float(np.bincount(labels).max() / len(labels))
    return chance_p_value(round(val_accuracy * len(labels)), len(labels), chance)


def calibrate(checkpoint: str, dest: Path, data: Path | None, split: Path | None, device: str):
    """Write ``dest`` (``checkpoint`` with a temperature fitted on val); the Calibration."""
    from .data import split as split_io
    from .inference.calibrate import write_calibrated
    from .utils import pick_device

    val = split_io.read_split(split, "val") if split is not None else np.empty(0, np.int64)
    return write_calibrated(checkpoint, dest, data, val, pick_device(device))


def select_variant(variant: str, paths: SelectPaths, cfg: SelectCfg, base: BaseCfg) -> Selection:
    """Choose, calibrate and record ``variant``'s checkpoint, then log it to MLflow."""
    sel = choose(paths.checkpoints, read_history(paths.history), cfg.max_gap, cfg.max_val_loss_rise)
    sel["variant"] = variant
    sel["run_id"] = MlflowRun.read(paths.run).run_id
    sel["chance_p_value"] = chance_test(sel["val_accuracy"], paths.data, paths.split)
    cal = calibrate(sel["checkpoint"], paths.selected, paths.data, paths.split, base.device)
    sel |= {
        "selected": str(paths.selected),
        "temperature": cal.temperature,
        "calibration": cal.source,
    }
    record = Selection(**sel)
    record.write(paths.out)
    log.info(
        "%s: epoch %d (val accuracy %.3f, gap %.3f): %s; temperature %.3f (%s)",
        variant,
        record.epoch,
        record.val_accuracy,
        record.gap,
        record.reason,
        cal.temperature,
        cal.source,
    )
    log_selection(variant, record, paths, cfg)
    return record


def log_selection(variant: str, sel: Selection, paths: SelectPaths, cfg: SelectCfg) -> None:
    """The choice as metrics, tags and an artifact of the variant's run, and the checkpoint as
    an MLflow model unless it is within noise of chance (see the module docstring)."""
    run = tracking.open_run(paths.run)
    if run is None:
        return
    run.log_metrics(
        {
            "select/epoch": sel.epoch,
            "select/val_accuracy": sel.val_accuracy,
            "select/gap": sel.gap,
            "select/temperature": sel.temperature,
        }
    )
    run.set_tags(
        {
            "deepgal.selected_checkpoint": Path(sel.checkpoint).name,
            "deepgal.selection_reason": sel.reason[:500],
        }
    )
    run.log_artifact(paths.out, "selected")
    p = sel.chance_p_value
    if cfg.log_model == "learned" and p is not None and p >= ALPHA:
        log.warning(
            "%s: val accuracy %.3f is within noise of chance (p = %.2f): not logged as "
            "an MLflow model",
            variant,
            sel.val_accuracy,
            p,
        )
        run.set_tags(
            {"deepgal.model": f"not logged: val accuracy within noise of chance (p = {p:.2f})"}
        )
        return
    from .mlflow_model import log_checkpoint_model  # torch + mlflow.pyfunc: only here

    example = input_example(paths.data, paths.split)
    if example is None:
        log.warning("no --data/--split: the MLflow model is logged without an input example")
    model = log_checkpoint_model(
        run, paths.selected, sel.epoch, example, f"deepgal-{variant}" if cfg.register else None
    )
    if model:
        log.info(
            "MLflow model %s%s",
            model["model_uri"],
            f", registered as {model['name']}@{model['alias']} (version {model['version']})"
            if "version" in model
            else "",
        )
