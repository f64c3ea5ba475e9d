"""``results/<variant>/gradcam.npz``: the Grad-CAM maps of the images the report's gallery shows
(the evaluate stage computes them with the model in memory; the plot stage only draws them).

numpy only: the plot stage reads this without torch.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np

from ..utils import atomic_write_bytes
from .record import HandoffError, missing
from .tables import _require

GRADCAM_KEYS = ("rows", "label", "pred", "confidence", "kind", "maps", "views", "layer", "split")
SKIPPED_KEY = "skipped"
KINDS = ("correct", "confused")


@dataclasses.dataclass(frozen=True)
class GradCams:
    """k images of one split and the Grad-CAM map of each one's predicted class.

    ``rows`` (k,) int64: rows in the data file; ``label``, ``pred`` (k,) int64: true and
    predicted class (as predictions.csv says); ``confidence`` (k,) float64: the predicted
    class's calibrated probability; ``kind`` (k,) str: ``correct`` or ``confused``; ``maps``
    (k, S, S) float32 in [0, 1]; ``views`` (k, S, S, 3) uint8: each image as the model saw it
    (after its crop and resize), what the maps align with; ``layer``: the module attributed to;
    ``split``: the images' split; ``skipped``: why there are no maps ("" when there are).
    """

    rows: np.ndarray
    label: np.ndarray
    pred: np.ndarray
    confidence: np.ndarray
    kind: np.ndarray
    maps: np.ndarray
    views: np.ndarray
    layer: str = ""
    split: str = ""
    skipped: str = ""

    @classmethod
    def skip(cls, reason: str, split: str = "") -> GradCams:
        """No maps, and ``reason`` (a sentence the report prints) why not."""
        if not reason:
            raise ValueError("a skipped Grad-CAM gallery needs its reason")
        none = np.zeros(0, np.int64)
        return cls(
            none,
            none,
            none,
            np.zeros(0),
            np.zeros(0, "<U8"),
            np.zeros((0, 0, 0), np.float32),
            np.zeros((0, 0, 0, 3), np.uint8),
            split=split,
            skipped=reason,
        )

    def problem(self) -> str | None:
        """What makes the arrays disagree with each other, or None."""
        k = len(self.rows)
        sizes = {n: len(getattr(self, n)) for n in GRADCAM_KEYS[:7]}
        if set(sizes.values()) != {k}:
            return f"arrays of different lengths {sizes}"
        if self.maps.ndim != 3 or self.views.shape != (*self.maps.shape, 3):
            return f"maps {self.maps.shape} and views {self.views.shape} must be (k, S, S), (k, S, S, 3)"
        if bad := sorted(set(self.kind.tolist()) - set(KINDS)):
            return f"kind {bad[0]!r} is none of {KINDS}"
        if bool(self.skipped) == bool(k):
            return "either maps or a reason they were skipped, not both nor neither"
        return None

    def write(self, path: str | Path) -> Path:
        if problem := self.problem():
            raise ValueError(f"Grad-CAM gallery for {path}: {problem}")
        buf = io.BytesIO()
        arrays = {n: getattr(self, n) for n in GRADCAM_KEYS[:7]}
        strings = {n: np.array(getattr(self, n)) for n in (*GRADCAM_KEYS[7:], SKIPPED_KEY)}
        np.savez_compressed(buf, **arrays, **strings)
        atomic_write_bytes(path, buf.getvalue())
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> GradCams:
        """The file at ``path``, checked; HandoffError naming what is missing or inconsistent."""
        path = Path(path)
        if not path.exists():
            raise missing(path, "gradcam.npz (the report's Grad-CAM maps)", "evaluate")
        with np.load(path, allow_pickle=False) as npz:
            _require(path, npz.files, (*GRADCAM_KEYS, SKIPPED_KEY), "arrays", "evaluate")
            arrays = [npz[k] for k in GRADCAM_KEYS[:7]]
            strings = [str(npz[k]) for k in (*GRADCAM_KEYS[7:], SKIPPED_KEY)]
        cams = cls(*arrays, *strings)
        if problem := cams.problem():
            raise HandoffError(f"{path}: {problem}; re-run `dvc repro evaluate` to rewrite it")
        return cams
