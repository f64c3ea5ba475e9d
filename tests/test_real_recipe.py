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


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("real_recipe", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ensemble_scores_the_averaged_probabilities(tmp_path):
    """Two members each right on a different half of the rows, confidently wrong elsewhere
    only by a small margin: the average is right everywhere, each member alone is right on
    half. Rows are scored by their saved ``held`` indices, not their order in the file."""
    labels = np.arange(20) % 10
    held = np.array([3, 17, 8, 0, 12, 5, 19, 10])
    truth = labels[held]
    a, b = tmp_path / "a", tmp_path / "b"
    for d, right in ((a, np.arange(8) < 4), (b, np.arange(8) >= 4)):
        d.mkdir()
        p = np.full((8, 10), 0.0)
        wrong = (truth + 1) % 10
        p[np.arange(8), truth] = np.where(right, 0.9, 0.4)
        p[np.arange(8), wrong] = np.where(right, 0.1, 0.6)
        np.savez(d / "fold0.npz", held=held, wall_s=60.0, plain=p, tta=p)
    mod = _load_script()
    one = mod.ensemble(labels, [a], folds=5)
    both = mod.ensemble(labels, [a, b], folds=5)
    assert one["plain"]["acc"] == 0.5 and one["folds_run"] == 1 and one["n"] == 8
    assert both["plain"]["acc"] == 1.0 and both["tta"]["acc"] == 1.0
    assert np.trace(np.array(both["plain"]["confusion"])) == 8


def test_ensemble_refuses_runs_on_other_folds(tmp_path):
    labels = np.arange(20) % 10
    for d, held in ((tmp_path / "a", [0, 1, 2]), (tmp_path / "b", [0, 1, 3])):
        d.mkdir()
        p = np.eye(10)[labels[held]]
        np.savez(d / "fold0.npz", held=np.array(held), wall_s=1.0, plain=p, tta=p)
    import pytest

    with pytest.raises(SystemExit, match="other held-out rows"):
        _load_script().ensemble(labels, [tmp_path / "a", tmp_path / "b"], folds=5)
