"""deepgal.reduce fits on train alone: against scikit-learn's StandardScaler + PCA fitted on the
train rows only, and, for UMAP and t-SNE, train coordinates that stay bit-identical whatever
the val and test rows (features and labels) hold."""

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from deepgal.reduce import _reference_prep, fit_maps, reduce_features
from deepgal.reduce_methods import _reference_fit
from tests.helpers import sklearn_pca

DIM, PCA_DIMS = 16, 5  # D > pca_dims: UMAP and t-SNE get the PCA pre-step too
METHODS = {
    "pca": {},
    "tsne": {"perplexity": 10, "n_iter": 150},
    "umap": {"n_neighbors": 10, "min_dist": 0.1, "n_epochs": 100},
}


@pytest.fixture(autouse=True)
def one_openmp_thread():
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def data(seed: int = 0, n_train: int = 60, n_other: int = 20):
    """Train rows (n_train, DIM) float32 around 0, and val/test rows drawn far off (shifted,
    wider, other column scales), so a scaler or PCA that saw them would differ clearly."""
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.5, 3.0, DIM)
    train = (rng.normal(size=(n_train, DIM)) * scales).astype(np.float32)
    val, test = ((rng.normal(size=(n_other, DIM)) * 5 + 7).astype(np.float32) for _ in "vt")
    return train, val, test


def signs(got: np.ndarray, expect: np.ndarray) -> np.ndarray:
    """Per-column +-1 aligning ``expect`` with ``got``: PCA axes are defined up to sign."""
    return np.where((got * expect).sum(0) < 0, -1.0, 1.0)


def test_pca_map_is_sklearn_fitted_on_train_rows_only():
    train, val, test = data()
    ref, placed, _ = fit_maps(train, {"val": val, "test": test}, "pca", seed=0)
    oracle = sklearn_pca(train)
    expect = oracle(train)
    s = signs(ref, expect)
    np.testing.assert_allclose(ref, expect * s, rtol=0, atol=2e-4)
    for name, x in (("val", val), ("test", test)):
        np.testing.assert_allclose(placed[name], oracle(x) * s, rtol=0, atol=1e-3)
    # The oracle fitted on every row is a different map: the comparison can tell.
    everything = sklearn_pca(np.concatenate([train, val, test]))(train)
    assert np.abs(np.abs(everything) - np.abs(expect)).max() > 0.1


def test_reference_prep_is_scaler_and_pca_of_train_rows():
    train, _, _ = data(1)
    prep = _reference_prep(train, "umap", seed=0, pca_dims=PCA_DIMS)
    scaler, pca = prep[0], prep[1]
    ref_scaler = StandardScaler().fit(train.astype(np.float64))
    np.testing.assert_allclose(scaler.mean_, ref_scaler.mean_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scaler.scale_, ref_scaler.scale_, rtol=1e-5)
    ref_pca = PCA(PCA_DIMS).fit(ref_scaler.transform(train.astype(np.float64)))
    # Components up to sign: |<got_i, expect_i>| = 1 for unit vectors.
    overlap = np.abs((pca.components_ * ref_pca.components_).sum(1))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-4)
    np.testing.assert_allclose(pca.explained_variance_, ref_pca.explained_variance_, rtol=1e-4)


def test_the_in_place_fit_gives_the_same_numbers_and_leaves_the_callers_features_alone():
    train, val, _ = data(1)
    prep = _reference_prep(train, "umap", seed=0, pca_dims=PCA_DIMS)
    owned = train.astype(np.float32)
    fitted, z = _reference_fit(owned, "umap", seed=0, pca_dims=PCA_DIMS)
    np.testing.assert_allclose(z, prep.transform(train), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fitted.transform(val.copy()), prep.transform(val), atol=1e-5)
    # fit_maps standardises its own copy in place: the caller's arrays come back unchanged.
    x, others = train.astype(np.float32), {"val": val.astype(np.float32)}
    before = x.copy(), others["val"].copy()
    for fit_max in (None, len(x) // 2):
        fit_maps(x, others, "pca", seed=0, fit_max=fit_max)
        np.testing.assert_array_equal(x, before[0])
        np.testing.assert_array_equal(others["val"], before[1])


def feats_file(train, val, test, seed=0):
    """A features.h5-like dict with the splits interleaved; labels random, ids unique."""
    rng = np.random.default_rng(seed)
    split = np.array(["train"] * len(train) + ["val"] * len(val) + ["test"] * len(test))
    order = rng.permutation(len(split))
    x = np.concatenate([train, val, test])[order]
    return {
        "features": x,
        "index": rng.permutation(len(x)).astype(np.int64),
        "label": rng.integers(0, 10, len(x)),
        "split": split[order],
    }


def coords(df, method, split):
    part = df[(df.method == method) & (df.split == split)]
    return part[["x", "y"]].to_numpy()


def test_train_maps_ignore_val_and_test_and_placement_is_seeded():
    """Every method: train coordinates are bit-identical when the val/test features and labels
    change; the same inputs give the same val/test placement; PCA places val/test exactly where
    the train-only sklearn fit does."""
    train, val, test = data(2)
    base = feats_file(train, val, test)
    changed = {**base, "features": base["features"].copy(), "label": base["label"].copy()}
    other = base["split"] != "train"
    rng = np.random.default_rng(9)
    changed["features"][other] = rng.normal(size=(other.sum(), DIM)) * 3 - 4
    changed["label"][other] = rng.integers(0, 10, other.sum())
    a, _ = reduce_features(base, METHODS, seed=4, pca_dims=PCA_DIMS)
    again, _ = reduce_features(base, METHODS, seed=4, pca_dims=PCA_DIMS)
    b, _ = reduce_features(changed, METHODS, seed=4, pca_dims=PCA_DIMS)
    for method in METHODS:
        np.testing.assert_array_equal(coords(a, method, "train"), coords(b, method, "train"))
        for split in ("val", "test"):
            np.testing.assert_array_equal(coords(a, method, split), coords(again, method, split))
            # The val/test rows did change, so their coordinates must too.
            assert not np.allclose(coords(a, method, split), coords(b, method, split))
    rows = {split: base["features"][base["split"] == split] for split in ("train", "val", "test")}
    oracle = sklearn_pca(rows["train"])
    s = signs(coords(a, "pca", "train"), oracle(rows["train"]))
    for split in ("train", "val", "test"):
        np.testing.assert_allclose(
            coords(a, "pca", split), oracle(rows[split]) * s, rtol=0, atol=1e-3
        )
