"""Feature embeddings (N, D) to 2-D maps with UMAP, t-SNE and PCA: one map per method, fitted on
the train split, with val and test placed on it, so a person sees where the val errors fall
among the train clusters. The methods themselves (standardiser, PCA first, numba cache,
determinism) are in :mod:`deepgal.reduce_methods`; the neighbour searches of UMAP and t-SNE
in :mod:`deepgal.neighbours`.

Scale: the neighbour searches are exact up to ``exact_max`` train points and approximate
above; with ``fit_max``, each map is fitted on a seeded sample of that many train
points and every other train point is placed on the map as val and test are, so the work
grows with the points placed, not with the square of the points fitted.

Memory: the features may be an open HDF5 dataset (:meth:`deepgal.handoff.Features.open`);
only the fitted sample (``fit_max`` rows) is held whole, everything else is read, reduced to
``pca_dims`` and placed :func:`_read_rows` rows at a time, so the stage's memory does not grow
with the number of points (a 4,096-D float32 matrix of 283,000 points is 4.6 GB).

Tiny splits: a split with no rows is skipped. When the reference split has fewer than
:data:`MIN_POINTS` rows, UMAP and t-SNE are meaningless (and crash), so every split gets PCA
coordinates with a warning; t-SNE perplexity and UMAP ``n_neighbors`` are clipped to what the
reference size allows.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict

import numpy as np
import pandas as pd

from deepgal.data.galaxy10 import read_runs
from deepgal.neighbours import EXACT_MAX
from deepgal.reduce_methods import (
    _pca_map,
    _reference_fit,
    _reference_prep,  # noqa: F401  (tests reach it here)
    _settings,
    _tsne_map,
    _umap_map,
)

SPLITS = ("train", "val", "test")
# UMAP's spectral initialisation needs N > 3 and t-SNE with a handful of points only scatters
# them; below this many reference rows every split is mapped with PCA instead.
MIN_POINTS = 5
COLUMNS = ("split", "method", "index", "label", "x", "y")


# Rows read (and standardised, and reduced by PCA) at a time: this many bytes of float32 features.
READ_BYTES = 256 << 20


def _read_rows(dim: int) -> int:
    """Rows of ``dim``-D float32 features read at a time: :data:`READ_BYTES` worth, >= 1,024."""
    return max(1024, READ_BYTES // (4 * max(int(dim), 1)))


class _Rows:
    """Rows ``rows`` (sorted) of an (N, D) array or HDF5 dataset, read only when indexed:
    ``view[i]`` (i sorted positions or a slice) -> float32 (len(i), D). Lets a split of an open
    features file pass where an array would, without reading it."""

    def __init__(self, x, rows: np.ndarray):
        self.x, self.rows = x, np.asarray(rows, np.int64)
        self.shape, self.ndim = (len(self.rows), int(np.shape(x)[1])), 2

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx) -> np.ndarray:
        rows = self.rows[idx]
        part = self.x[rows] if isinstance(self.x, np.ndarray) else read_runs(self.x, rows)
        return np.asarray(part, np.float32)


def _owned(x, rows: np.ndarray | None = None) -> np.ndarray:
    """x[rows] (all of x by default) as a new float32 array, never a view of the caller's: the
    fit standardises it in place."""
    if isinstance(x, _Rows):
        return x[slice(None) if rows is None else rows]  # read from the file: already new
    return np.array(x if rows is None else np.asarray(x)[rows], np.float32, copy=True)


def _all_finite(x) -> bool:
    """No NaN or inf in x (N, D), read :func:`_read_rows` rows at a time."""
    step = _read_rows(np.shape(x)[1])
    return all(np.isfinite(np.asarray(x[a : a + step])).all() for a in range(0, len(x), step))


def _check_inputs(x_ref, others: Mapping, pca_dims, exact_max, fit_max) -> None:
    """ValueError naming the knob or array that is wrong, before any work."""
    if pca_dims is not None and pca_dims < 2:
        raise ValueError(f"pca_dims must be >= 2 or None (no pre-reduction); got {pca_dims}")
    if exact_max is not None and exact_max < 0:
        raise ValueError(
            f"exact_max must be >= 0 or None (always exact neighbours); got {exact_max}"
        )
    if fit_max is not None and fit_max < MIN_POINTS:
        raise ValueError(f"fit_max must be >= {MIN_POINTS} or None (fit on all); got {fit_max}")
    for name, x in {"reference": x_ref, **others}.items():
        if np.ndim(x) != 2 or np.shape(x)[1] != np.shape(x_ref)[1]:
            raise ValueError(
                f"features ({name}) must be (N, {np.shape(x_ref)[-1]}); got shape {np.shape(x)}"
            )
        if not _all_finite(x):
            raise ValueError(
                f"features ({name}) contain NaN or inf; check the evaluate stage that wrote them"
            )
    if len(x_ref) == 0:
        raise ValueError("the reference split (train) has no rows: nothing to fit a map on")


def _fit_rows(n: int, fit_max: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices (fit_max,) int64 of a seeded random sample of n rows; None when
    ``fit_max`` is None or not smaller than n (fit on every row)."""
    if fit_max is None or fit_max >= n:
        return None
    return np.sort(np.random.default_rng([seed, 3]).choice(n, fit_max, replace=False))


