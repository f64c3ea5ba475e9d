"""Batched inference, once for the whole project: training's validation, evaluate (scores
and embeddings), predict.

:func:`run_model` turns uint8 images (N, H, W, 3) into probabilities, logits or penultimate
embeddings, a batch at a time: each batch moves to the device as uint8 and becomes float there
(:func:`deepgal.transforms.prepare_batch`), so memory holds the uint8 input plus one float batch.
With ``tta`` every batch is also seen in the 8 dihedral views (rotations by 90 degrees, with and
without a flip) and the outputs are averaged: galaxies have no preferred orientation.

Only torch and numpy are imported here, because the training loop imports this module;
checkpoint loading (:func:`load_model`) imports the model registry when called. Reading images
from files lives in :mod:`deepgal.inference.source` (Galaxy10 HDF5) and
:mod:`deepgal.inference.cutouts` (folders of JPEG/PNG).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..transforms import Preprocess, prepare_batch

if TYPE_CHECKING:
    from ..models import Net

# "features+probs": the embedding and the softmax side by side (N, D + C), from one forward pass
# (the evaluate stage needs both: maps from the first, scores from the second).
OUTPUTS = ("probs", "logits", "features", "features+probs")
PRECISIONS = ("auto", "fp32", "bf16")
N_VIEWS = 8


def dihedral_views(
    x: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format
) -> Iterator[torch.Tensor]:
    """The 8 views of a square batch x (B, C, S, S): rotations by 0/90/180/270 degrees, each
    with and without a horizontal flip (the dihedral group D4), in ``memory_format``."""
    for flip in (False, True):
        base = x.flip(3) if flip else x
        for k in range(4):
            v = torch.rot90(base, k, dims=(2, 3)) if k else base
            yield v.contiguous(memory_format=memory_format)


def _autocast(device: torch.device, precision: str):
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def output_dim(model: Net, output: str) -> int:
    """Columns of ``output`` for ``model``: D for features, C for probs/logits, D + C for both."""
    return {
        "features": model.feature_dim,
        "features+probs": model.feature_dim + model.head.out_features,
    }.get(output, model.head.out_features)


def _head(model: Net, x: torch.Tensor, output: str) -> torch.Tensor:
    if output == "features":
        return model.features(x).float()
    if output == "features+probs":
        feats = model.features(x)
        return torch.cat([feats.float(), model.head(feats).float().softmax(1)], 1)
    logits = model(x).float()
    return logits.softmax(1) if output == "probs" else logits


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``: host tensors through pinned memory to CUDA, so the copy runs
    asynchronously with the previous batch's work; tensors already on a GPU (a GPU-resident
    split) are only moved if on another device. Compare device types, not devices:
    ``torch.device("cuda:0") != torch.device("cuda")``."""
    if x.device.type != "cpu":  # to the host, a non-blocking copy could be read unfinished
        return x.to(device, non_blocking=device.type == "cuda")
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def _check_images(images) -> None:
    shape, dtype = tuple(images.shape), images.dtype
    if len(shape) != 4 or shape[3] != 3 or dtype not in (np.uint8, torch.uint8):
        raise ValueError(f"images must be uint8 (N, H, W, 3); got {dtype} {shape}")
    if shape[1] != shape[2]:
        raise ValueError(f"images must be square for inference; got {shape[1]}x{shape[2]} px")


@torch.inference_mode()
def run_model(
    model: Net,
    images: np.ndarray | torch.Tensor,
    pre: Preprocess,
    device: torch.device,
    batch_size: int = 256,
    output: str = "probs",
    tta: bool = False,
    precision: str = "auto",
    channels_last: bool = True,
) -> np.ndarray:
    """Model outputs for images (N, H, W, 3) uint8 (numpy or torch, any device) -> float32.

    ``output``: ``"probs"`` softmax (N, C), ``"logits"`` (N, C), ``"features"`` the penultimate
    embedding (N, D), or ``"features+probs"`` both side by side (N, D + C), one forward pass.
    ``tta``: average the output over the 8 dihedral views (probabilities are averaged as
    probabilities, logits as logits). ``precision``: ``auto`` = bf16 autocast on
    CUDA, fp32 on CPU. The model is put in eval mode for the call and its mode restored after.
    Rows come back in input order.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_images(images)
    dim = output_dim(model, output)
    n = images.shape[0]
    outs = [torch.empty((0, dim))]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    was_training = model.training
    model.eval()
    try:
        with _autocast(device, precision):
            for start in range(0, n, batch_size):
                xb = images[start : start + batch_size]
                if isinstance(xb, np.ndarray) and not xb.flags.writeable:
                    xb = xb.copy()  # torch refuses to wrap read-only memory (e.g. from Pillow)
                xb = torch.as_tensor(xb)
                x = prepare_batch(to_device(xb, device), pre, channels_last=channels_last)
                if tta:
                    views = dihedral_views(x, fmt)
                    y = sum(_head(model, v, output) for v in views) / N_VIEWS
                else:
                    y = _head(model, x, output)
                # Kept on the device: no host sync per batch, so on CUDA the next batch's copy
                # and preprocessing queue up behind this one's kernels.
                outs.append(y)
    finally:
        model.train(was_training)
    return torch.cat([o.to("cpu", torch.float32) for o in outs]).numpy()


def load_model(path: str | Path, device: torch.device) -> tuple[Net, Preprocess, dict]:
    """Model (eval mode, on ``device``, channels_last), its preprocessing and the checkpoint dict.

    Raises :class:`deepgal.checkpoint.CheckpointError` naming ``path`` when the file is not a
    deepgal checkpoint.
    """
    from .. import checkpoint as ckpt_io
    from ..data.galaxy10 import CLASS_NAMES
    from ..models import build_model

    ckpt = ckpt_io.load(path)
    for key in ("model_name", "preprocess"):
        if key not in ckpt:
            raise ckpt_io.CheckpointError(
                f"{path}: checkpoint lacks '{key}'; was it written by deepgal's train stage?"
            )
    pre = Preprocess.from_dict(ckpt["preprocess"])
    n_classes = len(ckpt.get("class_names", CLASS_NAMES))
    model = build_model(ckpt["model_name"], n_classes, pre.input_size, pretrained="none")
    model.load_state_dict(ckpt["model"])
    model.to(device, memory_format=torch.channels_last).eval()
    return model, pre, ckpt
