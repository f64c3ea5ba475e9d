"""The loop: ``train_one_epoch`` / ``evaluate`` / ``fit``, as torchvision's classification
reference shapes it, with no framework in between.

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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .. import checkpoint as ckpt_io
from ..config import RunCfg
from ..distributed import Dist, eval_slice, shard, wrap
from ..inference import run_model, to_device
from ..progress import Progress
from ..transforms import Preprocess, prepare_batch
from . import recipe, unfinished
from .control import Fault, StopFlag, epoch_generators, rank_state, restore_rank_state
from .mix import mix_batch

log = logging.getLogger(__name__)
GPU_SHARE = 0.4  # of free GPU memory a train split may take; the rest is for the model


class TrainingDiverged(RuntimeError):
    """Loss became NaN/inf; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C / SIGTERM: a resumable checkpoint was written before stopping."""


class Sink(Protocol):
    def log_epoch(self, metrics: dict[str, float]) -> None: ...


@dataclass
class Split:
    images: torch.Tensor  # (N, H, W, 3) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class RunSpec:
    """Everything ``fit`` needs besides the model and the data."""
    cfg: RunCfg  # the variant's resolved config: epochs, batch_size, lr, ema, precision, ...
    preprocess: Preprocess
    ckpt_dir: Path
    fingerprint: str
    meta: dict[str, Any] = field(default_factory=dict)  # variant, model, config: into checkpoints


def fits_on_device(nbytes: int, free_bytes: int, share: float = GPU_SHARE) -> bool:
    return nbytes <= share * free_bytes


def place_split(split: Split, device: torch.device) -> Split:
    """The split on ``device`` when it is CUDA and the images fit (see module doc), else as is."""
    if device.type != "cuda":
        return split
    nbytes = split.images.numel() * split.images.element_size()
    free, _ = torch.cuda.mem_get_info(device)
    if not fits_on_device(nbytes, free):
        log.info("train split (%.2f GB) stays in host memory: %.2f GB free on %s", nbytes / 1e9,
                 free / 1e9, device)
        return split
    log.info("train split (%.2f GB uint8) lives in GPU memory", nbytes / 1e9)
    return Split(split.images.to(device), split.labels.to(device))


def evaluate(model: nn.Module, split: Split, spec: RunSpec, device: torch.device,
             dist: Dist = Dist(), batch_size: int = 256) -> dict[str, float]:
    """Mean cross-entropy and accuracy over the whole ``split``, without augmentation.

    Each rank scores its contiguous slice; the sums are added over ranks, so the numbers are
    those of the whole split whatever the world size.
    """
    rows = eval_slice(len(split), dist)
    logits = torch.from_numpy(run_model(
        model, split.images[rows], spec.preprocess, device, batch_size, output="logits",
        precision=spec.cfg.precision, channels_last=spec.cfg.channels_last))  # (n, C) float32
    y = split.labels[rows].cpu()
    loss = F.cross_entropy(logits, y, reduction="sum").item() if len(y) else 0.0
    correct = (logits.argmax(1) == y).sum().item()
    loss, correct, n = dist.sum([loss, correct, len(y)], device)
    return {"loss": loss / n if n else float("nan"), "accuracy": correct / n if n else float("nan")}


def train_one_epoch(fwd: nn.Module, model: nn.Module, opt: torch.optim.Optimizer, sched,
                    ema, train: Split, batches: list[torch.Tensor], spec: RunSpec,
                    device: torch.device, gen: torch.Generator, epoch: int, start_step: int = 0,
                    should_stop: Callable[[int], bool] = lambda step: False,
                    progress: Progress | None = None, carried: dict[str, float] | None = None
                    ) -> tuple[dict[str, float], int | None]:
    """One epoch from ``start_step``: returns (sums of loss/correct/seen/seconds, stopped_at).

    ``fwd`` is the model as trained (DDP and/or compiled), ``model`` the plain module the EMA
    follows. ``batches`` are this rank's index tensors. ``stopped_at`` is the step where
    ``should_stop`` asked to stop (the state is then exactly "before that step"), else None.
    ``carried``: sums of the steps before ``start_step`` (a resumed epoch); the running sums
    start from them, so the float32 additions are those of an epoch never stopped, bit for bit.
    """
    cfg = spec.cfg
    model.train()
    carried = carried or {}
    loss_sum = torch.tensor(float(carried.get("loss", 0.0)), device=device)  # float32
    correct = torch.tensor(int(carried.get("correct", 0)), dtype=torch.long, device=device)
    seen, stopped = int(carried.get("seen", 0)), None
    t0 = time.perf_counter() - float(carried.get("seconds", 0.0))
    for step in range(start_step, len(batches)):
        if should_stop(step):
            stopped = step
            break
        idx = batches[step]
        y = to_device(train.labels.index_select(0, idx.to(train.labels.device)), device)
        # index_select, not images[idx]: ~10x faster gather of uint8 rows on CPU.
        xb = train.images.index_select(0, idx.to(train.images.device))
        x = prepare_batch(to_device(xb, device), spec.preprocess, cfg.augment, generator=gen,
                          channels_last=cfg.channels_last)  # (B, 3, S, S) float32
        target = y
        if cfg.mixup or cfg.cutmix:  # soft targets (B, C)
            x, target = mix_batch(x, y, model.head.out_features, cfg.mixup, cfg.cutmix, gen)
        with recipe.autocast(cfg, device):
            out = fwd(x)
        loss = F.cross_entropy(out.float(), target, label_smoothing=cfg.label_smoothing)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss.item()} at epoch {epoch} step {step}; stopped. The last "
                f"good checkpoint is kept in {spec.ckpt_dir}. Lower train.lr (now "
                f"{cfg.lr:g}) or raise train.warmup_epochs.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if ema is not None:
            ema.update_parameters(model)
        seen += len(idx)
        loss_sum += loss.detach() * len(idx)
        correct += (out.argmax(1) == y).sum()
        if progress is not None:
            progress.update(1)
    sums = {"loss": loss_sum.item(), "correct": int(correct.item()), "seen": seen,
            "seconds": time.perf_counter() - t0}
    return sums, stopped


def _resumable(spec: RunSpec, resume: bool, dist: Dist) -> dict[str, Any] | None:
    """The checkpoint to resume from (every rank reads the same file), else a clean folder."""
    if dist.main:
        spec.ckpt_dir.mkdir(parents=True, exist_ok=True)
        ckpt_io.remove_partial_writes(spec.ckpt_dir)
    dist.barrier()
    state = ckpt_io.find_resumable(spec.ckpt_dir, spec.fingerprint) if resume else None
    dist.barrier()  # all have read before rank 0 clears
    if state is None and dist.main:
        ckpt_io.clear(spec.ckpt_dir)
    return state


def fit(model: nn.Module, train: Split, val: Split, spec: RunSpec, device: torch.device,
        sinks: list[Sink] = (), resume: bool = True, dist: Dist = Dist()) -> list[dict]:
    """Train ``model`` for ``spec.cfg.epochs``; returns the per-epoch history (list of dicts).

    Writes ``last.pt`` after every epoch and ``epoch_XXX.pt`` every ``checkpoint_every`` epochs
    and at the end into ``spec.ckpt_dir``. A checkpoint's ``model`` holds the weights to use
    (the EMA when ``ema`` > 0; the trained ones are then in ``train_model``). Raises
    TrainingDiverged on a non-finite loss and TrainingInterrupted on SIGINT/SIGTERM (after
    writing a resumable checkpoint).
    """
    cfg = spec.cfg
    model.to(device, memory_format=torch.channels_last if cfg.channels_last
             else torch.contiguous_format)
    state = _resumable(spec, resume, dist)
    if state is not None:
        model.load_state_dict(state.get("train_model", state["model"]))
    fwd = recipe.maybe_compile(wrap(model, dist, device), cfg, device)
    opt = recipe.make_optimizer(model, cfg)
    # epoch_images: each epoch trains on the first n of its seeded permutation (a fresh subset).
    n_epoch = min(len(train), cfg.epoch_images or len(train))
    steps = max((n_epoch // dist.world) // cfg.batch_size, 1)
    sched = recipe.make_schedule(opt, cfg, steps)
    ema = recipe.make_ema(model, cfg)
    history: list[dict] = []
    start_epoch, start_step = 1, 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.module.load_state_dict(state["model"])
            ema.n_averaged.fill_(state["ema_n_averaged"])
        history = list(state["history"])
        start_epoch, start_step = state["epoch"] + 1, state["step_in_epoch"]
        log.info("resuming from %s at epoch %d step %d", spec.ckpt_dir, start_epoch, start_step)
    for m in history if dist.main else ():
        for sink in sinks:
            sink.log_epoch(m)  # re-deliver: sinks skip what they already have

    def snapshot(epoch: int, step: int, accum=None, rng=None) -> dict[str, Any]:
        s = {"model": (ema.module if ema is not None else model).state_dict(),
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch,
             "step_in_epoch": step, "accum": accum, "rng": rng, "history": history,
             "metrics": history[-1] if history else {}, "fingerprint": spec.fingerprint,
             "preprocess": spec.preprocess.to_dict(), **spec.meta}
        if ema is not None:
            s["train_model"], s["ema_n_averaged"] = model.state_dict(), int(ema.n_averaged)
        return s

    fault = Fault.from_env()
    total = (cfg.epochs - start_epoch + 1) * steps - start_step
    with StopFlag() as stop, Progress(total, f"train {spec.meta.get('variant', '')}".strip(),
                                      "step") as bar:
        for epoch in range(start_epoch, cfg.epochs + 1):
            cpu_gen, dev_gen = epoch_generators(cfg.seed, epoch, device, dist.rank, dist.world)
            perm = torch.randperm(len(train), generator=cpu_gen)[:n_epoch]
            batches = shard(perm, dist, steps)
            first, carried = 0, None
            if epoch == start_epoch and start_step > 0:
                # The sums are over all ranks: rank 0 carries them, the others start at 0.
                first, carried = start_step, dict(state["accum"]) if dist.main else None
                restore_rank_state(state["rng"]["ranks"][dist.rank], dev_gen, device)

            def should_stop(step: int) -> bool:
                if fault is not None:
                    fault.maybe_fire(epoch, step, steps, dist.rank)
                return dist.any(stop.signum is not None, device)

            sums, stopped = train_one_epoch(fwd, model, opt, sched, ema, train, batches, spec,
                                            device, dev_gen, epoch, first, should_stop,
                                            bar if dist.main else None, carried)
            keys = ("loss", "correct", "seen", "seconds")
            total_sums = dict(zip(keys, dist.sum([sums[k] for k in keys], device)))
            if stopped is not None:
                ranks = dist.gather(rank_state(dev_gen, device))
                last = spec.ckpt_dir / "last.pt"
                if dist.main:
                    ckpt_io.save(last, snapshot(epoch - 1, stopped, total_sums,
                                                {"ranks": ranks}))
                    unfinished.mirror(spec.ckpt_dir)
                dist.barrier()
                raise TrainingInterrupted(
                    f"interrupted at epoch {epoch} step {stopped}/{steps}; checkpoint saved to "
                    f"{last}; run the stage again to resume")
            start_step = 0
            ev = evaluate(ema.module if ema is not None else model, val, spec, device, dist)
            seen = max(total_sums["seen"], 1)
            metrics = {
                "epoch": epoch,
                "train/loss": total_sums["loss"] / seen,
                "train/accuracy": total_sums["correct"] / seen,
                "val/loss": ev["loss"], "val/accuracy": ev["accuracy"],
                "lr": opt.param_groups[0]["lr"],
                # seconds were summed over ranks that ran side by side
                "images_per_s": seen / max(total_sums["seconds"] / dist.world, 1e-9),
                "seconds": total_sums["seconds"] / dist.world,
            }
            history.append(metrics)
            if dist.main:
                snap = snapshot(epoch, 0)
                if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
                    ckpt_io.save(ckpt_io.epoch_path(spec.ckpt_dir, epoch), snap)
                ckpt_io.save(spec.ckpt_dir / "last.pt", snap)
                # Until the last epoch, a copy DVC leaves be; then the folder is the output.
                if epoch < cfg.epochs:
                    unfinished.mirror(spec.ckpt_dir)
                else:
                    unfinished.discard(spec.ckpt_dir)
                for sink in sinks:
                    sink.log_epoch(metrics)
            log.info("epoch %d/%d  %s", epoch, cfg.epochs,
                     "  ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k != "epoch"))
    return history
