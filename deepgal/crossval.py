"""k-fold cross-validation of a training recipe on a small labelled set.

With a few hundred (or a few dozen) labelled galaxies one split says little; the estimate a
user can trust is every image scored once by a model that never saw it. This module has the
two halves every k-fold user here needs (the recipe benchmark, the ``cv`` and ``finetune``
stages):

- :func:`run_folds` deals the folds (:func:`deepgal.data.folds.cv_folds`: stratified, seeded,
  groups kept whole) and calls one ``train_and_predict(train_idx, held_idx, fold)`` per fold;
- :func:`summarise` turns the held-out probabilities into the figures reported everywhere:
  mean fold accuracy, its spread across folds, the binomial s.e. of the pooled accuracy,
  pooled macro-F1 and per-class recall (classes present only), the pooled confusion matrix.

:func:`train_fold` is the ``train_and_predict`` of a pipeline variant trained from scratch
(or from ``init``) with the library's own loop, so a CV figure measures what the pipeline does.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data.folds import cv_folds
from .data.galaxy10 import CLASS_NAMES
from .data.split import count_levels, level_moments
from .metrics import binomial_se, score


@dataclass(frozen=True)
class FoldResult:
    """One fold's held-out rows (int64 indices into the set) and their (n, C) probabilities;
    ``views`` maps a scoring name ("plain", "tta") to its probabilities."""

    fold: int
    held: np.ndarray
    views: dict[str, np.ndarray]
    wall_s: float


@dataclass(frozen=True)
class CVSummary:
    """Figures of one scoring over every fold run; fractions in [0, 1]."""

    folds: int
    folds_run: int
    n: int
    fold_acc: list[float]
    acc: float  # mean of the fold accuracies
    spread: float  # population std of the fold accuracies
    se: float  # binomial s.e. of the pooled accuracy over the n images
    pooled_acc: float
    macro_f1: float  # pooled, over the classes present
    recall: dict[str, float]  # pooled, classes present only
    confusion: list[list[int]] = field(repr=False)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def identical_images(images: np.ndarray) -> np.ndarray:
    """Group ids (N,) int64 for images (N, H, W, 3): byte-identical images share a group, so
    k-fold never scores a galaxy that its training folds contain. Ids 0..G-1 in order of
    first row (as :func:`deepgal.data.split.identical_groups` does for a file)."""
    keys: dict[bytes, int] = {}
    return np.array(
        [
            keys.setdefault(hashlib.sha256(np.ascontiguousarray(im).tobytes()).digest(), len(keys))
            for im in images
        ],
        np.int64,
    )


TrainAndPredict = Callable[[np.ndarray, np.ndarray, int], dict[str, np.ndarray]]


def run_folds(
    labels: np.ndarray,
    folds: int,
    seed: int,
    train_and_predict: TrainAndPredict,
    groups: np.ndarray | None = None,
    only: list[int] | None = None,
    path: str = "the labelled set",
    on_fold: Callable[[FoldResult], None] | None = None,
) -> list[FoldResult]:
    """Train and score each fold (or only the fold numbers in ``only``); the held-out rows of
    a fold are never in its training rows. ``train_and_predict`` returns {view: (n_held, C)
    probabilities}; ``on_fold`` is called after each fold (progress, tracking)."""
    splits = cv_folds(labels, folds, seed, groups, path)
    out = []
    for k, (tr, te) in enumerate(splits):
        if only is not None and k not in only:
            continue
        t0 = time.perf_counter()
        views = train_and_predict(tr, te, k)
        for name, p in views.items():
            if p.shape[0] != len(te):
                raise ValueError(
                    f"fold {k} view {name!r}: {p.shape[0]} rows of probabilities "
                    f"for {len(te)} held-out images"
                )
        result = FoldResult(k, te, views, time.perf_counter() - t0)
        out.append(result)
        if on_fold is not None:
            on_fold(result)
    return out


def summarise(
    labels: np.ndarray,
    results: list[FoldResult],
    view: str,
    folds: int,
    class_names: tuple[str, ...] = CLASS_NAMES,
) -> CVSummary:
    """Pool one view's held-out probabilities over the folds in ``results`` and score them
    against ``labels`` (N,) int."""
    if not results:
        raise ValueError("no folds were run: nothing to summarise")
    labels = np.asarray(labels)
    accs = [float((r.views[view].argmax(1) == labels[r.held]).mean()) for r in results]
    rows = np.concatenate([r.held for r in results])
    probs = np.concatenate([r.views[view] for r in results])
    pooled = score(labels[rows], probs, class_names)
    return CVSummary(
        folds=folds,
        folds_run=len(results),
        n=int(len(rows)),
        fold_acc=accs,
        acc=float(np.mean(accs)),
        spread=float(np.std(accs)),
        se=binomial_se(pooled["accuracy"], len(rows)),
        pooled_acc=pooled["accuracy"],
        macro_f1=pooled["macro_f1"],
        recall={c: v["recall"] for c, v in pooled["per_class"].items() if v["support"] > 0},
        confusion=pooled["confusion"],
    )


def _fold_preprocess(run, train_images: torch.Tensor):
    """The :class:`~deepgal.transforms.Preprocess` of a fold: ``run``'s input size and crop,
    normalised with the statistics of the fold's train images (n, H, W, 3) uint8."""
    from .transforms import Preprocess

    # Counted as the split stage counts them (uint8 level histograms, no float copy of the
    # images); the std is the sample std (n - 1), as CV figures have been computed since this
    # module began.
    hist = count_levels(train_images.numpy(), np.zeros((3, 256), np.int64))
    mean, pop_std = level_moments(hist)
    n = int(hist[0].sum())
    std = [s * (n / (n - 1)) ** 0.5 for s in pop_std]
    return Preprocess(input_size=run.input_size, crop=run.crop, mean=tuple(mean), std=tuple(std))


