"""The selected checkpoint as an MLflow model: logged into a real SQLite store, registered, and
loaded back with ``mlflow.pyfunc`` to classify images of a real Galaxy10-layout HDF5 file."""

from __future__ import annotations

import logging

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal import tracking
from deepgal.data import galaxy10
from deepgal.data.synthetic import write_synthetic
from deepgal.inference import load_model, run_model
from deepgal.mlflow_model import MAX_IMAGES, OUTPUT_COLUMNS, log_checkpoint_model
from deepgal.models import build_model
from deepgal.transforms import Preprocess
from tests.ports import refused_port


@pytest.fixture(scope="module")
def galaxy_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "galaxy10.h5"
    write_synthetic(path, per_class=2, image_size=40, seed=3)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A deepgal checkpoint as the train stage writes one (weights of a seeded smallnet)."""
    torch.manual_seed(0)
    pre = Preprocess(input_size=16, crop=0.5, mean=(0.1, 0.1, 0.1), std=(0.2, 0.2, 0.2))
    model = build_model("smallnet", galaxy10.NUM_CLASSES, pre.input_size, pretrained="none")
    path = tmp_path_factory.mktemp("ckpt") / "epoch_002.pt"
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.zeros(2, 3, 16, 16)).sum().backward()
    opt.step()  # momentum buffers: the optimizer state is as large as the weights
    ckpt_io.save(
        path,
        {
            "epoch": 2,
            "model": model.state_dict(),
            "model_name": "smallnet",
            "preprocess": pre.to_dict(),
            "class_names": list(galaxy10.CLASS_NAMES),
            "optimizer": opt.state_dict(),
            "rng": {"cpu": torch.get_rng_state()},
        },
    )
    return path


def test_pyfunc_round_trip_classifies_galaxy10_images(
    tmp_path, galaxy_file, checkpoint, monkeypatch, recwarn, caplog, capfd
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # what attach() reads, as in a stage
    sink = tracking.MlflowSink(uri, "smallnet", {}, {"model": "smallnet"}, system_metrics=False)
    sink.log_epoch({"epoch": 2, "val/accuracy": 0.3, "train/loss": 2.0})
    sink.finish()
    images = galaxy10.read_images(galaxy_file)  # (20, 40, 40, 3) uint8, a real HDF5 file
    run = tracking.attach(sink.run_id)
    import mlflow.utils.environment as mlflow_env

    check = mlflow_env.warn_dependency_requirement_mismatches
    info = log_checkpoint_model(
        run, checkpoint, step=2, input_example=images[:2], registered_name="deepgal-smallnet"
    )
    # The requirements check skipped while logging (our pins are this environment) is back.
    assert mlflow_env.warn_dependency_requirement_mismatches is check
    assert mlflow.pyfunc.warn_dependency_requirement_mismatches is check
    assert info["version"] == 1 and info["alias"] == "best"
    # Logging is quiet: no warning about pickled code or missing type hints, no progress bar.
    assert not [w for w in recwarn if "type hint" in str(w.message)]
    assert "CloudPickle" not in caplog.text
    assert "Downloading artifacts" not in capfd.readouterr().err

    client = sink.client
    logged = client.get_logged_model(info["model_id"])
    assert logged.source_run_id == sink.run_id and str(logged.status) == "READY"
    assert logged.params["model"] == "smallnet"  # the run's resolved config travels with it
    outputs = client.get_run(sink.run_id).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(info["model_id"], 2)]
    assert client.get_run(sink.run_id).info.status == "FINISHED"  # logging kept the status

    loaded = mlflow.pyfunc.load_model("models:/deepgal-smallnet@best")  # store from the env
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=logged.model_uri, dst_path=str(tmp_path / "model")
    )
    sig = loaded.metadata.signature
    assert sig.inputs.to_dict()[0]["tensor-spec"] == {"dtype": "uint8", "shape": (-1, -1, -1, 3)}
    assert [c["name"] for c in sig.outputs.to_dict()] == list(OUTPUT_COLUMNS)
    example = mlflow.models.Model.load(local).load_input_example(local)
    assert example.dtype == np.uint8 and np.array_equal(example, images[:2])
    # The stored example goes through the loaded model (what serving it would do).
    want = loaded.predict(images[:2])["class"].tolist()
    assert loaded.predict(example)["class"].tolist() == want
    assert (tmp_path / "model" / "code" / "deepgal" / "inference").is_dir()  # travels along
    # Stored as code, so loading unpickles nothing.
    assert (tmp_path / "model" / "mlflow_model_code.py").is_file()
    assert not list((tmp_path / "model").glob("*.pkl"))
    # The model holds the weights and their description, not the training state.
    stored = ckpt_io.load(next((tmp_path / "model" / "artifacts").glob("*.pt")))
    source = ckpt_io.load(checkpoint)
    assert "optimizer" not in stored and "rng" not in stored and stored["epoch"] == 2
    assert all(torch.equal(stored["model"][k], v) for k, v in source["model"].items())

    pred = loaded.predict(images)
    assert isinstance(pred, pd.DataFrame) and list(pred.columns) == list(OUTPUT_COLUMNS)
    model, pre, _ = load_model(checkpoint, torch.device("cpu"))
    probs = run_model(model, images, pre, torch.device("cpu"))
    assert pred["class"].tolist() == probs.argmax(1).tolist()  # the library's own answer
    assert pred["class_name"].tolist() == [galaxy10.CLASS_NAMES[c] for c in pred["class"]]
    np.testing.assert_allclose(pred["probability"], probs.max(1), rtol=1e-5)
    np.testing.assert_allclose(np.stack(pred["probabilities"]), probs, rtol=1e-5, atol=1e-7)
    assert len(loaded.predict(images[:3], params={"batch_size": 2})) == 3


@pytest.mark.parametrize(
    "images, words",
    [
        (np.zeros((2, 8, 8), np.uint8), r"shape \(2, 8, 8\), not a batch of RGB images"),
        (np.full((2, 8, 8, 4), 9, np.uint8), r"shape \(2, 8, 8, 4\)"),
        (np.full((2, 8, 8, 3), 9.0), r"pixels must be uint8 \(integers 0-255\), got float64"),
        (np.array([["a galaxy"]]), r"not images: it holds <U8 values"),
        ([[[[1, 2, 3]]], [[[1, 2]]]], r"not an array of images"),
        (np.zeros((0, 8, 8, 3), np.uint8), r"the batch is empty"),
        (
            np.full((MAX_IMAGES + 1, 2, 2, 3), 9, np.uint8),
            rf"{MAX_IMAGES + 1} images in one request, more than the limit of {MAX_IMAGES}",
        ),
        (np.full((1, 8, 6, 3), 9, np.uint8), r"must be square and non-empty, got 8x6 px"),
        (
            np.stack([np.full((8, 8, 3), 9), np.eye(8)[..., None].repeat(3, 2)]).astype(np.uint8),
            r"image 1 \(1 of 2 in all\) has only pixel values 0 and 1",
        ),
    ],
)
def test_pyfunc_refuses_bad_requests_with_a_400_that_says_why(checkpoint, images, words):
    from mlflow.exceptions import MlflowException

    from deepgal.mlflow_model import GalaxyClassifier

    clf = GalaxyClassifier()
    clf.load_context(type("Ctx", (), {"artifacts": {"checkpoint": str(checkpoint)}})())
    with pytest.raises(MlflowException, match=words) as err:
        clf.predict(None, images)
    assert err.value.get_http_status_code() == 400  # what `mlflow models serve` answers
    assert 'Send {"inputs": [...]}' in err.value.message  # and what to send instead
    # The limit is a limit, not an off-by-one: MAX_IMAGES images are answered.
    if len(images) == MAX_IMAGES + 1:
        assert len(clf.predict(None, images[:-1])) == MAX_IMAGES


def test_unreachable_tracker_is_a_warning_for_model_logging(checkpoint, caplog, monkeypatch):
    with refused_port() as port:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        run = tracking.attach("0" * 32)
        with caplog.at_level(logging.WARNING, logger="deepgal"):
            assert log_checkpoint_model(run, checkpoint, 1, None) is None
    warned = [
        r for r in caplog.records if r.name.startswith("deepgal") and r.levelno >= logging.WARNING
    ]
    assert len(warned) == 1 and f"127.0.0.1:{port}" in warned[0].getMessage(), caplog.text
