"""The logged model served by MLflow's own server: `mlflow models serve --env-manager local`,
a real process on a loopback port, asked over real HTTP. Its answer must be the pyfunc's answer
in Python on the same images; each bad request gets a 4xx whose message says what was wrong,
and the next good request is still answered."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pytest

from deepgal import tracking
from deepgal.data import galaxy10
from deepgal.mlflow_model import MAX_IMAGES, OUTPUT_COLUMNS, log_checkpoint_model
from tests.conftest import make_h5
from tests.helpers import selected_checkpoint
from tests.mlflow_server import models_serve

# Starting the server imports MLflow, FastAPI and torch in two processes: ~20-60 s here.
pytestmark = pytest.mark.slow

# Loopback never goes through a proxy, whatever the environment says.
_open = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A calibrated smallnet logged into a real SQLite store and registered as
    deepgal-smallnet@best; (tracking URI, run id, images (30, 24, 24, 3) uint8)."""
    root = tmp_path_factory.mktemp("serve")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        sink = tracking.MlflowSink(uri, "smallnet", {}, {"model": "smallnet"}, system_metrics=False)
        sink.log_epoch({"epoch": 1, "val/accuracy": 0.3})
        sink.finish()
        images = galaxy10.read_images(make_h5(root / "cutouts.h5", n_per_class=3, size=24))
        info = log_checkpoint_model(
            tracking.attach(sink.run_id),
            selected_checkpoint(root / "selected.pt", temperature=2.5),
            1,
            images[:2],
            registered_name="deepgal-smallnet",
        )
    assert info and info["alias"] == "best"
    return uri, sink.run_id, images


def post(base: str, body: bytes | dict, content_type: str = "application/json") -> tuple[int, dict]:
    """POST ``body`` to /invocations; (HTTP status, the JSON answer, or {"message": text})."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{base}/invocations", data=data, headers={"Content-Type": content_type}
    )
    try:
        with _open(req, timeout=120) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            return e.code, json.loads(text)
        except json.JSONDecodeError:  # some refusals (415) are plain text
            return e.code, {"message": text}


def in_python(uri: str, model_uri: str, images: np.ndarray, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return mlflow.pyfunc.load_model(model_uri).predict(images)


def assert_same_answer(served: dict, want) -> None:
    rows = served["predictions"]
    assert [list(r) for r in rows] == [list(OUTPUT_COLUMNS)] * len(want)
    assert [r["class"] for r in rows] == want["class"].tolist()
    assert [r["class_name"] for r in rows] == want["class_name"].tolist()
    np.testing.assert_allclose([r["probability"] for r in rows], want["probability"], rtol=1e-6)
    np.testing.assert_allclose(
        [r["probabilities"] for r in rows], np.stack(want["probabilities"]), rtol=1e-6
    )


def test_served_run_model_answers_as_the_pyfunc_and_survives_bad_requests(
    logged, tmp_path, monkeypatch
):
    uri, run_id, images = logged
    model_uri = f"runs:/{run_id}/model"
    want = in_python(uri, model_uri, images, monkeypatch)
    # Calibrated (T = 2.5): softer than the raw softmax, still probabilities.
    np.testing.assert_allclose(np.stack(want["probabilities"]).sum(1), 1, rtol=1e-5)
    good = {"inputs": images.tolist()}
    tiny = np.zeros((MAX_IMAGES + 1, 2, 2, 3), np.uint8).tolist()
    bad = [  # (what, body, content type, words the message must hold)
        ("a 3-D array", {"inputs": images[:, :, :, 0].tolist()}, None, "shape"),
        ("4 channels", {"inputs": np.zeros((2, 8, 8, 4), int).tolist()}, None, "shape"),
        ("pixels scaled to 0-1", {"inputs": (images[:2] / 255).tolist()}, None, "0-1"),
        # MLflow's own parsing and schema checks answer these before the model runs.
        (
            "pixels above 255",
            {"inputs": (images[:2].astype(int) + 300).tolist()},
            None,
            "out of bounds for uint8",
        ),
        (
            "negative pixels",
            {"inputs": (images[:2].astype(int) - 256).tolist()},
            None,
            "out of bounds for uint8",
        ),
        (
            "a text/plain body",
            json.dumps({"inputs": images[:2].tolist()}).encode(),
            "text/plain",
            "content types",
        ),
        (
            "text instead of images",
            {"inputs": ["a galaxy", "another"]},
            None,
            "invalid literal for int() with base 10: 'a galaxy'",
        ),
        ("ragged rows", {"inputs": [[[[1, 2, 3]]], [[[1, 2]]]]}, None, "inhomogeneous shape"),
        ("an empty batch", {"inputs": []}, None, "data '[]'"),
        (f"{MAX_IMAGES + 1} images", {"inputs": tiny}, None, str(MAX_IMAGES)),
        ("non-square images", {"inputs": np.zeros((1, 8, 6, 3), int).tolist()}, None, "square"),
        ("not JSON", b"\x89PNG\r\n\x1a\n not json", None, "JSON"),
    ]
    with models_serve(
        model_uri, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, log=tmp_path / "serve.log"
    ) as (base, proc):
        status, answer = post(base, good)
        assert status == 200, answer
        assert_same_answer(answer, want)
        problems = []
        for what, body, ctype, words in bad:
            status, answer = post(base, body, ctype or "application/json")
            # MLflow's server puts "Failed to predict data '<summarised input>'." before the
            # model's own message: bounded, the reason comes last.
            message = answer.get("message", "")
            if not (
                400 <= status < 500 and words.lower() in message.lower() and len(message) < 10_000
            ):
                problems.append((what, status, message[-400:]))
            status, answer = post(base, {"inputs": images[:3].tolist()})
            assert status == 200, (f"after {what}", answer)
            assert_same_answer(answer, want.iloc[:3])
        assert not problems, "\n".join(map(str, problems))
        assert proc.poll() is None


def test_served_registered_alias_answers_as_the_pyfunc(logged, tmp_path, monkeypatch):
    uri, _, images = logged
    model_uri = "models:/deepgal-smallnet@best"
    want = in_python(uri, model_uri, images[:5], monkeypatch)
    with models_serve(
        model_uri, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, log=tmp_path / "serve.log"
    ) as (base, _):
        status, answer = post(base, {"inputs": images[:5].tolist()})
    assert status == 200, answer
    assert_same_answer(answer, want)
