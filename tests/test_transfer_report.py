"""benchmarks/transfer_report.py on a repository laid out as `dvc repro` leaves it: real
checkpoints, the selection/metrics/eval files the stages write, a real HDF5 judge file."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from deepgal import checkpoint as ckpt_io
from deepgal.data import galaxy10
from deepgal.data.synthetic import render
from deepgal.models import build_model
from deepgal.score_on_set import judge_rows, score_checkpoint
from deepgal.transforms import Preprocess

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "transfer_report.py"


def _variant(repo: Path, name: str, val_acc: float, seed: int) -> None:
    torch.manual_seed(seed)
    ckpt = repo / "models" / name / "checkpoints" / "epoch_002.pt"
    ckpt.parent.mkdir(parents=True)
    pre = Preprocess(32, crop=1.0)
    ckpt_io.save(
        ckpt,
        {
            "model": build_model("smallnet", 10, 32).state_dict(),
            "model_name": "smallnet",
            "preprocess": pre.to_dict(),
            "epoch": 2,
            "variant": name,
        },
    )
    (repo / "results" / name).mkdir(parents=True)
    (repo / "reports" / name).mkdir(parents=True)
    (repo / "results" / name / "selection.json").write_text(
        json.dumps({"checkpoint": str(ckpt.relative_to(repo)), "epoch": 2})
    )
    (repo / "results" / name / "metrics.json").write_text(
        json.dumps(
            {"val": {"accuracy": val_acc, "macro_f1": val_acc}, "epoch": 2, "train_min": 0.1}
        )
    )
    per_row = int(round(10 * val_acc))  # 100 val images, 10 per class, this many right in each
    cm = np.diag(np.full(10, per_row)) + np.roll(np.diag(np.full(10, 10 - per_row)), 1, axis=1)
    (repo / "reports" / name / "eval.json").write_text(
        json.dumps({"val": {"confusion": cm.tolist()}})
    )


def test_scores_every_selected_checkpoint_and_marks_the_best(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text(yaml.safe_dump({"variants": {"a": {}, "b": {}}}))
    _variant(repo, "a", 0.30, seed=0)
    _variant(repo, "b", 0.60, seed=1)
    images, labels = render(4, 64, seed=8)
    galaxy10.write_galaxy10(tmp_path / "real.h5", images, labels)
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--repo",
            str(repo),
            "--real",
            str(tmp_path / "real.h5"),
            "--per-class",
            "3",
            "--json",
            str(tmp_path / "t.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "t.json").read_text())
    assert out["best"] == "b" and "**b** (pipeline's best)" in proc.stdout
    assert out["scores"]["a"]["n"] == 30 and out["sample"]["per_class"] == [3] * 10
    # The same numbers as scoring the checkpoint directly on the same rows.
    r, _ = judge_rows(tmp_path / "real.h5", 3, 0)
    direct = score_checkpoint(
        repo / "models/a/checkpoints/epoch_002.pt", tmp_path / "real.h5", r, torch.device("cpu")
    )
    assert out["scores"]["a"]["accuracy"] == direct["accuracy"]
    assert f"{100 * direct['accuracy']:.1f} ± {100 * direct['accuracy_se']:.1f}" in proc.stdout


def test_a_missing_stage_output_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"variants": {"a": {}}}))
    images, labels = render(1, 32, seed=8)
    galaxy10.write_galaxy10(tmp_path / "real.h5", images, labels)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--repo", str(tmp_path), "--real", str(tmp_path / "real.h5")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "selection.json: missing; run `dvc repro` first" in proc.stderr