def train_fold(
    run,
    images: torch.Tensor,
    labels: torch.Tensor,
    tr: np.ndarray,
    te: np.ndarray,
    work: Path,
    fold: int,
    init: dict | None = None,
    views: tuple[str, ...] = ("plain", "tta"),
    device: torch.device | None = None,
) -> dict[str, np.ndarray]:
    """Train a variant (``run``: a resolved :class:`~deepgal.config.RunCfg`) on rows ``tr``
    with :func:`deepgal.training.fit` and return the final weights' probabilities on rows
    ``te`` per view ("plain"; "tta": the 8 dihedral views averaged). The final weights (the
    EMA's when ``ema`` > 0) are scored: the held-out fold never picks an epoch. ``images``
    (N, H, W, 3) uint8, ``labels`` (N,) int64; ``init`` a state dict to start from;
    ``device`` where to train and score (default the CPU)."""
    from .data.galaxy10 import NUM_CLASSES
    from .inference import run_model
    from .models import build_model
    from .training import RunSpec, Split, fit
    from .transforms import presize, zoom_bound
    from .utils import seed_everything

    pre = _fold_preprocess(run, images[tr])
    train = Split(presize(images[tr], pre, zoom_bound(run.augment)), labels[tr])
    held = Split(presize(images[te], pre), labels[te])
    seed_everything(run.seed, run.deterministic)
    model = build_model(run.model, NUM_CLASSES, run.input_size, run.pretrained)
    if init is not None:
        model.load_state_dict(init)
    ckpt = work / f"fold{fold}"
    spec = RunSpec(
        cfg=run,
        preprocess=pre,
        ckpt_dir=ckpt,
        fingerprint=f"fold{fold}",
        meta={"variant": run.variant, "model_name": run.model},
    )
    device = device or torch.device("cpu")
    fit(model, train, held, spec, device, sinks=[], resume=False)
    state = torch.load(ckpt / "last.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return {
        name: run_model(
            model,
            held.images,
            pre,
            device,
            tta=name == "tta",
            precision=run.precision,
            channels_last=run.channels_last,
        )
        for name in views
    }
