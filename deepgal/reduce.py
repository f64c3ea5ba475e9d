"""Feature embeddings (N, D) to 2-D maps with UMAP, t-SNE and PCA: one map per method, fitted on
the train split, with val and test placed on it, so a person sees where the val errors fall
among the train clusters.

Per method: a standardiser (sklearn ``StandardScaler``) and, for UMAP and t-SNE when D is
larger than ``pca_dims``, a PCA are fitted on the reference split (train); then
- PCA: ``PCA(2)`` fitted on train, every split transformed;
- UMAP: umap-learn fitted on train, val/test through ``UMAP.transform`` (new points optimised
  against the fixed train layout). Neighbours are always exact: umap-learn computes them itself
  below 4,096 points; above, where it would switch to pynndescent's approximate search, reduce
  hands it scikit-learn's exact ones and an exact search index for ``transform``
  (:func:`_exact_knn`): on the real train split that saves two minutes of numba compiling;
- t-SNE: openTSNE (sklearn's t-SNE has no transform) fitted on train, val/test through
  ``TSNEEmbedding.transform`` (each new point starts at the median of its train neighbours and
  is optimised with the train points fixed). Worth the dependency: it is the maintained t-SNE
  that can place new points, and its FFT-accelerated gradients scale to the real train split.

PCA first: measured by ``benchmarks/bench_reduce.py`` (BENCHMARKS.md), not assumed. It caps the
width that the neighbour searches of UMAP and t-SNE work on; ``pca_dims: null`` turns it off.

Determinism: every method gets ``seed``; UMAP with a ``random_state`` runs single-threaded (what
makes it reproducible); openTSNE runs with ``n_jobs=1`` for the same reason.

Numba: UMAP and pynndescent compile ~250 numba functions on first use (about a minute per
process on 2 cores). :func:`_import_umap` turns numba's on-disk cache on for all of them (most
are not declared ``cache=True``); where the cache lives is ``NUMBA_CACHE_DIR``, which the reduce
stage sets to a project folder before anything imports numba.

Tiny splits: a split with no rows is skipped. When the reference split has fewer than
:data:`MIN_POINTS` rows, UMAP and t-SNE are meaningless (and crash), so every split gets PCA
coordinates with a warning; t-SNE perplexity and UMAP ``n_neighbors`` are clipped to what the
reference size allows.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, fields

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
# UMAP's spectral initialisation needs N > 3 and t-SNE with a handful of points only scatters
# them; below this many reference rows every split is mapped with PCA instead.
MIN_POINTS = 5
COLUMNS = ("split", "method", "index", "label", "x", "y")


@dataclass(frozen=True)
class UmapSettings:
    n_neighbors: int
    min_dist: float
    metric: str = "euclidean"
    n_epochs: int | None = None  # library knob (tests): None = umap-learn's default


@dataclass(frozen=True)
class TsneSettings:
    perplexity: float
    metric: str = "euclidean"
    n_iter: int = 500  # openTSNE's default, after its 250 early-exaggeration iterations


@dataclass(frozen=True)
class PcaSettings:
    pass


SETTINGS = {"umap": UmapSettings, "tsne": TsneSettings, "pca": PcaSettings}


def _settings(method: str, settings: Mapping) -> UmapSettings | TsneSettings | PcaSettings:
    """Build the frozen settings of ``method``; an unknown method or key, or a missing
    one, fails loudly (the values come from params.yaml's ``reduce.methods``)."""
    if method not in SETTINGS:
        raise ValueError(f"unknown reduction method '{method}'; valid: {sorted(SETTINGS)}")
    cls = SETTINGS[method]
    unknown = sorted(set(settings) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(
            f"unknown {method} setting(s) {unknown}; valid: {[f.name for f in fields(cls)]}"
        )
    missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in settings]
    if missing:
        raise ValueError(
            f"{method}: missing setting(s) {missing}; set them under "
            f"reduce.methods.{method} in params.yaml"
        )
    return cls(**settings)


def _import_umap():
    """umap-learn with numba's on-disk cache on for every compiled function of umap and
    pynndescent, so the second process loads machine code instead of compiling it again."""
    import umap
    from numba.core.dispatcher import Dispatcher
    from numba.core.errors import NumbaWarning

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in ("umap", "pynndescent"):
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, Dispatcher) and type(obj._cache).__name__ == "NullCache":
                obj.enable_caching()
    # A few functions cannot be cached (dynamic globals); numba says so once each and compiles.
    warnings.filterwarnings("ignore", category=NumbaWarning, message=".*cannot cache")
    return umap


