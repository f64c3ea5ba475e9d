"""The training loop's parts on their own, with hand-written expected values: the checkpoint
keeper's file policy, each rank's share of an epoch, the history row of a multi-rank epoch.

Multi-rank cases run in this one process with ``Dist(rank, world)`` values: the parts below
only read the rank and world size (no collective call), so what each rank would do is
checked without starting a process group.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal.distributed import Dist
from deepgal.training import unfinished
from deepgal.training.keeper import CheckpointKeeper, CheckpointRecord
from deepgal.training.loop import Split, _epoch_metrics, _plan_epoch, _steps_per_epoch
from deepgal.training.rng import rank_state
from tests.helpers import DEVICE, run_cfg


def record(epoch: int, step: int = 0, history=None, **kw) -> CheckpointRecord:
    history = [{"epoch": e} for e in range(1, epoch + 1)] if history is None else history
    return CheckpointRecord(
        model={"w": torch.full((2,), float(epoch))},
        optimizer={},
        scheduler={},
        epoch=epoch,
        step_in_epoch=step,
        history=history,
        fingerprint="fp",
        preprocess={},
        **kw,
    )


def kept(folder) -> list[int]:
    return [e for e, _ in ckpt_io.list_epochs(folder)]


def test_keeper_keeps_every_nth_epoch_and_the_last_and_mirrors_until_the_end(tmp_path):
    folder = tmp_path / "models" / "v"
    stash = unfinished.stash_dir(folder)
    keeper = CheckpointKeeper(folder, "fp", every=2, epochs=5)  # no dist: one process
    assert keeper.resume() is None and folder.is_dir()  # nothing yet: the folder is made
    for epoch, files in [(1, []), (2, [2]), (3, [2]), (4, [2, 4])]:
        keeper.save_epoch(record(epoch))
        assert kept(folder) == files
        assert ckpt_io.load(folder / "last.pt")["epoch"] == epoch
        # epochs left: the folder is mirrored where `dvc exp run` cannot overwrite it
        assert sorted(p.name for p in stash.iterdir()) == sorted(p.name for p in folder.iterdir())
    # A new process resumes from last.pt (the default is to resume).
    again = CheckpointKeeper(folder, "fp", every=2, epochs=5).resume()
    assert again.epoch == 4 and [m["epoch"] for m in again.history] == [1, 2, 3, 4]
    torch.testing.assert_close(again.model["w"], torch.full((2,), 4.0))
    keeper.save_epoch(record(5))
    assert kept(folder) == [2, 4, 5]  # the last epoch is kept though 5 % 2 != 0
    assert not stash.exists()  # finished: the folder is the output, the mirror goes
    # Another config's keeper does not resume and clears this one's checkpoints.
    assert CheckpointKeeper(folder, "other", every=2, epochs=5).resume() is None
    assert list(folder.glob("*.pt")) == []


def test_a_stop_in_the_first_epoch_writes_empty_metrics(tmp_path):
    """Ctrl-C before any epoch ended: the history is empty, so is ``metrics``."""
    keeper = CheckpointKeeper(tmp_path, "fp", every=1, epochs=3)
    keeper.resume(True)
    keeper.save_interrupted(record(0, step=2, history=[], accum={"seen": 16}))
    ckpt = ckpt_io.load(tmp_path / "last.pt")
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["history"]) == (0, 2, [])
    assert ckpt["metrics"] == {} and ckpt["accum"] == {"seen": 16}
    assert (unfinished.stash_dir(tmp_path) / "last.pt").exists()
    assert record(2).to_dict()["metrics"] == {"epoch": 2}


def test_an_epoch_smaller_than_a_batch_is_one_step():
    cfg = run_cfg(batch_size=8, epoch_images=5)
    assert _steps_per_epoch(50, cfg, Dist()) == (5, 1)
    assert _steps_per_epoch(50, run_cfg(batch_size=8), Dist()) == (50, 6)
    # two ranks: 50 images, 25 each, batch 8 per rank: 3 steps on every rank
    assert _steps_per_epoch(50, run_cfg(batch_size=8), Dist(0, 2)) == (50, 3)


def plans(cfg, n: int, world: int, epoch: int, resumed=None):
    """Each rank's plan of ``epoch`` and the global torch seed it left (dropout)."""
    split = Split(torch.zeros((n, 2, 2, 3), dtype=torch.uint8), torch.arange(n))
    out = []
    for rank in range(world):
        dist = Dist(rank, world)
        plan = _plan_epoch(split, cfg, epoch, DEVICE, dist, _steps_per_epoch(n, cfg, dist), resumed)
        out.append((plan, torch.initial_seed()))
    return out


def test_ranks_share_one_permutation_and_draw_their_own_augmentation():
    cfg = run_cfg(batch_size=4, seed=3)
    seeds = set()
    for epoch in (1, 2, 3):
        ranks = plans(cfg, 22, 2, epoch)
        shards = [torch.cat(plan.batches).tolist() for plan, _ in ranks]
        # 22 images, 11 per rank in (22 // 2) // 4 = 2 steps: disjoint, together every image
        assert [len(plan.batches) for plan, _ in ranks] == [2, 2]
        assert sorted(shards[0] + shards[1]) == list(range(22))
        for plan, dropout_seed in ranks:
            seeds |= {("aug", plan.gen.initial_seed()), ("dropout", dropout_seed)}
    # every (epoch, rank) augments and drops out with its own stream: 6 + 6 distinct seeds
    assert len(seeds) == 12
    # one rank of one: the whole split, each image once, in 22 // 4 = 5 steps
    ((plan, _),) = plans(cfg, 22, 1, 1)
    assert len(plan.batches) == 5 and sorted(torch.cat(plan.batches).tolist()) == list(range(22))


