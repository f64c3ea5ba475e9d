"""Feature embeddings (N, D) to 2-D maps: UMAP, t-SNE and PCA, per split.

Each split is reduced on its own (standardised with its own mean/std), as the report drew one
map per split. For UMAP and t-SNE the standardised features are first projected by PCA to
``pca_dims`` components when D is larger: on 2048-D embeddings that makes both several times
faster for the same neighbourhood preservation (``benchmarks/bench_reduce.py`` measures it).

Determinism: every method gets ``seed``. UMAP with a ``random_state`` runs its layout
optimisation single-threaded, which is what makes it reproducible (and slower than unseeded
parallel UMAP); t-SNE (Barnes-Hut) and PCA are deterministic for a fixed seed.

Tiny splits: a split with no rows is skipped; below :data:`MIN_POINTS` rows UMAP and t-SNE are
meaningless (and crash), so those splits get PCA coordinates with a warning; t-SNE perplexity
and UMAP ``n_neighbors`` are clipped to what the split size allows.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Mapping

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

SPLITS = ("train", "val", "test")
# UMAP's spectral initialisation needs N > 3 and t-SNE with a handful of points only scatters
# them; below this many rows a split is mapped with PCA instead.
MIN_POINTS = 5
COLUMNS = ("split", "method", "index", "label", "x", "y")


@dataclass(frozen=True)
class UmapSettings:
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "euclidean"
    n_epochs: int | None = None  # None: umap-learn's default (200 for large N, 500 for small)


@dataclass(frozen=True)
class TsneSettings:
    perplexity: float = 30.0
    max_iter: int = 1000
    metric: str = "euclidean"


@dataclass(frozen=True)
class PcaSettings:
    pass


SETTINGS = {"umap": UmapSettings, "tsne": TsneSettings, "pca": PcaSettings}


def _settings(method: str, settings: Mapping) -> UmapSettings | TsneSettings | PcaSettings:
    """Build the frozen settings of ``method``; an unknown method or key fails loudly."""
    if method not in SETTINGS:
        raise ValueError(f"unknown reduction method '{method}'; valid: {sorted(SETTINGS)}")
    cls = SETTINGS[method]
    unknown = sorted(set(settings) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {method} setting(s) {unknown}; "
                         f"valid: {[f.name for f in fields(cls)]}")
    return cls(**settings)


def standardise(x: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance columns of ``x`` (N, D) -> (N, D) float32.

    Constant columns (std 0, common in ReLU features of small splits) are only centred, so no
    division by zero produces NaN.
    """
    x = np.asarray(x, dtype=np.float32)
    # Statistics in float64 (sums over 17k rows), the result in float32: no (N, D) float64 copy.
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return (x - mean.astype(np.float32)) / std.astype(np.float32)


