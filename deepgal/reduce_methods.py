"""The three reductions behind :mod:`deepgal.reduce`, each fitted on reference points (N, D)
and returning their 2-D coordinates and a function that places new points on the same map.

Per method: a standardiser (sklearn ``StandardScaler``) and, for UMAP and t-SNE when D is
larger than ``pca_dims``, a PCA are fitted on the reference points (:func:`_reference_prep`);
then
- PCA: ``PCA(2)`` fitted on the reference, every split transformed;
- UMAP: umap-learn fitted on the reference, new points through ``UMAP.transform`` (optimised
  against the fixed reference layout). Neighbours: umap-learn computes them exactly itself
  below 4,096 points; above, where it would switch to pynndescent's NN-descent, reduce hands it
  :func:`deepgal.neighbours.umap_knn` (exact up to ``exact_max`` points, faiss HNSW above) and
  its search index for ``transform``: on the real train split that saves two minutes of numba
  compiling;
- t-SNE: openTSNE (sklearn's t-SNE has no transform), new points through
  ``TSNEEmbedding.transform`` (each starts at the median of its reference neighbours and is
  optimised with the reference fixed); its neighbours come from
  :func:`deepgal.neighbours.tsne_index` by the same exact/approximate rule. Worth the
  dependency: it is the maintained t-SNE that can place new points, and its FFT-accelerated
  gradients scale to the real train split.

PCA first: measured by ``benchmarks/bench_reduce.py`` (BENCHMARKS.md), not assumed. It caps the
width that the neighbour searches of UMAP and t-SNE work on; ``pca_dims: null`` turns it off.

Determinism: every method gets ``seed``; UMAP with a ``random_state`` runs single-threaded (what
makes it reproducible); openTSNE runs with ``n_jobs=1`` and faiss with one thread for the
same reason.

Numba: UMAP and pynndescent compile ~250 numba functions on first use (about a minute per
process on 2 cores). :func:`_import_umap` turns numba's on-disk cache on for all of them (most
are not declared ``cache=True``); where the cache lives is ``NUMBA_CACHE_DIR``, which the reduce
stage sets to a project folder before anything imports numba.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields

import numpy as np


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


# The standardiser's fit reads this many bytes of float64 rows at a time (its temporaries).
FIT_BLOCK_BYTES = 64 << 20


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


def _reference_fit(x_ref: np.ndarray, method: str, seed: int, pca_dims: int | None):
    """(the :func:`_reference_prep` of x_ref, x_ref transformed by it), the same numbers, but
    x_ref (float, an array the caller owns and gives up) is standardised in place: the fit holds
    one copy of the reference matrix fewer (0.8 GB at 50,000 x 4,096 float32). The returned
    standardiser also works in place, on the fresh blocks it is given later."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Fitted and applied a block of rows at a time: scikit-learn's one-shot fit makes a float64
    # copy of its whole input for the variance (1.6 GB at 50,000 x 4,096), which set reduce's
    # peak; its running mean and variance over blocks give the same statistics.
    n, d = x_ref.shape
    step = max(1024, FIT_BLOCK_BYTES // (8 * max(d, 1)))
    scaler = StandardScaler(copy=False)
    for a in range(0, n, step):
        scaler.partial_fit(x_ref[a : a + step])
    for a in range(0, n, step):
        x_ref[a : a + step] = scaler.transform(x_ref[a : a + step])
    z = x_ref
    steps = [scaler]
    if method != "pca" and pca_dims is not None and d > pca_dims and n > 1:
        steps.append(PCA(min(pca_dims, n), random_state=seed).fit(z))
        z = steps[-1].transform(z)
    return make_pipeline(*steps), z


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


def _tsne_map(
    z_ref: np.ndarray, cfg: TsneSettings, seed: int, exact_max: int | None
) -> tuple[np.ndarray, Callable]:
    from openTSNE import TSNE

    from deepgal.neighbours import METRICS, tsne_index

    n = z_ref.shape[0]
    # openTSNE looks at 3 * perplexity neighbours; keep them inside the reference split.
    perplexity = min(cfg.perplexity, max(1.0, (n - 1) / 3))
    if perplexity < cfg.perplexity:
        warnings.warn(
            f"tsne: perplexity {cfg.perplexity} too high for {n} points; using {perplexity:.3g}",
            stacklevel=5,  # _tsne_map/_umap_map <- _fit <- fit_maps <- caller <- its caller
        )
    # The neighbours P is built on: exact up to exact_max points, HNSW above (openTSNE's own
    # "auto" would take Annoy from 1,000 points on).
    neighbors = "exact"
    if cfg.metric in METRICS:
        neighbors = tsne_index(z_ref, min(n - 1, int(3 * perplexity)), cfg.metric, exact_max)
    emb = TSNE(
        perplexity=perplexity,
        n_iter=cfg.n_iter,
        metric=cfg.metric,
        neighbors=neighbors,
        random_state=seed,
        n_jobs=1,
    ).fit(z_ref)
    # openTSNE's transform first centres the fitted points' bounding box on 0, in place, and
    # places new points in that frame; centred here, the fitted coordinates are in it too
    # whether or not (and before or after) anything is placed.
    emb -= (np.max(emb, axis=0) + np.min(emb, axis=0)) / 2
    # New points: their own affinities to the train points use a perplexity that fits k=25.
    return np.asarray(emb), lambda z: np.asarray(emb.transform(z, perplexity=min(5, perplexity)))


def _umap_map(
    z_ref: np.ndarray, cfg: UmapSettings, seed: int, exact_max: int | None
) -> tuple[np.ndarray, Callable]:
    from deepgal.neighbours import METRICS, umap_knn

    umap = _import_umap()
    n = z_ref.shape[0]
    n_neighbors = min(cfg.n_neighbors, n - 1)
    if n_neighbors < cfg.n_neighbors:
        warnings.warn(
            f"umap: n_neighbors {cfg.n_neighbors} too high for {n} points; using {n_neighbors}",
            stacklevel=5,  # _tsne_map/_umap_map <- _fit <- fit_maps <- caller <- its caller
        )
    knn = (None, None, None)
    if n >= UMAP_SMALL_DATA and cfg.metric in METRICS:
        knn = umap_knn(z_ref, n_neighbors, cfg.metric, exact_max)
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
        # has what transform calls (neighbours.ExactIndex / HnswIndex), and tests place
        # points through it.
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
        model.fit(z_ref)
    return model.embedding_, model.transform


# Below this many points umap-learn finds neighbours exactly itself (all pairwise distances);
# above it, with approximate NN-descent (pynndescent), whose numba code then compiles: on 2
# cores, measured on 14,190 x 50-D points with an empty cache, fit 52.5 s + first transform
# 66.4 s, against 13.2 s + 2.1 s with scikit-learn's exact neighbours (BENCHMARKS.md). So from
# here on reduce hands it :func:`deepgal.neighbours.umap_knn` (exact or HNSW) instead.
UMAP_SMALL_DATA = 4096
