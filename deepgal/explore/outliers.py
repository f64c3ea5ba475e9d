"""An outlier score per image: the mean cosine distance to its k nearest neighbours in the
embedding of a reference set.

Why this score: the penultimate embedding is where the network puts galaxies it finds alike
close together, so an image far from all of its nearest neighbours is one the network has seen
nothing like. The k-nearest-neighbour distance on L2-normalised penultimate features is the
detector of Sun et al. (ICML 2022, "Out-of-distribution detection with deep nearest
neighbors"); it assumes no shape of the distribution (a Gaussian or kernel density estimate in
hundreds to thousands of dimensions would), it has one parameter, and cosine makes it blind to
the overall scale of the activations (a bright and a faint image of the same morphology
match). The mean over k neighbours rather than the k-th alone is steadier on small sets, and a
pair of duplicates still shows up when k > 1.

With no reference the set is scored against itself, leaving each image out of its own
neighbours; the evaluate stage can pass the training set's embedding as the reference.
"""

from __future__ import annotations

import numpy as np

from .index import NeighbourIndex

DEFAULT_K = 10


def knn_outlier_scores(
    embedding: np.ndarray,
    reference: np.ndarray | None = None,
    k: int = DEFAULT_K,
    backend: str = "auto",
) -> np.ndarray:
    """Outlier score (N,) float32 of each row of ``embedding`` (N, D): the mean cosine distance
    (``1 - cos``, in [0, 2]) to its ``k`` nearest rows of ``reference`` (M, D), higher = more
    unusual. ``reference=None``: the rows of ``embedding`` itself, each row left out of its own
    neighbours (so k must be < N)."""
    embedding = np.asarray(embedding)
    if embedding.ndim != 2 or len(embedding) == 0:
        raise ValueError(f"expected an embedding (N, D) with N > 0; got shape {embedding.shape}")
    self_ref = reference is None
    pool = len(embedding) - 1 if self_ref else len(reference)
    if not 1 <= k <= pool:
        what = "other images in the set" if self_ref else "reference images"
        raise ValueError(f"outlier k={k} needs 1 <= k <= {pool} (the {what})")
    if not self_ref:
        return OutlierScorer(reference, k, backend, n_queries=len(embedding))(embedding)
    index = NeighbourIndex(embedding, backend, n_queries=len(embedding))
    # Each row is at distance 0 from itself, the least there is, so the nearest entry returned
    # is the row itself or an exact duplicate at the same 0 (an all-zero vector is at 1 from
    # everything, itself included): dropping the first column drops its own distance either way.
    return index.search(embedding, k + 1)[0][:, 1:].mean(1)


class OutlierScorer:
    """:func:`knn_outlier_scores` against one ``reference`` (M, D), for queries that come a
    block at a time (the evaluate stage reads val/test features back from its file in blocks):
    the index is built once, ``scorer(block (n, D))`` -> (n,) float32 scores. ``n_queries``:
    how many queries are coming in all (the backend choice depends on it)."""

    def __init__(self, reference: np.ndarray, k: int, backend: str = "auto", n_queries: int = 1):
        if not 1 <= k <= len(reference):
            raise ValueError(
                f"outlier k={k} needs 1 <= k <= {len(reference)} (the reference images)"
            )
        self.k, self._index = k, NeighbourIndex(reference, backend, n_queries=n_queries)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block)
        if block.ndim != 2:
            raise ValueError(f"expected an embedding (N, D); got shape {block.shape}")
        if not len(block):
            return np.empty(0, np.float32)
        return self._index.search(block, self.k)[0].mean(1).astype(np.float32)