def _pca(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """First ``k`` principal components of ``x`` (N, D) -> (N, k) float32, zero-padded where
    the data have fewer than ``k`` dimensions (N or D < k), so a 1-row split still maps."""
    n, d = x.shape
    usable = min(k, n, d)
    out = np.zeros((n, k), dtype=np.float32)
    if usable > 0 and n > 1:
        out[:, :usable] = PCA(n_components=usable, random_state=seed).fit_transform(x)
    return out


def reduce_2d(x: np.ndarray, method: str, seed: int, pca_dims: int | None = 50,
              **settings) -> np.ndarray:
    """Map features ``x`` (N, D) to 2-D coordinates (N, 2) float32, rows in input order.

    ``method`` is 'umap', 'tsne' or 'pca'; ``settings`` are that method's keys
    (:class:`UmapSettings`, :class:`TsneSettings`); unknown methods or keys raise ValueError.
    Features are standardised, then (UMAP, t-SNE only) reduced by PCA to ``pca_dims`` when
    D > ``pca_dims``; ``pca_dims=None`` disables that step.
    """
    cfg = _settings(method, settings)
    if pca_dims is not None and pca_dims < 2:
        raise ValueError(f"pca_dims must be >= 2 or None (no pre-reduction); got {pca_dims}")
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array (N, D); got shape {x.shape}")
    n = x.shape[0]
    if n == 0:
        return np.empty((0, 2), dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf; check the features stage output")
    z = standardise(x)
    if method == "pca":
        return _pca(z, 2, seed)
    if n < MIN_POINTS:
        warnings.warn(f"{method}: only {n} points (< {MIN_POINTS}); using PCA coordinates",
                      stacklevel=2)
        return _pca(z, 2, seed)
    if pca_dims is not None and z.shape[1] > pca_dims:
        z = _pca(z, min(pca_dims, n), seed)
    if method == "tsne":
        return _tsne(z, cfg, seed)
    return _umap(z, cfg, seed)


def _tsne(z: np.ndarray, cfg: TsneSettings, seed: int) -> np.ndarray:
    n = z.shape[0]
    # Barnes-Hut t-SNE looks at 3 * perplexity neighbours; keep them inside the split
    # (the openTSNE convention), which also satisfies sklearn's perplexity < N.
    perplexity = min(cfg.perplexity, max(1.0, (n - 1) / 3))
    if perplexity < cfg.perplexity:
        warnings.warn(f"tsne: perplexity {cfg.perplexity} too high for {n} points; "
                      f"using {perplexity:.3g}", stacklevel=3)
    tsne = TSNE(n_components=2, perplexity=perplexity, max_iter=cfg.max_iter, metric=cfg.metric,
                init="pca", learning_rate="auto", random_state=seed)
    return tsne.fit_transform(z).astype(np.float32)


def _umap(z: np.ndarray, cfg: UmapSettings, seed: int) -> np.ndarray:
    import umap  # deferred: importing umap-learn costs ~1 s and numba JIT on first use

    n = z.shape[0]
    n_neighbors = min(cfg.n_neighbors, n - 1)
    if n_neighbors < cfg.n_neighbors:
        warnings.warn(f"umap: n_neighbors {cfg.n_neighbors} too high for {n} points; "
                      f"using {n_neighbors}", stacklevel=3)
    # n_jobs=1 is what umap-learn forces anyway once random_state is set; saying it avoids
    # its warning and documents that seeded UMAP is single-threaded.
    model = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=cfg.min_dist,
                      metric=cfg.metric, n_epochs=cfg.n_epochs, random_state=seed, n_jobs=1)
    return model.fit_transform(z).astype(np.float32)


def _split_order(split: np.ndarray) -> list[str]:
    """Splits present in ``split``: train, val, test first, then any other name as seen."""
    present = list(pd.unique(split))
    return [s for s in SPLITS if s in present] + [s for s in present if s not in SPLITS]


def reduce_features(feats: Mapping[str, np.ndarray], methods: Mapping[str, Mapping],
                    seed: int, pca_dims: int | None = 50) -> tuple[pd.DataFrame, dict]:
    """Reduce every split of a features file with every method in ``methods``.

    ``feats`` maps ``features`` (N, D) float32, ``index`` (N,) int64, ``label`` (N,) int64 and
    ``split`` (N,) str (an opened ``features.npz`` works). ``methods`` maps a method name to
    its settings, e.g. ``{"umap": {"n_neighbors": 15}, "pca": {}}``; all are validated before
    any work starts.

    Returns a long DataFrame with columns ``split, method, index, label, x, y`` (x, y float32),
    grouped by method then split, rows of each group in input order; and timings
    ``{method: {split: seconds}}`` (each includes standardisation and PCA pre-reduction).
    Splits with no rows are absent from both.
    """
    for key in ("features", "index", "label", "split"):
        if key not in feats:
            raise ValueError(f"features file lacks '{key}'; expected features, index, label, "
                             "split (the features stage output)")
    x = np.asarray(feats["features"])
    index = np.asarray(feats["index"], dtype=np.int64)
    label = np.asarray(feats["label"], dtype=np.int64)
    split = np.asarray(feats["split"]).astype(str)
    if x.ndim != 2 or not (len(x) == len(index) == len(label) == len(split)):
        raise ValueError(f"inconsistent features file: features {x.shape}, index {index.shape}, "
                         f"label {label.shape}, split {split.shape}; expected (N, D) and (N,)")
    checked = {m: asdict(_settings(m, s or {})) for m, s in methods.items()}

    frames, timings = [], {}
    for method, settings in checked.items():
        timings[method] = {}
        for name in _split_order(split):
            rows = np.flatnonzero(split == name)
            start = time.perf_counter()
            xy = reduce_2d(x[rows], method, seed, pca_dims, **settings)
            timings[method][name] = time.perf_counter() - start
            frames.append(pd.DataFrame({
                "split": name, "method": method, "index": index[rows], "label": label[rows],
                "x": xy[:, 0], "y": xy[:, 1]}))
    if not frames:
        return _empty_frame(), timings
    return pd.concat(frames, ignore_index=True), timings


def _empty_frame() -> pd.DataFrame:
    dtypes = (str, str, np.int64, np.int64, np.float32, np.float32)
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(COLUMNS, dtypes)})
