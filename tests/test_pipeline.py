"""The whole workflow as a user lives it: a real `dvc repro` of a tiny configuration in a
temporary git + DVC repository, a no-op re-run, then `dvc exp run -S train.lr=...`."""
from __future__ import annotations

import json
import numpy as np
import pandas as pd
import pytest

from deepgal.data.galaxy10 import CLASS_NAMES

from .mlflow_server import Rest, mlflow_server
from .pipeline_repo import dvc, make_repo

VARIANTS = ("smallnet", "customnet")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = make_repo(tmp_path_factory.mktemp("pipeline") / "repo")
    out = dvc(["repro"], root)
    return root, out.stdout + out.stderr


def test_repro_produces_every_output(repo):
    root, log = repo
    for v in VARIANTS:
        train = json.loads((root / f"results/{v}/train.json").read_text())
        assert train["epochs"] == 3 and 0 <= train["val/accuracy"] <= 1
        hist = pd.read_csv(root / f"results/{v}/history.csv")
        assert list(hist["epoch"]) == [1, 2, 3]
        sel = json.loads((root / f"results/{v}/selection.json").read_text())
        assert sel["epoch"] in (1, 2, 3) and (root / sel["checkpoint"]).exists()
        ev = json.loads((root / f"results/{v}/eval.json").read_text())
        assert set(ev["val"]["per_class"]) == set(CLASS_NAMES)
        assert np.array(ev["val"]["confusion"]).sum() == ev["val"]["n"] == 10  # 1 per class
        for png in ("confusion/val.png", "confusion/test.png"):
            assert (root / "results" / v / png).stat().st_size > 1000
    report = (root / "reports/report.md").read_text()
    for v in VARIANTS:
        assert f"| {v}" in report or f"**{v}**" in report
    pngs = {p.name for p in (root / "reports/plots").glob("*.png")}
    assert {"curves.png", "samples.png", "augmentations.png"} <= pngs
    assert {f"{v}_{m}_{s}.png" for v in VARIANTS for m in ("umap", "tsne", "pca")
            for s in ("train", "val", "test")} <= pngs


def test_reductions_keep_rows_and_ids(repo):
    root, _ = repo
    feats = np.load(root / "results/smallnet/features.npz")
    emb = pd.read_csv(root / "results/smallnet/embeddings.csv")
    for split in ("train", "val", "test"):
        expected = np.load(root / f"data/split/{split}.npy")
        rows = feats["split"] == split
        np.testing.assert_array_equal(feats["index"][rows], expected)
        for method in ("pca", "tsne", "umap"):
            part = emb[(emb.method == method) & (emb.split == split)]
            np.testing.assert_array_equal(part["index"].to_numpy(), expected)
            np.testing.assert_array_equal(part["label"].to_numpy(), feats["label"][rows])
            assert np.isfinite(part[["x", "y"]].to_numpy()).all()


def test_mlflow_ui_shows_one_run_per_variant_with_curves(repo):
    """What a user sees in the MLflow UI, read through the REST API of a real server."""
    root, _ = repo
    with mlflow_server(root / "mlflow.db") as (base, _):
        rest = Rest(base)
        runs = {r["info"]["run_name"]: r for r in rest.runs()}
        assert set(runs) == set(VARIANTS)
        for v, run in runs.items():
            assert run["info"]["status"] == "FINISHED"
            tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
            assert tags["data.source"] == "synthetic" and len(tags["data.sha256"]) == 64
            params = {p["key"]: p["value"] for p in run["data"]["params"]}
            assert params["train.lr"] == "0.02" and params["variant.model"] == v
            for key in ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr",
                        "images_per_s"):
                assert [m["step"] for m in rest.history(run["info"]["run_id"], key)] == [1, 2, 3]
            metrics = {m["key"] for m in run["data"]["metrics"]}
            assert {"eval/val/accuracy", "eval/test/macro_f1", "select/epoch"} <= metrics


def test_rerun_is_noop(repo):
    root, _ = repo
    out = dvc(["repro"], root)
    assert "Running stage" not in out.stdout, out.stdout
    assert "up to date" in out.stdout.lower() or "didn't change" in out.stdout


def test_exp_run_changes_lr_only_downstream(repo):
    root, _ = repo
    out = dvc(["exp", "run", "-n", "lr-small", "-S", "train.lr=0.001"], root)
    ran = out.stdout
    assert "Running stage 'download'" not in ran and "Running stage 'split'" not in ran
    for v in VARIANTS:
        assert f"Running stage 'train@{v}'" in ran
    shown = json.loads(dvc(["exp", "show", "--json"], root).stdout)
    names = {e.get("name") for b in shown for e in [b] + [x for x in (b.get("experiments") or [])
                                                          for x in x.get("revs", [])]}
    assert "lr-small" in names
    metrics = dvc(["metrics", "show", "--json"], root).stdout
    assert "results/smallnet/train.json" in metrics and "results/smallnet/eval.json" in metrics
    params = yaml_lr(root)
    assert params == 0.001


def yaml_lr(root):
    import yaml
    return yaml.safe_load((root / "params.yaml").read_text())["train"]["lr"]
