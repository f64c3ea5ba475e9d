"""deepgal.reduce: one map per method fitted on train with val/test placed on it; row order and
ids survive, seeds reproduce, clusters stay apart, tiny splits do not crash, typos fail."""

import warnings

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

from deepgal.handoff import Features
from deepgal.reduce import COLUMNS, MIN_POINTS, fit_maps, reduce_2d, reduce_features
from tests.helpers import sklearn_pca

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
    """A features.h5-like dict with splits interleaved and ids unrelated to row numbers."""
    rng = np.random.default_rng(seed)
    split = rng.choice(np.array(["train", "val", "test"]), size=len(x), p=[0.6, 0.2, 0.2])
    index = rng.permutation(10 * len(x))[: len(x)].astype(np.int64)
    return {"features": x, "index": index, "label": labels, "split": split.astype("<U5")}


def knn_accuracy(xy, labels) -> float:
    """5-fold cross-validated 5-NN accuracy of the 2-D map: near 1 when classes stay apart."""
    return cross_val_score(KNeighborsClassifier(5), xy, labels, cv=5).mean()


FAST = {"pca": {}, "tsne": {"perplexity": 20, "n_iter": 150}}
UMAP = {"n_neighbors": 10, "min_dist": 0.1, "n_epochs": 100}


@pytest.mark.filterwarnings("ignore:tsne. perplexity")
def test_rows_keep_order_ids_and_labels(tmp_path):
    x, y = clusters(30)
    feats = feats_file(x, y)
    # The evaluate stage's features file, read as the reduce stage reads it: rows on demand.
    Features(**feats).write(tmp_path / "features.h5")
    with Features.open(tmp_path / "features.h5") as lazy:
        df, timings = reduce_features(lazy, FAST, seed=0, pca_dims=10)
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
    # Coordinates belong to the right rows. PCA: scikit-learn's train-only fit, row by row.
    rows = {s: x[feats["split"] == s] for s in ("train", "val", "test")}
    oracle = sklearn_pca(rows["train"])
    pca = {s: df[(df.method == "pca") & (df.split == s)][["x", "y"]].to_numpy() for s in rows}
    sign = np.where((pca["train"] * oracle(rows["train"])).sum(0) < 0, -1.0, 1.0)
    for split, xs in rows.items():
        np.testing.assert_allclose(pca[split], oracle(xs) * sign, rtol=0, atol=1e-3)
    # t-SNE: the train coordinates keep their labels' clusters, and val/test rows land on the
    # train points of their own label (rows paired with other rows' labels would not).
    tsne = df[df.method == "tsne"]
    train = tsne[tsne.split == "train"]
    assert knn_accuracy(train[["x", "y"]], train["label"]) > 0.9
    knn = KNeighborsClassifier(5).fit(train[["x", "y"]], train["label"])
    held = tsne[tsne.split != "train"]
    assert knn.score(held[["x", "y"]], held["label"]) > 0.9
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


def placed_accuracy(method: str, settings: dict, seed: int = 0) -> tuple[float, float]:
    """Fit on train clusters, place held-out points: 5-NN accuracy of the held-out labels from
    the train coordinates, and the same with the held-out rows shuffled (near chance)."""
    x, y = clusters(30)
    held = np.arange(len(x)) % 4 == 0
    ref, placed, _ = fit_maps(x[~held], {"val": x[held]}, method, seed, 10, **settings)
    knn = KNeighborsClassifier(5).fit(ref, y[~held])
    shuffled = np.random.default_rng(0).permutation(placed["val"])
    return knn.score(placed["val"], y[held]), knn.score(shuffled, y[held])


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_val_lands_on_its_class_in_the_train_map(method):
    # PCA needs the planar clusters to separate in 2-D; the random ones are for UMAP/t-SNE.
    settings = UMAP if method == "umap" else FAST[method]
    if method == "pca":
        x, y = clusters(30, planar=True)
        held = np.arange(len(x)) % 4 == 0
        ref, placed, _ = fit_maps(x[~held], {"val": x[held]}, "pca", 0, 10)
        knn = KNeighborsClassifier(5).fit(ref, y[~held])
        good, bad = knn.score(placed["val"], y[held]), knn.score(placed["val"][::-1], y[held])
    else:
        good, bad = placed_accuracy(method, settings)
    assert good > 0.9 and bad < 0.5, (good, bad)