def _reference_prep(x_ref: np.ndarray, method: str, seed: int, pca_dims: int | None):
    """Standardiser (+ PCA to ``pca_dims`` for UMAP/t-SNE on wider features) fitted on x_ref."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [StandardScaler()]  # constant columns (std 0) are only centred: no NaN
    n, d = x_ref.shape
    if method != "pca" and pca_dims is not None and d > pca_dims and n > 1:
        steps.append(PCA(min(pca_dims, n), random_state=seed))
    return make_pipeline(*steps).fit(x_ref)


def _pca_map(z_ref: np.ndarray, seed: int) -> tuple[np.ndarray, Callable]:
    """2-D PCA of z_ref, zero-padded where the data have fewer than 2 dimensions or rows."""
    from sklearn.decomposition import PCA

    usable = min(2, *z_ref.shape)
    if z_ref.shape[0] < 2 or usable < 1:
        return np.zeros((len(z_ref), 2)), lambda z: np.zeros((len(z), 2))
    pca = PCA(usable, random_state=seed).fit(z_ref)

    def transform(z):
        out = np.zeros((len(z), 2))
        out[:, :usable] = pca.transform(z)
        return out

    return transform(z_ref), transform


def _tsne_map(z_ref: np.ndarray, cfg: TsneSettings, seed: int) -> tuple[np.ndarray, Callable]:
    from openTSNE import TSNE

    n = z_ref.shape[0]
    # openTSNE looks at 3 * perplexity neighbours; keep them inside the reference split.
    perplexity = min(cfg.perplexity, max(1.0, (n - 1) / 3))
    if perplexity < cfg.perplexity:
        warnings.warn(
            f"tsne: perplexity {cfg.perplexity} too high for {n} points; using {perplexity:.3g}",
            stacklevel=4,
        )
    emb = TSNE(
        perplexity=perplexity, n_iter=cfg.n_iter, metric=cfg.metric, random_state=seed, n_jobs=1
    ).fit(z_ref)
    # New points: their own affinities to the train points use a perplexity that fits k=25.
    return np.asarray(emb), lambda z: np.asarray(emb.transform(z, perplexity=min(5, perplexity)))


def _umap_map(z_ref: np.ndarray, cfg: UmapSettings, seed: int) -> tuple[np.ndarray, Callable]:
    umap = _import_umap()
    n = z_ref.shape[0]
    n_neighbors = min(cfg.n_neighbors, n - 1)
    if n_neighbors < cfg.n_neighbors:
        warnings.warn(
            f"umap: n_neighbors {cfg.n_neighbors} too high for {n} points; using {n_neighbors}",
            stacklevel=4,
        )
    knn = (None, None, None)
    if n >= UMAP_SMALL_DATA and cfg.metric in _brute_metrics():
        knn = _exact_knn(z_ref, n_neighbors, cfg.metric)
    # n_jobs=1 is what umap-learn forces anyway once random_state is set; saying it avoids
    # its warning and documents that seeded UMAP is single-threaded.
    model = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        min_dist=cfg.min_dist,
        metric=cfg.metric,
        n_epochs=cfg.n_epochs,
        random_state=seed,
        n_jobs=1,
        precomputed_knn=knn,
    )
    with warnings.catch_warnings():
        # umap-learn warns that a search index other than its own disables transform; ours
        # has what transform calls (_ExactIndex), and the tests place points through it.
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
        model.fit(z_ref)
    return model.embedding_, model.transform


# Below this many points umap-learn finds neighbours exactly itself (all pairwise distances);
# above it, with approximate NN-descent (pynndescent), whose numba code then compiles: on 2
# cores, measured on 14,190 x 50-D points with an empty cache, fit 52.5 s + first transform
# 66.4 s, against 13.2 s + 2.1 s with the exact neighbours below (BENCHMARKS.md).
UMAP_SMALL_DATA = 4096


def _brute_metrics() -> set[str]:
    from sklearn.neighbors import VALID_METRICS

    return set(VALID_METRICS["brute"])


class _ExactIndex:
    """The search index umap-learn's ``transform`` queries for new points' neighbours among
    the fitted ones (it calls ``query(x, k, epsilon)`` and reads ``_angular_trees``), answered
    exactly by scikit-learn instead of pynndescent's approximate search."""

    _angular_trees = False

    def __init__(self, nn):
        self._nn = nn

    def query(self, x, k, epsilon=None):
        dist, idx = self._nn.kneighbors(np.asarray(x, np.float32), k)
        return idx.astype(np.int32), dist.astype(np.float32)


