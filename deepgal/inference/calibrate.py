"""The select stage's calibrated copy of the chosen checkpoint: its inference part plus a
:class:`deepgal.calibration.Calibration` fitted on the validation split, in one file that
``evaluate``, ``deepgal predict``/``evaluate`` and the MLflow model read.

The raw epoch checkpoints stay as the train stage wrote them (they are its outputs); the copy
is the select stage's own output, so the pipeline never rewrites another stage's file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..calibration import Calibration
from ..checkpoint import save_for_inference
from ..data.galaxy10 import read_labels
from . import load_model
from .source import run_on_file


def write_calibrated(
    src: str | Path,
    dest: str | Path,
    data: str | Path | None,
    val_idx: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
) -> Calibration:
    """Fit the temperature of checkpoint ``src`` on rows ``val_idx`` (n,) int of the labelled
    file ``data`` (logits of one forward pass, no TTA) and write ``src``'s inference part with
    the calibration to ``dest`` atomically. No rows (or no ``data``): temperature 1."""
    val_idx = np.asarray(val_idx, dtype=np.int64)
    if data is None or len(val_idx) == 0:
        what = "the validation split" if data is not None else "no --data/--split given: nothing"
        cal = Calibration.fit(np.empty((0, 0), np.float32), np.empty(0, np.int64), what)
    else:
        model, pre, _ = load_model(src, device)
        logits = run_on_file(
            model, data, pre, device, val_idx, batch_size, "logits", desc="calibrate"
        )
        cal = Calibration.fit(logits, read_labels(data)[val_idx], "the validation split")
    save_for_inference(src, dest, {"calibration": cal.to_dict()})
    return cal
