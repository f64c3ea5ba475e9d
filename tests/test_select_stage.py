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
from deepgal.transforms import Preprocess
from tests.pipeline_repo import REPO


@pytest.mark.slow  # two stage processes with torch and MLflow: ~25 s here
def test_only_a_checkpoint_above_chance_becomes_an_mlflow_model(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 10)
    write_galaxy10(tmp_path / "g.h5", rng.integers(0, 256, (100, 16, 16, 3), dtype=np.uint8),
                   labels)
    splits = stratified_split(labels, {"train": 0.5, "val": 0.5, "test": 0.0}, seed=0)
    write_split(tmp_path / "split", splits, labels, [0.5] * 3, [0.25] * 3, {"source": "t"})
    pre = Preprocess(16, crop=1.0)
    torch.manual_seed(0)
    model = build_model("smallnet", 10, 16)
    ckpts = tmp_path / "checkpoints"
    ckpt_io.save(ckpt_io.epoch_path(ckpts, 1), {
        "epoch": 1, "model": model.state_dict(), "model_name": "smallnet",
        "preprocess": pre.to_dict(), "class_names": list(CLASS_NAMES)})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DEEPGAL_MLFLOW": "on",
           "MLFLOW_TRACKING_URI": uri}
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())

    def select(val_accuracy: float) -> tuple[dict, object, str]:
        sink = tracking.MlflowSink(uri, "smallnet", {}, {"model": "smallnet"},
                                   system_metrics=False)
        sink.finish()
        (tmp_path / "run.json").write_text(json.dumps({"run_id": sink.run_id}))
        (tmp_path / "history.csv").write_text(
            "epoch,train/loss,train/accuracy,val/loss,val/accuracy\n"
            f"1,2.0,{val_accuracy},2.0,{val_accuracy}\n")
        proc = subprocess.run(
            [sys.executable, str(REPO / "stages/select_checkpoint.py"), "--variant", "smallnet",
             "--checkpoints", "checkpoints", "--history", "history.csv", "--run", "run.json",
             "--data", "g.h5", "--split", "split", "--out", "selection.json",
             "--selected", "selected.pt"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        run = sink.client.get_run(sink.run_id)
        return json.loads((tmp_path / "selection.json").read_text()), run, proc.stderr

    # 50 val images, chance 10%: 12% correct is noise (p ~ 0.38), 60% is not (p ~ 6e-18).
    sel, run, err = select(0.12)
    assert sel["chance_p_value"] >= ALPHA and sel["epoch"] == 1
    assert not run.outputs.model_outputs
    assert run.data.tags["deepgal.model"].startswith("not logged: val accuracy within noise")
    assert "within noise of chance" in err
    sel, run, _ = select(0.60)
    assert sel["chance_p_value"] < 1e-15
    assert [o.step for o in run.outputs.model_outputs] == [1]
    assert "deepgal.model" not in run.data.tags
