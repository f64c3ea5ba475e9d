"""Tracking sinks against a real SQLite MLflow store: runs, steps, registry, redaction."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from deepgal import tracking
from deepgal.utils import redact
from tests.ports import refused_port


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    """One store for the module: creating MLflow's tables costs seconds per store."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def uri(store_uri, monkeypatch, request):
    """The shared store, each test its own pipeline run (parent)."""
    monkeypatch.setenv("DVC_EXP_NAME", request.node.name)
    return store_uri


def epoch(e):
    return {
        "epoch": e,
        "train/loss": 1.0 / e,
        "train/accuracy": 0.1 * e,
        "val/loss": 1.5 / e,
        "val/accuracy": 0.1 * e,
        "lr": 0.01,
        "images_per_s": 100.0,
        "seconds": 1.0,
    }


def test_resumed_run_gets_each_step_once_and_artifacts(uri, tmp_path):
    sink = tracking.MlflowSink(
        uri, "smallnet", {"data.source": "synthetic"}, {"train.lr": 0.02}, system_metrics=False
    )
    for e in (1, 2):
        sink.log_epoch(epoch(e))
    again = tracking.MlflowSink(
        uri, "smallnet", {}, {"train.lr": 0.02}, run_id=sink.run_id, system_metrics=False
    )
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


def test_variant_runs_nest_under_one_pipeline_run(uri, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "lr-small")
    tags = {"dvc.exp_name": "lr-small", "data.source": "synthetic", "deepgal.variant": "x"}
    a = tracking.MlflowSink(uri, "smallnet", tags, {}, system_metrics=False)
    b = tracking.MlflowSink(uri, "customnet", tags, {}, system_metrics=False)
    assert a.parent_id == b.parent_id
    parent = a.client.get_run(a.parent_id)
    assert parent.info.run_name == "lr-small" and parent.data.tags["data.source"] == "synthetic"
    assert "deepgal.variant" not in parent.data.tags  # only what the pipeline run shares
    for sink in (a, b):
        assert sink.client.get_run(sink.run_id).data.tags["mlflow.parentRunId"] == a.parent_id
    a.finish()
    assert a.client.get_run(a.parent_id).info.status == "RUNNING"  # customnet still trains
    b.finish("KILLED")
    assert a.client.get_run(a.parent_id).info.status == "KILLED"
    monkeypatch.setenv("DVC_EXP_NAME", "another")
    c = tracking.MlflowSink(uri, "smallnet", {}, {}, system_metrics=False)
    assert c.parent_id != a.parent_id
    c.finish()


def test_a_parent_created_elsewhere_first_wins(uri, monkeypatch):
    """Two machines cannot share a lock: the later duplicate parent is deleted by its creator."""
    from deepgal.tracking import parent
    from deepgal.tracking.store import Store

    monkeypatch.setenv("DVC_EXP_NAME", "race")
    store = Store(uri)
    exp = store.experiment_id("deepgal")
    first = store.client.create_run(
        exp, run_name="race", tags={parent.PIPELINE_TAG: "race", parent.KIND_TAG: "pipeline"}
    ).info.run_id
    assert parent.find_or_create(store, exp, "race", {}) == first
    assert [
        r.info.run_id
        for r in store.client.search_runs([exp], "tags.`deepgal.pipeline_run` = 'race'")
    ] == [first]


def test_dataset_inputs_fill_the_datasets_column(uri):
    sink = tracking.MlflowSink(uri, "smallnet", {}, {}, system_metrics=False)
    sha = "19aefc477c41bb7f77ff07599a6b82a038dc042f889a111b0d4d98bb755c1571"
    sink.log_dataset(
        {
            "source": "galaxy10_decals",
            "sha256": sha,
            "image_size": [256, 256],
            "url": "https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5",
        },
        {"train": 800, "val": 100, "test": 0},
    )
    inputs = sink.client.get_run(sink.run_id).inputs.dataset_inputs
    got = {i.tags[0].value: i.dataset for i in inputs}
    assert set(got) == {"train", "val"}  # an empty split is not an input
    ds = got["train"]
    assert (ds.name, ds.digest, ds.source_type) == ("galaxy10_decals/train", sha[:12], "http")
    assert json.loads(ds.profile)["num_rows"] == 800 and json.loads(ds.profile)["sha256"] == sha
    assert "zenodo.org" in json.loads(ds.source)["url"]
    features = json.loads(json.loads(ds.schema)["mlflow_tensorspec"]["features"])
    assert features[0]["tensor-spec"] == {"dtype": "uint8", "shape": [-1, 256, 256, 3]}


def test_later_stages_log_after_the_curves_and_never_fail(uri, caplog, monkeypatch):
    sink = tracking.MlflowSink(uri, "smallnet", {}, {}, system_metrics=False)
    sink.finish()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    run = tracking.attach(sink.run_id)
    run.log_metrics({"eval/val/accuracy": 0.5, "select/epoch": 3})
    assert set(sink.client.get_run(sink.run_id).data.metrics) == {
        "eval.val.accuracy",
        "select.epoch",
    }
    assert sink.client.get_run(sink.run_id).info.status == "FINISHED"
    with refused_port() as port:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        gone = tracking.attach(sink.run_id)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="deepgal"):
            gone.log_metrics({"eval/val/accuracy": 0.5})
            gone.log_artifact(__file__)  # skipped: one warning, no second attempt
    warned = [
        r for r in caplog.records if r.name.startswith("deepgal") and r.levelno >= logging.WARNING
    ]
    assert len(warned) == 1 and f"127.0.0.1:{port}" in warned[0].getMessage(), caplog.text


def test_file_sink_rewrites_complete_history(tmp_path):
    files = tracking.FileSink(tmp_path / "history.csv")
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