def test_a_resumed_epoch_restores_each_ranks_state_and_rank_0_carries_the_sums():
    cfg = run_cfg(batch_size=4, seed=3)
    saved = [torch.Generator().manual_seed(100 + r) for r in range(2)]
    for g in saved:
        torch.rand(3, generator=g)  # a state mid-stream, not a fresh seed
    accum = {"loss": 3.5, "correct": 2, "seen": 8, "seconds": 1.0}
    resumed = dataclasses.replace(
        record(1),
        step_in_epoch=1,
        accum=accum,
        rng={"ranks": [rank_state(g, DEVICE) for g in saved]},
    )
    ranks = plans(cfg, 22, 2, 2, resumed)
    for rank, (plan, _) in enumerate(ranks):
        assert plan.start_step == 1
        assert torch.equal(plan.gen.get_state(), saved[rank].get_state())
    assert ranks[0][0].carried == accum and ranks[0][0].carried is not accum
    assert ranks[1][0].carried is None  # the saved sums are over all ranks: counted once


@pytest.mark.parametrize("world", [1, 2])
def test_the_history_row_of_an_epoch_summed_over_ranks(world):
    sums = {"loss": 6.0, "correct": 3, "seen": 4, "seconds": 8.0}
    ev = {"loss": 0.5, "accuracy": 0.25}
    row = _epoch_metrics(2, sums, ev, 0.1, world)
    # the ranks ran side by side: the epoch took 8 / world seconds for 4 images
    assert row == {
        "epoch": 2,
        "train/loss": 1.5,
        "train/accuracy": 0.75,
        "val/loss": 0.5,
        "val/accuracy": 0.25,
        "lr": 0.1,
        "images_per_s": 4 / (8.0 / world),
        "seconds": 8.0 / world,
    }
    one = _epoch_metrics(1, {"loss": 0.7, "correct": 1, "seen": 1, "seconds": 2.0}, ev, 0.1, 1)
    assert (one["train/loss"], one["train/accuracy"]) == (0.7, 1.0)  # an epoch of one image


def test_one_epoch_without_a_progress_bar_counts_the_steps_it_ran(tmp_path):
    """train_one_epoch as a rank other than 0 runs it (no progress bar): 24 images in 3 steps
    of 8; stopped before step 2, the sums are those of the 16 images of steps 0 and 1."""
    from deepgal.models import build_model
    from deepgal.training.loop import _build_state, train_one_epoch
    from deepgal.utils import seed_everything
    from tests.helpers import data, spec

    seed_everything(7, deterministic=True)
    run = spec(tmp_path)
    images = data(24)
    sizes = _steps_per_epoch(len(images), run.cfg, Dist())
    assert sizes == (24, 3)
    for stop_at, seen in [(None, 24), (2, 16)]:
        state = _build_state(build_model("smallnet", 10, 16), run.cfg, DEVICE, Dist(), 3, None)
        plan = _plan_epoch(images, run.cfg, 1, DEVICE, Dist(), sizes, None)
        sums, stopped = train_one_epoch(
            state, images, plan, run, DEVICE, lambda step, s=stop_at: step == s
        )
        assert stopped == stop_at and sums["seen"] == seen
        assert 0 <= sums["correct"] <= seen and sums["loss"] > 0 and sums["seconds"] > 0
        assert state.sched.last_epoch == (stop_at or 3)  # one schedule step per batch


def test_validation_runs_in_the_configured_precision(tmp_path):
    """bf16 on the CPU is opt-in (``precision: bf16``): validation then scores bf16 logits,
    the model's own outputs under that autocast, not fp32 ones."""
    import torch.nn.functional as F

    from deepgal.inference import run_model
    from deepgal.models import build_model
    from deepgal.training.loop import evaluate
    from tests.helpers import data, spec

    torch.manual_seed(0)
    model = build_model("smallnet", 10, 16)
    val = data(20, seed=1)
    run = spec(tmp_path, precision="bf16")
    got = evaluate(model, val, run, DEVICE)
    losses = {}
    for precision in ("bf16", "fp32"):
        logits = run_model(
            model,
            val.images,
            run.preprocess,
            DEVICE,
            output="logits",
            precision=precision,
            channels_last=run.cfg.channels_last,
        )
        losses[precision] = F.cross_entropy(torch.from_numpy(logits), val.labels).item()
    assert got["loss"] == pytest.approx(losses["bf16"], rel=1e-6)
    assert abs(losses["bf16"] - losses["fp32"]) > 1e-5  # the two precisions differ here


def test_streamed_ranks_plan_their_own_blocks_each_image_once(tmp_path):
    from deepgal.data import galaxy10
    from deepgal.training.stream import StreamedImages, StreamPlan

    n, block = 40, 5
    path = tmp_path / "g.h5"
    galaxy10.write_galaxy10(
        path, np.zeros((n, 2, 2, 3), np.uint8), (np.arange(n) % 10).astype(np.uint8)
    )
    split = Split(StreamedImages(path, np.arange(n), StreamPlan(block, 2)), torch.arange(n))
    cfg = run_cfg(batch_size=4, seed=3)
    orders = []
    for epoch in (1, 2):
        ranks = []
        for rank in range(2):
            dist = Dist(rank, 2)
            plan = _plan_epoch(
                split, cfg, epoch, DEVICE, dist, _steps_per_epoch(n, cfg, dist), None
            )
            ranks.append(torch.cat(plan.batches).tolist())
        assert sorted(ranks[0] + ranks[1]) == list(range(n))  # every image once an epoch
        assert not {p // block for p in ranks[0]} & {p // block for p in ranks[1]}  # own blocks
        orders.append(ranks)
    assert orders[0] != orders[1]  # a new order each epoch