def _exact_knn(z: np.ndarray, k: int, metric: str):
    """UMAP's ``precomputed_knn``: each point's k nearest (itself first, at distance 0, as
    umap-learn expects even among exact duplicates), exactly, by scikit-learn's brute-force
    search (BLAS; ~1 s for 14k x 50-D), and the index that places new points."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k - 1, metric=metric, algorithm="brute").fit(z)
    dist, idx = nn.kneighbors()  # without X: each point's neighbours other than itself
    n = len(z)
    idx = np.hstack([np.arange(n)[:, None], idx]).astype(np.int32)
    dist = np.hstack([np.zeros((n, 1)), dist]).astype(np.float32)
    return idx, dist, _ExactIndex(nn)


def fit_maps(
    x_ref: np.ndarray,
    others: Mapping[str, np.ndarray],
    method: str,
    seed: int,
    pca_dims: int | None = 50,
    **settings,
) -> tuple[np.ndarray, dict, dict]:
    """Fit ``method`` on x_ref (N, D) and place each of ``others`` (M, D) on the same map.

    Returns (reference coordinates (N, 2) float32, ``{name: (M, 2) float32}``, ``{"fit":
    seconds, name: seconds}``). ``settings`` are the method's keys (:class:`UmapSettings`,
    :class:`TsneSettings`); unknown methods or keys raise ValueError before any work.
    """
    cfg = _settings(method, settings)
    if pca_dims is not None and pca_dims < 2:
        raise ValueError(f"pca_dims must be >= 2 or None (no pre-reduction); got {pca_dims}")
    arrays = {"reference": x_ref, **others}
    for name, x in arrays.items():
        if np.ndim(x) != 2 or np.shape(x)[1] != np.shape(x_ref)[1]:
            raise ValueError(
                f"features ({name}) must be (N, {np.shape(x_ref)[-1]}); got shape {np.shape(x)}"
            )
        if not np.isfinite(x).all():
            raise ValueError(
                f"features ({name}) contain NaN or inf; check the evaluate stage that wrote them"
            )
    t0 = time.perf_counter()
    n = len(x_ref)
    if n == 0:
        raise ValueError("the reference split (train) has no rows: nothing to fit a map on")
    if method != "pca" and n < MIN_POINTS:
        warnings.warn(
            f"{method}: only {n} points (< {MIN_POINTS}); using PCA coordinates", stacklevel=2
        )
        method = "pca"
    prep = _reference_prep(np.asarray(x_ref, np.float32), method, seed, pca_dims)
    z_ref = prep.transform(np.asarray(x_ref, np.float32)).astype(np.float32)
    if method == "pca":
        xy_ref, place = _pca_map(z_ref, seed)
    elif method == "tsne":
        xy_ref, place = _tsne_map(z_ref, cfg, seed)
    else:
        xy_ref, place = _umap_map(z_ref, cfg, seed)
    seconds = {"fit": time.perf_counter() - t0}
    placed = {}
    for name, x in others.items():
        t = time.perf_counter()
        x = np.asarray(x, np.float32)
        # scikit-learn refuses to transform 0 rows: an empty split is placed as (0, 2) directly
        placed[name] = (
            np.asarray(place(prep.transform(x).astype(np.float32)), np.float32)
            if len(x)
            else np.empty((0, 2), np.float32)
        )
        seconds[name] = time.perf_counter() - t
    return np.asarray(xy_ref, np.float32), placed, seconds


def reduce_2d(
    x: np.ndarray, method: str, seed: int, pca_dims: int | None = 50, **settings
) -> np.ndarray:
    """Map features ``x`` (N, D) on their own to 2-D coordinates (N, 2) float32, rows in order."""
    if np.ndim(x) == 2 and len(x) == 0:
        _settings(method, settings)
        return np.empty((0, 2), np.float32)
    return fit_maps(x, {}, method, seed, pca_dims, **settings)[0]


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
    x = np.asarray(feats["features"])
    index = np.asarray(feats["index"], dtype=np.int64)
    label = np.asarray(feats["label"], dtype=np.int64)
    split = np.asarray(feats["split"]).astype(str)
    if x.ndim != 2 or not (len(x) == len(index) == len(label) == len(split)):
        raise ValueError(
            f"inconsistent features file: features {x.shape}, index {index.shape}, "
            f"label {label.shape}, split {split.shape}; expected (N, D) and (N,)"
        )
    return x, index, label, split


def reduce_features(
    feats: Mapping[str, np.ndarray],
    methods: Mapping[str, Mapping],
    seed: int,
    pca_dims: int | None = 50,
) -> tuple[pd.DataFrame, dict]:
    """Map every split of a features file with every method in ``methods``, on one map per
    method fitted on the train split (the first split present when there is no train).

    ``feats`` maps ``features`` (N, D) float32, ``index`` (N,) int64, ``label`` (N,) int64 and
    ``split`` (N,) str (an opened ``features.npz`` works). ``methods`` maps a method name to
    its settings, e.g. ``{"umap": {"n_neighbors": 15, "min_dist": 0.1}, "pca": {}}``; all are
    validated before any work starts.

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
            x[rows[ref]], {s: x[rows[s]] for s in others}, method, seed, pca_dims, **settings
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
