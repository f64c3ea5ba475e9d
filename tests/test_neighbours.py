"""deepgal.neighbours: exact up to ``exact_max`` points, faiss HNSW above; the approximate
graph agrees with scikit-learn's exact one, distances are the metric's own, and the maps of
UMAP and t-SNE below the threshold are those of an exact search done independently."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from deepgal import neighbours
from deepgal.neighbours import build_index, umap_knn
from deepgal.reduce import fit_maps
from deepgal.reduce_methods import UMAP_SMALL_DATA


def clustered(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    """(n, dim) float32: ten Gaussian clusters of unit spread around centres 3 apart on
    average per axis, so that neighbourhoods mix within a cluster (a search that only finds
    the right cluster scores a low recall)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(10, dim))
    return (centres[rng.integers(0, 10, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    return np.mean(
        [len(set(a) & set(b)) / exact.shape[1] for a, b in zip(approx, exact, strict=True)]
    )


@pytest.mark.parametrize("metric", neighbours.METRICS)
def test_hnsw_graph_agrees_with_sklearn_exact_neighbours(metric):
    """recall@15 >= 0.95 against scikit-learn's exact neighbours. The bound: with HNSW's
    settings the benchmark measured >= 0.99 up to 16,000 points on harder (50-D, 10 classes
    overlapping) data; 0.95 leaves room for the metric and the small set here, and a search
    that is off (wrong metric, unnormalised rows, a thin graph) lands far below it. Each
    returned distance must be SciPy's distance between the two points."""
    x = clustered(3000)
    idx, dist = build_index(x, metric, exact_max=2999).self_neighbours(15)
    truth = NearestNeighbors(n_neighbors=15, metric=metric).fit(x).kneighbors()[1]
    assert recall(idx, truth) >= 0.95, recall(idx, truth)
    assert not (idx == np.arange(len(x))[:, None]).any()  # a point is not its own neighbour
    rows = np.arange(len(x))[:, None]
    scipy_name = {"manhattan": "cityblock"}.get(metric, metric)
    want = np.stack([cdist(x[i : i + 1], x[idx[i]], scipy_name)[0] for i in range(0, 3000, 97)])
    np.testing.assert_allclose(dist[rows[::97, 0]], want, rtol=1e-4, atol=1e-4)
    q_idx, q_dist = build_index(x, metric, exact_max=0).query(x[:200] + 0.05, 10)
    q_truth = NearestNeighbors(n_neighbors=10, metric=metric).fit(x).kneighbors(x[:200] + 0.05)
    assert q_idx.dtype == np.int32 and q_dist.dtype == np.float32
    assert recall(q_idx, q_truth[1]) >= 0.95


@pytest.mark.parametrize("n", [499, 500, 501])
def test_search_is_exact_up_to_and_including_the_threshold(n):
    """At exact_max=500: 499 and 500 points exactly, 501 by HNSW, for UMAP's graph and t-SNE's
    index alike; the exact graph is scikit-learn's."""
    x = clustered(n)
    idx, dist, index = umap_knn(x, 8, "euclidean", exact_max=500)
    assert isinstance(index, neighbours.ExactIndex if n <= 500 else neighbours.HnswIndex)
    tsne = neighbours.tsne_index(x, 30, "euclidean", exact_max=500)
    tsne.build()
    assert type(tsne.index) is type(index)
    if n <= 500:
        truth = NearestNeighbors(n_neighbors=7).fit(x).kneighbors()[1]
        np.testing.assert_array_equal(idx[:, 1:], truth)


def test_reduce_param_exact_max_is_validated():
    x = clustered(50)
    with pytest.raises(ValueError, match=r"exact_max must be >= 0 or None.*got -1"):
        fit_maps(x, {}, "umap", 0, None, -1, n_neighbors=5, min_dist=0.1)
    with pytest.raises(ValueError, match="neighbour metric must be one of"):
        build_index(x, "chebyshev")


class SklearnIndex:
    """The oracle's search index for ``UMAP.transform``: scikit-learn's exact neighbours."""

    _angular_trees = False

    def __init__(self, nn):
        self.nn = nn

    def query(self, x, k, epsilon=None):
        dist, idx = self.nn.kneighbors(x, k)
        return idx.astype(np.int32), dist.astype(np.float32)


def test_umap_map_below_the_threshold_is_that_of_sklearn_neighbours():
    """UMAP from 4,096 points is handed a precomputed graph; at or below exact_max it must be
    the exact one: the map equals umap-learn's own fit on scikit-learn's brute-force graph
    (brute: another exact algorithm rounds distances differently, and UMAP's layout amplifies
    a last-bit difference) with scikit-learn placing val."""
    import umap

    x = clustered(UMAP_SMALL_DATA + 200, dim=8)
    ref, placed, _ = fit_maps(
        x[:UMAP_SMALL_DATA], {"val": x[UMAP_SMALL_DATA:]}, "umap", 0, None, UMAP_SMALL_DATA,
        n_neighbors=10, min_dist=0.1, n_epochs=30,
    )  # fmt: skip
    scaler = StandardScaler().fit(x[:UMAP_SMALL_DATA])
    z = scaler.transform(x[:UMAP_SMALL_DATA]).astype(np.float32)
    nn = NearestNeighbors(n_neighbors=9, algorithm="brute").fit(z)
    dist, idx = nn.kneighbors()  # the 9 nearest others; umap-learn wants each point first
    idx = np.hstack([np.arange(len(z))[:, None], idx]).astype(np.int32)
    dist = np.hstack([np.zeros((len(z), 1)), dist]).astype(np.float32)
    model = umap.UMAP(
        n_neighbors=10, min_dist=0.1, n_epochs=30, random_state=0, n_jobs=1,
        precomputed_knn=(idx, dist, SklearnIndex(nn)),
    ).fit(z)  # fmt: skip
    np.testing.assert_allclose(ref, model.embedding_, atol=1e-4)
    val = model.transform(scaler.transform(x[UMAP_SMALL_DATA:]).astype(np.float32))
    np.testing.assert_allclose(placed["val"], val, atol=1e-4)


def test_tsne_map_below_the_threshold_is_opentsne_exact():
    """1,500 points (openTSNE's own "auto" would search them with Annoy): at or below
    exact_max the map must be openTSNE's with its own exact index (scikit-learn, brute force:
    t-SNE turns a last-bit difference in a distance into a different map)."""
    from openTSNE import TSNE
    from openTSNE.nearest_neighbors import Sklearn

    x = clustered(1600, dim=8)
    with threadpool_limits(limits=1, user_api="openmp"):
        ref, placed, _ = fit_maps(
            x[:1500], {"val": x[1500:]}, "tsne", 0, None, 1500, perplexity=10, n_iter=60
        )
        scaler = StandardScaler().fit(x[:1500])
        z = scaler.transform(x[:1500]).astype(np.float32)
        exact = Sklearn(z, 30, "euclidean", knn_kwargs={"algorithm": "brute"})
        emb = TSNE(perplexity=10, n_iter=60, neighbors=exact, random_state=0, n_jobs=1).fit(z)
        val = emb.transform(scaler.transform(x[1500:]).astype(np.float32), perplexity=5)
    # transform centres the fitted points in place: val is placed in that frame, ref must be too
    np.testing.assert_allclose(ref, np.asarray(emb), atol=1e-3)
    np.testing.assert_allclose(placed["val"], np.asarray(val), atol=1e-3)


@pytest.mark.parametrize(
    "method, settings, n",
    [
        ("umap", {"n_neighbors": 10, "min_dist": 0.1, "n_epochs": 30}, UMAP_SMALL_DATA),
        ("tsne", {"perplexity": 10, "n_iter": 60}, 1500),
    ],
)
def test_maps_above_the_threshold_fit_and_place_through_hnsw(method, settings, n, monkeypatch):
    """exact_max 0: the graph and the placing of val go through HNSW (counted), and val lands
    among its own class on the map (5-NN on the fitted points, against the true labels)."""
    from sklearn.neighbors import KNeighborsClassifier

    built = []

    class Counted(neighbours.HnswIndex):
        def __init__(self, *args):
            super().__init__(*args)
            built.append(self)

    monkeypatch.setattr(neighbours, "HnswIndex", Counted)
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, n + 300)
    x = (rng.normal(scale=4.0, size=(10, 8))[labels] + rng.normal(size=(n + 300, 8))).astype(
        np.float32
    )
    with threadpool_limits(limits=1, user_api="openmp"):
        ref, placed, _ = fit_maps(x[:n], {"val": x[n:]}, method, 0, None, 0, **settings)
    assert len(built) == 1
    knn = KNeighborsClassifier(5).fit(ref, labels[:n])
    assert knn.score(placed["val"], labels[n:]) > 0.9
