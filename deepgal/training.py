"""The training loop: a visible, framework-free ``train_one_epoch`` / ``evaluate`` / ``fit``.

Data path: each split is one uint8 tensor (N, H, W, 3) in host memory (or on the GPU when it
fits); every batch is gathered by index, moved to the device and turned into normalised,
augmented floats there by :func:`deepgal.transforms.prepare_batch`. No DataLoader workers, no
per-image Python, no float copy of the whole set.

Determinism and resume: the shuffling and augmentation of epoch ``e`` come from generators
seeded with ``(seed, e)``, and a checkpoint stores their state mid-epoch, so a resumed run
(after SIGKILL at an epoch boundary or Ctrl-C mid-epoch) ends with the same weights as one that
was never stopped.
"""
from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint as ckpt_io
from .config import TrainCfg
from .transforms import Augment, Preprocess, prepare_batch

log = logging.getLogger(__name__)


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
    cfg: TrainCfg
    epochs: int
    batch_size: int
    lr: float
    preprocess: Preprocess
    augment: Augment
    seed: int
    ckpt_dir: Path
    fingerprint: str
    meta: dict[str, Any] = field(default_factory=dict)  # variant, model, config: into checkpoints


def make_optimizer(model: nn.Module, cfg: TrainCfg, lr: float) -> torch.optim.Optimizer:
    # No weight decay on norms and biases: the usual recipe (torchvision references).
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=lr)


