"""Two torchrun "nodes" on 127.0.0.1 (c10d rendezvous, one gloo process each) train smallnet.

The head is a real DVC repository where `dvc repro train@smallnet` runs; the other node is a
copy of it (a second machine after `git clone` + `dvc pull`) where the stage's own command
runs, as docs/scaling.md says. Checked:

- the history equals, bit for bit, the 2-process `--standalone` run's on the same data;
- the outputs land on the head (--node-rank 0) although torchrun's c10d rendezvous numbers it
  global rank 1 here (nodes are ranked by address: the head advertises 127.0.0.2), and the
  other node writes nothing;
- killing the other node (its training process and its agent) mid-epoch fails the head within
  a bounded wait with one ``error:`` line, and `dvc repro` on the head (the other node running
  its command again) resumes from the head's checkpoint, which that node's disk never held.
"""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import TRAIN_CMD, ckpt_epoch, exact_history, no_traceback, wait_for
from tests.pipeline_repo import dvc, env_for, make_repo
from tests.ports import free_port

pytestmark = pytest.mark.slow
EPOCHS = 3
DVC_REPRO = [sys.executable, "-m", "dvc", "repro", "train@smallnet"]
# A dead peer closes its sockets, which gloo reports at once; the collective timeout is the
# bound for a peer that vanishes silently. Both far below the waits below.
TIMEOUT_S = "60"


def params(nproc: int) -> dict:
    return {  # 96 train images: 6 steps of 8 per rank and epoch
        "data": {"synthetic": {"image_size": 32, "per_class": 12}},
        "train": {"epochs": EPOCHS, "batch_size": 8, "checkpoint_every": 1, "warmup_epochs": 0},
        "variants": {"smallnet": {"input_size": 16, "crop": 0.5, "nproc": nproc}},
    }


def node_env(repo: Path, port: int, node_rank: int, **extra: str) -> dict[str, str]:
    """The environment of one node: DEEPGAL_TORCHRUN_ARGS as a user sets it on each machine.
    The head hosts the rendezvous store (is_host=1) and advertises 127.0.0.2, which sorts
    after the other node's 127.0.0.1, so c10d makes the head global rank 1."""
    addr = "127.0.0.2" if node_rank == 0 else "127.0.0.1"
    rdzv = (
        f"--nnodes 2 --node-rank {node_rank} --rdzv-backend c10d "
        f"--rdzv-endpoint 127.0.0.1:{port} --rdzv-id deepgal-smallnet "
        f"--local-addr {addr} --rdzv-conf is_host={int(node_rank == 0)}"
    )
    return env_for(
        repo,
        DEEPGAL_TORCHRUN_ARGS=rdzv,
        GLOO_SOCKET_IFNAME="lo",
        DEEPGAL_DIST_TIMEOUT_S=TIMEOUT_S,
        **extra,
    )


def outputs(node: Path) -> list[Path]:
    return [p for d in ("models/smallnet", "results/smallnet") for p in (node / d).rglob("*")]


def test_two_nodes_train_like_two_processes_and_survive_a_lost_node(tmp_path, procs):
    ref = make_repo(tmp_path / "standalone", params(nproc=2))
    head = make_repo(tmp_path / "head", params(nproc=1))
    dvc(["repro", "split"], head)
    node1 = tmp_path / "node1"
    shutil.copytree(head, node1)  # the same commit and data on the second machine
    train1 = TRAIN_CMD.format(v="smallnet")
    # The 2-process reference on one machine runs alongside; it only has to finish.
    reference = procs(DVC_REPRO, ref, env_for(ref), tmp_path / "standalone.log")

    port = free_port()
    fault = "signal=SIGKILL,epoch=2,step=1"  # at the start of epoch 2's second step
    other = procs(
        train1, node1, node_env(node1, port, 1, DEEPGAL_FAULT=fault), tmp_path / "node1.log"
    )
    first = procs(DVC_REPRO, head, node_env(head, port, 0), tmp_path / "head.log")
    wait_for(
        lambda: "sending SIGKILL to itself at epoch 2 step 1" in other.output(),
        300,
        "node 1's training process to reach epoch 2 step 1",
        proc=other,
    )
    other.signal_group(signal.SIGKILL)  # its torchrun agent too: the whole node is gone
    other.wait(timeout=30)
    assert first.wait(timeout=120) != 0, first.tail()
    log = first.output()
    assert no_traceback(log), log[-4000:]
    errors = [ln for ln in log.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, errors
    assert errors[0].startswith("error: lost a training process on another node"), errors
    assert "run the stage again on every node to resume" in errors[0]
    assert "warning: smallnet: lost another training process" in log
    assert ckpt_epoch(head / "models/smallnet/checkpoints/last.pt") == 1
    assert outputs(node1) == []

    port = free_port()
    other = procs(train1, node1, node_env(node1, port, 1), tmp_path / "node1-again.log")
    again = procs(DVC_REPRO, head, node_env(head, port, 0), tmp_path / "head-again.log")
    assert again.wait(timeout=300) == 0, again.tail()
    assert other.wait(timeout=60) == 0, other.tail()
    log = again.output()
    assert "rank 1/2 on cpu (gloo" in log and "rank 1 writes the outputs" in log, log[-3000:]
    assert "resuming from models/smallnet/checkpoints at epoch 2 step 0" in log, log[-3000:]
    assert "epoch 1/3" not in log, "the resumed run trained epoch 1 again"
    assert outputs(node1) == []
    assert "Data and pipelines are up to date" in dvc(["status", "train@smallnet"], head).stdout

    assert reference.wait(timeout=300) == 0, reference.tail()
    want = exact_history(ref / "results/smallnet")
    assert [r["epoch"] for r in want] == [1, 2, 3]
    assert exact_history(head / "results/smallnet") == want
