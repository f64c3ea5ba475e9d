"""The ``cv@<variant>`` stage: k-fold cross-validation of a variant's whole recipe on every
image of the pipeline's data file, written to ``results/<variant>/cv.json`` and MLflow.

Off (``cv.folds`` 0, or the variant not in ``cv.variants``) it writes the constant "off" file
and imports neither torch nor MLflow. On, it reads the file once (uint8), groups its rows as
the split stage does (:func:`deepgal.data.split.file_groups`: same-sky or identical images are
one galaxy, kept in one fold), and runs :func:`deepgal.crossval.run_folds` with
:func:`deepgal.crossval.train_fold`: the variant's resolved config trained from scratch on
each training part, its final weights scored on the fold it never saw. Every image is scored
once. A class with fewer galaxies than folds stops the stage before any training.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import config
from .crossval_file import CVFile, FoldRecord

log = logging.getLogger(__name__)


def cross_validate(
    variant: str, data: Path, out: Path, run_file: Path | None, params: dict
) -> CVFile:
    """Write ``out`` (cv.json) for ``variant`` and, when on, log it under the variant's MLflow
    run named in ``run_file`` (``models/<variant>/mlflow_run.json``; None or absent: no
    tracking). ``params``: the whole params.yaml mapping. Returns what was written."""
    cfg = config.load_section("cv", params)
    config.check_cv_variants(cfg, params)
    if not cfg.runs(variant):
        done = CVFile(variant, folds=0)
        done.write(out)
        return done
    run = config.resolve_variant(params, variant)
    arcsec = config.load_section("split", params).group_arcsec
    device = config.load_section("base", params).device
    started = time.time()
    done, times = run_cv(run, data, cfg, arcsec, device)
    done = replace(done, minutes=(time.time() - started) / 60)
    done.write(out)
    s = done.views[done.headline_view]
    log.info(
        "%s: %d-fold CV (%s) accuracy %.3f +- %.3f (s.e.; fold spread %.3f), macro-F1 "
        "%.3f over %d images",
        variant,
        cfg.folds,
        done.headline_view,
        s["acc"],
        s["se"],
        s["spread"],
        s["macro_f1"],
        done.n,
    )
    if run_file is not None:
        from .crossval_track import log_cv

        log_cv(run_file, done, out, times)
    return done


def run_cv(run, data: Path, cfg, arcsec: float, device: str) -> tuple[CVFile, list[tuple]]:
    """Train and score every fold of ``data`` for the resolved variant ``run``; the CVFile
    (minutes 0) and per fold (start, end) in ms since the epoch."""
    import torch

    from .crossval import run_folds, summarise, train_fold
    from .data import galaxy10
    from .data.folds import cv_folds
    from .data.split import file_groups
    from .utils import pick_device

    galaxy10.validate(data)
    labels = galaxy10.read_labels(data)
    groups, grouping = file_groups(data, labels, arcsec)
    log.info(
        "%s: %d images in %d galaxies (%d rows merged)",
        data,
        len(labels),
        grouping["groups"],
        grouping["rows_in_merged_groups"],
    )
    cv_folds(labels, cfg.folds, cfg.seed, groups, str(data))  # too few: stop before reading
    images = torch.from_numpy(galaxy10.read_images(data))
    y = torch.from_numpy(labels.astype(np.int64))
    views = ("plain", "tta") if cfg.tta else ("plain",)
    dev = pick_device(device)
    times: list[tuple[int, int]] = []
    on_fold = _fold_logger(run.variant, cfg.folds, labels, views[-1], times)
    with tempfile.TemporaryDirectory(prefix="deepgal-cv-") as work:
        results = run_folds(
            labels,
            cfg.folds,
            cfg.seed,
            lambda tr, te, k: train_fold(
                run, images, y, tr, te, Path(work), k, views=views, device=dev
            ),
            groups=groups,
            path=str(data),
            on_fold=on_fold,
        )
    summaries = {v: summarise(labels, results, v, cfg.folds).to_dict() for v in views}
    records = [
        FoldRecord(
            r.fold,
            r.held.tolist(),
            {v: r.views[v].argmax(1).tolist() for v in views},
            r.wall_s / 60,
        )
        for r in results
    ]
    return CVFile(
        run.variant, cfg.folds, cfg.seed, int(len(labels)), views[-1], summaries, records
    ), times


def _fold_logger(variant: str, folds: int, labels: np.ndarray, view: str, times: list):
    """An ``on_fold`` callback for :func:`deepgal.crossval.run_folds`: logs each fold's
    held-out accuracy in ``view`` against ``labels`` (N,) and appends its (start, end), in
    ms since the epoch, to ``times``; the first fold's start is now."""
    clock = [int(time.time() * 1000)]

    def on_fold(r) -> None:
        now = int(time.time() * 1000)
        times.append((clock[0], now))
        clock[0] = now
        acc = float((r.views[view].argmax(1) == labels[r.held]).mean())
        log.info(
            "%s fold %d/%d: %d held out, accuracy %.3f (%s), %.1f min",
            variant,
            r.fold + 1,
            folds,
            len(r.held),
            acc,
            view,
            r.wall_s / 60,
        )

    return on_fold