def make_schedule(opt: torch.optim.Optimizer, cfg: TrainCfg, steps_per_epoch: int,
                  epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step multiplier: linear warm-up, then cosine / constant / step decay."""
    warm = min(cfg.warmup_epochs * steps_per_epoch, max(epochs * steps_per_epoch - 1, 0))
    total = max(epochs * steps_per_epoch, 1)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(total - warm, 1)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        if cfg.schedule == "step":
            return 0.1 ** (int(t >= 0.5) + int(t >= 0.75))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _autocast(device: torch.device):
    # bf16 on CUDA: no loss scaling needed; CPU runs fp32 (CPU bf16 is slower on most chips).
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    if x.device == device:
        return x
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, pre: Preprocess, device: torch.device,
             batch_size: int = 256) -> dict[str, Any]:
    """Loss, accuracy and logits (N, C) float32 on CPU, without augmentation."""
    model.eval()
    logits = []
    for start in range(0, len(split), batch_size):
        x = prepare_batch(_to_device(split.images[start:start + batch_size], device), pre)
        with _autocast(device):
            logits.append(model(x).float().cpu())
    out = torch.cat(logits) if logits else torch.empty(0, 10)
    y = split.labels.cpu()
    loss = F.cross_entropy(out, y).item() if len(y) else float("nan")
    acc = (out.argmax(1) == y).float().mean().item() if len(y) else float("nan")
    return {"loss": loss, "accuracy": acc, "logits": out}


class _StopFlag:
    """Turn SIGINT/SIGTERM into a flag checked between steps, so a checkpoint is consistent."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


def _epoch_generators(seed: int, epoch: int, device: torch.device):
    cpu = torch.Generator().manual_seed(seed * 100_003 + epoch)
    dev = torch.Generator(device=device).manual_seed(seed * 100_019 + epoch)
    torch.manual_seed(seed * 100_043 + epoch)  # dropout
    return cpu, dev


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def fit(model: nn.Module, train: Split, val: Split, spec: RunSpec, device: torch.device,
        sinks: list[Sink] = (), resume: bool = True) -> list[dict[str, float]]:
    """Train ``model`` for ``spec.epochs``; returns the per-epoch history (list of dicts).

    Writes ``last.pt`` after every epoch and ``epoch_XXX.pt`` every ``checkpoint_every`` epochs
    and at the end into ``spec.ckpt_dir``. Raises TrainingDiverged on a non-finite loss and
    TrainingInterrupted on SIGINT/SIGTERM (after writing a resumable checkpoint).
    """
    cfg = spec.cfg
    model.to(device, memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg, spec.lr)
    n = len(train)
    steps = max(n // spec.batch_size, 1)  # drop the ragged last batch: BatchNorm needs > 1
    sched = make_schedule(opt, cfg, steps, spec.epochs)
    fwd = torch.compile(model) if cfg.compile and device.type == "cuda" else model

    ckpt_io.remove_partial_writes(spec.ckpt_dir)
    state = ckpt_io.find_resumable(spec.ckpt_dir, spec.fingerprint) if resume else None
    history: list[dict[str, float]] = []
    start_epoch, start_step, accum = 1, 0, None
    if state is None:
        ckpt_io.clear(spec.ckpt_dir)
    else:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = list(state["history"])
        start_epoch, start_step = state["epoch"] + 1, state["step_in_epoch"]
        accum = state.get("accum")
        log.info("resuming from %s at epoch %d step %d", spec.ckpt_dir, start_epoch, start_step)
    for m in history:
        for sink in sinks:
            sink.log_epoch(m)  # re-deliver: sinks skip what they already have

    def snapshot(epoch: int, step: int, acc, cpu_gen, dev_gen) -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "epoch": epoch, "step_in_epoch": step,
                "accum": acc, "history": history, "metrics": history[-1] if history else {},
                "fingerprint": spec.fingerprint, "preprocess": spec.preprocess.to_dict(),
                "rng": _rng_state(), "gen": {"cpu": cpu_gen.get_state(),
                                             "device": dev_gen.get_state()},
                **spec.meta}

    with _StopFlag() as stop:
        for epoch in range(start_epoch, spec.epochs + 1):
            cpu_gen, dev_gen = _epoch_generators(spec.seed, epoch, device)
            perm = torch.randperm(n, generator=cpu_gen)
            acc = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
            if epoch == start_epoch and start_step > 0:
                acc = dict(accum)
                cpu_gen.set_state(state["gen"]["cpu"])
                dev_gen.set_state(state["gen"]["device"])
                torch.set_rng_state(state["rng"]["torch"])
            model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            t0 = time.perf_counter()
            for step in range(start_step if epoch == start_epoch else 0, steps):
                if stop.signum is not None:
                    acc = _merge(acc, loss_sum, correct, t0)
                    ckpt_io.save(spec.ckpt_dir / "last.pt",
                                 snapshot(epoch - 1, step, acc, cpu_gen, dev_gen))
                    raise TrainingInterrupted(
                        f"interrupted at epoch {epoch} step {step}/{steps}; checkpoint saved to "
                        f"{spec.ckpt_dir / 'last.pt'}; run the stage again to resume")
                idx = perm[step * spec.batch_size:(step + 1) * spec.batch_size]
                y = _to_device(train.labels.index_select(0, idx.to(train.labels.device)), device)
                # index_select, not images[idx]: ~10x faster gather of uint8 rows on CPU.
                xb = train.images.index_select(0, idx.to(train.images.device))
                x = prepare_batch(_to_device(xb, device), spec.preprocess,
                                  spec.augment, generator=dev_gen)
                with _autocast(device):
                    out = fwd(x)
                    loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss.item()} at epoch {epoch} step {step}; stopped. The "
                        f"last good checkpoint is kept in {spec.ckpt_dir}. Lower train.lr "
                        f"(now {spec.lr:g}) or raise train.warmup_epochs.")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                acc["seen"] += len(idx)
                loss_sum += loss.detach() * len(idx)
                correct += (out.argmax(1) == y).sum()
            acc = _merge(acc, loss_sum, correct, t0)
            start_step = 0
            ev = evaluate(model, val, spec.preprocess, device)
            metrics = {
                "epoch": epoch,
                "train/loss": acc["loss"] / max(acc["seen"], 1),
                "train/accuracy": acc["correct"] / max(acc["seen"], 1),
                "val/loss": ev["loss"], "val/accuracy": ev["accuracy"],
                "lr": opt.param_groups[0]["lr"],
                "images_per_s": acc["seen"] / max(acc["seconds"], 1e-9),
                "seconds": acc["seconds"],
            }
            history.append(metrics)
            snap = snapshot(epoch, 0, None, cpu_gen, dev_gen)
            if epoch % cfg.checkpoint_every == 0 or epoch == spec.epochs:
                ckpt_io.save(ckpt_io.epoch_path(spec.ckpt_dir, epoch), snap)
            ckpt_io.save(spec.ckpt_dir / "last.pt", snap)
            for sink in sinks:
                sink.log_epoch(metrics)
            log.info("epoch %d/%d  %s", epoch, spec.epochs,
                     "  ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k != "epoch"))
    return history


def _merge(acc: dict, loss_sum: torch.Tensor, correct: torch.Tensor, t0: float) -> dict:
    """Fold the device-side running sums into the plain-number accumulator."""
    return {"loss": acc["loss"] + loss_sum.item(), "correct": acc["correct"] + int(correct.item()),
            "seen": acc["seen"], "seconds": acc["seconds"] + time.perf_counter() - t0}


def config_dict(**parts) -> dict[str, Any]:
    """Dataclasses to plain dicts, for checkpoints and fingerprints."""
    return {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in parts.items()}
