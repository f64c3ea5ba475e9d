"""The pipeline's report, assembled: the plot stage's whole job as one library call.

:func:`make_report` writes ``report.md`` and its pictures (curves of all variants, each
variant's embedding grid and confused-pairs gallery, every variant's val map, the reliability
diagram, the best variant's Grad-CAM gallery (maps the evaluate stage stored) and its most
unusual test galaxies by outlier score, a sample grid and an augmentation preview), the offline
HTML template of ``dvc plots show`` and ``metrics.json`` (every variant's headline numbers, the
one file DVC declares as metrics), then attaches the pictures to MLflow.

Per variant it reads the files of results/<variant>/ (:class:`VariantResults`; the best
variant's ``gradcam.npz`` too), so dvc.yaml can name the folder.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from . import config
from .crossval_file import with_cv
from .data import galaxy10
from .data import split as split_io
from .dvc_metrics import metrics_table
from .handoff import (
    CalibrationReport,
    Embeddings,
    GradCams,
    History,
    PipelineMetrics,
    Predictions,
    Selection,
    TrainSummary,
    VariantMetrics,
    VariantPaths,
)
from .plots.calibration import calibration_table, plot_reliability
from .plots.curves import plot_curves
from .plots.embeddings import METHOD_LABELS, plot_embedding_grid, plot_variant_maps
from .plots.gallery import Cell, plot_gallery
from .plots.gradcam import gradcam_report
from .plots.images import (
    pick_confused,
    plot_augmentation_preview,
    plot_confused_pairs,
    plot_sample_grid,
)
from .plots.offline import write_html_template
from .report import most_confused, report_row, sort_rows, write_report
from .transforms import Augment, Preprocess, augmentation_preview

log = logging.getLogger("plot")
PAIRS, PER_PAIR = 4, 6  # the gallery: most confused pairs, images of each
ODDITIES = 16  # the most unusual test galaxies shown
MISSED = "tab:red"  # frame of an unusual galaxy the model also misclassified
SAMPLES_PER_CLASS = 6


@dataclasses.dataclass(frozen=True)
class VariantResults:
    """What the report uses of one variant's results/<variant>/ folder: ``predictions`` (one
    row per val/test image) and its val ``confusion`` (K, K) int64, the evaluate ``metrics``,
    the ``calibration`` report, the ``history`` per epoch, what the variant ``ran`` with
    (model, pretrained, input_size, epochs), its 2-D ``maps`` and its MLflow ``run_id``."""

    variant: str
    predictions: Any  # pandas.DataFrame
    confusion: np.ndarray
    metrics: dict
    calibration: dict
    history: Any  # pandas.DataFrame
    ran: dict
    maps: Any  # pandas.DataFrame
    run_id: str | None

    @classmethod
    def read(cls, variant: str, results_root: Path) -> VariantResults:
        at = VariantPaths(variant, results_root=results_root)
        predictions = Predictions.read(at.predictions)
        history = History.read(at.history).frame()
        config_run = TrainSummary.read(at.train).config  # what train resolved
        ran = {k: config_run[k] for k in ("model", "pretrained", "input_size")}
        return cls(
            variant,
            predictions.frame,
            predictions.confusion_matrix("val"),
            VariantMetrics.read(at.metrics).to_dict(),
            CalibrationReport.read(at.calibration).splits(),
            history,
            ran | {"epochs": len(history)},
            Embeddings.read(at.embeddings).frame,
            Selection.read(at.selection).run_id,
        )

    def row(self) -> dict:
        """The report table's row (:func:`deepgal.report.report_row`)."""
        return report_row(self.variant, self.metrics, self.confusion)


def gallery(variant: str, preds, data: Path, png: Path) -> Path | None:
    """The val confused-pairs gallery of ``variant``; None when it made no mistake."""
    val = preds[preds["split"] == "val"]
    cm = Predictions(preds).confusion_matrix("val")
    pairs = [(p["true_id"], p["pred_id"]) for p in most_confused(cm, k=PAIRS)]
    if not pairs:
        return None
    picked = pick_confused(val, pairs, per_pair=PER_PAIR)
    idx = np.unique(np.concatenate([np.r_[p.mistakes, p.references] for p in picked]))
    images = dict(zip(idx.tolist(), galaxy10.read_images(data, idx), strict=True))
    conf = dict(zip(val["index"].tolist(), val["confidence"].tolist(), strict=True))
    plot_confused_pairs(picked, images, f"{variant}: the most confused pairs (val)", png, conf)
    return png


