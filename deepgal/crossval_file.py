"""``results/<variant>/cv.json``: what the ``cv@<variant>`` stage hands to ``plot``.

One frozen dataclass with :meth:`CVFile.write` (atomic) and :func:`read_cv` (versioned, one
named error). With cross-validation off the file says so (``folds`` 0, nothing else), and its
content never changes, so the default pipeline's outputs stay as they were.

On, it holds per scoring view (``"plain"``; ``"tta"``: the 8 dihedral views averaged) the
figures of :class:`deepgal.crossval.CVSummary` (mean fold accuracy, spread, binomial s.e.,
pooled macro-F1, per-class recall, fold accuracies, confusion), and per fold its held-out rows
and their predicted classes, so every figure can be recomputed from the file alone.
Importing this module loads neither torch nor MLflow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import DeepgalError
from .utils import write_json

VERSION = 1
DIGITS = 4  # metrics.json's rounding (deepgal.headline.DIGITS)


class CVFileError(DeepgalError, ValueError):
    """A cv.json that is missing, of another version or not this layout; names the file."""


@dataclass(frozen=True)
class FoldRecord:
    """One fold: the rows it held out (indices into the data file) and, per view, the class
    each was predicted as (same order); minutes spent training and scoring it."""

    fold: int
    held: list[int]
    pred: dict[str, list[int]]
    minutes: float


@dataclass(frozen=True)
class CVFile:
    """Cross-validation of one variant. ``folds`` 0: off (every other field empty).

    ``views``: {view: CVSummary.to_dict()}; ``headline_view``: the view metrics.json shows
    ("tta" when cv.tta is on, else "plain"); ``n``: images scored; ``minutes``: the whole run.
    """

    variant: str
    folds: int
    seed: int | None = None
    n: int = 0
    headline_view: str | None = None
    views: dict[str, dict] = field(default_factory=dict)
    fold_records: list[FoldRecord] = field(default_factory=list)
    minutes: float = 0.0

    @property
    def on(self) -> bool:
        return self.folds > 0

    def to_dict(self) -> dict:
        if not self.on:  # constant: the default pipeline's cv.json never changes
            return {"version": VERSION, "variant": self.variant, "folds": 0}
        return {"version": VERSION, **asdict(self)}

    def write(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_json(path, self.to_dict())

    def headline(self) -> dict:
        """``{cv_acc, cv_se, cv_f1, cv_spread}`` of the headline view, rounded as the rest of
        metrics.json; ``{}`` when off, so the default metrics.json keeps its keys."""
        if not self.on:
            return {}
        s = self.views[self.headline_view]
        return {
            "cv_acc": round(s["acc"], DIGITS),
            "cv_se": round(s["se"], DIGITS),
            "cv_f1": round(s["macro_f1"], DIGITS),
            "cv_spread": round(s["spread"], DIGITS),
        }


def read_cv(path: str | Path) -> CVFile:
    """The :class:`CVFile` at ``path``; :class:`CVFileError` naming it when it cannot be."""
    path = Path(path)
    if not path.is_file():
        raise CVFileError(f"{path}: missing; run `dvc repro` (the cv@ stages write it)")
    try:
        d = json.loads(path.read_text())
        if d.get("version") != VERSION:
            raise CVFileError(
                f"{path}: version {d.get('version')!r}, this deepgal reads "
                f"version {VERSION}; run `dvc repro` to rewrite it"
            )
        d.pop("version")
        folds = [FoldRecord(**r) for r in d.pop("fold_records", [])]
        return CVFile(**d, fold_records=folds)
    except (json.JSONDecodeError, TypeError, AttributeError) as e:
        raise CVFileError(
            f"{path}: not a cv.json of deepgal ({e}); run `dvc repro` to rewrite it"
        ) from None


def with_cv(headline: dict[str, dict], results: str | Path) -> dict[str, dict]:
    """metrics.json's ``{variant: figures}`` with each variant's cv figures added from
    ``results/<variant>/cv.json`` when its cross-validation ran; variants without (cv off,
    or no file) keep exactly their figures."""
    out = {}
    for v, figures in headline.items():
        path = Path(results) / v / "cv.json"
        out[v] = {**figures, **(read_cv(path).headline() if path.is_file() else {})}
    return out
