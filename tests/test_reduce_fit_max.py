"""reduce.fit_max: each map fitted on a seeded sample of the reference rows, every other
reference row placed on that map; checked against umap-learn and scikit-learn called directly
on the same sample, and the sample against its documented properties."""

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from deepgal.reduce import _fit_rows, fit_maps

UMAP = {"n_neighbors": 8, "min_dist": 0.1, "n_epochs": 30}


def blobs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(4, 6))
    return (centres[rng.integers(0, 4, n)] + rng.normal(size=(n, 6))).astype(np.float32)


def test_sample_is_seeded_sorted_distinct_and_off_when_not_smaller():
    rows = _fit_rows(1000, 100, seed=3)
    assert rows.shape == (100,) and len(np.unique(rows)) == 100
    assert (np.diff(rows) > 0).all() and rows.min() >= 0 and rows.max() < 1000
    np.testing.assert_array_equal(rows, _fit_rows(1000, 100, seed=3))
    assert not np.array_equal(rows, _fit_rows(1000, 100, seed=4))
    assert _fit_rows(1000, 1000, 3) is None and _fit_rows(1000, None, 3) is None


def test_umap_fitted_on_the_sample_places_the_rest_as_umap_learn_does():
    import umap

    x, val = blobs(300), blobs(20, seed=1)
    ref, placed, _ = fit_maps(x, {"val": val}, "umap", 2, None, fit_max=200, **UMAP)
    rows = _fit_rows(300, 200, seed=2)
    rest = np.setdiff1d(np.arange(300), rows)
    scaler = StandardScaler().fit(x[rows])  # the standardiser sees the sample only
    model = umap.UMAP(random_state=2, n_jobs=1, **UMAP).fit(scaler.transform(x[rows]))
    np.testing.assert_allclose(ref[rows], model.embedding_, atol=1e-4)
    np.testing.assert_allclose(ref[rest], model.transform(scaler.transform(x[rest])), atol=1e-4)
    np.testing.assert_allclose(placed["val"], model.transform(scaler.transform(val)), atol=1e-4)


def test_fit_max_not_below_the_reference_size_changes_nothing():
    x = blobs(120)
    for method, settings in (("umap", UMAP), ("pca", {})):
        base = fit_maps(x, {"val": x[:5]}, method, 0, None, **settings)
        at_n = fit_maps(x, {"val": x[:5]}, method, 0, None, fit_max=120, **settings)
        np.testing.assert_array_equal(base[0], at_n[0])
        np.testing.assert_array_equal(base[1]["val"], at_n[1]["val"])


def test_pca_fitted_on_the_sample_is_scikit_learns():
    from sklearn.decomposition import PCA

    x = blobs(120)
    ref, placed, _ = fit_maps(x, {"val": x[:5]}, "pca", 0, None, fit_max=30)
    rows = _fit_rows(120, 30, seed=0)
    scaler = StandardScaler().fit(x[rows])
    pca = PCA(2, random_state=0).fit(scaler.transform(x[rows]))
    np.testing.assert_allclose(ref, pca.transform(scaler.transform(x)), atol=1e-4)
    np.testing.assert_allclose(placed["val"], pca.transform(scaler.transform(x[:5])), atol=1e-4)


def test_fit_max_is_validated():
    with pytest.raises(ValueError, match=r"fit_max must be >= 5 or None.*got 4"):
        fit_maps(blobs(50), {}, "umap", 0, None, fit_max=4, **UMAP)


def test_points_are_placed_in_chunks_each_as_umap_learn_places_it_alone(monkeypatch):
    """PLACE_CHUNK rows at a time (memory): each chunk of the rest of the reference and of val
    lands where umap-learn's transform of that chunk alone puts it."""
    import umap

    from deepgal import reduce

    monkeypatch.setattr(reduce, "PLACE_CHUNK", 40)
    x, val = blobs(300), blobs(90, seed=1)
    ref, placed, _ = fit_maps(x, {"val": val}, "umap", 2, None, fit_max=200, **UMAP)
    rows = _fit_rows(300, 200, seed=2)
    rest = np.setdiff1d(np.arange(300), rows)  # 100 rows: chunks of 40, 40, 20
    scaler = StandardScaler().fit(x[rows])
    model = umap.UMAP(random_state=2, n_jobs=1, **UMAP).fit(scaler.transform(x[rows]))

    def chunked(a):
        return np.vstack([model.transform(scaler.transform(a[i : i + 40])) for i in (0, 40, 80)])

    np.testing.assert_allclose(ref[rest], chunked(x[rest]), atol=1e-4)
    np.testing.assert_allclose(placed["val"], chunked(val), atol=1e-4)


def test_the_standardiser_is_fitted_and_applied_a_block_at_a_time_with_one_shot_numbers(
    monkeypatch,
):
    """The fit's scaler runs over blocks of rows (its float64 temporaries stay a block's size);
    its statistics and the standardised rows are scikit-learn's one-shot ones. The blocks differ
    (each block's rows shifted and scaled), so a fit or a transform that missed a block would
    show."""
    from deepgal import reduce_methods
    from deepgal.reduce_methods import _reference_fit

    monkeypatch.setattr(reduce_methods, "FIT_BLOCK_BYTES", 1)  # the minimum: 1,024 rows a block
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2600, 6)) * (1 + np.arange(2600)[:, None] // 1024)
    x = (x + 5.0 * (np.arange(2600)[:, None] // 1024)).astype(np.float32)  # 3 blocks, unalike
    expect = StandardScaler().fit(x.astype(np.float64))
    prep, z = _reference_fit(x.copy(), "pca", seed=0, pca_dims=None)
    np.testing.assert_allclose(prep[0].mean_, expect.mean_, rtol=1e-6)
    np.testing.assert_allclose(prep[0].scale_, expect.scale_, rtol=1e-6)
    np.testing.assert_allclose(z, expect.transform(x.astype(np.float64)), atol=1e-5)


def test_full_width_rows_are_placed_a_bounded_block_at_a_time(monkeypatch):
    """The pca map places standardised rows at the features' full width: a call holds at most
    READ_BYTES of them, not PLACE_CHUNK rows (1.6 GB at 4,096-D), and the coordinates are those
    of one call over all rows. Measured with tracemalloc (numpy reports its buffers to it)."""
    import tracemalloc

    from deepgal import reduce

    d, n = 512, 3000
    x = np.random.default_rng(3).normal(size=(n, d)).astype(np.float32)
    whole = fit_maps(x, {}, "pca", 0, None, fit_max=200)[0]
    monkeypatch.setattr(reduce, "READ_BYTES", 64 * 4 * d)  # 64 full-width rows a call
    tracemalloc.start()
    try:
        chunked = fit_maps(x, {}, "pca", 0, None, fit_max=200)[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(chunked, whole, atol=1e-4)
    rest_bytes = (n - 200) * d * 4  # the placed rows at full width: 5.7 MB
    assert peak < rest_bytes / 2, (peak, rest_bytes)
