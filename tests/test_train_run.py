"""One variant's run as the train stage makes it (``train_variant``): the resolved config is
what MLflow's params, the checkpoint and ``train.json`` record, not ``train``'s defaults."""

from __future__ import annotations

import json

import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal import config
from deepgal.training import train_variant
from deepgal.training.run import load_split
from deepgal.transforms import Augment, Preprocess, prepare_batch, presize_shape
from tests.helpers import make_workdir, paths


@pytest.mark.slow  # a new MLflow SQLite store and one training: ~20-45 s on 2 cores
def test_the_resolved_config_is_what_every_record_shows(tmp_path, monkeypatch):
    root = make_workdir(
        tmp_path / "w",
        train={"epochs": 3, "lr": 0.02},
        variant={"epochs": 1, "lr_scale": 0.5, "batch_size": 16},
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.delenv("DEEPGAL_MLFLOW", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.chdir(root)
    run = config.resolve_variant(config.load_params(root / "params.yaml"), "smallnet")
    assert (run.epochs, run.batch_size, run.lr) == (1, 16, pytest.approx(0.01))

    metrics = train_variant(run, paths(root))
    train_json = json.loads((root / "results/smallnet/train.json").read_text())
    assert train_json == json.loads(json.dumps(metrics))
    assert train_json["epochs"] == 1 and train_json["config"]["epochs"] == 1
    assert train_json["config"]["lr"] == pytest.approx(0.01)
    assert train_json["config"]["batch_size"] == 16

    ckpt = ckpt_io.load(root / "models/smallnet/checkpoints/epoch_001.pt")
    assert ckpt["config"]["run"]["epochs"] == 1
    assert ckpt["config"]["run"]["lr"] == pytest.approx(0.01)
    assert ckpt["config"]["data"]["sha256"] == "ab" * 32
    assert not ckpt_io.epoch_path(root / "models/smallnet/checkpoints", 2).exists()

    from mlflow.tracking import MlflowClient

    run_id = json.loads((root / "models/smallnet/mlflow_run.json").read_text())["run_id"]
    got = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_run(run_id)
    assert got.data.params["epochs"] == "1"  # not train.epochs = 3
    assert float(got.data.params["lr"]) == pytest.approx(0.01)
    assert got.data.params["batch_size"] == "16"
    assert not any(k.startswith("train.") for k in got.data.params)
    assert got.data.params == {k: str(v) for k, v in run.flat().items()}
    assert {d.dataset.digest for d in got.inputs.dataset_inputs} == {("ab" * 32)[:12]}
    assert got.info.status == "FINISHED"


@pytest.mark.parametrize("zoom", [1.0, 1.25])
def test_a_split_shrunk_at_load_feeds_the_model_the_same_bytes(tmp_path, zoom):
    """load_split(pre) keeps each image at the size apply_params would first resize it to, in
    chunks: the prepared batches are bit-identical to those from the full-size split, and the
    memory is what the input needs (32 px frames, 8 px input, crop 0.5 -> 20 px at zoom 1.25)."""
    root = make_workdir(tmp_path / "w")
    pre = Preprocess(input_size=8, crop=0.5, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    aug = Augment(rotate=True, flip=True, scale=zoom - 1, translate=0.05, jitter=0.1)
    full = load_split(root / "data/galaxy10.h5", root / "data/split", "train")
    small = load_split(
        root / "data/galaxy10.h5", root / "data/split", "train", pre, zoom, chunk=7
    )  # several chunks, the last one short
    side = presize_shape(pre, 32, 32, zoom)[0]
    assert side == round(8 * zoom / 0.5) < 32
    assert tuple(small.images.shape) == (len(full), side, side, 3)
    assert torch.equal(small.labels, full.labels)
    # zoom 1.25: training batches (their zoom_bound); zoom 1: evaluation, and training without
    # zoom. A split shrunk for one zoom_bound is only for batches of that bound.
    for a in (aug,) if zoom > 1 else (None, Augment(True, True, 0.1, 0.0, 0.05)):
        xs = prepare_batch(small.images, pre, a, torch.Generator().manual_seed(3))
        xf = prepare_batch(full.images, pre, a, torch.Generator().manual_seed(3))
        assert torch.equal(xs, xf)
    # A frame already at or below the needed size is kept as it is, not upsampled.
    big = Preprocess(input_size=64)
    same = load_split(root / "data/galaxy10.h5", root / "data/split", "train", big)
    assert torch.equal(same.images, full.images)
