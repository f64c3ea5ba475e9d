"""Stage plot: report.md and its pictures (curves of all variants, each variant's embedding
grid and confused-pairs gallery, every variant's val map), and the offline HTML template of
``dvc plots show``.

Per variant it reads exactly the eight files of results/<variant>/ (metrics.json, cv.json,
predictions.csv, history.csv, embeddings.csv, train.json for what the variant really ran with,
selection.json for the MLflow run to attach the pictures to, calibration.json for the
reliability diagram and the calibration table), so dvc.yaml can name the folder.
It also gathers the headline numbers of every variant into one ``metrics.json``, with the
cross-validation figures of cv.json (cv_acc, cv_se, cv_f1, cv_spread) when cv ran.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from deepgal import config, stage
from deepgal.crossval_file import with_cv
from deepgal.data import galaxy10, split as split_io
from deepgal.headline import pipeline_headline
from deepgal.plots.calibration import calibration_table, plot_reliability
from deepgal.plots.curves import plot_curves
from deepgal.plots.embeddings import METHOD_LABELS, plot_embedding_grid, plot_variant_maps
from deepgal.plots.images import (pick_confused, plot_augmentation_preview, plot_confused_pairs,
                                  plot_sample_grid)
from deepgal.plots.offline import write_html_template
from deepgal.plots.predictions import confusion, read_predictions
from deepgal.report import budget_needs, most_confused, report_row, sort_rows, write_report
from deepgal.transforms import Augment, Preprocess, augmentation_preview
from deepgal.utils import write_json

log = logging.getLogger("plot")
PAIRS, PER_PAIR = 4, 6  # the gallery: most confused pairs, images of each
SAMPLES_PER_CLASS = 6


def gallery(variant: str, preds: pd.DataFrame, data: Path, png: Path) -> Path | None:
    """The val confused-pairs gallery of ``variant``; None when it made no mistake."""
    val = preds[preds["split"] == "val"]
    pairs = [(p["true_id"], p["pred_id"]) for p in most_confused(confusion(preds, "val"),
                                                                 k=PAIRS)]
    if not pairs:
        return None
    picked = pick_confused(val, pairs, per_pair=PER_PAIR)
    idx = np.unique(np.concatenate([np.r_[p.mistakes, p.references] for p in picked]))
    images = dict(zip(idx.tolist(), galaxy10.read_images(data, idx)))
    conf = dict(zip(val["index"].tolist(), val["confidence"].tolist()))
    plot_confused_pairs(picked, images, f"{variant}: the most confused pairs (val)", png, conf)
    return png


def data_pictures(data: Path, split_dir: Path, params: dict, plots: Path) -> dict[str, str]:
    """The sample grid and augmentation preview of the train split."""
    labels = galaxy10.read_labels(data)
    train_idx = split_io.read_split(split_dir, "train")
    pick = np.concatenate([train_idx[labels[train_idx] == c][:SAMPLES_PER_CLASS]
                           for c in range(galaxy10.NUM_CLASSES)])
    images = galaxy10.read_images(data, pick)
    plot_sample_grid(images, labels[pick], plots / "samples.png", per_class=SAMPLES_PER_CLASS)
    stats = split_io.read_stats(split_dir)
    pre = Preprocess(input_size=images.shape[1], mean=tuple(stats["mean"]), std=tuple(stats["std"]))
    aug = Augment(**dataclasses.asdict(config.load_section("train", params).augment))
    seed = config.load_section("base", params).seed
    plot_augmentation_preview(augmentation_preview(images[0], pre, aug, seed=seed),
                              plots / "augmentations.png")
    return {"sample images per class": "plots/samples.png",
            "augmentation preview": "plots/augmentations.png"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", type=Path, required=True, help="results/ (one folder a variant)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="reports/ (report.md + plots/)")
    p.add_argument("--metrics", type=Path, required=True,
                   help="metrics.json: every variant's headline numbers (DVC metrics)")
    p.add_argument("--html-template", type=Path, required=True,
                   help="where to write the offline template of `dvc plots show`")
    args = p.parse_args()
    params = config.load_params()
    variants = list(params.get("variants") or {})
    plots = args.out / "plots"

    rows, confusions, runs, maps, preds, histories, galleries, sections, heads, calib = (
        [], {}, {}, {}, {}, {}, {}, {}, {}, {})
    for v in variants:
        d = args.results / v
        preds[v] = read_predictions(d / "predictions.csv")
        confusions[v] = confusion(preds[v], "val")
        heads[v] = json.loads((d / "metrics.json").read_text())
        calib[v] = json.loads((d / "calibration.json").read_text())
        rows.append(report_row(v, heads[v], confusions[v]))
        histories[v] = pd.read_csv(d / "history.csv")
        ran = json.loads((d / "train.json").read_text())["config"]  # what train resolved
        runs[v] = {"model": ran["model"], "pretrained": ran["pretrained"],
                   "input_size": ran["input_size"], "epochs": len(histories[v])}
        maps[v] = pd.read_csv(d / "embeddings.csv")
        plot_embedding_grid(maps[v], f"{v}: feature maps by method and split",
                            plots / f"{v}_embeddings.png", predictions=preds[v])
        sections[v] = {f"{v}: UMAP / t-SNE / PCA of each split": f"plots/{v}_embeddings.png"}
        if gallery(v, preds[v], args.data, plots / f"{v}_confused.png"):
            galleries[v] = f"plots/{v}_confused.png"
            sections[v][f"{v}: most confused pairs (val)"] = galleries[v]
        sections[v][f"{v}: confusion matrix (val)"] = f"{v}/confusion/val.png"  # evaluate's

    plot_curves(histories, plots / "curves.png")
    ranked, unranked = sort_rows(rows)
    order = [r["variant"] for r in ranked + unranked]
    present = set(maps[variants[0]]["method"])
    method = "umap" if "umap" in present else sorted(present)[0]  # reduce.methods may omit umap
    plot_variant_maps({v: maps[v] for v in order}, plots / f"variants_{method}_val.png", method,
                      captions={r["variant"]: f"val accuracy {r['val_accuracy']:.1%}"
                                + ("" if r in ranked else " (not learned)") for r in rows},
                      predictions=preds)
    lead = {"accuracy and loss of all variants": "plots/curves.png",
            f"{METHOD_LABELS.get(method, method)} of the val split, every variant":
                f"plots/variants_{method}_val.png"}
    plot_reliability({v: calib[v] for v in order}, plots / "reliability.png")
    lead["reliability of every variant's probabilities, before and after calibration"] = \
        "plots/reliability.png"
    sections = {v: sections[v] for v in order}
    sections["Data"] = data_pictures(args.data, args.split, params, plots)
    write_report(args.out / "report.md", rows, confusions, runs=runs, lead=lead,
                 gallery=galleries, sections=sections,
                 calibration=calibration_table({v: calib[v] for v in order}))
    headline = with_cv(pipeline_headline(heads), args.results)  # cv figures when cv ran
    write_json(args.metrics, headline)
    write_html_template(args.html_template)
    attach_to_mlflow(variants, args.results, plots, headline)
    log.info("wrote %s and %d pictures", args.out / "report.md", len(list(plots.glob("*.png"))))
    return 0


def attach_to_mlflow(variants: list[str], results: Path, plots: Path,
                     headline: dict[str, dict]) -> None:
    """Log each variant's pictures to its MLflow run, and its headline numbers (metrics.json)
    to the pipeline run it is nested under as ``<variant>.<metric>``, after every local output
    exists (attached loggers are best effort: a tracker that is away costs one warning).

    Why the pipeline run gets numbers: MLflow's run list shows the pipeline runs collapsed, and
    its chart view only what the visible runs logged; with them, one row per `dvc repro` or
    `dvc exp run` compares every variant's test accuracy without expanding anything."""
    from deepgal import tracking  # imported here: MLflow loads only once the report is written

    per_parent: dict[str, dict[str, float]] = {}
    for v in variants:
        sink = tracking.attach(json.loads((results / v / "selection.json").read_text())
                               .get("run_id"))
        if sink is None:
            continue
        pngs = [plots / name for name in ("curves.png", "reliability.png",
                                          f"{v}_embeddings.png",
                                          f"{v}_confused.png")]
        for png in [p for p in pngs if p.exists()]:
            sink.log_artifact(png, "plots")
        parent = sink.parent_id()
        if parent:  # variants trained by different runs keep their numbers apart
            per_parent.setdefault(parent, {}).update(
                {f"{v}.{k}": x for k, x in headline[v].items() if isinstance(x, (int, float))})
    for parent, numbers in per_parent.items():
        tracking.attach(parent).log_metrics(numbers)


if __name__ == "__main__":
    stage.run(main)