def test_umap_separates_clusters_deterministically_with_a_disk_cache():
    # UMAP is slow to import and JIT-compile: one test, small data, every property at once.
    x, y = clusters(25)
    a = reduce_2d(x, "umap", seed=7, pca_dims=10, **UMAP)
    b = reduce_2d(x, "umap", seed=7, pca_dims=10, **UMAP)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (len(x), 2) and a.dtype == np.float32
    assert knn_accuracy(a, y) > 0.9
    with pytest.warns(UserWarning, match="n_neighbors 10 too high for 6 points; using 5"):
        tiny = reduce_2d(x[: MIN_POINTS + 1], "umap", seed=7, **UMAP)
    assert tiny.shape == (MIN_POINTS + 1, 2) and np.isfinite(tiny).all()
    # umap-learn declares few of its numba functions cache=True; reduce turns caching on for
    # all of them, so a second process loads them from NUMBA_CACHE_DIR instead of compiling.
    import umap.layouts
    import umap.umap_

    for fn in (umap.umap_.smooth_knn_dist, umap.layouts.optimize_layout_euclidean):
        if hasattr(fn, "_cache"):
            assert type(fn._cache).__name__ != "NullCache", fn


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_tiny_splits_map_without_crashing(n, method):
    x, _ = clusters(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clipping and PCA-fallback warnings are expected
        xy = reduce_2d(x[:n], method, seed=0, **FAST[method])
        again = reduce_2d(x[:n], method, seed=0, **FAST[method])
    assert xy.shape == (n, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    np.testing.assert_array_equal(xy, again)
    if method == "tsne" and n >= MIN_POINTS:
        assert np.ptp(xy, axis=0).min() > 0  # a real layout, not the points piled up
        return
    # PCA, and t-SNE's fallback below MIN_POINTS: scikit-learn's fit, each axis up to sign
    # (one point sits at the origin; two points span one axis, the second is ~0).
    expect = np.zeros((1, 2)) if n == 1 else sklearn_pca(x[:n])(x[:n])
    np.testing.assert_allclose(np.abs(xy), np.abs(expect), rtol=0, atol=1e-4)


def test_fallback_and_clipping_warn():
    x, _ = clusters(1)
    with pytest.warns(UserWarning, match="using PCA"):
        reduce_2d(x[: MIN_POINTS - 1], "tsne", seed=0, perplexity=30)
    # 8 points: openTSNE looks at 3 * perplexity neighbours, so at most (8 - 1) / 3.
    with pytest.warns(UserWarning, match=r"perplexity 30 too high for 8 points; using 2\.33$"):
        reduce_2d(x[:8], "tsne", seed=0, perplexity=30, n_iter=50)


def test_degenerate_pca_maps():
    """One feature column: PCA has one axis, x is the standardised value (up to sign), y is 0.
    One train row: every split sits at the origin."""
    x = np.array([[1.0], [2.0], [4.0], [7.0]], np.float32)
    ref, placed, _ = fit_maps(x, {"val": np.array([[3.0]], np.float32)}, "pca", seed=0)
    z = (x[:, 0] - x.mean()) / x.std()
    sign = -1.0 if ref[0, 0] * z[0] < 0 else 1.0  # never 0: a zero map must not pass
    np.testing.assert_allclose(ref, np.stack([sign * z, 0 * z], 1), rtol=0, atol=1e-5)
    np.testing.assert_allclose(placed["val"], [[sign * (3 - x.mean()) / x.std(), 0]], atol=1e-5)
    ref, placed, _ = fit_maps(x[:1], {"val": x[1:]}, "pca", seed=0)
    np.testing.assert_array_equal(ref, np.zeros((1, 2)))
    np.testing.assert_array_equal(placed["val"], np.zeros((3, 2)))


def test_empty_and_missing_splits_are_skipped():
    x, y = clusters(2)
    feats = {
        "features": x[:12],
        "index": np.arange(12),
        "label": y[:12],
        "split": np.array(["train"] * 10 + ["val"] * 2),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df, timings = reduce_features(feats, FAST, seed=0, pca_dims=None)
    assert timings["tsne"].keys() == {"train", "val"}  # no test rows: no test map
    assert sorted(df.split.unique()) == ["train", "val"]
    assert reduce_2d(np.zeros((0, 8), np.float32), "tsne", seed=0, **FAST["tsne"]).shape == (0, 2)
    empty = {k: v[:0] for k, v in feats.items()}
    df, timings = reduce_features(empty, FAST, seed=0, pca_dims=None)
    assert len(df) == 0 and tuple(df.columns) == COLUMNS and timings == {"pca": {}, "tsne": {}}
    # The empty frame has the dtypes of a full one, so concatenating or saving it keeps them.
    assert [str(t) for t in df.dtypes[2:]] == ["int64", "int64", "float32", "float32"]


def test_unknown_method_or_setting_fails_before_work():
    x, y = clusters(2)
    with pytest.raises(ValueError, match=r"unknown reduction method 'isomap'.*pca.*tsne.*umap"):
        reduce_2d(x, "isomap", seed=0)
    with pytest.raises(ValueError, match=r"unknown reduction method 'Umap'"):
        reduce_features(feats_file(x, y), {"pca": {}, "Umap": {}}, seed=0, pca_dims=50)
    with pytest.raises(ValueError, match=r"unknown tsne setting\(s\) \['perplexty'\]"):
        reduce_2d(x, "tsne", seed=0, perplexity=5, perplexty=5)
    with pytest.raises(
        ValueError,
        match=r"umap: missing setting\(s\) \['min_dist'\]; .*"
        r"reduce.methods.umap",
    ):
        reduce_2d(x, "umap", seed=0, n_neighbors=5)
    with pytest.raises(ValueError, match="pca_dims must be >= 2"):
        reduce_2d(x, "umap", seed=0, pca_dims=1, **UMAP)


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


def test_exact_neighbours_put_each_point_first_even_among_duplicates():
    from deepgal.neighbours import umap_knn

    x, _ = clusters(20, dim=8)
    x[5] = x[6]  # an exact duplicate: both must still list themselves first
    idx, dist, index = umap_knn(x, 6, "euclidean", exact_max=None)
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    assert idx.shape == (len(x), 6) and idx.dtype == np.int32
    assert (idx[:, 0] == np.arange(len(x))).all() and (dist[:, 0] == 0).all()
    assert idx[5, 1] == 6 and idx[6, 1] == 5 and dist[5, 1] == 0
    np.testing.assert_allclose(dist[:, 1:], np.sort(d, axis=1)[:, 1:6], rtol=1e-4, atol=1e-4)
    qi, qd = index.query(x[:3] + 0.01, 4, epsilon=0.1)  # what UMAP.transform calls
    np.testing.assert_array_equal(
        qi, np.argsort(np.linalg.norm(x[None] - (x[:3] + 0.01)[:, None], axis=2), axis=1)[:, :4]
    )
    # Another metric is honoured: cosine neighbours by SciPy's distances.
    from scipy.spatial.distance import cdist

    idx, dist, _ = umap_knn(x, 4, "cosine", exact_max=None)
    cos = cdist(x, x, "cosine")
    np.fill_diagonal(cos, -1)  # itself first
    np.testing.assert_array_equal(idx[:, 1:], np.argsort(cos, axis=1)[:, 1:4])
    np.testing.assert_allclose(dist[:, 1:], np.sort(cos, axis=1)[:, 1:4], rtol=1e-4, atol=1e-5)


def test_umap_above_its_small_data_size_places_val_with_exact_neighbours(monkeypatch):
    """4,096 train points or more: umap-learn would switch to pynndescent (minutes of numba
    compiling at first use); reduce hands it exact neighbours and an exact search index, so
    neither fit nor transform may touch pynndescent, and val still lands on its class."""
    import pynndescent

    from deepgal.reduce_methods import UMAP_SMALL_DATA

    class Refuse(pynndescent.NNDescent):  # still a type: umap-learn isinstance-checks it
        def __init__(self, *a, **k):
            raise AssertionError("pynndescent's NNDescent was used")

    monkeypatch.setattr(pynndescent, "NNDescent", Refuse)
    import umap.umap_

    monkeypatch.setattr(umap.umap_, "NNDescent", Refuse)
    x, y = clusters(560, dim=16)
    x, y = x[:5462], y[:5462]  # exactly 4,096 train rows: the first size umap-learn approximates
    held = np.arange(len(x)) % 4 == 0
    assert (~held).sum() == UMAP_SMALL_DATA
    ref, placed, _ = fit_maps(x[~held], {"val": x[held]}, "umap", 0, 10, **UMAP)
    knn = KNeighborsClassifier(5).fit(ref, y[~held])
    good = knn.score(placed["val"], y[held])
    bad = knn.score(np.random.default_rng(0).permutation(placed["val"]), y[held])
    assert good > 0.9 and bad < 0.5, (good, bad)


def test_tsne_settings_reach_opentsne():
    """Each t-SNE setting changes the map (a setting not passed on would leave it equal)."""
    x, _ = clusters(4)
    base = dict(perplexity=5, n_iter=60, metric="euclidean")
    a = reduce_2d(x, "tsne", seed=0, pca_dims=None, **base)
    for change in ({"perplexity": 10}, {"n_iter": 30}, {"metric": "cosine"}):
        b = reduce_2d(x, "tsne", seed=0, pca_dims=None, **{**base, **change})
        assert not np.allclose(a, b), change
