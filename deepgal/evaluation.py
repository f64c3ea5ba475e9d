"""A variant's evaluation, assembled: the evaluate stage's whole job as one library call.

One pass of the selected model over the data file gives both: the penultimate embedding of
every train, val and test image (``reduce`` maps val, test and a seeded sample of
``evaluate.map_train`` train images) and, from the same forward pass, the class probabilities of val and test
(with ``evaluate.tta``, a second pass over val and test averages the 8 rotation/flip views
instead). One process loads torch, the network and the weights once, and reads each image once.

:func:`evaluate_variant` writes, all before talking to MLflow (an unreachable tracker is one
warning, not a failure): ``metrics.json`` (the numbers the plot stage gathers for DVC),
``eval.json`` (details), ``predictions.csv`` (one row per image), ``<split>.png`` confusion
matrices (``predictions.csv`` holds each val/test image's outlier score: the mean cosine
distance to its ``evaluate.outlier_k`` nearest train images in the embedding,
:func:`deepgal.explore.outliers.knn_outlier_scores`), ``features.npz`` (``features`` (N, D) float32, ``index``, ``label``, ``split`` per
row) and ``calibration.json`` (the checkpoint's temperature; per split ECE, NLL and reliability
bins before and after it) and ``gradcam.npz`` (the Grad-CAM maps of the report's gallery,
:mod:`deepgal.explore.cam_gallery`, from the model already in memory). Probabilities (scores,
predictions.csv) are the calibrated ones.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .calibration import Calibration, apply_temperature, measure
from .config import BaseCfg, ConfigError, EvaluateCfg
from .data import galaxy10
from .data import split as split_io
from .explore.cam_gallery import gradcam_gallery
from .explore.outliers import knn_outlier_scores
from .handoff import CalibrationReport, Features, History, Predictions, Selection, VariantMetrics
from .inference import load_model
from .inference.source import run_on_file
from .metrics import accuracy_and_f1, score
from .plots.confusion import plot_confusion
from .utils import pick_device, write_json

log = logging.getLogger("evaluate")


@dataclass(frozen=True)
class EvaluatePaths:
    """What the evaluate stage reads (``selection`` .. ``split``) and writes (the rest)."""

    selection: Path  # results/<variant>/selection.json
    checkpoint: Path  # models/<variant>/selected.pt: the selected checkpoint, calibrated
    history: Path  # results/<variant>/history.csv
    run: Path  # models/<variant>/mlflow_run.json
    data: Path  # the Galaxy10-layout file
    split: Path  # the split folder
    metrics: Path  # results/<variant>/metrics.json
    calibration: Path  # results/<variant>/calibration.json
    details: Path  # reports/<variant>/eval.json
    predictions: Path  # results/<variant>/predictions.csv
    plots: Path  # folder for <split>.png confusion matrices
    features: Path  # models/<variant>/features.npz
    gradcam: Path  # results/<variant>/gradcam.npz: the report's Grad-CAM maps


@dataclass(frozen=True)
class Embedded:
    """One forward pass's two outputs per split: ``features`` {split: (n, D) float32} of every
    split run, ``probs`` {split: (n, C) float32, uncalibrated} of the scored splits."""

    features: dict[str, np.ndarray]
    probs: dict[str, np.ndarray]

    @classmethod
    def from_columns(
        cls, both: dict[str, np.ndarray], feature_dim: int, scored: list[str]
    ) -> Embedded:
        """Split the ``"features+probs"`` output of :func:`deepgal.inference.run_model`
        ({split: (n, D + C)}) at column ``feature_dim``; probs only of the ``scored`` splits."""
        return cls(
            {s: v[:, :feature_dim] for s, v in both.items()},
            {s: both[s][:, feature_dim:] for s in scored},
        )


def embed_and_score(
    model,
    paths: EvaluatePaths,
    pre,
    device,
    rows: dict[str, np.ndarray],
    scored: list[str],
    cfg: EvaluateCfg,
    variant: str,
) -> Embedded:
    """Features of every split in ``rows`` and probabilities of the ``scored`` ones; with
    ``cfg.tta`` the probabilities come from a second, 8-view pass."""
    t0 = time.perf_counter()
    both = run_on_file(
        model,
        paths.data,
        pre,
        device,
        rows,
        cfg.batch_size,
        "features+probs",
        desc=f"evaluate {variant}",
    )
    seconds, n = time.perf_counter() - t0, sum(map(len, rows.values()))
    out = Embedded.from_columns(both, model.feature_dim, scored)
    log.info(
        "%d embeddings of dim %d in %.1f s (%.0f images/s)",
        n,
        model.feature_dim,
        seconds,
        n / max(seconds, 1e-9),
    )
    if cfg.tta:
        tta = run_on_file(
            model,
            paths.data,
            pre,
            device,
            {s: rows[s] for s in scored},
            cfg.batch_size,
            "probs",
            True,
            desc=f"evaluate {variant} (8-view TTA)",
        )
        out = Embedded(out.features, tta)
    return out


def evaluate_variant(variant: str, paths: EvaluatePaths, cfg: EvaluateCfg, base: BaseCfg) -> dict:
    """Score the selected checkpoint of ``variant`` on val and test and embed every split;
    write every output in :class:`EvaluatePaths`, then report to the variant's MLflow run.
    Returns eval.json's dict ({split: :func:`deepgal.metrics.score`}, ``epoch``, ``tta``)."""
    galaxy10.validate(paths.data)
    labels = galaxy10.read_labels(paths.data)
    sel = Selection.read(paths.selection)
    rows = {name: split_io.read_split(paths.split, name) for name in split_io.SPLITS}
    check_outlier_k(cfg.outlier_k, len(rows["train"]))
    # split.test = 0 reproduces the report: no test split, no test scores.
    scored = {s: rows[s] for s in ("val", "test") if len(rows[s])}
    device = pick_device(base.device)
    model, pre, ckpt = load_model(paths.checkpoint, device)
    out = embed_and_score(model, paths, pre, device, rows, list(scored), cfg, variant)
    # Every train image is the outlier score's reference; the maps need only a sample of it.
    outlier = {
        s: knn_outlier_scores(out.features[s], out.features["train"], cfg.outlier_k) for s in scored
    }
    mapped = split_io.sample_rows(rows["train"], cfg.map_train, base.seed)
    keep = np.isin(rows["train"], mapped)  # the sample keeps the rows' own order
    Features.from_splits(
        out.features | {"train": out.features["train"][keep]}, rows | {"train": mapped}, labels
    ).write(paths.features)
    calib = measure(
        Calibration.from_checkpoint(ckpt, paths.checkpoint),
        out.probs,
        {s: labels[idx] for s, idx in scored.items()},
    )
    probs = {s: apply_temperature(p, calib["temperature"]) for s, p in out.probs.items()}
    CalibrationReport(**calib).write(paths.calibration)
    result = {s: score(labels[idx], probs[s]) for s, idx in scored.items()}
    result |= {"epoch": sel.epoch, "tta": cfg.tta}
    VariantMetrics(
        **accuracy_and_f1(result),
        epoch=sel.epoch,
        train_min=History.read(paths.history).seconds() / 60,
    ).write(paths.metrics)
    write_json(paths.details, result)
    Predictions.from_parts(
        {s: (idx, labels[idx], probs[s], outlier[s]) for s, idx in scored.items()}
    ).write(paths.predictions)
    write_gradcams(model, pre, device, paths, cfg.batch_size)
    pngs = plot_confusions(
        variant,
        result,
        list(scored),
        paths.plots,
        f"epoch {sel.epoch}{', 8-view TTA' if cfg.tta else ''}",
    )
    report_to_tracker(
        paths.run, result, calib, [paths.metrics, paths.details, paths.calibration, *pngs]
    )
    return result


