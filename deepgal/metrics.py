"""Scores of predicted probabilities against labels: accuracy, macro-F1, per class, confusion.

Counted from the confusion matrix with numpy, with scikit-learn's definitions (F1 =
2 TP / (2 TP + FP + FN), 0 where undefined, macro over the classes present):
tests/test_metrics.py checks every number against ``sklearn.metrics``. Not sklearn itself
because its import (scipy.stats) costs ~1.8 s in each of the five evaluate processes of the
default run, for a few lines of arithmetic.
"""

from __future__ import annotations

import numpy as np

from .data.galaxy10 import CLASS_NAMES


def confusion_from_labels(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts: rows the true class, columns the predicted one."""
    labels, pred = np.asarray(labels, np.int64), np.asarray(pred, np.int64)
    for name, a in (("labels", labels), ("predictions", pred)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"{name} must lie in 0..{n_classes - 1}; got {a.min()}..{a.max()}")
    return np.bincount(labels * n_classes + pred, minlength=n_classes**2).reshape(
        n_classes, n_classes
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def score(
    labels: np.ndarray, probs: np.ndarray, class_names: tuple[str, ...] = CLASS_NAMES
) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    labels (N,) int, probs (N, C) float. Classes absent from ``labels`` still get a row
    (support 0); macro-F1 averages over the classes present (absent ones say nothing).
    Confusion: rows true class, columns predicted, as nested lists of int.
    """
    labels = np.asarray(labels)
    pred = probs.argmax(1)
    cm = confusion_from_labels(labels, pred, len(class_names))
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    p, r = _ratio(tp, predicted), _ratio(tp, support)
    f = _ratio(2 * tp, support + predicted)
    present = support > 0
    return {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "macro_f1": float(f[present].mean()) if len(labels) else float("nan"),
        "per_class": {
            name: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion": cm.tolist(),
    }


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error sqrt(p (1 - p) / n) of an accuracy ``p`` counted on ``n`` images: what
    the choice of those images alone moves it by (±7 points at 50 images, ±1.5 at 1,000)."""
    return float(np.sqrt(accuracy * (1 - accuracy) / n)) if n else float("nan")


def _macro_f1(cm: np.ndarray) -> float:
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    present = support > 0
    return float(_ratio(2 * tp, support + predicted)[present].mean())


def bootstrap_macro_f1(
    labels: np.ndarray, pred: np.ndarray, n_classes: int, reps: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95 % interval (2.5th, 97.5th percentile) of macro-F1 over ``reps`` resamplings of the
    images with replacement, seeded: the same inputs always give the same interval."""
    labels, pred = np.asarray(labels, np.int64), np.asarray(pred, np.int64)
    if len(labels) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    flat = labels * n_classes + pred
    vals = [
        _macro_f1(
            np.bincount(
                flat[rng.integers(0, len(flat), len(flat))], minlength=n_classes**2
            ).reshape(n_classes, n_classes)
        )
        for _ in range(reps)
    ]
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def accuracy_and_f1(result: dict) -> dict:
    """``{split: {"accuracy", "macro_f1"}}`` of an evaluate result (:func:`score` per split)
    for each of val and test present in it: the scores a variant's metrics.json keeps."""
    return {
        s: {k: result[s][k] for k in ("accuracy", "macro_f1")}
        for s in ("val", "test")
        if s in result
    }
