"""The select stage as a real process against a real SQLite MLflow store: the chosen checkpoint
becomes the run's MLflow model only when its val accuracy is above chance (the report's test);
a chance-level one is recorded in selection.json and tagged, but not logged as a model."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal import tracking
from deepgal.data.galaxy10 import CLASS_NAMES, write_galaxy10
from deepgal.data.split import stratified_split, write_split
from deepgal.models import build_model
from deepgal.report import ALPHA
from deepgal.select_checkpoint import chance_test, read_history
from deepgal.transforms import Preprocess
from tests.pipeline_repo import REPO


@pytest.mark.slow  # two stage processes with torch and MLflow: ~25 s here
def test_only_a_checkpoint_above_chance_becomes_an_mlflow_model(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 10)
    write_galaxy10(
        tmp_path / "g.h5", rng.integers(0, 256, (100, 16, 16, 3), dtype=np.uint8), labels
    )
    splits = stratified_split(labels, {"train": 0.5, "val": 0.5, "test": 0.0}, seed=0)
    write_split(tmp_path / "split", splits, labels, [0.5] * 3, [0.25] * 3, {"source": "t"})
    pre = Preprocess(16, crop=1.0)
    torch.manual_seed(0)
    model = build_model("smallnet", 10, 16)
    ckpts = tmp_path / "checkpoints"
    for e in (1, 2, 3):
        ckpt_io.save(
            ckpt_io.epoch_path(ckpts, e),
            {
                "epoch": e,
                "model": model.state_dict(),
                "model_name": "smallnet",
                "preprocess": pre.to_dict(),
                "class_names": list(CLASS_NAMES),
            },
        )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DEEPGAL_MLFLOW": "on",
        "MLFLOW_TRACKING_URI": uri,
    }
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())

    def select(val_accuracy: float) -> tuple[dict, object, str]:
        sink = tracking.MlflowSink(uri, "smallnet", {}, {"model": "smallnet"}, system_metrics=False)
        sink.finish()
        (tmp_path / "run.json").write_text(json.dumps({"run_id": sink.run_id}))
        # Epoch 2 is the answer: 3 scores higher but overfits (gap >= 0.2 > max_gap 0.15),
        # 1 passes but scores lower; val loss falls throughout (no rise).
        v = val_accuracy
        (tmp_path / "history.csv").write_text(
            "epoch,train/loss,train/accuracy,val/loss,val/accuracy\n"
            f"1,2.2,{v - 0.04},2.2,{v - 0.04}\n2,2.1,{v},2.1,{v}\n3,2.0,1.0,2.0,{v + 0.2}\n"
        )
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "stages/select_checkpoint.py"),
                "--variant",
                "smallnet",
                "--checkpoints",
                "checkpoints",
                "--history",
                "history.csv",
                "--run",
                "run.json",
                "--data",
                "g.h5",
                "--split",
                "split",
                "--out",
                "selection.json",
                "--selected",
                "selected.pt",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        run = sink.client.get_run(sink.run_id)
        return json.loads((tmp_path / "selection.json").read_text()), run, proc.stderr

    # 50 val images, chance 10%: 12% correct is noise (p ~ 0.38), 60% is not (p ~ 6e-18).
    sel, run, err = select(0.12)
    assert sel["chance_p_value"] >= ALPHA and sel["epoch"] == 2
    assert not run.outputs.model_outputs
    assert run.data.tags["deepgal.model"].startswith("not logged: val accuracy within noise")
    assert "within noise of chance" in err
    sel, run, _ = select(0.60)
    assert sel["chance_p_value"] < 1e-15 and sel["epoch"] == 2
    assert sel["checkpoint"] == str(ckpt_io.epoch_path(ckpts.relative_to(tmp_path), 2))
    assert [o.step for o in run.outputs.model_outputs] == [2]
    assert run.data.tags["deepgal.selected_checkpoint"] == "epoch_002.pt"
    assert "deepgal.model" not in run.data.tags


def test_select_stage_in_process_picks_the_documented_epoch(tmp_path, monkeypatch):
    """The stage's own path (history.csv parsing, params, selection.json) in this process:
    several checkpoints, epoch 2 the answer (3 scores higher but its val loss is 25% above
    epoch 2's, 4 higher still but its gap is 0.3; 5 has no metrics row), no tracker, no
    --data/--split."""
    from stages import select_checkpoint as stage_script

    ckpts = tmp_path / "checkpoints"
    for e in (1, 2, 3, 4, 5):
        ckpt_io.save(ckpt_io.epoch_path(ckpts, e), {"epoch": e, "model": {"w": torch.zeros(1)}})
    # Empty cells (a metric not logged that epoch) are dropped, not read as 0.
    (tmp_path / "history.csv").write_text(
        "epoch,train/loss,train/accuracy,val/loss,val/accuracy,lr\n"
        "1,2.0,0.30,1.20,0.30,\n2,1.5,0.50,0.80,0.45,0.1\n3,1.0,0.60,1.00,0.55,\n"
        "4,0.5,0.90,0.79,0.60,\n"
    )
    (tmp_path / "run.json").write_text('{"run_id": null}')
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    assert read_history(tmp_path / "history.csv")[0] == {
        "epoch": 1.0,
        "train/loss": 2.0,
        "train/accuracy": 0.3,
        "val/loss": 1.2,
        "val/accuracy": 0.3,
    }
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEEPGAL_MLFLOW", "off")
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "select_checkpoint.py",
            "--variant",
            "v",
            "--checkpoints",
            "checkpoints",
            "--history",
            "history.csv",
            "--run",
            "run.json",
            "--out",
            "out/selection.json",
            "--selected",
            "out/selected.pt",
        ],
    )
    assert stage_script.main() == 0
    sel = json.loads((tmp_path / "out/selection.json").read_text())
    assert (sel["epoch"], sel["variant"], sel["run_id"], sel["chance_p_value"]) == (
        2,
        "v",
        None,
        None,
    )
    assert sel["checkpoint"] == str(ckpt_io.epoch_path("checkpoints", 2))
    assert [c["epoch"] for c in sel["candidates"]] == [1, 2, 3, 4]
    assert [c["passed"] for c in sel["candidates"]] == [True, True, False, False]


def test_chance_test_is_the_binomial_tail_against_the_commonest_val_class(tmp_path):
    from scipy.stats import binom

    labels = np.r_[np.zeros(30, int), np.ones(20, int), np.full(10, 2)]  # 60 images
    write_galaxy10(tmp_path / "g.h5", np.zeros((60, 4, 4, 3), np.uint8), labels)
    val = np.r_[np.arange(0, 10), np.arange(30, 50), np.arange(50, 55)]  # 10/20/5: chance 20/35
    splits = {"train": np.setdiff1d(np.arange(60), val), "val": val, "test": np.array([], int)}
    write_split(tmp_path / "split", splits, labels, [0.5] * 3, [0.25] * 3, {"source": "t"})
    p = chance_test(24 / 35, tmp_path / "g.h5", tmp_path / "split")
    assert p == pytest.approx(binom.sf(23, 35, 20 / 35), rel=1e-9)
    assert chance_test(0.5, None, tmp_path / "split") is None
    assert chance_test(0.5, tmp_path / "g.h5", None) is None
