"""The report's Grad-CAM gallery, computed where the model already is: the evaluate stage.

Which images (:func:`pick_rows`), of the test split (the val split without one): per class the
:data:`PER_CLASS` correctly classified images the model was surest of, then the surest mistakes
(:data:`PER_PAIR` each) of the :data:`PAIRS` most confused (true, predicted) class pairs.
Surest, not a seeded draw: the clearest cases of what the model keys on, and the same images
from any seed; ties go to the lower row. Each map is :func:`deepgal.explore.cam.grad_cam` of the
class predictions.csv predicted (with ``evaluate.tta`` the 8-view average's, not one view's).

A model Grad-CAM cannot serve (no convolutional target layer) or an install without Captum
gives a file that says why instead of maps (:meth:`deepgal.handoff.GradCams.skip`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data import galaxy10
from ..handoff import GradCams, Predictions
from ..plots.images import pick_confused
from ..report import most_confused
from .cam import MissingExtraError, grad_cam, unsupported

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from ..models import Net
    from ..transforms import Preprocess

log = logging.getLogger("evaluate")
PER_CLASS = 2  # correctly classified images per class
PAIRS = 3  # most confused class pairs
PER_PAIR = 2  # misclassified images per pair


def gallery_split(preds: Predictions) -> str | None:
    """``test`` when predictions.csv has test rows, else ``val`` when it has val rows, else None."""
    present = set(preds.frame["split"])
    return next((s for s in ("test", "val") if s in present), None)


def pick_rows(part: pd.DataFrame) -> pd.DataFrame:
    """The gallery's rows of ``part`` (one split's rows of predictions.csv: ``index``, ``label``,
    ``pred``, ``confidence``), in the order drawn: correct ones by class, then each confused
    pair's mistakes; the columns above plus ``kind`` (``correct`` or ``confused``)."""
    import pandas as pd

    ranked = part.sort_values(["confidence", "index"], ascending=[False, True], kind="stable")
    right = ranked[ranked["label"] == ranked["pred"]]
    correct = right.groupby("label", sort=True).head(PER_CLASS)
    correct = correct.sort_values("label", kind="stable").assign(kind="correct")
    cm = Predictions(part).confusion_matrix(part["split"].iloc[0]) if len(part) else None
    pairs = [] if cm is None else [(p["true_id"], p["pred_id"]) for p in most_confused(cm, k=PAIRS)]
    picked = pick_confused(part, pairs, per_pair=PER_PAIR, references=0)
    by_index = part.set_index("index")
    wrong = [by_index.loc[p.mistakes].reset_index() for p in picked]
    columns = ["index", "label", "pred", "confidence", "kind"]
    frames = [correct] + [w.assign(kind="confused") for w in wrong]
    return pd.concat([f[columns] for f in frames], ignore_index=True)


def gradcam_gallery(
    model: Net,
    pre: Preprocess,
    device: torch.device,
    data: Path,
    preds: Predictions,
    batch_size: int = 32,
) -> GradCams:
    """The Grad-CAM maps of :func:`pick_rows` of ``preds`` (images read from ``data``), or the
    reason there are none."""
    if reason := unsupported(model):
        return GradCams.skip(reason)
    split = gallery_split(preds)
    if split is None:
        return GradCams.skip("no val or test images to show")
    chosen = pick_rows(preds.frame[preds.frame["split"] == split])
    rows = chosen["index"].to_numpy(np.int64)
    pred = chosen["pred"].to_numpy(np.int64)
    try:
        maps, _, views, layer = grad_cam(
            model, galaxy10.read_images(data, rows), pre, device, pred, batch_size
        )
    except MissingExtraError as e:
        log.warning("Grad-CAM gallery skipped: %s", e)
        return GradCams.skip(str(e), split)
    return GradCams(
        rows,
        chosen["label"].to_numpy(np.int64),
        pred,
        chosen["confidence"].to_numpy(np.float64),
        chosen["kind"].to_numpy("<U8"),
        maps,
        views,
        layer,
        split,
    )
