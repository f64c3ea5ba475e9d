"""deepgal.reduce: row order and ids survive, seeds reproduce, clusters stay apart, tiny splits
do not crash, typos fail."""
import warnings

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

from deepgal.reduce import COLUMNS, MIN_POINTS, reduce_2d, reduce_features

N_CLASSES = 10


@pytest.fixture(autouse=True)
def one_openmp_thread():
    """t-SNE on a few hundred points is all OpenMP overhead: on a busy 2-core machine two
    threads ran it 6x slower than one. The maps are identical either way (checked)."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def clusters(n_per: int, dim: int = 32, seed: int = 0, planar: bool = False):
    """Well-separated Gaussian clusters: features (N, dim) float32 and labels (N,), shuffled.

    ``planar`` puts the ten centres on a circle in a random plane (linear methods can separate
    them in 2-D; the plane is rotated into all axes, as structure in real features is, so
    per-column standardisation keeps it dominant); otherwise the centres are random.
    """
    rng = np.random.default_rng(seed)
    if planar:
        angle = np.linspace(0, 2 * np.pi, N_CLASSES, endpoint=False)
        plane = np.linalg.qr(rng.normal(size=(dim, 2)))[0].T  # (2, dim) orthonormal rows
        centres = 30 * np.stack([np.cos(angle), np.sin(angle)], axis=1) @ plane
    else:
        centres = rng.normal(scale=6.0, size=(N_CLASSES, dim))
    labels = rng.permutation(np.repeat(np.arange(N_CLASSES), n_per))
    x = centres[labels] + rng.normal(size=(len(labels), dim))
    return x.astype(np.float32), labels.astype(np.int64)


def feats_file(x, labels, seed=1):
    """A features.npz-like dict with splits interleaved and ids unrelated to row numbers."""
    rng = np.random.default_rng(seed)
    split = rng.choice(np.array(["train", "val", "test"]), size=len(x), p=[0.6, 0.2, 0.2])
    index = rng.permutation(10 * len(x))[:len(x)].astype(np.int64)
    return {"features": x, "index": index, "label": labels, "split": split.astype("<U5")}


def knn_accuracy(xy, labels) -> float:
    """5-fold cross-validated 5-NN accuracy of the 2-D map: near 1 when classes stay apart."""
    return cross_val_score(KNeighborsClassifier(5), xy, labels, cv=5).mean()


FAST = {"pca": {}, "tsne": {"perplexity": 20, "max_iter": 250}}


@pytest.mark.filterwarnings("ignore:tsne. perplexity")
def test_rows_keep_order_ids_and_labels(tmp_path):
    x, y = clusters(30)
    feats = feats_file(x, y)
    np.savez(tmp_path / "features.npz", **feats)  # the features stage's file format
    with np.load(tmp_path / "features.npz") as npz:
        df, timings = reduce_features(npz, FAST, seed=0, pca_dims=10)
    assert tuple(df.columns) == COLUMNS
    assert set(timings) == set(FAST)
    for method in FAST:
        assert list(timings[method]) == ["train", "val", "test"]
        for split in ("train", "val", "test"):
            part = df[(df.method == method) & (df.split == split)]
            rows = feats["split"] == split
            np.testing.assert_array_equal(part["index"].to_numpy(), feats["index"][rows])
            np.testing.assert_array_equal(part["label"].to_numpy(), feats["label"][rows])
            assert part["x"].dtype == np.float32 and np.isfinite(part[["x", "y"]]).all().all()
            # Coordinates belong to the right rows: recomputing this split alone matches.
            xy = reduce_2d(x[rows], method, 0, 10, **FAST[method])
            np.testing.assert_allclose(part[["x", "y"]].to_numpy(), xy, rtol=1e-5, atol=1e-5)
    assert len(df) == len(FAST) * len(x)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_same_seed_same_map(method):
    x, _ = clusters(20)
    a = reduce_2d(x, method, seed=3, pca_dims=10, **FAST[method])
    b = reduce_2d(x, method, seed=3, pca_dims=10, **FAST[method])
    assert a.shape == (len(x), 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_pca_separates_planar_clusters():
    x, y = clusters(30, planar=True)
    assert knn_accuracy(reduce_2d(x, "pca", seed=0), y) > 0.9
    # Rows matched to the wrong labels score near chance: the check can fail.
    assert knn_accuracy(reduce_2d(x[::-1], "pca", seed=0), y) < 0.5


def test_tsne_separates_clusters_and_shuffled_labels_do_not():
    x, y = clusters(30)
    xy = reduce_2d(x, "tsne", seed=0, pca_dims=10, **FAST["tsne"])
    assert knn_accuracy(xy, y) > 0.9
    # The same check on a row order broken on purpose scores near chance: the test can fail.
    assert knn_accuracy(xy, np.random.default_rng(0).permutation(y)) < 0.5


def test_umap_separates_clusters_deterministically():
    # UMAP is slow to import and JIT-compile: one test, small data, every property at once.
    x, y = clusters(25)
    settings = {"n_neighbors": 10, "min_dist": 0.1, "n_epochs": 100}
    a = reduce_2d(x, "umap", seed=7, pca_dims=10, **settings)
    b = reduce_2d(x, "umap", seed=7, pca_dims=10, **settings)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (len(x), 2) and a.dtype == np.float32
    assert knn_accuracy(a, y) > 0.9
    with pytest.warns(UserWarning, match="n_neighbors 10 too high for 6 points; using 5"):
        tiny = reduce_2d(x[:MIN_POINTS + 1], "umap", seed=7, **settings)
    assert tiny.shape == (MIN_POINTS + 1, 2) and np.isfinite(tiny).all()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_tiny_splits_map_without_crashing(n, method):
    x, _ = clusters(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clipping and PCA-fallback warnings are expected
        xy = reduce_2d(x[:n], method, seed=0, **FAST[method])
    assert xy.shape == (n, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()


def test_fallback_and_clipping_warn():
    x, _ = clusters(1)
    with pytest.warns(UserWarning, match="using PCA"):
        reduce_2d(x[:MIN_POINTS - 1], "tsne", seed=0)
    with pytest.warns(UserWarning, match="perplexity 30"):
        reduce_2d(x[:8], "tsne", seed=0, max_iter=250)


def test_empty_and_missing_splits_are_skipped():
    x, y = clusters(2)
    feats = {"features": x[:12], "index": np.arange(12), "label": y[:12],
             "split": np.array(["train"] * 10 + ["val"] * 2)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df, timings = reduce_features(feats, FAST, seed=0, pca_dims=None)
    assert timings["tsne"].keys() == {"train", "val"}  # no test rows: no test map
    assert sorted(df.split.unique()) == ["train", "val"]
    assert reduce_2d(np.zeros((0, 8), np.float32), "tsne", seed=0).shape == (0, 2)
    empty = {k: v[:0] for k, v in feats.items()}
    df, timings = reduce_features(empty, FAST, seed=0, pca_dims=None)
    assert len(df) == 0 and tuple(df.columns) == COLUMNS and timings == {"pca": {}, "tsne": {}}


def test_unknown_method_or_setting_fails_before_work():
    x, y = clusters(2)
    with pytest.raises(ValueError, match=r"unknown reduction method 'isomap'.*pca.*tsne.*umap"):
        reduce_2d(x, "isomap", seed=0)
    with pytest.raises(ValueError, match=r"unknown reduction method 'Umap'"):
        reduce_features(feats_file(x, y), {"pca": {}, "Umap": {}}, seed=0, pca_dims=50)
    with pytest.raises(ValueError, match=r"unknown tsne setting\(s\) \['perplexty'\]"):
        reduce_2d(x, "tsne", seed=0, perplexty=5)
    with pytest.raises(ValueError, match="pca_dims must be >= 2"):
        reduce_2d(x, "umap", seed=0, pca_dims=1)


def test_bad_features_file_is_named():
    x, y = clusters(2)
    feats = feats_file(x, y)
    with pytest.raises(ValueError, match="lacks 'split'"):
        reduce_features({k: v for k, v in feats.items() if k != "split"}, FAST, 0, 50)
    with pytest.raises(ValueError, match="inconsistent"):
        reduce_features({**feats, "label": y[:-1]}, FAST, 0, 50)
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reduce_2d(x, "pca", seed=0)
