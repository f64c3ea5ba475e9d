"""k nearest neighbours of every point of a set (the graph UMAP and t-SNE are built on) and a
search index that finds the neighbours of new points among them (what placing val and test
on a fitted map queries): exact up to ``exact_max`` points, approximate above.

- Exact (:class:`ExactIndex`): scikit-learn's brute-force search (BLAS matrix products,
  O(N²) work), one thread, every point's 15 neighbours among 50-D points: 2.0 s at 16,000,
  5.1 s at 32,000, 17.6 s at 64,000, ~66 s at 128,000.
- Approximate (:class:`HnswIndex`): faiss's HNSW graph (``IndexHNSWFlat``, M=32,
  efConstruction=40, efSearch=max(48, 2k)), built with one thread, so the same points always
  give the same graph. Chosen over the alternatives by ``benchmarks/bench_neighbours.py``
  and a first probe (docs/experiments/reduce.md) on clustered 50-D features (the PCA-50 that
  UMAP and t-SNE see): recall@15 0.99 at 64,000 points (11.0 s) and 0.98 at 128,000, where
  pynndescent (what umap-learn would use) fell to 0.89 at 64,000 and faiss's IVF-Flat to 0.85
  (nprobe 32); faiss is compiled C++, so there is no numba compilation to pay or cache; and it
  was already the optional backend of ``deepgal similar`` (now a core dependency).

Metrics (those ``reduce.methods.umap.metric`` allows): euclidean (faiss L2, square-rooted),
manhattan (faiss L1), cosine (inner product of unit rows: ``1 - cos``) and correlation (the
same on rows centred on their own mean: ``1 - Pearson r``), the distances scikit-learn gives.

A point is never its own neighbour in :meth:`self_neighbours` (HNSW may miss a point or
return a duplicate of it first; either way the point itself is dropped). A row that HNSW
cannot fill (fewer than k found) is answered exactly.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util

import numpy as np

# Above this many points the search is approximate (HNSW); at or below, exact. Measured by
# benchmarks/bench_neighbours.py (BENCHMARKS.md): for UMAP's k=15 brute force was still faster
# at 32,000 points (5.1 vs 6.3 s) and HNSW at 64,000 (11.0 vs 17.6 s); for t-SNE's k=90 exact
# was still faster at 64,000 (19.7 vs 22.5 s), a few seconds against minutes of t-SNE.
EXACT_MAX = 32_000
METRICS = ("euclidean", "manhattan", "cosine", "correlation")
HNSW_M = 32  # graph degree: at 16 recall@15 fell to 0.85 at 128,000 points
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 48  # candidates kept while searching; 2k when k is larger (t-SNE: 90)


def is_exact(n: int, exact_max: int | None) -> bool:
    """Whether a search among ``n`` points is exact: ``n <= exact_max`` (None: always)."""
    return exact_max is None or n <= exact_max


def build_index(z: np.ndarray, metric: str, exact_max: int | None = EXACT_MAX):
    """The search index over ``z`` (N, D): :class:`ExactIndex` when ``is_exact(N,
    exact_max)``, else :class:`HnswIndex`."""
    if metric not in METRICS:
        raise ValueError(f"neighbour metric must be one of {METRICS}; got {metric!r}")
    z = np.ascontiguousarray(z, np.float32)
    if is_exact(len(z), exact_max):
        return ExactIndex(z, metric)
    if importlib.util.find_spec("faiss") is None:
        raise ImportError(
            f"the approximate neighbour search for {len(z):,} points (more than "
            f"reduce.exact_max = {exact_max:,}) needs faiss: pip install faiss-cpu, or raise "
            "reduce.exact_max (null: always exact, O(N^2) work)"
        )
    return HnswIndex(z, metric)


def umap_knn(z: np.ndarray, k: int, metric: str, exact_max: int | None = EXACT_MAX):
    """UMAP's ``precomputed_knn``: each point's k nearest (itself first, at distance 0, as
    umap-learn expects even among exact duplicates) as (N, k) int32 and float32, and the index
    that ``UMAP.transform`` queries for new points."""
    index = build_index(z, metric, exact_max)
    idx, dist = index.self_neighbours(k - 1)
    n = len(z)
    idx = np.hstack([np.arange(n)[:, None], idx]).astype(np.int32)
    dist = np.hstack([np.zeros((n, 1)), dist]).astype(np.float32)
    return idx, dist, index


class ExactIndex:
    """Exact neighbours by scikit-learn's brute force. ``query(x (M, D), k)`` -> (indices
    (M, k) int32, distances (M, k) float32), nearest first: the call umap-learn's ``transform``
    makes (with an ``epsilon`` it ignores; it also reads ``_angular_trees``). ``search`` and
    ``self_neighbours`` give scikit-learn's own int64 / float64 arrays: t-SNE amplifies a
    distance rounded to float32 into a different map, so openTSNE gets them unrounded."""

    _angular_trees = False
    exact = True

    def __init__(self, z: np.ndarray, metric: str):
        from sklearn.neighbors import NearestNeighbors

        self._nn = NearestNeighbors(metric=metric, algorithm="brute", n_jobs=1).fit(z)

    def self_neighbours(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each indexed point's k nearest other points: (N, k) indices, (N, k) distances."""
        dist, idx = self._nn.kneighbors(n_neighbors=k)  # without X: the point itself left out
        return idx, dist

    def search(self, x, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest indexed points of each row of x (M, D): (M, k) indices, distances."""
        dist, idx = self._nn.kneighbors(np.asarray(x, np.float32), k)
        return idx, dist

    def query(self, x, k, epsilon=None) -> tuple[np.ndarray, np.ndarray]:
        idx, dist = self.search(x, k)
        return idx.astype(np.int32), dist.astype(np.float32)


@contextlib.contextmanager
def _one_faiss_thread():
    """faiss's OpenMP threads insert points into the HNSW graph in a racy order; one thread
    makes the graph (and so the maps) reproducible."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield faiss
    finally:
        faiss.omp_set_num_threads(before)


def _faiss_rows(x: np.ndarray, metric: str) -> np.ndarray:
    """Rows as faiss searches them: unit rows (cosine), centred unit rows (correlation)."""
    x = np.asarray(x, np.float32)
    if metric == "correlation":
        x = x - x.mean(axis=1, keepdims=True)
    if metric in ("cosine", "correlation"):
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float32).tiny)
    return np.ascontiguousarray(x, np.float32)


