"""Stage plot: curves of all variants, embeddings, sample grid, augmentation preview, report.md."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from deepgal import config, stage, tracking
from deepgal.data import galaxy10, split as split_io
from deepgal.plots import plot_curves, plot_embedding
from deepgal.plots_images import plot_augmentation_preview, plot_sample_grid
from deepgal.report import report_row, write_report
from deepgal.transforms import Augment, Preprocess, augmentation_preview

log = logging.getLogger("plot")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", type=Path, required=True, help="results/ (one folder a variant)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="reports/ (report.md + plots/)")
    args = p.parse_args()
    params = config.load_params()
    base, train = config.load_section("base", params), config.load_section("train", params)
    variants = list(params.get("variants") or {})
    plots = args.out / "plots"

    rows, confusions, pictures, histories, logged = [], {}, {}, {}, {}
    for v in variants:
        d = args.results / v
        sel = json.loads((d / "selection.json").read_text())
        ev = json.loads((d / "eval.json").read_text())
        rows.append(report_row(v, ev, sel, json.loads((d / "train.json").read_text())))
        confusions[v] = np.array(ev["val"]["confusion"])
        histories[v] = pd.read_csv(d / "history.csv")
        pictures[f"{v}: confusion (val)"] = f"../{d.as_posix()}/confusion/val.png"
        emb = pd.read_csv(d / "embeddings.csv")
        logged[v] = (sel.get("run_id"), [])
        for (method, split), part in emb.groupby(["method", "split"], sort=False):
            png = plots / f"{v}_{method}_{split}.png"
            plot_embedding(part, f"{method.upper()} {v.upper()} {split.upper()}", png)
            pictures[f"{v}: {method} {split}"] = f"plots/{png.name}"
            logged[v][1].append(png)

    plot_curves(histories, plots / "curves.png")
    pictures = {"accuracy and loss of all variants": "plots/curves.png", **pictures}
    labels = galaxy10.read_labels(args.data)
    train_idx = split_io.read_split(args.split, "train")
    per_class = 6
    pick = np.concatenate([train_idx[labels[train_idx] == c][:per_class] for c in range(10)])
    images = galaxy10.read_images(args.data, pick)
    plot_sample_grid(images, labels[pick], plots / "samples.png", per_class=per_class)
    stats = split_io.read_stats(args.split)
    pre = Preprocess(input_size=images.shape[1], mean=tuple(stats["mean"]),
                     std=tuple(stats["std"]))
    aug = Augment(**dataclasses.asdict(train.augment))
    panels = augmentation_preview(images[0], pre, aug, seed=base.seed)
    plot_augmentation_preview(panels, plots / "augmentations.png")
    pictures["sample images per class"] = "plots/samples.png"
    pictures["augmentation preview"] = "plots/augmentations.png"
    write_report(args.out / "report.md", rows, confusions, pictures)

    for v, (run_id, pngs) in logged.items():
        sink = tracking.attach(run_id)
        if sink:
            for png in [*pngs, plots / "curves.png"]:
                sink.log_artifact(png, "plots")
    log.info("wrote %s and %d pictures", args.out / "report.md", len(list(plots.glob("*.png"))))
    return 0


if __name__ == "__main__":
    stage.run(main, extra_errors=(tracking.TrackingError,))
