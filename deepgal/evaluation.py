"""A variant's evaluation, assembled: the evaluate stage's whole job as one library call.

One pass of the selected model over the data file gives both: the penultimate embedding of
val, test and the train images the maps and the outlier score need (``reduce`` maps val, test
and a seeded sample of ``evaluate.map_train`` train images; the outlier score compares each
val/test image with a seeded sample of ``evaluate.outlier_ref`` train images) and, from the
same forward pass, the class probabilities of val and test (with ``evaluate.tta``, a second
pass over val and test averages the 8 rotation/flip views instead). One process loads torch,
the network and the weights once, and reads each image once.

Memory does not grow with the data set: the features go to ``features.h5`` a chunk at a time
and are read back a block at a time for the outlier score; what is held is one chunk, the
N x 10 probabilities and the outlier reference (at most ``outlier_ref`` x D).

:func:`evaluate_variant` writes, all before talking to MLflow (an unreachable tracker is one
warning, not a failure): ``metrics.json`` (the numbers the plot stage gathers for DVC),
``eval.json`` (details), ``predictions.csv`` (one row per image), ``<split>.png`` confusion
matrices (``predictions.csv`` holds each val/test image's outlier score: the mean cosine
distance to its ``evaluate.outlier_k`` nearest reference images in the embedding,
:class:`deepgal.explore.outliers.OutlierScorer`), ``features.h5`` (:class:`deepgal.handoff.
Features`: ``features`` (N, D) float32, ``index``, ``label``, ``split`` per row),
``calibration.json`` (the checkpoint's temperature; per split ECE, NLL and reliability bins
before and after it) and ``gradcam.npz`` (the Grad-CAM maps of the report's gallery,
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
from .explore.outliers import OutlierScorer
from .handoff import (
    CalibrationReport,
    Features,
    FeaturesWriter,
    History,
    Predictions,
    Selection,
    VariantMetrics,
)
from .inference import load_model, output_dim
from .inference.source import iter_on_file, run_on_file
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
    features: Path  # models/<variant>/features.h5
    gradcam: Path  # results/<variant>/gradcam.npz: the report's Grad-CAM maps


@dataclass(frozen=True)
class Embedded:
    """One forward pass's outputs: ``reference`` (R, D) float32, the features of the outlier
    score's train sample; ``probs`` {split: (n, C) float32, uncalibrated} of the scored splits.
    The other features went to the features file as they came."""

    reference: np.ndarray
    probs: dict[str, np.ndarray]


class _Layout:
    """Where each image of one pass over the data file goes. ``rows`` {split: (n,) rows} is the
    features file's layout (splits one after another); ``reference`` (R,) the train rows of the
    outlier score. ``file_rows`` (M,): every row the pass reads, sorted and once each (a train
    row can be both mapped and a reference); per position in it, its row in the features file
    (``dest``, -1 for a reference-only row) and its slot in the reference (``slot``, -1)."""

    def __init__(self, rows: dict[str, np.ndarray], reference: np.ndarray):
        layout = np.concatenate([np.asarray(v, np.int64) for v in rows.values()])
        self.rows, self.file_rows = rows, np.unique(np.concatenate([layout, reference]))
        self.dest = np.full(len(self.file_rows), -1, np.int64)
        self.dest[np.searchsorted(self.file_rows, layout)] = np.arange(len(layout))
        self.slot = np.full(len(self.file_rows), -1, np.int64)
        self.slot[np.searchsorted(self.file_rows, reference)] = np.arange(len(reference))
        bounds = np.cumsum([0] + [len(v) for v in rows.values()])
        self.span = {
            s: (int(lo), int(hi)) for s, lo, hi in zip(rows, bounds[:-1], bounds[1:], strict=True)
        }

    def positions(self, split: str) -> np.ndarray:
        """Positions in ``file_rows`` of ``rows[split]``, in the split's order."""
        return np.searchsorted(self.file_rows, self.rows[split])


