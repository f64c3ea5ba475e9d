"""Choose the best checkpoint that is not overfitted, as the report did.

A kept checkpoint (epoch ``e``) *passes* when

- its train-minus-val accuracy gap is at most ``max_gap``, and
- its validation loss is at most ``(1 + max_val_loss_rise)`` times the lowest validation loss
  seen up to ``e`` (the loss has not started climbing away from its best).

Among passing checkpoints the highest validation accuracy wins (ties: the earlier epoch).
If none passes, the documented fallback is the kept checkpoint with the **lowest validation
loss**, the least overfitted by the other measure; the choice says so in ``reason``.
A checkpoint that cannot be loaded is skipped, with its file named, and the next best is used.
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import checkpoint as ckpt_io

log = logging.getLogger(__name__)


def assess(
    history: list[dict], epochs: list[int], max_gap: float, max_val_loss_rise: float
) -> list[dict]:
    """One row per kept epoch: its metrics, the gap, the loss rise, and whether it passes."""
    by_epoch = {int(m["epoch"]): m for m in history}
    rows = []
    for e in epochs:
        if e not in by_epoch:
            continue
        m = by_epoch[e]
        best_loss = min(by_epoch[k]["val/loss"] for k in by_epoch if k <= e)
        gap = m["train/accuracy"] - m["val/accuracy"]
        rise = m["val/loss"] / best_loss - 1 if best_loss > 0 else 0.0
        rows.append(
            {
                "epoch": e,
                "val_accuracy": m["val/accuracy"],
                "val_loss": m["val/loss"],
                "train_accuracy": m["train/accuracy"],
                "gap": gap,
                "val_loss_rise": rise,
                "passed": gap <= max_gap and rise <= max_val_loss_rise,
            }
        )
    return rows


def choose(
    ckpt_dir: str | Path, history: list[dict], max_gap: float, max_val_loss_rise: float
) -> dict:
    """The selection record: checkpoint path, epoch, val accuracy, gap, reason, candidates."""
    kept = dict(ckpt_io.list_epochs(ckpt_dir))
    rows = assess(history, sorted(kept), max_gap, max_val_loss_rise)
    if not rows:
        raise ckpt_io.CheckpointError(
            f"{ckpt_dir}: no epoch checkpoints with metrics in the "
            "history; run the train stage first"
        )
    passing = [r for r in rows if r["passed"]]
    if passing:
        order = sorted(passing, key=lambda r: (-r["val_accuracy"], r["epoch"]))
        rule = (
            f"highest val accuracy among {len(passing)}/{len(rows)} checkpoints within "
            f"gap <= {max_gap} and val-loss rise <= {max_val_loss_rise:.0%}"
        )
    else:
        order = sorted(rows, key=lambda r: (r["val_loss"], r["epoch"]))
        rule = (
            f"no checkpoint passed gap <= {max_gap} and val-loss rise <= "
            f"{max_val_loss_rise:.0%}; fallback: lowest val loss"
        )
    skipped = []
    for r in order:
        path = kept[r["epoch"]]
        try:
            ckpt_io.load(path)
        except ckpt_io.CheckpointError as e:
            log.warning(
                "%s; using the next best checkpoint (the choice changes: where DVC "
                "tracks the file, `dvc checkout %s` restores it, then run again)",
                e,
                path.parent,
            )
            skipped.append(str(path))
            continue
        reason = rule + (f"; skipped unreadable {', '.join(skipped)}" if skipped else "")
        return {
            "checkpoint": str(path),
            "epoch": r["epoch"],
            "val_accuracy": r["val_accuracy"],
            "train_accuracy": r["train_accuracy"],
            "gap": r["gap"],
            "val_loss": r["val_loss"],
            "val_loss_rise": r["val_loss_rise"],
            "passed": r["passed"],
            "reason": reason,
            "skipped": skipped,
            "candidates": rows,
        }
    raise ckpt_io.CheckpointError(
        f"{ckpt_dir}: every kept checkpoint is unreadable "
        f"({', '.join(skipped)}); re-run the train stage"
    )
