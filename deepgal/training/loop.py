"""The loop: ``fit`` runs epochs of :func:`deepgal.training.epoch.train_one_epoch` and
``evaluate``, as torchvision's classification reference shapes it, with no framework in
between. ``fit`` is named parts: build the :class:`TrainState` (:func:`_build_state`), find where
to start (:func:`_resume_point`), plan each epoch (:func:`_plan_epoch`), turn its sums into a
history row (:func:`_epoch_metrics`) and publish it (:func:`_publish_epoch`); checkpoints are
:class:`deepgal.training.keeper.CheckpointKeeper`'s job.

Data path: each split is one uint8 tensor (N, H, W, 3) in host memory; on CUDA the train split
moves to GPU memory once when it takes at most :data:`GPU_SHARE` of the free memory
(:func:`place_split`), else each batch is gathered on the host, pinned and copied. Every batch
becomes normalised, augmented floats on the device (:func:`deepgal.transforms.prepare_batch`),
then optionally mixup/CutMix (:func:`deepgal.training.mix.mix_batch`). No DataLoader workers, no
per-image Python, no float copy of the whole set. Validation is the project's one batched
inference, :func:`deepgal.inference.run_model`.

Determinism and resume: epoch ``e`` shuffles and augments with generators seeded from
``(seed, e, rank)``; a checkpoint stores their state mid-epoch, so a run resumed after SIGKILL
(at an epoch boundary) or Ctrl-C (mid-epoch) ends with the weights of one never stopped.

Distributed (``dist.world > 1``, see :mod:`deepgal.distributed`): every rank takes its shard of
one permutation, DDP averages gradients, metrics are summed over ranks (validation accuracy is
over the whole val split), and rank 0 alone writes checkpoints and feeds the sinks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from ..config import RunCfg
from ..distributed import Dist, shard, wrap
from ..progress import Progress
from . import recipe
from .epoch import (
    EpochPlan,
    RunSpec,
    Split,
    TrainingDiverged,
    TrainState,
    evaluate,
    train_one_epoch,
)
from .faults import Fault
from .keeper import CheckpointKeeper, CheckpointRecord
from .rng import epoch_generators, rank_state, restore_rank_state
from .signals import StopFlag
from .stream import StreamedImages, epoch_order

__all__ = [
    "GPU_SHARE",
    "RunSpec",
    "Sink",
    "Split",
    "TrainingDiverged",
    "TrainingInterrupted",
    "TrainState",
    "EpochPlan",
    "evaluate",
    "fit",
    "fits_on_device",
    "place_split",
    "train_one_epoch",
]

log = logging.getLogger(__name__)
GPU_SHARE = 0.4  # of free GPU memory a train split may take; the rest is for the model


class TrainingInterrupted(RuntimeError):
    """Ctrl-C / SIGTERM: a resumable checkpoint was written before stopping."""


class Sink(Protocol):
    def log_epoch(self, metrics: dict[str, float]) -> None: ...


def fits_on_device(nbytes: int, free_bytes: int, share: float = GPU_SHARE) -> bool:
    return nbytes <= share * free_bytes


def place_split(split: Split, device: torch.device) -> Split:
    """The split on ``device`` when it is CUDA and the images fit (see module doc), else as is."""
    if device.type != "cuda":
        return split
    nbytes = split.images.numel() * split.images.element_size()
    free, _ = torch.cuda.mem_get_info(device)
    if not fits_on_device(nbytes, free):
        log.info(
            "train split (%.2f GB) stays in host memory: %.2f GB free on %s",
            nbytes / 1e9,
            free / 1e9,
            device,
        )
        return split
    log.info("train split (%.2f GB uint8) lives in GPU memory", nbytes / 1e9)
    return Split(split.images.to(device), split.labels.to(device))


_SUMS = ("loss", "correct", "seen", "seconds")


def _steps_per_epoch(n_train: int, cfg: RunCfg, dist: Dist) -> tuple[int, int]:
    """(images an epoch draws, steps per epoch on each rank). ``epoch_images``: each epoch
    trains on the first n of its seeded permutation (a fresh subset)."""
    n_epoch = min(n_train, cfg.epoch_images or n_train)
    return n_epoch, max((n_epoch // dist.world) // cfg.batch_size, 1)


def _build_state(
    model: nn.Module,
    cfg: RunCfg,
    device: torch.device,
    dist: Dist,
    steps: int,
    record: CheckpointRecord | None,
) -> TrainState:
    """Model on ``device`` (with ``record``'s trained weights), wrapped and compiled, and its
    optimiser, schedule and EMA, restored from ``record`` when resuming."""
    model.to(
        device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format
    )
    if record is not None:
        model.load_state_dict(record.trained_weights)
    fwd = recipe.maybe_compile(wrap(model, dist, device), cfg, device)
    opt = recipe.make_optimizer(model, cfg)
    sched = recipe.make_schedule(opt, cfg, steps)
    state = TrainState(fwd, model, opt, sched, recipe.make_ema(model, cfg))
    if record is not None:
        state.load(record)
    return state


def _plan_epoch(
    train: Split,
    cfg: RunCfg,
    epoch: int,
    device: torch.device,
    dist: Dist,
    sizes: tuple[int, int],
    resumed: CheckpointRecord | None,
) -> EpochPlan:
    """Epoch ``epoch``'s seeded shuffle and generators; resumed from ``resumed``'s interrupted
    epoch (its step, every rank's RNG state and the sums so far), else from its start."""
    n_epoch, steps = sizes
    cpu_gen, dev_gen = epoch_generators(cfg.seed, epoch, device, dist.rank, dist.world)
    if isinstance(train.images, StreamedImages):
        # Block shuffle (deepgal.training.stream): each rank reads only its own blocks.
        mine = epoch_order(len(train), train.images.plan, cpu_gen, dist.rank, dist.world)
        batches = list(torch.tensor_split(mine[: n_epoch // dist.world], steps))
    else:
        perm = torch.randperm(len(train), generator=cpu_gen)[:n_epoch]
        batches = shard(perm, dist, steps)
    plan = EpochPlan(epoch, batches, dev_gen)
    if resumed is None:
        return plan
    plan.start_step = resumed.step_in_epoch
    restore_rank_state(resumed.rng["ranks"][dist.rank], dev_gen, device)
    # The saved sums are over all ranks: rank 0 carries them, the others start at 0.
    plan.carried = dict(resumed.accum) if dist.main else None
    return plan


def _epoch_metrics(
    epoch: int, sums: dict[str, float], ev: dict[str, float], lr: float, world: int
) -> dict[str, float]:
    """An epoch's history row from the train sums over all ranks and the validation scores."""
    seen = max(sums["seen"], 1)
    return {
        "epoch": epoch,
        "train/loss": sums["loss"] / seen,
        "train/accuracy": sums["correct"] / seen,
        "val/loss": ev["loss"],
        "val/accuracy": ev["accuracy"],
        "lr": lr,
        # seconds were summed over ranks that ran side by side
        "images_per_s": seen / max(sums["seconds"] / world, 1e-9),
        "seconds": sums["seconds"] / world,
    }


def _stop_check(
    fault: Fault | None, stop: StopFlag, epoch: int, steps: int, dist: Dist, device: torch.device
) -> Callable[[int], bool]:
    """``should_stop`` of one epoch: fires the injected fault due at this step, then asks
    whether any rank has a signal pending."""

    def should_stop(step: int) -> bool:
        if fault is not None:
            fault.maybe_fire(epoch, step, steps, dist.rank)
        return dist.any(stop.signum is not None, device)

    return should_stop


def _resume_point(record: CheckpointRecord | None, spec: RunSpec) -> tuple[int, int, list]:
    """(first epoch, its first step, history so far) of a run resumed from ``record``."""
    if record is None:
        return 1, 0, []
    start = (record.epoch + 1, record.step_in_epoch)
    log.info("resuming from %s at epoch %d step %d", spec.ckpt_dir, *start)
    return *start, list(record.history)


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    spec: RunSpec,
    device: torch.device,
    sinks: list[Sink] = (),
    resume: bool = True,
    dist: Dist = Dist(),
) -> list[dict]:
    """Train ``model`` for ``spec.cfg.epochs``; returns the per-epoch history (list of dicts).

    Checkpoints go to ``spec.ckpt_dir`` as :class:`CheckpointKeeper` keeps them. Raises
    TrainingDiverged on a non-finite loss and TrainingInterrupted on SIGINT/SIGTERM (after
    writing a resumable checkpoint).
    """
    cfg = spec.cfg
    keeper = CheckpointKeeper(
        spec.ckpt_dir, spec.fingerprint, cfg.checkpoint_every, cfg.epochs, dist
    )
    record = keeper.resume(resume)
    sizes = _steps_per_epoch(len(train), cfg, dist)
    steps = sizes[1]
    state = _build_state(model, cfg, device, dist, steps, record)
    start_epoch, start_step, history = _resume_point(record, spec)
    for m in history if dist.main else ():
        for sink in sinks:
            sink.log_epoch(m)  # re-deliver: sinks skip what they already have
    fault = Fault.from_env()
    total = (cfg.epochs - start_epoch + 1) * steps - start_step
    with (
        StopFlag() as stop,
        Progress(total, f"train {spec.meta.get('variant', '')}".strip(), "step") as bar,
    ):
        for epoch in range(start_epoch, cfg.epochs + 1):
            resumed = record if epoch == start_epoch and start_step > 0 else None
            plan = _plan_epoch(train, cfg, epoch, device, dist, sizes, resumed)
            sums, stopped = train_one_epoch(
                state,
                train,
                plan,
                spec,
                device,
                _stop_check(fault, stop, epoch, steps, dist, device),
                bar if dist.main else None,
            )
            sums = dict(zip(_SUMS, dist.sum([sums[k] for k in _SUMS], device), strict=True))
            if stopped is not None:
                _save_interrupted(keeper, state, plan, stopped, sums, history, spec, device)
                raise TrainingInterrupted(
                    f"interrupted at epoch {epoch} step {stopped}/{steps}; checkpoint saved to "
                    f"{keeper.last}; run the stage again to resume"
                )
            ev = evaluate(state.eval_model, val, spec, device, dist)
            metrics = _epoch_metrics(epoch, sums, ev, state.opt.param_groups[0]["lr"], dist.world)
            _publish_epoch(epoch, metrics, history, keeper, state, spec, sinks, dist)
    return history


def _publish_epoch(
    epoch: int,
    metrics: dict[str, float],
    history: list[dict],
    keeper: CheckpointKeeper,
    state: TrainState,
    spec: RunSpec,
    sinks: list[Sink],
    dist: Dist,
) -> None:
    """Append finished ``epoch``'s ``metrics`` to ``history``; on rank 0 hand its checkpoint
    to ``keeper`` and its metrics to the sinks; log them on every rank."""
    history.append(metrics)
    if dist.main:
        keeper.save_epoch(state.record(epoch, 0, history, spec))
        for sink in sinks:
            sink.log_epoch(metrics)
    log.info(
        "epoch %d/%d  %s",
        epoch,
        spec.cfg.epochs,
        "  ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k != "epoch"),
    )


def _save_interrupted(
    keeper: CheckpointKeeper,
    state: TrainState,
    plan: EpochPlan,
    step: int,
    sums: dict[str, float],
    history: list[dict],
    spec: RunSpec,
    device: torch.device,
) -> None:
    """Every rank's random state gathered, rank 0 writes the mid-epoch checkpoint, all wait."""
    dist = keeper.dist
    ranks = dist.gather(rank_state(plan.gen, device))
    if dist.main:
        keeper.save_interrupted(
            state.record(plan.epoch - 1, step, history, spec, sums, {"ranks": ranks})
        )
    dist.barrier()