def write_gradcams(model, pre, device, paths: EvaluatePaths, batch_size: int) -> None:
    """``paths.gradcam``: the Grad-CAM gallery's maps (or why there are none), timed in the log.
    The images are picked from predictions.csv as written (confidences rounded as there), so
    anyone can check the pick against that file."""
    t0 = time.perf_counter()
    preds = Predictions.read(paths.predictions)
    cams = gradcam_gallery(model, pre, device, paths.data, preds, batch_size)
    cams.write(paths.gradcam)
    if cams.skipped:
        log.warning("no Grad-CAM gallery: %s", cams.skipped)
    else:
        log.info(
            "Grad-CAM of %d %s images (layer %s) in %.1f s",
            len(cams.rows),
            cams.split,
            cams.layer,
            time.perf_counter() - t0,
        )


def check_outlier_k(k: int, n_train: int) -> None:
    """ConfigError, before any model is loaded, when the train split is too small for k."""
    if k > n_train:
        raise ConfigError(
            f"params.yaml: evaluate.outlier_k = {k} needs at least {k} train "
            f"images; the split has {n_train}: lower evaluate.outlier_k"
        )


def plot_confusions(
    variant: str, result: dict, splits: list[str], folder: Path, note: str
) -> list[Path]:
    """``<folder>/<split>.png`` per scored split, titled with ``note``; the paths written."""
    pngs = []
    for name in splits:
        pngs.append(folder / f"{name}.png")
        plot_confusion(
            result[name]["confusion"], galaxy10.CLASS_NAMES, f"{variant} {name} ({note})", pngs[-1]
        )
        log.info(
            "%s %s: accuracy %.3f macro-F1 %.3f",
            variant,
            name,
            result[name]["accuracy"],
            result[name]["macro_f1"],
        )
    return pngs


def tracker_metrics(result: dict, calib: dict) -> dict[str, float]:
    """The flat ``eval/...`` metrics of an evaluation: accuracy and macro-F1, per-class recall,
    ECE and NLL before/after calibration per split, and the temperature."""
    present = [s for s in ("val", "test") if s in result]
    flat = {f"eval/{s}/{k}": result[s][k] for s in present for k in ("accuracy", "macro_f1")}
    flat |= {
        f"eval/{s}/recall/{c}": m["recall"]
        for s in present
        for c, m in result[s]["per_class"].items()
    }
    flat |= {
        f"eval/{s}/{k}_{w}": calib[s][f"{k}_{w}"]
        for s in ("val", "test")
        if s in calib
        for k in ("ece", "nll")
        for w in ("before", "after")
    }
    return flat | {"eval/temperature": calib["temperature"]}


def report_to_tracker(run_file: Path, result: dict, calib: dict, files: list[Path]) -> None:
    """Best effort, after every local output exists: a tracker that is away is one warning."""
    from . import tracking  # imported only here: MLflow loads after the local outputs

    sink = tracking.open_run(run_file)
    if not sink:
        return
    sink.log_metrics(tracker_metrics(result, calib))
    for f in files:
        sink.log_artifact(f, "evaluate")
