"""What fine-tuning may change: freeze modes on a :class:`deepgal.models.Net`.

- ``none``: every parameter trains.
- ``backbone``: only ``head`` trains (a linear probe of the pretrained embedding).
- ``all_but_last``: ``head`` and the body's last block train: the last top-level child of
  ``body`` that holds parameters (smallnet's second conv, customnet's 4096-wide linear layer,
  a ResNet's ``layer4``, ConvNeXt's final norm).

A frozen parameter gets ``requires_grad = False``: no gradient, so the optimisers (which skip
parameters without one) leave it, and its weight decay, alone. A frozen normalisation layer
also keeps its running statistics: a forward pre-hook puts it in eval mode on every call,
whatever ``model.train()`` said, so the frozen part computes exactly what it did before.

:class:`FreezePlan` adds freeze-then-unfreeze (the transfer-learning habit: let the new head
settle on the frozen embedding, then adapt everything at a lower lr, so the first large,
random-head gradients never reach the pretrained layers): the mode holds for the first
``unfreeze_after`` epochs, then every weight trains at ``lr * unfreeze_lr_scale``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn
from torch.utils.hooks import RemovableHandle

from ..config.finetune import FREEZE_MODES

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def last_block(body: nn.Module) -> nn.Module:
    """The last top-level child of ``body`` holding parameters (``body`` itself if none)."""
    children = [m for m in body.children() if any(True for _ in m.parameters())]
    return children[-1] if children else body


def trainable_modules(model: nn.Module, mode: str) -> list[nn.Module]:
    """The modules of ``model`` (a Net: ``body`` + ``head``) that train under ``mode``."""
    if mode not in FREEZE_MODES:
        raise ValueError(f"freeze must be one of {', '.join(FREEZE_MODES)}, got {mode!r}")
    if mode == "none":
        return [model]
    if mode == "backbone":
        return [model.head]
    return [last_block(model.body), model.head]


def _stay_in_eval(module: nn.Module, _inputs) -> None:
    module.train(False)


def freeze(model: nn.Module, mode: str) -> list[RemovableHandle]:
    """Freeze ``model`` by ``mode`` (module doc) in place; returns the hooks that keep frozen
    normalisation layers in eval mode (``handle.remove()`` lifts them)."""
    keep = trainable_modules(model, mode)
    trained = {id(p) for m in keep for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trained)
    trained_modules = {id(sub) for m in keep for sub in m.modules()}
    return [
        m.register_forward_pre_hook(_stay_in_eval)
        for m in model.modules()
        if isinstance(m, _NORMS) and id(m) not in trained_modules
    ]


@dataclass(frozen=True)
class FreezePlan:
    """What trains when: ``mode`` (a FREEZE_MODES entry) for the first ``unfreeze_after``
    epochs, then everything at ``lr * unfreeze_lr_scale``; ``unfreeze_after`` 0 keeps ``mode``
    for the whole run."""

    mode: str
    unfreeze_after: int = 0
    unfreeze_lr_scale: float = 0.1

    def phases(self, run) -> list[tuple[str, object, str]]:
        """``(mode, run config, sub-folder)`` per phase, for a resolved ``run`` (RunCfg) whose
        ``epochs`` are the whole fine-tuning; one checkpoint at each phase's end."""
        if self.unfreeze_after == 0 or self.mode == "none":
            return [(self.mode, run, ".")]
        if not 0 < self.unfreeze_after < run.epochs:
            raise ValueError(
                f"unfreeze_after must be in [0, epochs {run.epochs}), got {self.unfreeze_after}"
            )
        frozen, rest = self.unfreeze_after, run.epochs - self.unfreeze_after
        first = dataclasses.replace(
            run,
            epochs=frozen,
            checkpoint_every=frozen,
            warmup_epochs=min(run.warmup_epochs, frozen - 1),
        )
        second = dataclasses.replace(
            run,
            epochs=rest,
            checkpoint_every=rest,
            warmup_epochs=0,
            lr=run.lr * self.unfreeze_lr_scale,
        )
        return [(self.mode, first, "frozen"), ("none", second, "unfrozen")]