def embed_and_score(
    model,
    paths: EvaluatePaths,
    pre,
    device,
    layout: _Layout,
    labels: np.ndarray,
    scored: list[str],
    cfg: EvaluateCfg,
    variant: str,
) -> Embedded:
    """One pass over ``layout.file_rows``: the features of ``layout.rows`` written to
    ``paths.features`` a chunk at a time (the (N, D) matrix is never held: at 283,000 images
    of a 4,096-D embedding it is 4.6 GB), the reference's features kept, the probabilities of
    the ``scored`` splits kept (N x 10); with ``cfg.tta`` the probabilities come from a second,
    8-view pass over the scored splits."""
    t0, dim = time.perf_counter(), model.feature_dim
    n = len(layout.file_rows)
    probs = np.empty((n, output_dim(model, "probs")), np.float32)
    reference = np.empty((int((layout.slot >= 0).sum()), dim), np.float32)
    with FeaturesWriter.for_splits(paths.features, layout.rows, labels, dim) as sink:
        for pos, values in iter_on_file(
            model,
            paths.data,
            pre,
            device,
            layout.file_rows,
            cfg.batch_size,
            "features+probs",
            desc=f"evaluate {variant}",
        ):
            probs[pos] = values[:, dim:]
            dest, slot = layout.dest[pos], layout.slot[pos]
            sink.put(dest[dest >= 0], values[dest >= 0, :dim])
            reference[slot[slot >= 0]] = values[slot >= 0, :dim]
    seconds = time.perf_counter() - t0
    log.info(
        "%d embeddings of dim %d in %.1f s (%.0f images/s)", n, dim, seconds, n / max(seconds, 1e-9)
    )
    if cfg.tta:
        tta = run_on_file(
            model,
            paths.data,
            pre,
            device,
            {s: layout.rows[s] for s in scored},
            cfg.batch_size,
            "probs",
            True,
            desc=f"evaluate {variant} (8-view TTA)",
        )
        return Embedded(reference, tta)
    return Embedded(reference, {s: probs[layout.positions(s)] for s in scored})


def outlier_scores(
    features: Path, layout: _Layout, reference: np.ndarray, scored: list[str], k: int
) -> dict[str, np.ndarray]:
    """{split: (n,) float32}: each scored image's mean cosine distance to its ``k`` nearest
    ``reference`` rows, its features read back from the file :data:`OUTLIER_BLOCK` rows at a
    time against one index."""
    n_queries = sum(layout.span[s][1] - layout.span[s][0] for s in scored)
    scorer = OutlierScorer(reference, k, n_queries=n_queries)
    out = {}
    with Features.open(features) as f:
        for s in scored:
            lo, hi = layout.span[s]
            out[s] = np.concatenate(
                [np.empty(0, np.float32)]
                + [
                    scorer(f["features"][a : min(a + OUTLIER_BLOCK, hi)])
                    for a in range(lo, hi, OUTLIER_BLOCK)
                ]
            )
    return out


# Val/test features read back for the outlier score this many rows at a time (64 MB at 4,096-D).
OUTLIER_BLOCK = 4096


def evaluate_variant(variant: str, paths: EvaluatePaths, cfg: EvaluateCfg, base: BaseCfg) -> dict:
    """Score the selected checkpoint of ``variant`` on val and test and embed every split;
    write every output in :class:`EvaluatePaths`, then report to the variant's MLflow run.
    Returns eval.json's dict ({split: :func:`deepgal.metrics.score`}, ``epoch``, ``tta``)."""
    galaxy10.validate(paths.data)
    labels = galaxy10.read_labels(paths.data)
    sel = Selection.read(paths.selection)
    rows = {name: split_io.read_split(paths.split, name) for name in split_io.SPLITS}
    # The outlier score's reference: every train image, or a seeded sample of
    # evaluate.outlier_ref of them (a kNN detector keeps its ranking on a small random share of
    # the train set: Sun et al. 2022 use 1% of ImageNet's); the maps need only map_train of them.
    reference = split_io.sample_rows(rows["train"], cfg.outlier_ref, base.seed)
    check_outlier_k(cfg.outlier_k, len(reference))
    # split.test = 0 reproduces the report: no test split, no test scores.
    scored = {s: rows[s] for s in ("val", "test") if len(rows[s])}
    device = pick_device(base.device)
    model, pre, ckpt = load_model(paths.checkpoint, device)
    mapped = split_io.sample_rows(rows["train"], cfg.map_train, base.seed)
    layout = _Layout(rows | {"train": mapped}, reference)
    out = embed_and_score(model, paths, pre, device, layout, labels, list(scored), cfg, variant)
    outlier = outlier_scores(paths.features, layout, out.reference, list(scored), cfg.outlier_k)
    raw, out = out.probs, None  # the reference's features are no longer needed
    calib = measure(
        Calibration.from_checkpoint(ckpt, paths.checkpoint),
        raw,
        {s: labels[idx] for s, idx in scored.items()},
    )
    probs = {s: apply_temperature(p, calib["temperature"]) for s, p in raw.items()}
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


def check_outlier_k(k: int, n_reference: int) -> None:
    """ConfigError, before any model is loaded, when the outlier score's train reference (the
    train split, or its evaluate.outlier_ref sample) is too small for k."""
    if k > n_reference:
        raise ConfigError(
            f"params.yaml: evaluate.outlier_k = {k} needs at least {k} train "
            f"images as the outlier reference; there are {n_reference} (the train split, at "
            "most evaluate.outlier_ref of it): lower evaluate.outlier_k"
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
