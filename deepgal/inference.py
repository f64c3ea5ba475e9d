"""Inference from a self-describing checkpoint: probabilities, embeddings and scores.

A checkpoint carries its model name, input size, crop and normalisation statistics, so any
Galaxy10-layout file of any image size can be scored with it. Images stream from the HDF5 file
in chunks (uint8) and become floats only per batch, on the device.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from . import checkpoint as ckpt_io
from .data import galaxy10
from .models import Net, build_model
from .transforms import Preprocess, prepare_batch


def load_model(path: str | Path, device: torch.device) -> tuple[Net, Preprocess, dict]:
    """Model (eval mode, on ``device``), its preprocessing and the checkpoint dict."""
    ckpt = ckpt_io.load(path)
    for key in ("model_name", "preprocess"):
        if key not in ckpt:
            raise ckpt_io.CheckpointError(f"{path}: checkpoint lacks '{key}'; was it written by "
                                          "deepgal's train stage?")
    pre = Preprocess.from_dict(ckpt["preprocess"])
    n_classes = len(ckpt.get("class_names", galaxy10.CLASS_NAMES))
    model = build_model(ckpt["model_name"], n_classes, pre.input_size, pretrained="none")
    model.load_state_dict(ckpt["model"])
    model.to(device, memory_format=torch.channels_last).eval()
    return model, pre, ckpt


def _batches(images: np.ndarray | torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(images), batch_size):
        yield torch.as_tensor(images[start:start + batch_size])


@torch.inference_mode()
def run_model(model: Net, images: np.ndarray | torch.Tensor, pre: Preprocess,
              device: torch.device, batch_size: int = 256,
              features: bool = False) -> np.ndarray:
    """images (N, H, W, 3) uint8 -> softmax probabilities (N, C) or embeddings (N, D), float32."""
    outs = []
    for xb in _batches(images, batch_size):
        x = prepare_batch(xb.to(device, non_blocking=True), pre)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            y = model.features(x) if features else model(x).float().softmax(1)
        outs.append(y.float().cpu().numpy())
    dim = model.feature_dim if features else model.head.out_features
    return np.concatenate(outs) if outs else np.empty((0, dim), np.float32)


def run_on_file(model: Net, path: str | Path, pre: Preprocess, device: torch.device,
                indices: np.ndarray | None = None, batch_size: int = 256,
                features: bool = False, chunk: int = galaxy10.READ_CHUNK) -> np.ndarray:
    """:func:`run_model` over rows ``indices`` of a Galaxy10 file, reading ``chunk`` rows at a time."""
    if indices is None:
        indices = np.arange(galaxy10.validate(path).n_images)
    parts = [run_model(model, galaxy10.read_images(path, indices[s:s + chunk]), pre, device,
                       batch_size, features) for s in range(0, len(indices), chunk)]
    dim = model.feature_dim if features else model.head.out_features
    return np.concatenate(parts) if parts else np.empty((0, dim), np.float32)


def score(labels: np.ndarray, probs: np.ndarray,
          class_names: tuple[str, ...] = galaxy10.CLASS_NAMES) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    labels (N,) int, probs (N, C). Classes absent from ``labels`` still get a row (support 0).
    """
    pred = probs.argmax(1)
    classes = list(range(len(class_names)))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=classes, zero_division=0)
    present = sorted(set(labels.tolist()))  # macro over classes that occur: absent ones say nothing
    return {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "macro_f1": float(f1_score(labels, pred, labels=present, average="macro",
                                   zero_division=0)) if len(labels) else float("nan"),
        "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]),
                             "f1": float(f[i]), "support": int(s[i])}
                      for i, name in enumerate(class_names)},
        "confusion": confusion_matrix(labels, pred, labels=classes).tolist(),
    }
