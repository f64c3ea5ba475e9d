"""Tracking sinks against a real SQLite MLflow store: runs, steps, registry, redaction."""
from __future__ import annotations

import pandas as pd
import pytest

from deepgal import tracking
from deepgal.utils import redact


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def epoch(e):
    return {"epoch": e, "train/loss": 1.0 / e, "train/accuracy": 0.1 * e, "val/loss": 1.5 / e,
            "val/accuracy": 0.1 * e, "lr": 0.01, "images_per_s": 100.0, "seconds": 1.0}


def test_resumed_run_gets_each_step_once_and_artifacts(uri, tmp_path):
    sink = tracking.MlflowSink(uri, "smallnet", {"data.source": "synthetic"}, {"train.lr": 0.02},
                               system_metrics=False)
    for e in (1, 2):
        sink.log_epoch(epoch(e))
    again = tracking.MlflowSink(uri, "smallnet", {}, {"train.lr": 0.02}, run_id=sink.run_id,
                                system_metrics=False)
    assert again.run_id == sink.run_id
    for e in (1, 2, 3):  # a resume re-delivers the history it already sent
        again.log_epoch(epoch(e))
    again.log_dict({"train": {"lr": 0.02}}, "config.json")
    assert again.finish() == []
    hist = again.client.get_metric_history(sink.run_id, "val/accuracy")
    assert sorted(m.step for m in hist) == [1, 2, 3]
    run = again.client.get_run(sink.run_id)
    assert run.info.status == "FINISHED" and run.data.params["train.lr"] == "0.02"
    assert "config.json" in [a.path for a in again.client.list_artifacts(sink.run_id)]


def test_register_checkpoint_with_alias(uri, tmp_path):
    ckpt = tmp_path / "epoch_002.pt"
    ckpt.write_bytes(b"weights")
    sink = tracking.MlflowSink(uri, "customnet", {}, {}, system_metrics=False)
    info = sink.register_checkpoint(ckpt, "deepgal-customnet")
    mv = sink.client.get_model_version_by_alias("deepgal-customnet", "best")
    assert int(mv.version) == info["version"] == 1 and mv.run_id == sink.run_id
    assert mv.source.endswith("selected/epoch_002.pt")


def test_file_sink_rewrites_complete_history(tmp_path):
    files = tracking.FileSink(tmp_path / "history.csv", tmp_path / "train.json")
    for e in (1, 2, 2, 3):  # epoch 2 delivered twice (resume): one row
        files.log_epoch(epoch(e))
    assert list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == [1, 2, 3]


def test_queued_experiment_maps_to_repo_root(tmp_path):
    inner = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpab12" / "x"
    assert tracking.project_root(inner) == tmp_path / "repo"
    assert tracking.project_root(tmp_path / "repo") == tmp_path / "repo"


def test_redact():
    assert redact("http://alice:s3cret@host:5000/x") == "http://alice:***@host:5000/x"
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
