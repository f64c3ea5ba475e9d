"""How a trained checkpoint reads another set of galaxies (real ones, for a model trained on the
embedded galaxies): the rows to judge on and the scores, with their uncertainties.

``deepgal evaluate`` and ``benchmarks/transfer_report.py`` (the pipeline's own selected
checkpoints on real images) both use it, so a figure means the same thing in either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data import galaxy10
from .data.heldout import held_out_rows
from .metrics import binomial_se, bootstrap_macro_f1, score


def judge_rows(
    data: str | Path,
    per_class: int | None = None,
    seed: int = 0,
    half: str | None = None,
    exclude=(),
) -> tuple[np.ndarray, dict | None]:
    """Rows of ``data`` to score: all of them, or a held-out sample (deepgal.data.heldout)
    when any of ``per_class``, ``half``, ``exclude`` is given. Returns (rows, sample info or
    None); fails, naming the files, when the exclusions leave nothing."""
    info = galaxy10.validate(data)
    if per_class is None and not half and not exclude:
        return np.arange(info.n_images), None
    rows, held = held_out_rows(data, per_class, seed, list(exclude), half=half)
    if len(rows) == 0:
        raise ValueError(
            f"{data}: no image left to score after skipping the {held['excluded']} "
            f"that duplicate {', '.join(map(str, exclude))}"
        )
    held.update(per_class_asked=per_class, seed=seed, half=half, exclude=[str(p) for p in exclude])
    return rows, held


def score_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    rows: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
    tta: bool = False,
    calibrated: bool = True,
) -> dict:
    """Scores of ``checkpoint`` on ``rows`` of the labelled file ``data``: accuracy with its
    binomial standard error, macro-F1 with a bootstrap 95 % interval, per-class recall and
    support, the confusion matrix, the checkpoint's variant and epoch, and the probabilities'
    ECE and NLL, calibrated with the checkpoint's temperature when it carries one and
    ``calibrated`` (``temperature``, and ``calibrated`` says whether it was applied)."""
    from .calibration import Calibration, ece, log_probs, nll
    from .inference import load_model
    from .inference.source import run_on_file

    model, pre, ckpt = load_model(checkpoint, device)
    probs = run_on_file(model, data, pre, device, rows, batch_size, "probs", tta, desc="evaluate")
    cal = Calibration.from_checkpoint(ckpt, checkpoint) if calibrated else None
    probs = cal.apply(probs) if cal else probs
    labels = galaxy10.read_labels(data)[rows]
    result = score(labels, probs)
    lo, hi = bootstrap_macro_f1(labels, probs.argmax(1), len(galaxy10.CLASS_NAMES))
    return {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "n": result["n"],
        "accuracy": result["accuracy"],
        "accuracy_se": binomial_se(result["accuracy"], result["n"]),
        "macro_f1": result["macro_f1"],
        "macro_f1_ci95": [lo, hi],
        "recall": {c: m["recall"] for c, m in result["per_class"].items()},
        "support": {c: m["support"] for c, m in result["per_class"].items()},
        "confusion": result["confusion"],
        "variant": ckpt.get("variant"),
        "epoch": ckpt.get("epoch"),
        "calibrated": cal is not None,
        "temperature": cal.temperature if cal else 1.0,
        "ece": ece(probs, labels),
        "nll": nll(log_probs(probs), labels),
    }
