"""Calibrated probabilities end to end, on real files: a checkpoint calibrated by the select
stage's code on a real Galaxy10-layout file, then ``deepgal predict``/``evaluate`` with and
without ``--uncalibrated``, ``--min-purity``, and the MLflow pyfunc model saved and loaded by
MLflow itself."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import softmax

from deepgal import checkpoint as ckpt_io
from deepgal.calibration import purity_thresholds
from deepgal.cli import main
from deepgal.data.galaxy10 import CLASS_NAMES, write_galaxy10
from deepgal.inference import load_model, run_model
from deepgal.inference.calibrate import write_calibrated
from deepgal.models import build_model
from deepgal.transforms import Preprocess

CPU = torch.device("cpu")
PROBS = [f"p_{c}" for c in CLASS_NAMES]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    d = tmp_path_factory.mktemp("cal")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 8)
    images = rng.integers(0, 255, (80, 32, 32, 3)).astype(np.uint8)
    images[..., 0] = (labels * 25)[:, None, None]  # a learnable-looking signal per class
    write_galaxy10(d / "g.h5", images, labels)
    torch.manual_seed(0)
    pre = Preprocess(16, crop=0.5)
    model = build_model("smallnet", 10, 16).eval()
    ckpt_io.save(
        d / "raw.pt",
        {
            "model": model.state_dict(),
            "model_name": "smallnet",
            "preprocess": pre.to_dict(),
            "epoch": 2,
        },
    )
    cal = write_calibrated(d / "raw.pt", d / "selected.pt", d / "g.h5", np.arange(0, 80, 2), CPU)
    return d, cal, images, labels


def predict(ckpt, data, out, *extra):
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(ckpt),
                "--data",
                str(data),
                "--out",
                str(out),
                "--device",
                "cpu",
                *extra,
            ]
        )
        == 0
    )
    return pd.read_csv(out)


def test_predict_is_calibrated_unless_asked_not_to(calibrated, tmp_path):
    d, cal, images, _ = calibrated
    assert cal.temperature != pytest.approx(1.0, abs=1e-3)
    on = predict(d / "selected.pt", d / "g.h5", tmp_path / "on.csv")
    off = predict(d / "selected.pt", d / "g.h5", tmp_path / "off.csv", "--uncalibrated")
    model, pre, _ = load_model(d / "raw.pt", CPU)
    logits = run_model(model, images, pre, CPU, output="logits")
    np.testing.assert_allclose(off[PROBS], softmax(logits, axis=1), atol=2e-5)
    np.testing.assert_allclose(on[PROBS], softmax(logits / cal.temperature, axis=1), atol=2e-5)
    assert np.abs(on[PROBS].to_numpy() - off[PROBS].to_numpy()).max() > 1e-3
    assert on["predicted"].tolist() == off["predicted"].tolist()


def test_evaluate_reports_calibrated_and_uncalibrated_nll(calibrated, capsys):
    d, cal, images, labels = calibrated
    outs = {}
    for flag in ([], ["--uncalibrated"]):
        assert (
            main(
                [
                    "evaluate",
                    "--checkpoint",
                    str(d / "selected.pt"),
                    "--data",
                    str(d / "g.h5"),
                    "--device",
                    "cpu",
                    "--json",
                    *flag,
                ]
            )
            == 0
        )
        outs[bool(flag)] = json.loads(capsys.readouterr().out)
    model, pre, _ = load_model(d / "raw.pt", CPU)
    z = run_model(model, images, pre, CPU, output="logits").astype(np.float64)
    for raw, t in ((True, 1.0), (False, cal.temperature)):
        p = softmax(z / t, axis=1)
        assert outs[raw]["nll"] == pytest.approx(-np.log(p[np.arange(80), labels]).mean(), rel=1e-4)
        assert outs[raw]["calibrated"] is not raw
    assert outs[True]["accuracy"] == outs[False]["accuracy"]
    assert outs[True]["confusion"] == outs[False]["confusion"]


def test_min_purity_keeps_rows_above_their_class_threshold(calibrated, tmp_path, capsys):
    d, cal, _, _ = calibrated
    df = predict(d / "selected.pt", d / "g.h5", tmp_path / "p.csv", "--min-purity", "0.3")
    text = capsys.readouterr().out
    probs = df[PROBS].to_numpy()
    oracle = purity_thresholds(cal.val_probs, cal.val_labels, 0.3)
    for t in oracle:
        rows = df[df["predicted"] == t.class_id]
        conf = probs[rows.index, t.class_id]
        if t.threshold is None:
            assert not rows["kept"].any()
            assert f"{CLASS_NAMES[t.class_id]}: NO threshold reaches 30% purity" in text
        else:
            clear = np.abs(conf - t.threshold) > 1e-5  # the CSV rounds to 6 decimals
            assert rows["kept"][clear].tolist() == (conf >= t.threshold)[clear].tolist()
            assert rows["kept"].sum() >= t.kept  # the val rows it was set on are in the file
            assert f"p >= {t.threshold:.4f}" in text


def test_min_purity_needs_a_calibrated_checkpoint(calibrated, tmp_path, capsys):
    d, _, _, _ = calibrated
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(d / "raw.pt"),
                "--data",
                str(d / "g.h5"),
                "--out",
                str(tmp_path / "p.csv"),
                "--device",
                "cpu",
                "--min-purity",
                "0.9",
            ]
        )
        == 1
    )
    assert "carries no calibration" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_pyfunc_model_returns_what_the_cli_writes(calibrated, tmp_path):
    import mlflow.pyfunc

    import deepgal
    from deepgal import mlflow_model

    d, _, images, _ = calibrated
    path = tmp_path / "model"
    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(Path(mlflow_model.__file__).with_name("mlflow_model_code.py")),
        artifacts={"checkpoint": str(d / "selected.pt")},
        code_paths=[str(Path(deepgal.__file__).parent)],
        signature=mlflow_model.signature(),
    )
    got = mlflow.pyfunc.load_model(str(path)).predict(images)
    cli = predict(d / "selected.pt", d / "g.h5", tmp_path / "p.csv")
    assert got["class"].tolist() == cli["predicted"].tolist()
    np.testing.assert_allclose(got["probability"], cli[PROBS].max(axis=1), atol=2e-6)