def oddities(variant: str, preds: Predictions, data: Path, png: Path) -> Figure | None:
    """Draw the :data:`ODDITIES` test images of ``variant`` with the highest outlier score,
    highest first, each captioned with its row, score and class, into ``png``; the figure.
    None (and nothing drawn) without a test split or without scores (a file from before)."""
    if not preds.has_outliers():
        log.warning(
            "%s: predictions.csv has no outlier scores; re-run `dvc repro evaluate` "
            "for the gallery of unusual galaxies",
            variant,
        )
        return None
    top = preds.most_unusual("test", ODDITIES)
    if top.empty:
        return None
    rows = top["index"].to_numpy(np.int64)
    names = galaxy10.CLASS_NAMES
    cells = [
        Cell(img, f"#{r}  s={s:.3f}\n{names[y]}", frame=None if p == y else MISSED)
        for img, r, s, y, p in zip(
            galaxy10.read_images(data, rows),
            rows,
            top["outlier"],
            top["label"],
            top["pred"],
            strict=True,
        )
    ]
    title = (
        f"{variant}: the {len(cells)} most unusual test galaxies, most unusual first (s = "
        "mean cosine distance to the nearest train images in the embedding; red frame: "
        "misclassified)"
    )
    return plot_gallery(cells, title, png, max_cols=8)


def data_pictures(data: Path, split_dir: Path, params: dict, plots: Path) -> dict[str, str]:
    """The sample grid and augmentation preview of the train split."""
    labels = galaxy10.read_labels(data)
    train_idx = split_io.read_split(split_dir, "train")
    pick = np.concatenate(
        [train_idx[labels[train_idx] == c][:SAMPLES_PER_CLASS] for c in range(galaxy10.NUM_CLASSES)]
    )
    images = galaxy10.read_images(data, pick)
    plot_sample_grid(images, labels[pick], plots / "samples.png", per_class=SAMPLES_PER_CLASS)
    stats = split_io.read_stats(split_dir)
    pre = Preprocess(input_size=images.shape[1], mean=tuple(stats.mean), std=tuple(stats.std))
    aug = Augment(**dataclasses.asdict(config.load_section("train", params).augment))
    seed = config.load_section("base", params).seed
    plot_augmentation_preview(
        augmentation_preview(images[0], pre, aug, seed=seed), plots / "augmentations.png"
    )
    return {
        "sample images per class": "plots/samples.png",
        "augmentation preview": "plots/augmentations.png",
    }


def variant_pictures(res: VariantResults, data: Path, plots: Path) -> tuple[dict, str | None]:
    """Draw ``res``'s embedding grid and gallery; its report section {caption: picture} and
    the gallery's path relative to the report (None without one)."""
    v = res.variant
    plot_embedding_grid(
        res.maps,
        f"{v}: feature maps by method and split",
        plots / f"{v}_embeddings.png",
        predictions=res.predictions,
    )
    section = {f"{v}: UMAP / t-SNE / PCA of each split": f"plots/{v}_embeddings.png"}
    shown = None
    if gallery(v, res.predictions, data, plots / f"{v}_confused.png"):
        shown = f"plots/{v}_confused.png"
        section[f"{v}: most confused pairs (val)"] = shown
    section[f"{v}: confusion matrix (val)"] = f"{v}/confusion/val.png"  # evaluate's
    return section, shown


def lead_pictures(
    results: Mapping[str, VariantResults], rows: list[dict], order: list[str], plots: Path
) -> dict[str, str]:
    """The pictures right after the table: curves, one val map of every variant, reliability."""
    plot_curves({v: r.history for v, r in results.items()}, plots / "curves.png")
    ranked, _ = sort_rows(rows)
    present = set(next(iter(results.values())).maps["method"])
    method = "umap" if "umap" in present else sorted(present)[0]  # reduce.methods may omit umap
    plot_variant_maps(
        {v: results[v].maps for v in order},
        plots / f"variants_{method}_val.png",
        method,
        captions={
            r["variant"]: f"val accuracy {r['val_accuracy']:.1%}"
            + ("" if r in ranked else " (not learned)")
            for r in rows
        },
        predictions={v: r.predictions for v, r in results.items()},
    )
    plot_reliability({v: results[v].calibration for v in order}, plots / "reliability.png")
    return {
        "accuracy and loss of all variants": "plots/curves.png",
        f"{METHOD_LABELS.get(method, method)} of the val split, every variant": f"plots/variants_{method}_val.png",
        "reliability of every variant's probabilities, before and after calibration": "plots/reliability.png",
    }


