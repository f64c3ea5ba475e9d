"""stages/plot.py, run as DVC runs it, on a results/ folder holding ONLY the files per variant
that dvc.yaml declares as its deps (so one more file read would fail here): the report links
pictures that exist, and a variant at chance is listed as not learned."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from deepgal.calibration import measure
from deepgal.data.split import channel_stats, stratified_split, write_split
from deepgal.handoff import GradCams, Predictions
from tests.conftest import make_h5
from tests.pipeline_repo import REPO, env_for, tiny_params

# What the plot stage reads per variant: the lead's dvc.yaml lists exactly these as deps.
PER_VARIANT = (
    "metrics.json",
    "predictions.csv",
    "history.csv",
    "embeddings.csv",
    "selection.json",
    "train.json",
    "calibration.json",
    "gradcam.npz",
)


def variant_results(
    d: Path, split: dict[str, np.ndarray], labels: np.ndarray, right: float, seed: int
) -> None:
    """Real files in the formats of the train, select, evaluate and reduce stages; the model
    gets a ``right`` share of each split right."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True)
    parts, scores = {}, {}
    for s in ("val", "test"):
        idx = split[s]
        good = rng.random(len(idx)) < right
        pred = np.where(good, labels[idx], (labels[idx] + 1) % 10)
        parts[s] = (idx, labels[idx], np.eye(10)[pred] * 0.5 + 0.05, rng.uniform(0, 1, len(idx)))
        scores[s] = {"accuracy": float((pred == labels[idx]).mean()), "macro_f1": 0.5}
    Predictions.from_parts(parts).write(d / "predictions.csv")
    # calibration.json as the evaluate stage writes it (no calibration: temperature 1)
    (d / "calibration.json").write_text(
        json.dumps(
            measure(None, {s: p[2] for s, p in parts.items()}, {s: p[1] for s, p in parts.items()})
        )
    )
    (d / "metrics.json").write_text(json.dumps(scores | {"epoch": 2, "train_min": 0.1}))
    (d / "selection.json").write_text(json.dumps({"epoch": 2, "run_id": None}))
    (d / "train.json").write_text(
        json.dumps({"config": {"model": d.name, "pretrained": "none", "input_size": 16}})
    )
    # gradcam.npz as the evaluate stage writes it: two val images and made-up maps
    GradCams(
        split["val"][:2],
        labels[split["val"][:2]],
        labels[split["val"][:2]],
        np.array([0.9, 0.8]),
        np.array(["correct", "correct"]),
        rng.uniform(0, 1, (2, 16, 16)).astype(np.float32),
        rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8),
        "body.4",
        "val",
    ).write(d / "gradcam.npz")
    epochs = np.arange(1, 4)
    pd.DataFrame(
        {
            "epoch": epochs,
            "train/loss": 2 / epochs,
            "val/loss": 2.1 / epochs,
            "train/accuracy": right * epochs / 3,
            "val/accuracy": right * epochs / 3.2,
            "seconds": 2.0,
        }
    ).to_csv(d / "history.csv", index=False)
    rows = [
        pd.DataFrame(
            {
                "split": s,
                "method": m,
                "index": idx,
                "label": labels[idx],
                "x": rng.normal(size=len(idx)) + labels[idx],
                "y": rng.normal(size=len(idx)),
            }
        )
        for m in ("umap", "tsne", "pca")
        for s, idx in split.items()
    ]
    pd.concat(rows).to_csv(d / "embeddings.csv", index=False)


@pytest.mark.slow  # a real stage process: ~20 s on a quiet machine
def test_plot_stage_reads_only_its_declared_files(tmp_path):
    data = make_h5(tmp_path / "data" / "galaxy10.h5", n_per_class=10, size=32)
    labels = np.tile(np.arange(10), 10)
    split = stratified_split(labels, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)
    mean, std = channel_stats(data, split["train"])
    write_split(tmp_path / "data" / "split", split, labels, mean, std, {"source": "test"})
    params = tiny_params()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert list(params["variants"]) == ["smallnet", "customnet"]
    variant_results(tmp_path / "results" / "smallnet", split, labels, right=0.9, seed=1)
    variant_results(tmp_path / "results" / "customnet", split, labels, right=0.0, seed=2)
    for d in (tmp_path / "results").iterdir():
        assert sorted(p.name for p in d.iterdir()) == sorted(PER_VARIANT)

    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "stages" / "plot.py"),
            "--results",
            "results",
            "--data",
            "data/galaxy10.h5",
            "--split",
            "data/split",
            "--out",
            "reports",
            "--metrics",
            "metrics.json",
            "--html-template",
            "reports/dvc_plots_template.html",
        ],
        cwd=tmp_path,
        env=env_for(tmp_path, DEEPGAL_MLFLOW="off"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = (tmp_path / "reports" / "report.md").read_text()
    assert "| 1 | **smallnet** (best) |" in report
    assert "| – | customnet (not learned) |" in report
    assert "- **customnet**: 0.00% (0 of 20)" in report
    links = re.findall(r"!\[[^\]]*\]\(<?([^)>]+)>?\)", report)
    local = [link for link in links if "/confusion/" not in link]  # evaluate's pictures
    assert {Path(link).name for link in local} == {
        "curves.png",
        "variants_umap_val.png",
        "smallnet_embeddings.png",
        "smallnet_confused.png",
        "customnet_embeddings.png",
        "customnet_confused.png",
        "samples.png",
        "augmentations.png",
        "reliability.png",
        "smallnet_oddities.png",
        "smallnet_gradcam.png",
    }  # the best variant's alone
    for link in local:
        assert (tmp_path / "reports" / link).stat().st_size > 0, link
    head = json.loads((tmp_path / "metrics.json").read_text())
    assert list(head) == ["smallnet", "customnet"]
    assert head["smallnet"]["val_acc"] == pytest.approx(
        json.loads((tmp_path / "results/smallnet/metrics.json").read_text())["val"]["accuracy"],
        abs=1e-4,
    )
    template = (tmp_path / "reports" / "dvc_plots_template.html").read_text()
    assert "{plot_divs}" in template and "<script src" not in template
