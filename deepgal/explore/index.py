"""Exact cosine k-nearest-neighbour search over an embedding, with two interchangeable backends.

Vectors are L2-normalised once, so cosine distance is ``1 - dot product`` and both backends do
an exact brute-force search (no approximation: the backend changes the speed, never the
neighbours, apart from the order of exact ties):

- ``"sklearn"``: :class:`sklearn.neighbors.NearestNeighbors` (``metric="cosine"``, brute force);
- ``"faiss"``: ``faiss.IndexFlatIP`` (the ``faiss-cpu`` package, optional extra ``explore``).

``"auto"`` takes faiss when it is installed and the search is large enough for it to pay, else
scikit-learn. Measured by ``benchmarks/similar_index.py`` (one thread, build + search,
BENCHMARKS.md): for many queries (every image against the set, as the outlier score does)
faiss is 1.5x faster at 1,000 and 4,000 rows of 2048-D, and at 17,736 rows 3x (49 s against
146 s; 1.5x at 768-D); for one query it is faster below ~4,000 rows, where both take < 0.05 s,
and slower above (1.0 s against 0.6 s at 17,736), where copying the vectors into its index
costs more than the search saves. Hence :data:`FAISS_MIN_QUERIES` and :data:`FAISS_MIN_WORK`.
For an exact flat index "building" is storing the vectors, so the cached embedding
(:mod:`deepgal.explore.embed`) is the index that is reused.
"""

from __future__ import annotations

import importlib.util

import numpy as np

BACKENDS = ("auto", "sklearn", "faiss")
# faiss when at least this many queries (a one-galaxy look-up stays with scikit-learn) ...
FAISS_MIN_QUERIES = 100
# ... and queries x rows at least this (below, both take a fraction of a second).
FAISS_MIN_WORK = 1_000_000


def normalise(vectors: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, D) float32 rows of unit L2 norm (an all-zero row stays zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"expected vectors (N, D); got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v / np.maximum(norms, np.finfo(np.float32).tiny))


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def pick_backend(backend: str, n_rows: int, n_queries: int) -> str:
    """The backend ``backend`` resolves to for ``n_queries`` searches among ``n_rows`` rows."""
    if backend not in BACKENDS:
        raise ValueError(f"index backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "faiss" and not faiss_available():
        raise ValueError(
            "index backend 'faiss' needs the faiss-cpu package: "
            "pip install 'deepgal[explore]' (or faiss-cpu)"
        )
    if backend != "auto":
        return backend
    big = n_queries >= FAISS_MIN_QUERIES and n_rows * n_queries >= FAISS_MIN_WORK
    return "faiss" if big and faiss_available() else "sklearn"


class NeighbourIndex:
    """Exact cosine nearest neighbours among ``vectors`` (N, D) float (normalised here),
    searched with ``backend`` (see the module docstring).

    ``search(queries (M, D), k)`` -> ``(distances (M, k) float32, indices (M, k) int64)``,
    nearest first; a distance is ``1 - cosine similarity`` in [0, 2].
    """

    def __init__(self, vectors: np.ndarray, backend: str = "auto", n_queries: int = 1):
        self.vectors = normalise(vectors)
        # ``n_queries``: how many searches are coming, so that "auto" can tell if faiss pays.
        self.backend = pick_backend(backend, len(self.vectors), n_queries)
        n, d = self.vectors.shape
        if n == 0:
            raise ValueError("cannot index an empty embedding (0 rows)")
        if self.backend == "faiss":
            import faiss

            self._index = faiss.IndexFlatIP(d)
            self._index.add(self.vectors)
        else:
            from sklearn.neighbors import NearestNeighbors

            self._index = NearestNeighbors(metric="cosine", algorithm="brute", n_jobs=1)
            self._index.fit(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = normalise(queries)
        if q.shape[1] != self.vectors.shape[1]:
            raise ValueError(
                f"queries have {q.shape[1]} dimensions, the index "
                f"{self.vectors.shape[1]}: embeddings of different models?"
            )
        if not 1 <= k <= len(self):
            raise ValueError(f"k must be between 1 and the {len(self)} indexed rows; got {k}")
        if self.backend == "faiss":
            sims, idx = self._index.search(q, k)
            dist = 1.0 - sims
        else:
            dist, idx = self._index.kneighbors(q, n_neighbors=k)
        # Rounding can give -1e-7 for a vector and itself; a distance is never negative.
        return np.clip(dist, 0.0, 2.0).astype(np.float32), idx.astype(np.int64)
