"""Cosine nearest neighbours and the k-NN outlier score of deepgal.explore, against a brute-force
oracle written with SciPy's cosine distance; scikit-learn's and faiss's indexes agree."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from deepgal.explore import index as index_mod
from deepgal.explore.index import NeighbourIndex, pick_backend
from deepgal.explore.outliers import knn_outlier_scores

faiss = pytest.importorskip("faiss")
BACKENDS = ("sklearn", "faiss")


def blobs(n=300, d=24, seed=0):
    """Vectors in a few clusters of different scales (cosine must ignore the scale)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, d))
    x = centres[rng.integers(0, 5, n)] + 0.4 * rng.normal(size=(n, d))
    return (x * rng.uniform(0.1, 50, (n, 1))).astype(np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_neighbours_are_scipy_cosine_nearest(backend):
    x, q = blobs(), blobs(20, seed=1)
    dist, idx = NeighbourIndex(x, backend).search(q, 7)
    oracle = cdist(q.astype(np.float64), x.astype(np.float64), "cosine")
    want = np.argsort(oracle, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_allclose(dist, np.take_along_axis(oracle, want, 1), atol=1e-5)


def test_sklearn_and_faiss_agree():
    x, q = blobs(500, 64, seed=2), blobs(50, 64, seed=3)
    d1, i1 = NeighbourIndex(x, "sklearn").search(q, 12)
    d2, i2 = NeighbourIndex(x, "faiss").search(q, 12)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(d1, d2, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_planted_duplicate_is_the_nearest_at_distance_zero(backend):
    x = blobs()
    x[203] = 3.0 * x[17]  # the same direction: the same image, brighter
    dist, idx = NeighbourIndex(x, backend).search(x[[17, 203]], 2)
    assert set(idx[0]) == {17, 203} and set(idx[1]) == {17, 203}
    assert dist.max() < 1e-5


def _oracle_scores(x, ref, k, leave_self_out):
    d = cdist(x.astype(np.float64), ref.astype(np.float64), "cosine")
    if leave_self_out:
        np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :k].mean(1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_outlier_scores_leave_each_row_out_of_its_own_neighbours(backend):
    x = blobs(200, seed=4)
    x[50] = x[120]  # an exact duplicate ties with the row itself
    x[51] = x[120]
    got = knn_outlier_scores(x, k=5, backend=backend)
    np.testing.assert_allclose(got, _oracle_scores(x, x, 5, True), atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_outlier_scores_against_a_reference_set(backend):
    x, ref = blobs(40, seed=5), blobs(150, seed=6)
    got = knn_outlier_scores(x, ref, k=8, backend=backend)
    np.testing.assert_allclose(got, _oracle_scores(x, ref, 8, False), atol=1e-5)


def test_a_point_far_from_every_cluster_scores_highest():
    x = blobs(200, seed=7)
    rng = np.random.default_rng(8)
    x[77] = rng.normal(size=x.shape[1]) * 5  # off every cluster's direction
    assert np.argmax(knn_outlier_scores(x, k=10)) == 77


def test_k_beyond_the_set_is_a_clear_error():
    with pytest.raises(ValueError, match=r"k=10 needs 1 <= k <= 9"):
        knn_outlier_scores(blobs(10), k=10)
    with pytest.raises(ValueError, match="between 1 and the 10 indexed rows"):
        NeighbourIndex(blobs(10)).search(blobs(1), 11)


def test_auto_takes_faiss_only_for_many_queries_on_a_large_set():
    assert pick_backend("auto", 17_736, 1) == "sklearn"  # one look-up: copying costs more
    assert pick_backend("auto", 1_000, 999) == "sklearn"  # under a second either way
    assert pick_backend("auto", 1_000, 1_000) == "faiss"
    assert pick_backend("auto", 10_000, 100) == "faiss"
    assert pick_backend("auto", 100_000, 99) == "sklearn"


def test_auto_without_faiss_is_sklearn_and_asking_for_it_says_what_to_install(monkeypatch):
    monkeypatch.setattr(index_mod, "faiss_available", lambda: False)
    assert pick_backend("auto", 10_000, 10_000) == "sklearn"
    with pytest.raises(ValueError, match="faiss-cpu"):
        pick_backend("faiss", 100, 10)