# New points are placed this many at a time, so that one chunk's standardised copies are held
# (283,000 x 512-D at once: ~0.9 GB) and not all of them. UMAP and openTSNE move only the new
# points, against the fixed map, so a chunk is placed as a call with it alone would place it;
# a split up to this size is placed in one call. Not smaller: each openTSNE transform call
# pays a fixed cost for the fitted map (20,000-row chunks made t-SNE's placement of 269,000
# points 1.8x slower).
PLACE_CHUNK = 100_000


def _fit(x_fit: np.ndarray, method: str, cfg, seed: int, pca_dims, exact_max):
    """(coordinates (N, 2) float32 of x_fit, ``place(x (M, D), rows=None)`` -> coordinates of
    x[rows] on the same map)."""
    prep, z_fit = _reference_fit(x_fit, method, seed, pca_dims)  # x_fit standardised in place
    z_fit = np.asarray(z_fit, np.float32)
    # Rows placed per call, as many as PLACE_CHUNK but no more than READ_BYTES of reduced rows:
    # the pca method places standardised rows at full width (4,096-D for smallnet), where
    # 100,000 of them were 1.6 GB, twice over while joined (reduce's peak at 283,000 images).
    chunk = int(min(PLACE_CHUNK, max(1, READ_BYTES // (4 * max(z_fit.shape[1], 1)))))
    if method == "pca":
        xy, place = _pca_map(z_fit, seed)
    elif method == "tsne":
        xy, place = _tsne_map(z_fit, cfg, seed, exact_max)
    else:
        xy, place = _umap_map(z_fit, cfg, seed, exact_max)

    def place_raw(x, rows: np.ndarray | None = None) -> np.ndarray:
        """Coordinates (M, 2) float32 of x[rows] (all of x by default; rows sorted), placed
        ``chunk`` rows at a time, each chunk read and reduced :func:`_read_rows` rows at a time;
        0 rows give (0, 2) (scikit-learn refuses to transform 0 rows)."""
        rows = np.arange(len(x)) if rows is None else rows
        step = _read_rows(np.shape(x)[1])
        out = np.empty((len(rows), 2), np.float32)
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            z = np.concatenate(
                [
                    prep.transform(np.asarray(x[part[a : a + step]], np.float32)).astype(np.float32)
                    for a in range(0, len(part), step)
                ]
            )
            out[start : start + len(part)] = place(z)
        return out

    return np.asarray(xy, np.float32), place_raw


def fit_maps(
    x_ref: np.ndarray,
    others: Mapping[str, np.ndarray],
    method: str,
    seed: int,
    pca_dims: int | None = 50,
    exact_max: int | None = EXACT_MAX,
    fit_max: int | None = None,
    **settings,
) -> tuple[np.ndarray, dict, dict]:
    """Fit ``method`` on x_ref (N, D) and place each of ``others`` (M, D) on the same map.

    Returns (reference coordinates (N, 2) float32, ``{name: (M, 2) float32}``, ``{"fit":
    seconds, name: seconds}``). UMAP's and t-SNE's neighbour searches are exact up to
    ``exact_max`` reference points, approximate above (:mod:`deepgal.neighbours`; None:
    always exact). With ``fit_max`` below N, the method (and its standardiser and PCA) is
    fitted on a seeded sample of ``fit_max`` reference rows and the other reference rows are
    placed on that map like ``others`` (in "fit" seconds). ``settings`` are the method's
    keys (:class:`UmapSettings`, :class:`TsneSettings`); unknown methods or keys raise
    ValueError before any work.
    """
    cfg = _settings(method, settings)
    _check_inputs(x_ref, others, pca_dims, exact_max, fit_max)
    t0 = time.perf_counter()
    n = len(x_ref)
    if method != "pca" and n < MIN_POINTS:
        warnings.warn(
            f"{method}: only {n} points (< {MIN_POINTS}); using PCA coordinates", stacklevel=2
        )
        method = "pca"
    rows = _fit_rows(n, fit_max, seed)
    if rows is None:
        xy_ref, place = _fit(_owned(x_ref), method, cfg, seed, pca_dims, exact_max)
    else:
        xy_fit, place = _fit(_owned(x_ref, rows), method, cfg, seed, pca_dims, exact_max)
        rest = np.setdiff1d(np.arange(n), rows)
        xy_ref = np.empty((n, 2), np.float32)
        xy_ref[rows], xy_ref[rest] = xy_fit, place(x_ref, rest)
    seconds = {"fit": time.perf_counter() - t0}
    placed = {}
    for name, x in others.items():
        t = time.perf_counter()
        placed[name] = place(x)
        seconds[name] = time.perf_counter() - t
    return xy_ref, placed, seconds


def reduce_2d(
    x: np.ndarray,
    method: str,
    seed: int,
    pca_dims: int | None = 50,
    exact_max: int | None = EXACT_MAX,
    **settings,
) -> np.ndarray:
    """Map features ``x`` (N, D) on their own to 2-D coordinates (N, 2) float32, rows in order."""
    if np.ndim(x) == 2 and len(x) == 0:
        _settings(method, settings)
        return np.empty((0, 2), np.float32)
    return fit_maps(x, {}, method, seed, pca_dims, exact_max, **settings)[0]


def _split_order(split: np.ndarray) -> list[str]:
    """Splits present in ``split``: train, val, test first, then any other name as seen."""
    present = list(pd.unique(split))
    return [s for s in SPLITS if s in present] + [s for s in present if s not in SPLITS]


def _read_features(
    feats: Mapping[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``feats``' features (N, D), index (N,) int64, label (N,) int64 and split (N,) str,
    checked to be all there and of one length N."""
    for key in ("features", "index", "label", "split"):
        if key not in feats:
            raise ValueError(
                f"features file lacks '{key}'; expected features, index, label, "
                "split (the evaluate stage writes them)"
            )
    x = feats["features"]  # an array, or an open HDF5 dataset read row blocks at a time
    index = np.asarray(feats["index"], dtype=np.int64)
    label = np.asarray(feats["label"], dtype=np.int64)
    split = np.asarray(feats["split"]).astype(str)
    if np.ndim(x) != 2 or not (len(x) == len(index) == len(label) == len(split)):
        raise ValueError(
            f"inconsistent features file: features {np.shape(x)}, index {index.shape}, "
            f"label {label.shape}, split {split.shape}; expected (N, D) and (N,)"
        )
    return x, index, label, split


def reduce_features(
    feats: Mapping[str, np.ndarray],
    methods: Mapping[str, Mapping],
    seed: int,
    pca_dims: int | None = 50,
    exact_max: int | None = EXACT_MAX,
    fit_max: int | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Map every split of a features file with every method in ``methods``, on one map per
    method fitted on the train split (the first split present when there is no train).

    ``feats`` maps ``features`` (N, D) float32, ``index`` (N,) int64, ``label`` (N,) int64 and
    ``split`` (N,) str (:meth:`deepgal.handoff.Features.open` gives them, ``features`` an open
    HDF5 dataset read a block of rows at a time). ``methods`` maps a method name to
    its settings, e.g. ``{"umap": {"n_neighbors": 15, "min_dist": 0.1}, "pca": {}}``; all are
    validated before any work starts. ``pca_dims``, ``exact_max`` and ``fit_max``: as in
    :func:`fit_maps`.

    Returns a long DataFrame with columns ``split, method, index, label, x, y`` (x, y float32),
    grouped by method then split, rows of each group in input order; and timings
    ``{method: {split: seconds}}`` (the train entry is the fit, the others their placement).
    Splits with no rows are absent from both.
    """
    x, index, label, split = _read_features(feats)
    checked = {m: asdict(_settings(m, s or {})) for m, s in methods.items()}
    order = _split_order(split)
    if not order:
        return _empty_frame(), {m: {} for m in checked}
    rows = {name: np.flatnonzero(split == name) for name in order}
    ref, others = order[0], order[1:]

    frames, timings = [], {}
    for method, settings in checked.items():
        xy_ref, placed, seconds = fit_maps(
            _Rows(x, rows[ref]),
            {s: _Rows(x, rows[s]) for s in others},
            method,
            seed,
            pca_dims,
            exact_max,
            fit_max,
            **settings,
        )
        timings[method] = {ref: seconds["fit"], **{s: seconds[s] for s in others}}
        for name, xy in ((ref, xy_ref), *placed.items()):
            r = rows[name]
            frames.append(
                pd.DataFrame(
                    {
                        "split": name,
                        "method": method,
                        "index": index[r],
                        "label": label[r],
                        "x": xy[:, 0],
                        "y": xy[:, 1],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True), timings


def _empty_frame() -> pd.DataFrame:
    dtypes = (str, str, np.int64, np.int64, np.float32, np.float32)
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(COLUMNS, dtypes, strict=True)})
