"""Scores of predicted probabilities against labels: accuracy, macro-F1, per class, confusion.

sklearn is imported here and nowhere in the inference path, so training does not load it.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from .data.galaxy10 import CLASS_NAMES


def score(labels: np.ndarray, probs: np.ndarray,
          class_names: tuple[str, ...] = CLASS_NAMES) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    labels (N,) int, probs (N, C) float. Classes absent from ``labels`` still get a row
    (support 0); macro-F1 averages over the classes present (absent ones say nothing).
    Confusion: rows true class, columns predicted, as nested lists of int.
    """
    pred = probs.argmax(1)
    classes = list(range(len(class_names)))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=classes, zero_division=0)
    present = sorted(set(labels.tolist()))
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


def headline(result: dict) -> dict:
    """The few numbers of an evaluate result that DVC declares as metrics (contract 4):
    ``{split: {"accuracy", "macro_f1"}}`` for each split present in ``result``."""
    return {s: {k: result[s][k] for k in ("accuracy", "macro_f1")}
            for s in ("val", "test") if s in result}
