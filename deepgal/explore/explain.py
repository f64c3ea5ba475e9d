"""What ``deepgal explain`` runs: Grad-CAM maps of chosen rows of a file, as a gallery (each
galaxy as the model saw it, then with the map of its predicted class over it), a CSV and the
maps themselves."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..inference.cutouts import CutoutError, Cutouts
from ..plots.gallery import Cell, plot_gallery
from ..utils import atomic_write_bytes, atomic_write_text
from .cam import grad_cam
from .embed import Model, row_images


def check_rows(rows: Sequence[int], cut: Cutouts) -> np.ndarray:
    """``rows`` as int64 (k,), or CutoutError naming the first row outside ``cut``."""
    n = len(cut.names)
    if not rows:
        raise CutoutError("--rows: give at least one row number")
    bad = [r for r in rows if not 0 <= r < n]
    if bad:
        raise CutoutError(f"--rows {bad[0]}: {cut.path} has {n} images, rows 0 to {n - 1}")
    return np.asarray(rows, dtype=np.int64)


def explain(
    model: Model, cut: Cutouts, rows: np.ndarray, out: Path, batch_size: int = 32
) -> pd.DataFrame:
    """Grad-CAM of ``rows`` of ``cut`` for each one's predicted class. Writes ``out/explain.png``,
    ``out/explain.csv`` (name, label, predicted class, its probability (calibrated when the
    checkpoint carries a temperature), the layer) and ``out/explain.npz`` (``rows`` (k,),
    ``maps`` (k, S, S) float32 in [0, 1], aligned with the model's S x S input)."""
    from ..calibration import Calibration

    classes = model.class_names
    images = row_images(model, cut, rows)
    maps, logits, views, layer = grad_cam(
        model.model, images, model.pre, model.device, batch_size=batch_size
    )
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    cal = Calibration.from_checkpoint(model.ckpt, model.path)
    probs = cal.apply(probs) if cal else probs
    pred = probs.argmax(1)
    col = "file" if cut.kind == "folder" else "index"
    df = pd.DataFrame({col: [cut.names[r] for r in rows]})
    if cut.labels is not None:
        df["label"] = cut.labels[rows]
        df["label_name"] = [_name(classes, c) for c in cut.labels[rows]]
    df["predicted"], df["predicted_name"] = pred, [classes[c] for c in pred]
    df["probability"] = probs[np.arange(len(pred)), pred]
    df["layer"] = layer
    cells = []
    for i, r in enumerate(rows):
        known = f"\nlabel: {df['label_name'][i]}" if cut.labels is not None else ""
        name = cut.names[r] if col == "file" else f"#{r}"
        cells.append(Cell(views[i], f"{name}{known}"))
        cells.append(
            Cell(views[i], f"predicted {classes[pred[i]]}\np={probs[i, pred[i]]:.2f}", heat=maps[i])
        )
    out = Path(out)
    buf = io.BytesIO()
    np.savez_compressed(buf, rows=rows, maps=maps)
    atomic_write_bytes(out / "explain.npz", buf.getvalue())
    atomic_write_text(out / "explain.csv", df.to_csv(index=False, float_format="%.6f"))
    plot_gallery(
        cells,
        f"Grad-CAM of {model.path.name} ({model.ckpt.get('model_name')}, layer "
        f"{layer}): where the evidence for the predicted class lies",
        out / "explain.png",
        max_cols=6,
        pairs=True,
    )
    return df


def _name(classes: Sequence[str], c: int) -> str:
    return classes[c] if 0 <= c < len(classes) else str(c)