class HnswIndex:
    """Approximate neighbours by faiss's HNSW graph; same interface as :class:`ExactIndex`."""

    _angular_trees = False
    exact = False

    def __init__(self, z: np.ndarray, metric: str):
        self.metric = metric
        self._z = z  # kept for the rows HNSW cannot fill (answered exactly)
        with _one_faiss_thread() as faiss:
            kind = {"euclidean": faiss.METRIC_L2, "manhattan": faiss.METRIC_L1}
            self._index = faiss.IndexHNSWFlat(
                z.shape[1], HNSW_M, kind.get(metric, faiss.METRIC_INNER_PRODUCT)
            )
            self._index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            self._index.add(_faiss_rows(z, metric))

    def search(self, x, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest indexed points of each row of x (M, D), as HNSW finds them (a row
        with fewer than k found is answered exactly): (M, k) int64, (M, k) float32."""
        x = np.asarray(x, np.float32)
        k = min(k, len(self._z))
        with _one_faiss_thread():
            self._index.hnsw.efSearch = max(HNSW_EF_SEARCH, 2 * k)
            raw, idx = self._index.search(_faiss_rows(x, self.metric), k)
        if self.metric == "euclidean":
            dist = np.sqrt(np.maximum(raw, 0))  # faiss gives squared L2
        elif self.metric == "manhattan":
            dist = raw
        else:  # similarity of unit rows -> cosine / correlation distance
            dist = np.clip(1 - raw, 0, 2)
        missing = (idx < 0).any(axis=1)
        if missing.any():
            dist[missing], idx[missing] = self._exact(x[missing], k)
        return idx, dist.astype(np.float32)

    def _exact(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(metric=self.metric, algorithm="brute").fit(self._z)
        return nn.kneighbors(np.asarray(x, np.float32), k)

    def self_neighbours(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each indexed point's k nearest other points: (N, k) int64, (N, k) float32."""
        n = len(self._z)
        idx, dist = self.search(self._z, k + 1)
        keep = idx != np.arange(n)[:, None]
        keep[keep.all(axis=1), -1] = False  # the point itself not found: drop the farthest
        return idx[keep].reshape(n, k), dist[keep].reshape(n, k)

    def query(self, x, k, epsilon=None) -> tuple[np.ndarray, np.ndarray]:
        idx, dist = self.search(x, k)
        return idx.astype(np.int32), dist


@functools.cache
def _tsne_index_class():
    """openTSNE's ``KNNIndex`` answered by :func:`build_index` (openTSNE imported on use)."""
    from openTSNE.nearest_neighbors import KNNIndex

    class TsneIndex(KNNIndex):
        VALID_METRICS = list(METRICS)

        def __init__(self, data, k, metric, exact_max):
            super().__init__(data, k, metric)
            self.exact_max = exact_max

        def build(self):
            self.index = build_index(self.data, self.metric, self.exact_max)
            return self.index.self_neighbours(self.k)

        def query(self, query, k):
            return self.index.search(query, k)

    return TsneIndex


def tsne_index(z: np.ndarray, k: int, metric: str, exact_max: int | None = EXACT_MAX):
    """An openTSNE ``KNNIndex`` over ``z`` (N, D) with k neighbours per point, for
    ``openTSNE.TSNE(neighbors=...)``: exact or HNSW by the same rule as :func:`build_index`."""
    return _tsne_index_class()(z, k, metric, exact_max)
