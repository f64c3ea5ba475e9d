"""The evaluate stage's per-image predictions (``results/<variant>/predictions.csv``): one row
per val/test image, written by :func:`write_predictions`, read back by :func:`read_predictions`.

Columns: ``split`` (str, ``val`` or ``test``), ``index`` (int, the image's row in the data
file), ``label`` (int, true class), ``pred`` (int, predicted class), ``confidence`` (float, the
predicted class's probability). The report's confusion, chance test and confused-pairs gallery
are all computed from this one file, so they can never disagree with each other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from deepgal.utils import atomic_write_text

PREDICTION_COLUMNS = ("split", "index", "label", "pred", "confidence")


def predictions_frame(parts: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Rows of every split in ``parts``: split name -> (index (N,) int, label (N,) int,
    probs (N, K) float) in the order given; ``pred`` is the argmax of ``probs``."""
    frames = []
    for split, (index, label, probs) in parts.items():
        probs = np.asarray(probs)
        index, label = np.asarray(index, dtype=np.int64), np.asarray(label, dtype=np.int64)
        if probs.ndim != 2 or not len(index) == len(label) == len(probs):
            raise ValueError(f"predictions of {split}: need index (N,), label (N,), probs (N, K); "
                             f"got {index.shape}, {label.shape}, {probs.shape}")
        pred = probs.argmax(axis=1)
        frames.append(pd.DataFrame({"split": split, "index": index, "label": label, "pred": pred,
                                    "confidence": probs[np.arange(len(pred)), pred]}))
    if not frames:
        return pd.DataFrame({c: [] for c in PREDICTION_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def write_predictions(path: str | Path,
                      parts: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Path:
    """Write :func:`predictions_frame` of ``parts`` as CSV at ``path`` atomically."""
    atomic_write_text(path, predictions_frame(parts).to_csv(index=False, float_format="%.5f"))
    return Path(path)


def read_predictions(path: str | Path, num_classes: int = 10) -> pd.DataFrame:
    """The predictions file at ``path``, checked: every column present, classes in range."""
    df = pd.read_csv(path, dtype={"split": str})
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; got {list(df.columns)} (the evaluate "
                         "stage writes them; re-run it: dvc repro evaluate)")
    for col in ("label", "pred"):
        bad = df[(df[col] < 0) | (df[col] >= num_classes)]
        if not bad.empty:
            raise ValueError(f"{path}: {col} {int(bad[col].iloc[0])} (line {bad.index[0] + 2}) is "
                             f"not a class 0..{num_classes - 1}")
    return df


def confusion(predictions: pd.DataFrame, split: str, num_classes: int = 10) -> np.ndarray:
    """(K, K) int64 confusion of ``split``'s rows: rows true class, columns predicted."""
    part = predictions[predictions["split"] == split]
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (part["label"].to_numpy(np.int64), part["pred"].to_numpy(np.int64)), 1)
    return cm