def make_report(
    variants: list[str],
    results_root: Path,
    data: Path,
    split: Path,
    out: Path,
    metrics: Path,
    html_template: Path,
    params: dict,
) -> dict[str, dict]:
    """Everything the plot stage writes (module docstring), under ``out`` (report.md and
    plots/) and at ``metrics`` and ``html_template``; returns metrics.json's content."""
    plots = out / "plots"
    results = {v: VariantResults.read(v, results_root) for v in variants}
    rows = [r.row() for r in results.values()]
    sections, galleries = {}, {}
    for v, res in results.items():
        sections[v], shown = variant_pictures(res, data, plots)
        if shown:
            galleries[v] = shown
    ranked, unranked = sort_rows(rows)
    order = [r["variant"] for r in ranked + unranked]
    lead = lead_pictures(results, rows, order, plots)
    sections = {v: sections[v] for v in order}
    best = order[0]  # the best learned variant, else the best of the rest
    if oddities(best, Predictions(results[best].predictions), data, plots / f"{best}_oddities.png"):
        sections[best][f"{best}: the most unusual test galaxies (outlier score)"] = (
            f"plots/{best}_oddities.png"
        )
    sections["Data"] = data_pictures(data, split, params, plots)
    write_report(
        out / "report.md",
        rows,
        {v: r.confusion for v, r in results.items()},
        runs={v: r.ran for v, r in results.items()},
        lead=lead,
        gallery=galleries,
        sections=sections,
        calibration=calibration_table({v: results[v].calibration for v in order}),
        attention=gradcam_report(
            best, GradCams.read(VariantPaths(best, results_root=results_root).gradcam), plots
        ),
    )
    # the cross-validation figures of each cv.json join the table when cv ran
    table = with_cv(metrics_table({v: r.metrics for v, r in results.items()}), results_root)
    PipelineMetrics(table).write(metrics)
    write_html_template(html_template)
    attach_to_mlflow({v: r.run_id for v, r in results.items()}, plots, table)
    log.info("wrote %s and %d pictures", out / "report.md", len(list(plots.glob("*.png"))))
    return table


def attach_to_mlflow(
    run_ids: Mapping[str, str | None], plots: Path, table: Mapping[str, dict]
) -> None:
    """Log each variant's pictures to its MLflow run (``run_ids``: variant -> run), and its
    headline numbers (metrics.json) to the pipeline run it is nested under as
    ``<variant>.<metric>``, after every local output exists (attached loggers are best effort:
    a tracker that is away costs one warning).

    Why the pipeline run gets numbers: MLflow's run list shows the pipeline runs collapsed, and
    its chart view only what the visible runs logged; with them, one row per `dvc repro` or
    `dvc exp run` compares every variant's test accuracy without expanding anything."""
    from . import tracking  # imported here: MLflow loads only once the report is written

    per_parent: dict[str, dict[str, float]] = {}
    for v, run_id in run_ids.items():
        sink = tracking.attach(run_id)
        if sink is None:
            continue
        pngs = [
            plots / name
            for name in (
                "curves.png",
                "reliability.png",
                f"{v}_embeddings.png",
                f"{v}_confused.png",
                f"{v}_oddities.png",
                f"{v}_gradcam.png",
            )
        ]
        for png in [p for p in pngs if p.exists()]:
            sink.log_artifact(png, "plots")
        parent = sink.parent_id()
        if parent:  # variants trained by different runs keep their numbers apart
            per_parent.setdefault(parent, {}).update(
                {f"{v}.{k}": x for k, x in table[v].items() if isinstance(x, (int, float))}
            )
    for parent, numbers in per_parent.items():
        tracking.attach(parent).log_metrics(numbers)
