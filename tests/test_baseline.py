"""The committed baseline: the embedded default's dvc.lock and headline metrics.

`dvc exp show`, `dvc metrics diff` and `dvc params diff` compare against the last commit, so
the repository carries the default run's numbers (as DVC's example projects do). These tests
check that they are readable and that a fresh run reproduces them exactly.
"""
from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from .exp_show import exp_show_in_terminal
from .pipeline_repo import REPO, dvc, env_for, make_repo, run

HEADLINE = REPO / "metrics.json"


def _baseline() -> dict:
    assert HEADLINE.exists(), f"{HEADLINE} is not committed: run `dvc repro` and commit it"
    return json.loads(HEADLINE.read_text())


def test_baseline_covers_every_default_variant():
    variants = yaml.safe_load((REPO / "params.yaml").read_text())["variants"]
    head = _baseline()
    assert set(head) == set(variants)
    for v, m in head.items():
        assert {"test_acc", "test_f1", "val_acc", "val_f1", "epoch", "train_min"} <= set(m), v
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]
    assert {f"train@{v}" for v in variants} <= set(lock)


def test_compact_exp_show_fits_a_200_column_terminal(tmp_path):
    """The README's `dvc exp show` view of the committed baseline: no cell cut to '…'."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml", "dvc.lock", "metrics.json"):
        shutil.copy(REPO / name, repo / name)
    env = env_for(repo)
    run(["git", "init", "-q", "-b", "main"], repo, env)
    dvc(["init", "-q"], repo)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "baseline"], repo, env)
    lines = exp_show_in_terminal(repo, env, columns=200)
    assert max(map(len, lines)) <= 200, "\n".join(lines)
    assert not any("…" in line for line in lines), "\n".join(lines)
    header = next(line for line in lines if "Experiment" in line)
    for v in _baseline():
        assert f"{v}.test_acc" in header, header
    main_row = next(line for line in lines if re.match(r"\s*main\b", line))
    numbers = re.findall(r"\b0\.\d+|\b1\.0+\b", main_row)
    assert len(numbers) == len(_baseline()), main_row  # one test accuracy per variant


@pytest.mark.slow
def test_fresh_repro_reproduces_the_committed_headline_exactly(tmp_path):
    """Deterministic CPU run: the default `dvc repro` from nothing gives the committed numbers."""
    repo = make_repo(tmp_path / "repo", tiny=False)
    dvc(["repro"], repo)
    got = json.loads((repo / "metrics.json").read_text())
    # Everything but the wall-clock training time, which no machine repeats.
    strip = lambda h: {v: {k: x for k, x in m.items() if k != "train_min"} for v, m in h.items()}
    assert strip(got) == strip(_baseline()), json.dumps({"got": got, "committed": _baseline()},
                                                        indent=1)
