"""benchmarks/real_recipe.py --merge: results of disjoint folds, trained in separate processes,
combined into one row whose figures match scikit-learn on the pooled predictions."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_recipe.py"


def _part(path: Path, truth: np.ndarray, pred: np.ndarray, wall: float) -> None:
    cm = confusion_matrix(truth, pred, labels=range(10))
    part = {
        "n": len(truth),
        "folds": 5,
        "folds_run": 1,
        "wall_min_per_fold": wall,
        "cpu_min_per_fold": wall / 2,
        "loadavg": [1.0, 2.0, 3.0],
        "plain": {"fold_acc": [accuracy_score(truth, pred)], "confusion": cm.tolist()},
    }
    path.write_text(json.dumps(part))


def test_merge_pools_confusions_of_disjoint_folds(tmp_path):
    rng = np.random.default_rng(0)
    truth = [rng.integers(0, 10, 140), rng.integers(0, 10, 140)]
    # Fold 0 mostly right, fold 1 mostly wrong: the pooled figures differ from either fold's.
    pred = [
        np.where(rng.random(140) < 0.8, truth[0], rng.integers(0, 10, 140)),
        np.where(rng.random(140) < 0.3, truth[1], rng.integers(0, 10, 140)),
    ]
    for k in range(2):
        _part(tmp_path / f"f{k}.json", truth[k], pred[k], wall=4.0 + 2 * k)
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--merge",
            str(tmp_path / "f0.json"),
            str(tmp_path / "f1.json"),
            "--label",
            "x",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    row = [c.strip() for c in out.strip().splitlines()[-1].split("|")[1:-1]]
    t, p = np.concatenate(truth), np.concatenate(pred)
    accs = [accuracy_score(a, b) for a, b in zip(truth, pred, strict=True)]
    pooled = accuracy_score(t, p)
    assert row[0] == "x" and row[1] == "2/5"
    assert row[2] == f"{100 * np.mean(accs):.1f} ± {100 * np.sqrt(pooled * (1 - pooled) / 280):.1f}"
    assert row[3] == f"{100 * np.std(accs):.1f}"
    assert row[4] == f"{f1_score(t, p, average='macro'):.3f}"
    assert row[5] == "5.0" and row[6] == "2.5"
    assert "+TTA" not in out  # no tta scores in the parts: no tta row
