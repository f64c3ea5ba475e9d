"""Mixup and CutMix of a prepared training batch (``train.mixup`` / ``train.cutmix``).

Training only, so it lives with the training loop: the inference and plot stages that use
:mod:`deepgal.transforms` do not depend on it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def mix_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    mixup: float,
    cutmix: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix of a prepared batch, one mixing weight per batch (timm's "batch" mode).

    x: (B, C, S, S) float, the output of :func:`deepgal.transforms.prepare_batch`; y: (B,) int64 class indices.
    ``mixup`` / ``cutmix``: Beta(alpha, alpha) parameters (``train.mixup`` / ``train.cutmix``);
    0 turns one off. With both on, each batch uses one of them with p = 0.5. Returns the mixed
    batch (a new tensor, same shape, dtype and memory format) and (B, num_classes) float32
    soft targets ``lam * onehot(y) + (1 - lam) * onehot(y[perm])``, where ``perm`` pairs each
    sample with another of the batch and ``lam`` is the share of the sample's own pixels (for
    CutMix, the exact area left after the box is clipped to the frame). Label smoothing is the
    loss's business (``F.cross_entropy(..., label_smoothing=)`` accepts soft targets).

    All randomness comes from ``generator`` (on x's device): a fixed seed gives the same mix.
    Hand-written rather than torchvision's ``v2.MixUp``/``CutMix``, which draw from torch's
    global RNG (no ``generator``): the training batches must follow the run's own seed.
    With both alphas 0 the batch comes back unchanged with one-hot targets.
    """
    if mixup < 0 or cutmix < 0:
        raise ValueError(
            f"mixup and cutmix must be >= 0 (Beta alpha; 0 = off), got {mixup!r} / {cutmix!r}"
        )
    b = x.shape[0]
    targets = F.one_hot(y, num_classes).float()
    if (mixup == 0 and cutmix == 0) or b < 2:
        return x, targets
    dev = x.device
    # One host-side draw per batch: torch has no seeded Beta sampler, so a numpy Generator is
    # seeded from ``generator`` (one integer; a sync on CUDA that costs ~10 us per step).
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=dev).item())
    rng = np.random.default_rng(seed)
    perm = torch.randperm(b, generator=generator, device=dev)
    use_cutmix = cutmix > 0 and (mixup == 0 or rng.random() < 0.5)
    lam = float(rng.beta(cutmix, cutmix) if use_cutmix else rng.beta(mixup, mixup))
    if use_cutmix:
        h, w = x.shape[-2:]
        cut = math.sqrt(1.0 - lam)  # box side ratio: area (1 - lam) before clipping
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = max(cy - int(h * cut / 2), 0), min(cy + int(h * cut / 2), h)
        x0, x1 = max(cx - int(w * cut / 2), 0), min(cx + int(w * cut / 2), w)
        out = x.clone(memory_format=torch.preserve_format)
        out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        out = x * lam + x[perm] * (1.0 - lam)
    return out, targets * lam + targets[perm] * (1.0 - lam)
