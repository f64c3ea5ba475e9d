"""The parts of a training recipe: optimiser, schedule, EMA of the weights, precision, compile.

Each is built from the variant's resolved config (:class:`deepgal.config.RunCfg`) and is the
same on CPU and CUDA; only ``precision: auto`` and the availability of a compiler differ.
"""

from __future__ import annotations

import logging
import math
import os
import shutil

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ..config import RunCfg

log = logging.getLogger(__name__)


def make_optimizer(model: nn.Module, cfg: RunCfg) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW at ``cfg.lr``; no weight decay on norms and biases
    (the usual recipe, as torchvision's references)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def make_schedule(
    opt: torch.optim.Optimizer, cfg: RunCfg, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step multiplier: linear warm-up, then cosine / constant / step decay."""
    total = max(cfg.epochs * steps_per_epoch, 1)
    warm = min(cfg.warmup_epochs * steps_per_epoch, total - 1)

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


def _ema_fn(decay: float):
    """``multi_avg_fn`` for AveragedModel: EMA whose decay warms up as min(decay, (1+n)/(10+n)).

    The warm-up (as TensorFlow's and timm's EMA) keeps a short run's average from being
    dominated by the random initial weights: with a fixed 0.999 a 300-step CPU run would still
    be ~74% initialisation. Integer buffers (BatchNorm's step counter) are copied.
    """

    @torch.no_grad()
    def update(
        averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor
    ) -> None:
        if not averaged[0].is_floating_point():
            torch._foreach_copy_(averaged, current)
            return
        n = num_averaged.to(torch.float32)
        d = torch.clamp((1 + n) / (10 + n), max=decay)  # a device tensor: no host sync
        torch._foreach_mul_(averaged, d)
        torch._foreach_add_(averaged, torch._foreach_mul(current, 1 - d))

    return update


def make_ema(model: nn.Module, cfg: RunCfg) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and buffers, or None (ema = 0).

    torch's own AveragedModel (as torchvision's reference ExponentialMovingAverage) rather than
    a class of ours: it handles devices, dtype groups and the first-step copy. ``use_buffers``
    averages BatchNorm's running statistics too, so the EMA model is evaluated as it is.
    """
    if cfg.ema <= 0:
        return None
    return AveragedModel(model, multi_avg_fn=_ema_fn(cfg.ema), use_buffers=True)


def use_bf16(cfg: RunCfg, device: torch.device) -> bool:
    """``precision``: bf16 autocast when asked, or on CUDA for ``auto``; else fp32."""
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")


def autocast(cfg: RunCfg, device: torch.device):
    # bf16 needs no loss scaling (fp16 would); on CPU it is opt-in: slower on most chips.
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(cfg, device))


def has_compiler() -> bool:
    """Inductor on CPU generates C++: it needs a compiler (``$CXX``, g++ or c++)."""
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c)


def maybe_compile(model: nn.Module, cfg: RunCfg, device: torch.device) -> nn.Module:
    """``torch.compile(model)`` when ``compile`` is on and the device can compile; else model."""
    if not cfg.compile:
        return model
    if device.type == "cpu" and not has_compiler():
        log.warning(
            "compile: true, but no C++ compiler was found (set CXX or install g++); "
            "training uncompiled"
        )
        return model
    import torch._inductor.config as inductor_config

    # utils.seed_everything turns deterministic kernels on without importing Inductor.
    inductor_config.deterministic = torch.are_deterministic_algorithms_enabled()
    return torch.compile(model)
