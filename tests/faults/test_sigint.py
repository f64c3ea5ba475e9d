"""Ctrl-C (SIGINT to the process group) in the middle of training, then `dvc repro`.

The stage must write a resumable checkpoint, close its MLflow run as KILLED, exit non-zero with
one `error: ...` line and no traceback; the next run resumes mid-epoch and ends with the same
model as a run that was never stopped.

The Ctrl-C is deterministic, not a timer: ``DEEPGAL_FAULT`` makes the training process send
SIGINT to its process group (as a terminal does) at the start of epoch 2's step 3.
"""

from __future__ import annotations

import re
import shlex
import sys

import pytest

from deepgal import checkpoint as ckpt_io
from deepgal.training import unfinished
from tests.pipeline_repo import dvc, env_for, make_repo, run

from .conftest import (
    TRAIN_CMD,
    exact_history,
    no_traceback,
    one_variant_params,
    sqlite_runs,
    sqlite_steps,
)

pytestmark = pytest.mark.slow

EPOCHS = 5
PARAMS = one_variant_params(EPOCHS)


def test_ctrl_c_checkpoints_closes_run_and_resumes(tmp_path, procs):
    ref = make_repo(tmp_path / "reference", PARAMS)
    repo = make_repo(tmp_path / "repo", PARAMS)
    reference = procs(
        [sys.executable, "-m", "dvc", "repro", "train@smallnet"],
        ref,
        env_for(ref),
        tmp_path / "reference.log",
    )
    dvc(["repro", "split"], repo)

    fault = "signal=SIGINT,epoch=2,step=3,target=group"  # what a terminal's Ctrl-C does
    stage = procs(
        shlex.split(TRAIN_CMD.format(v="smallnet").replace("python", sys.executable)),
        repo,
        env_for(repo, DEEPGAL_FAULT=fault),
        tmp_path / "stage.log",
    )
    last = repo / "models/smallnet/checkpoints/last.pt"
    code = stage.wait(timeout=600)
    out = stage.output()

    assert code != 0, out[-3000:]
    assert no_traceback(out), out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out[-3000:]
    assert "interrupted at epoch" in errors[0] and str(last.relative_to(repo)) in errors[0]
    assert "resume" in errors[0]
    stopped = re.search(r"interrupted at epoch 2 step 3/(\d+);", errors[0])
    assert stopped and 3 < int(stopped[1]), errors[0]  # mid-epoch, not at its end
    state = ckpt_io.load(last)  # written on Ctrl-C: epoch 1 done, 3 steps of epoch 2
    assert (state["epoch"], state["step_in_epoch"]) == (1, 3)
    assert state["accum"]["seen"] == 3 * 8  # the three steps' images, batch 8
    stopped_epoch, stopped_step = 2, 3

    db = repo / "mlflow.db"
    runs = [r for r in sqlite_runs(db) if r["name"] == "smallnet"]
    assert [r["status"] for r in runs] == ["KILLED"], runs
    assert not (repo / "results/smallnet/train.json").exists()

    again = dvc(["repro", "train@smallnet"], repo)
    log = again.stdout + again.stderr
    assert f"at epoch {stopped_epoch} step {stopped_step}" in log, log[-3000:]
    assert "epoch 1/" not in log, "the resumed run trained epoch 1 again"

    hist = exact_history(repo / "results/smallnet")
    assert [r["epoch"] for r in hist] == list(range(1, EPOCHS + 1))
    runs = [r for r in sqlite_runs(db) if r["name"] == "smallnet"]
    assert [r["status"] for r in runs] == ["FINISHED"], runs  # the same run, reopened
    assert sqlite_steps(db, runs[0]["run_id"]) == list(range(1, EPOCHS + 1))

    # Same weights as a run never stopped: validation numbers are exact. The train loss of the
    # interrupted epoch was summed in two parts, so it may differ in the last bits.
    assert reference.wait(timeout=900) == 0, reference.tail()
    want = exact_history(ref / "results/smallnet")
    for got_row, want_row in zip(hist, want, strict=True):
        for key in ("val/loss", "val/accuracy", "lr", "train/accuracy"):
            assert got_row[key] == want_row[key], (got_row, want_row)
        assert got_row["train/loss"] == pytest.approx(want_row["train/loss"], rel=1e-6)


def test_ctrl_c_under_dvc_exp_run_resumes(tmp_path, procs):
    """The same Ctrl-C during `dvc exp run`, then the same `dvc exp run` again. DVC checks out
    every output as dvc.lock records it before an experiment runs, which put the committed
    run's checkpoints back over the interrupted one's, so the re-run started over (a new
    user's walkthrough found it). The unfinished run's checkpoints wait beside the output
    (deepgal.training.unfinished) and come back: the re-run resumes where Ctrl-C stopped it."""
    repo = make_repo(tmp_path / "repo", PARAMS)
    dvc(["repro", "train@smallnet"], repo)
    run(["git", "add", "-A"], repo, env_for(repo))
    run(["git", "commit", "-qm", "baseline"], repo, env_for(repo))
    exp = ["exp", "run", "train@smallnet", "-S", "train.lr=0.03"]  # a new config

    fault = "signal=SIGINT,epoch=2,step=3,target=group"
    first = procs(
        [sys.executable, "-m", "dvc", *exp],
        repo,
        env_for(repo, DEEPGAL_FAULT=fault),
        tmp_path / "first.log",
    )
    assert first.wait(timeout=600) != 0, first.tail()
    assert "interrupted at epoch 2 step 3/" in first.output(), first.tail()

    again = dvc(exp, repo)
    log = again.stdout + again.stderr
    assert "at epoch 2 step 3" in log, log[-3000:]
    assert "starting over" not in log and "epoch 1/" not in log, log[-3000:]
    hist = exact_history(repo / "results/smallnet")
    assert [r["epoch"] for r in hist] == list(range(1, EPOCHS + 1))
    assert ckpt_io.load(repo / "models/smallnet/checkpoints/last.pt")["config"]["run"]["lr"] == 0.03
    # Finished: the waiting copy is gone, and git never saw it.
    assert not unfinished.stash_dir(repo / "models/smallnet/checkpoints").exists()
    status = run(["git", "status", "--porcelain", "--ignored"], repo, env_for(repo)).stdout
    assert "unfinished" not in status, status
