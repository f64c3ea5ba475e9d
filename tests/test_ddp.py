"""DDP with real torchrun processes: 2 gloo ranks on the CPU run the train stage.

- the run finishes; train.json has the keys of a 1-process run; validation accuracy is over the
  whole val split (recomputed here from the final checkpoint on all of it);
- SIGKILL of one rank mid-epoch (deterministic: DEEPGAL_FAULT) fails the stage with one clear
  error in bounded time, no hang; a re-run resumes from the checkpoint and ends with exactly the
  history of the uninterrupted 2-process run;
- Ctrl-C mid-epoch stops both ranks at the same step and the re-run resumes there, exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal.data import galaxy10
from deepgal.data import split as split_io
from deepgal.inference import load_model, run_model
from tests.faults.conftest import exact_history, no_traceback
from tests.helpers import make_workdir as train_workdir
from tests.pipeline_repo import REPO

pytestmark = pytest.mark.slow
EPOCHS = 3
N_VAL = 30


def make_workdir(root: Path, nproc: int) -> Path:
    root = train_workdir(root, variant={"nproc": nproc}, train={"epochs": EPOCHS})
    assert len(split_io.read_split(root / "data/split", "val")) == N_VAL
    return root


def run_stage(cwd: Path, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    full.update(
        {"DEEPGAL_MLFLOW": "off", "PYTHONPATH": str(REPO), "DEEPGAL_DIST_TIMEOUT_S": "30", **env}
    )
    cmd = [
        sys.executable,
        str(REPO / "stages/train.py"),
        "--variant",
        "smallnet",
        "--data",
        "data/galaxy10.h5",
        "--source",
        "data/source.json",
        "--split",
        "data/split",
        "--out",
        "models/smallnet",
        "--results",
        "results/smallnet",
    ]
    return subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """An uninterrupted 2-process run (the reference for the kill test too)."""
    root = make_workdir(tmp_path_factory.mktemp("ddp") / "two", nproc=2)
    p = run_stage(root)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "rank 0/2 on cpu (gloo" in p.stderr and "cpu x 2" in p.stderr, p.stderr[-3000:]
    assert "Setting OMP_NUM_THREADS" not in p.stderr, p.stderr[-3000:]  # torchrun's banner
    return root


def test_two_processes_finish_like_one_and_score_the_whole_val_split(two_ranks, tmp_path):
    one = make_workdir(tmp_path / "one", nproc=1)
    p = run_stage(one)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "torchrun" not in p.stderr
    two = json.loads((two_ranks / "results/smallnet/train.json").read_text())
    single = json.loads((one / "results/smallnet/train.json").read_text())
    assert set(two) == set(single)
    assert two["config"]["nproc"] == 2 and two["epochs"] == EPOCHS
    assert [r["epoch"] for r in exact_history(two_ranks / "results/smallnet")] == [1, 2, 3]
    # Rank 0 alone wrote the checkpoints; the final one scores all 30 val images to the
    # accuracy train.json reports (rank 0's 15 would give a multiple of 1/15 that need not).
    ckpts = two_ranks / "models/smallnet/checkpoints"
    assert [e for e, _ in ckpt_io.list_epochs(ckpts)] == [1, 2, 3]
    model, pre, _ = load_model(ckpts / "epoch_003.pt", torch.device("cpu"))
    val = split_io.read_split(two_ranks / "data/split", "val")
    images = galaxy10.read_images(two_ranks / "data/galaxy10.h5", val)
    labels = torch.from_numpy(galaxy10.read_labels(two_ranks / "data/galaxy10.h5")[val])
    logits = torch.from_numpy(
        run_model(model, images, pre, torch.device("cpu"), output="logits", precision="fp32")
    )
    whole = (logits.argmax(1) == labels).float().mean().item()
    assert two["val/accuracy"] == pytest.approx(whole)
    loss = torch.nn.functional.cross_entropy(logits, labels.long()).item()
    assert two["val/loss"] == pytest.approx(loss, rel=1e-5)


def test_killed_rank_fails_cleanly_and_a_rerun_resumes(two_ranks, tmp_path):
    root = make_workdir(tmp_path / "killed", nproc=2)
    # No hang: the run must end (TimeoutExpired otherwise) before 240 s, less than the 300 s
    # default collective timeout, so a survivor left waiting on the dead rank fails the test.
    p = run_stage(root, timeout=240, DEEPGAL_FAULT="signal=SIGKILL,epoch=2,step=1,rank=1")
    assert p.returncode != 0
    assert "sending SIGKILL to itself at epoch 2 step 1/3 (rank 1)" in p.stderr
    assert no_traceback(p.stderr), p.stderr[-4000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert errors[-1].startswith(
        "error: training process rank 1 failed first (killed by SIGKILL)"
    ), errors
    assert "run the stage again to resume" in errors[-1]
    ckpts = root / "models/smallnet/checkpoints"
    assert ckpt_io.load(ckpts / "last.pt")["epoch"] == 1  # epoch 2 was under way
    assert not (root / "results/smallnet/train.json").exists()
    epoch1 = (ckpts / "epoch_001.pt").stat().st_mtime_ns, (ckpts / "epoch_001.pt").read_bytes()

    p = run_stage(root)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "at epoch 2 step 0" in p.stderr  # where the log says it resumed
    # Epoch 1 was not trained again: its checkpoint was not rewritten.
    assert epoch1 == (
        (ckpts / "epoch_001.pt").stat().st_mtime_ns,
        (ckpts / "epoch_001.pt").read_bytes(),
    )
    assert exact_history(root / "results/smallnet") == exact_history(two_ranks / "results/smallnet")


def test_ctrl_c_mid_epoch_under_ddp_resumes_exactly(two_ranks, tmp_path):
    """Both ranks stop at the same step (the stop flag is agreed by all-reduce), rank 0 saves
    every rank's random state, and the re-run continues mid-epoch to the same history."""
    root = make_workdir(tmp_path / "ctrl_c", nproc=2)
    p = run_stage(root, DEEPGAL_FAULT="signal=SIGINT,epoch=2,step=1")
    assert p.returncode != 0
    assert no_traceback(p.stderr), p.stderr[-4000:]
    assert "error: smallnet: interrupted at epoch 2 step 1/3" in p.stderr, p.stderr[-3000:]
    state = ckpt_io.load(root / "models/smallnet/checkpoints/last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 1)
    assert len(state["rng"]["ranks"]) == 2
    p = run_stage(root)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "at epoch 2 step 1" in p.stderr  # where the log says it resumed
    got = exact_history(root / "results/smallnet")
    want = exact_history(two_ranks / "results/smallnet")
    for g, w in zip(got, want, strict=True):
        for key in ("epoch", "val/loss", "val/accuracy", "lr", "train/accuracy"):
            assert g[key] == w[key], (key, g, w)
        assert g["train/loss"] == pytest.approx(w["train/loss"], rel=1e-6)


def test_streamed_ranks_resume_exactly_after_a_kill(tmp_path):
    """train.stream on, 2 ranks: each reads its own blocks (tests/test_stream.py checks the
    order); a killed rank's run, re-run, ends with the uninterrupted streamed run's history."""
    settings = {"train": {"epochs": EPOCHS, "stream": "always"}, "variant": {"nproc": 2}}
    ref = train_workdir(tmp_path / "ref", **settings)
    p = run_stage(ref)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "streamed in blocks of" in p.stderr and "cpu x 2" in p.stderr, p.stderr[-3000:]
    killed = train_workdir(tmp_path / "killed", **settings)
    p = run_stage(killed, timeout=240, DEEPGAL_FAULT="signal=SIGKILL,epoch=2,step=1,rank=1")
    assert p.returncode != 0 and no_traceback(p.stderr), p.stderr[-4000:]
    p = run_stage(killed)
    assert p.returncode == 0, p.stderr[-4000:]
    ran = exact_history(killed / "results/smallnet")
    assert [r["epoch"] for r in ran] == [1, 2, 3]
    assert ran == exact_history(ref / "results/smallnet")
