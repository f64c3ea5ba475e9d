"""MLflow records of a cross-validation: one run per fold set, nested under the variant's
training run, and one child run per fold under it (best effort, after cv.json is written).

The fold-set run holds the summary (``cv.acc``, ``cv.se``, ``cv.f1``, ``cv.spread`` of the
headline view, the same per view as ``cv.<view>.<figure>``, ``cv.n``) and cv.json; each fold's
run its accuracy per view and its held-out ``n``, started and ended when the fold was.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .crossval_file import CVFile

log = logging.getLogger(__name__)


def summary_metrics(cv: CVFile) -> dict[str, float]:
    """The fold-set run's numbers: the headline view bare, every view under its name."""
    out: dict[str, float] = {"cv.n": cv.n, "cv.folds": cv.folds}
    for view, s in cv.views.items():
        figures = {
            "acc": s["acc"],
            "se": s["se"],
            "f1": s["macro_f1"],
            "spread": s["spread"],
            "pooled_acc": s["pooled_acc"],
        }
        out |= {f"cv.{view}.{k}": v for k, v in figures.items()}
        out |= {f"cv.{view}.recall.{c}": r for c, r in s["recall"].items()}
        if view == cv.headline_view:
            out |= {f"cv.{k}": v for k, v in figures.items()}
    return out


def log_cv(run_file: Path, cv: CVFile, cv_json: Path, times: list[tuple[int, int]]) -> None:
    """Log ``cv`` under the variant's run named in ``run_file``; ``times``: per fold (start,
    end) ms since the epoch. Nothing happens without a run or with MLflow off."""
    from . import tracking

    variant_run = tracking.open_run(run_file)
    if variant_run is None:
        return
    start = times[0][0] if times else None
    parent = tracking.start_nested(
        variant_run,
        f"{cv.variant} cv {cv.folds}-fold",
        tags={"deepgal.kind": "cv", "deepgal.variant": cv.variant},
        params={"cv.folds": cv.folds, "cv.seed": cv.seed, "cv.views": ",".join(cv.views)},
        start_ms=start,
    )
    if parent is None:
        return
    for k, rec in enumerate(cv.fold_records):
        t0, t1 = times[k] if k < len(times) else (None, None)
        child = tracking.start_nested(
            parent,
            f"{cv.variant} fold {rec.fold}",
            tags={"deepgal.kind": "cv_fold"},
            params={"fold": rec.fold},
            start_ms=t0,
        )
        if child is None:
            return
        child.log_metrics(
            {
                "cv.fold.n": len(rec.held),
                "cv.fold.accuracy": cv.views[cv.headline_view]["fold_acc"][k],
            }
            | {f"cv.fold.{v}.accuracy": s["fold_acc"][k] for v, s in cv.views.items()}
        )
        child.end(t1)
    parent.log_metrics(summary_metrics(cv))
    parent.log_artifact(cv_json, "cv")
    parent.end(times[-1][1] if times else None)
    log.info("MLflow: fold-set run %s under %s", parent.run_id, variant_run.run_id)
