"""``deepgal predict --min-purity P``: per class, keep only the galaxies whose probability of
their predicted class reaches that class's purity threshold (:mod:`deepgal.calibration`), and
say which threshold each class used, or that none reaches the purity asked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..calibration import Threshold


def select_pure(
    probs: np.ndarray, thresholds: Sequence[Threshold]
) -> tuple[np.ndarray, np.ndarray]:
    """(kept (N,) bool, threshold of the row's predicted class (N,) float, NaN where its class
    has none) for calibrated probs (N, C). A class without a threshold keeps nothing."""
    probs = np.asarray(probs)
    pred = probs.argmax(axis=1)
    per_class = np.array([np.nan if t.threshold is None else t.threshold for t in thresholds])
    thr = per_class[pred]
    conf = probs[np.arange(len(pred)), pred]
    with np.errstate(invalid="ignore"):  # NaN thresholds compare False: nothing kept
        kept = conf >= thr
    return kept, thr


def summary(
    thresholds: Sequence[Threshold],
    class_names: Sequence[str],
    pred: np.ndarray,
    kept: np.ndarray,
    min_purity: float,
) -> list[str]:
    """One line per class: its threshold and what it kept here, or why it kept nothing."""
    lines = []
    for t in thresholds:
        mine = pred == t.class_id
        name, here = class_names[t.class_id], f"{int(kept[mine].sum())} of {int(mine.sum())}"
        if t.threshold is None:
            why = (
                "no validation galaxy is predicted as it"
                if t.predicted == 0
                else f"the best any threshold reaches is {t.best_precision:.1%} of "
                f"{t.predicted} predicted"
            )
            lines.append(
                f"  {name}: NO threshold reaches {min_purity:.0%} purity on the "
                f"validation split ({why}): none kept (0 of {int(mine.sum())})"
            )
        else:
            lines.append(
                f"  {name}: p >= {t.threshold:.4f} (validation: {t.precision:.1%} "
                f"precision, {t.kept} of {t.predicted} predicted kept): kept {here}"
            )
    return lines
