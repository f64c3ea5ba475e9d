"""The evaluate stage as a real process (contract 4): headline metrics.json beside eval.json and
predictions.csv, TTA from params, the embeddings of every split from the same pass, every local
output written although the tracker is away (a refused 127.0.0.1 port: one warning, exit 0)."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from deepgal import checkpoint as ckpt_io
from deepgal.data.galaxy10 import write_galaxy10
from deepgal.data.split import sample_rows, stratified_split, write_split
from deepgal.handoff import Features
from deepgal.inference import run_model
from deepgal.metrics import score
from deepgal.models import build_model
from deepgal.transforms import Preprocess
from tests.pipeline_repo import REPO, tiny_params
from tests.ports import refused_port


@pytest.mark.slow  # a stage process with torch, matplotlib and MLflow's client: ~30-50 s here
@pytest.mark.parametrize("tta", [True, False])
def test_outputs_first_and_an_unreachable_tracker_is_a_warning(tmp_path, tta):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 6)
    write_galaxy10(tmp_path / "g.h5", images, labels)
    splits = stratified_split(labels, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)
    write_split(tmp_path / "split", splits, labels, [0.5] * 3, [0.25] * 3, {"source": "t"})
    pre = Preprocess(16, crop=0.5)
    torch.manual_seed(0)
    model = build_model("smallnet", 10, 16).eval()
    ckpt_io.save(
        tmp_path / "m.pt",
        {
            "model": model.state_dict(),
            "model_name": "smallnet",
            "preprocess": pre.to_dict(),
            "epoch": 2,
        },
    )
    (tmp_path / "selection.json").write_text(json.dumps({"checkpoint": "m.pt", "epoch": 2}))
    (tmp_path / "history.csv").write_text("epoch,seconds\n1,30.0\n2,60.0\n")
    (tmp_path / "run.json").write_text(json.dumps({"run_id": "0123456789abcdef"}))
    # map_train: 20 of the train images are embedded for the maps (one case), all (other);
    # outlier_ref: the outlier score compares with 15 of them (one case), all (other).
    sampled = {"map_train": 20, "outlier_ref": 15} if tta else {"map_train": None}
    params = tiny_params(
        {"evaluate": {"batch_size": 7, "tta": tta, "outlier_k": 4, "outlier_ref": None} | sampled}
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "results"
    # The tracker's port stays bound, not listening, while the stage runs: refused at once.
    with refused_port() as port:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DEEPGAL_MLFLOW": "on",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
        }
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "stages/evaluate.py"),
                "--variant",
                "smallnet",
                "--selection",
                "selection.json",
                "--history",
                "history.csv",
                "--run",
                "run.json",
                "--checkpoint",
                "m.pt",
                "--calibration",
                f"{out}/calibration.json",
                "--data",
                "g.h5",
                "--split",
                "split",
                "--metrics",
                f"{out}/metrics.json",
                "--out",
                f"{out}/eval.json",
                "--predictions",
                f"{out}/predictions.csv",
                "--plots",
                f"{out}/confusion",
                "--features",
                f"{out}/features.h5",
                "--gradcam",
                f"{out}/gradcam.npz",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "unreachable" in proc.stderr, proc.stderr[-3000:]

    headline = json.loads((out / "metrics.json").read_text())
    assert set(headline) == {"val", "test", "epoch", "train_min"}
    assert headline["epoch"] == 2 and headline["train_min"] == 1.5
    details = json.loads((out / "eval.json").read_text())
    assert details["tta"] is tta
    for split in ("val", "test"):
        assert set(headline[split]) == {"accuracy", "macro_f1"}
        idx = splits[split]
        want = score(labels[idx], run_model(model, images[idx], pre, torch.device("cpu"), tta=tta))
        assert headline[split]["accuracy"] == want["accuracy"] == details[split]["accuracy"]
        assert details[split]["confusion"] == want["confusion"]
        assert (out / "confusion" / f"{split}.png").stat().st_size > 1000
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == len(splits["val"]) + len(splits["test"])
    assert sorted(preds["index"]) == sorted(np.r_[splits["val"], splits["test"]].tolist())

    # The embeddings: every split, in split order, one view whatever ``tta`` says; of train,
    # the seeded sample of map_train images.
    feats = Features.read(out / "features.h5").arrays()
    assert [str(v) for v in dict.fromkeys(feats["split"])] == ["train", "val", "test"]
    train_rows = sample_rows(splits["train"], 20 if tta else None, params["base"]["seed"])
    assert len(train_rows) == (20 if tta else len(splits["train"])) and len(splits["train"]) > 20
    for split, idx in {**splits, "train": train_rows}.items():
        rows = feats["split"] == split
        assert np.array_equal(feats["index"][rows], idx)
        assert np.array_equal(feats["label"][rows], labels[idx])
        want = run_model(model, images[idx], pre, torch.device("cpu"), output="features")
        np.testing.assert_allclose(feats["features"][rows], want, rtol=1e-5, atol=1e-6)

    # The outlier score, by brute force: a val/test image's mean cosine distance to its 4
    # nearest reference images (every train image, or the seeded sample of 15).
    ref_rows = sample_rows(splits["train"], 15 if tta else None, params["base"]["seed"])
    assert len(ref_rows) == (15 if tta else len(splits["train"]))
    ref = unit(run_model(model, images[ref_rows], pre, torch.device("cpu"), output="features"))
    for split in ("val", "test"):
        idx = splits[split]
        query = unit(run_model(model, images[idx], pre, torch.device("cpu"), output="features"))
        want = np.sort(1 - query @ ref.T, axis=1)[:, :4].mean(1)
        got = preds[preds["split"] == split].set_index("index").loc[idx, "outlier"]
        np.testing.assert_allclose(got.to_numpy(), want, atol=1e-4)


def unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (cosine similarity = dot product)."""
    return v / np.linalg.norm(v, axis=1, keepdims=True)
