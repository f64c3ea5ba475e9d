"""deepgal.reduce's documented contract on small inputs: the frame's dtypes and index, the
error a user reads for a malformed features file, empty inputs, and the seed and PCA pre-step
reaching the map (reduce_features' train map is reduce_2d of the train rows, and a different
seed or pre-step gives a different map); and each map against its library called directly
(scikit-learn's scaler and PCA, openTSNE, umap-learn) with the same settings and seed."""

import warnings

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from deepgal.reduce import reduce_2d, reduce_features

TSNE = {"perplexity": 5, "n_iter": 100}


@pytest.fixture(autouse=True)
def one_openmp_thread():
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def feats(n=30, d=12, seed=0, int_dtype=np.int64):
    rng = np.random.default_rng(seed)
    split = np.array(["train", "val", "test"])[np.arange(n) % 3]
    return {
        "features": rng.normal(size=(n, d)).astype(np.float32),
        "index": (np.arange(n) * 7 + 3).astype(int_dtype),
        "label": (np.arange(n) % 4).astype(int_dtype),
        "split": split,
    }


def test_empty_features_map_to_an_empty_float32_array():
    xy = reduce_2d(np.empty((0, 8), np.float32), "pca", seed=0)
    assert xy.shape == (0, 2) and xy.dtype == np.float32


@pytest.mark.parametrize("key", ["features", "index", "label", "split"])
def test_a_missing_array_is_named(key):
    f = {k: v for k, v in feats().items() if k != key}
    with pytest.raises(ValueError) as e:
        reduce_features(f, {"pca": {}}, seed=0)
    assert str(e.value) == (
        f"features file lacks '{key}'; expected features, index, label, "
        "split (the evaluate stage writes them)"
    )


def test_frame_dtypes_and_a_fresh_row_index():
    # ids and labels read as int32 are written as int64, as the empty frame's columns are.
    f = feats(int_dtype=np.int32)
    frame, _ = reduce_features(f, {"pca": {}}, seed=0)
    assert list(frame.columns) == ["split", "method", "index", "label", "x", "y"]
    assert (frame["index"].dtype, frame["label"].dtype) == (np.int64, np.int64)
    assert (frame["x"].dtype, frame["y"].dtype) == (np.float32, np.float32)
    pd.testing.assert_index_equal(frame.index, pd.RangeIndex(30))
    # grouped by split (train, val, test), rows in input order: ids 3, 24, 45, ... for train
    assert frame["index"].tolist()[:3] == [3, 24, 45]


def centred(xy):
    """Bounding-box centre moved to 0: openTSNE centres the train map so when it places new
    points (a translation, the same for any val/test), reduce_2d places none."""
    return xy - (xy.max(0) + xy.min(0)) / 2


def test_seed_and_pre_step_reach_the_train_map():
    f = feats(n=36, d=24)
    train = f["features"][f["split"] == "train"]
    frame, _ = reduce_features(f, {"tsne": TSNE}, seed=3, pca_dims=6)
    got = centred(frame[frame.split == "train"][["x", "y"]].to_numpy())
    alone = centred(reduce_2d(train, "tsne", seed=3, pca_dims=6, **TSNE))
    np.testing.assert_allclose(got, alone, atol=1e-4, rtol=0)
    for seed, dims in [(4, 6), (3, None), (3, 12)]:  # controls: each setting changes the map
        other = centred(reduce_2d(train, "tsne", seed=seed, pca_dims=dims, **TSNE))
        assert np.abs(got - other).max() > 0.1


def test_the_default_pre_step_is_50_dimensions():
    # params.yaml's reduce.pca_dims: 50. On 51-D features the default must reduce to 50 first.
    f = feats(n=24, d=51)
    x = f["features"]
    default = reduce_2d(x, "tsne", seed=1, **TSNE)
    np.testing.assert_array_equal(default, reduce_2d(x, "tsne", seed=1, pca_dims=50, **TSNE))
    assert not np.allclose(default, reduce_2d(x, "tsne", seed=1, pca_dims=None, **TSNE))
    frame, _ = reduce_features(f, {"tsne": TSNE}, seed=1)
    again, _ = reduce_features(f, {"tsne": TSNE}, seed=1, pca_dims=50)
    pd.testing.assert_frame_equal(frame, again)
    other, _ = reduce_features(f, {"tsne": TSNE}, seed=1, pca_dims=None)
    assert not np.allclose(frame[["x", "y"]].to_numpy(), other[["x", "y"]].to_numpy())


def test_the_seed_reaches_scikit_learns_randomized_pca():
    """520 x 60 isotropic features: scikit-learn's PCA picks its randomized solver here, so its
    result depends on the seed. The PCA map is scikit-learn's scaler + PCA(2) with that seed; the
    UMAP/t-SNE pre-step PCA is seeded too (same seed: same components; another: others)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from deepgal.reduce import _reference_prep

    x = np.random.default_rng(5).normal(size=(520, 60)).astype(np.float32)
    xy = reduce_2d(x, "pca", seed=0)
    z = StandardScaler().fit_transform(x)
    expect = PCA(2, random_state=0).fit(z).transform(z)  # not fit_transform: U S, not X V
    np.testing.assert_allclose(xy, expect, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(xy, reduce_2d(x, "pca", seed=0))
    assert np.abs(xy - reduce_2d(x, "pca", seed=1)).max() > 0.1  # the seed matters here
    pcs = [_reference_prep(x, "umap", seed, pca_dims=10)[1].components_ for seed in (0, 0, 1)]
    np.testing.assert_array_equal(pcs[0], pcs[1])
    assert np.abs(pcs[0] - pcs[2]).max() > 0.1


@pytest.mark.parametrize("perplexity, placing", [(2, 2), (8, 5)])
def test_tsne_places_new_points_as_opentsne_does(perplexity, placing):
    """New points get their affinities with perplexity 5, or the map's own when it is lower
    (openTSNE's placement default is 5, but it would otherwise reuse the fit's). Oracle:
    scikit-learn's scaler and openTSNE called directly, in the order reduce documents
    (openTSNE re-centres the train map in place when it places points)."""
    from openTSNE import TSNE as OpenTSNE
    from openTSNE.nearest_neighbors import Sklearn
    from sklearn.preprocessing import StandardScaler

    from deepgal.reduce import fit_maps

    rng = np.random.default_rng(4)
    train, val = (rng.normal(size=(n, 6)).astype(np.float32) for n in (30, 4))
    ref, placed, _ = fit_maps(
        train, {"val": val}, "tsne", 2, None, perplexity=perplexity, n_iter=50
    )
    scaler = StandardScaler().fit(train)
    z = scaler.transform(train).astype(np.float32)
    # reduce's exact neighbours are scikit-learn's brute force (openTSNE's own exact index with
    # that algorithm); t-SNE turns another algorithm's last-bit rounding into another map.
    exact = Sklearn(z, int(3 * perplexity), "euclidean", knn_kwargs={"algorithm": "brute"})
    emb = OpenTSNE(perplexity=perplexity, n_iter=50, random_state=2, n_jobs=1, neighbors=exact).fit(
        z
    )
    z_val = scaler.transform(val).astype(np.float32)
    expect = emb.transform(z_val, perplexity=placing)
    np.testing.assert_allclose(placed["val"], expect, atol=1e-4)
    np.testing.assert_allclose(ref, np.asarray(emb), atol=1e-4)
    # Control: another placement perplexity puts them elsewhere.
    assert np.abs(expect - emb.transform(z_val, perplexity=placing + 1)).max() > 1e-3


def test_tsne_perplexity_clip_at_its_lower_edge_and_no_warning_when_it_fits():
    x = np.random.default_rng(6).normal(size=(40, 5)).astype(np.float32)
    # 5 points, the fewest t-SNE runs on: (5 - 1) / 3 = 1.33 (1 is only the floor below it)
    with pytest.warns(UserWarning, match=r"too high for 5 points; using 1\.33$"):
        reduce_2d(x[:5], "tsne", seed=0, perplexity=30, n_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a perplexity that fits is used as is, silently
        reduce_2d(x, "tsne", seed=0, perplexity=13, n_iter=50)  # (40 - 1) / 3 = 13


def test_umap_map_is_umap_learn_called_directly():
    """Every UMAP setting reaches umap-learn: the train map and the placed points equal
    scikit-learn's scaler + umap-learn's UMAP with the same settings and seed (settings away
    from umap-learn's defaults, so a setting not passed on would show); no clipping warning
    when n_neighbors fits the train split."""
    import umap as umap_learn
    from sklearn.preprocessing import StandardScaler

    from deepgal.reduce import fit_maps

    rng = np.random.default_rng(8)
    train, val = (rng.normal(size=(n, 6)).astype(np.float32) for n in (60, 5))
    settings = {"n_neighbors": 7, "min_dist": 0.4, "metric": "manhattan", "n_epochs": 30}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="umap: ")
        ref, placed, _ = fit_maps(train, {"val": val}, "umap", 3, None, **settings)
    scaler = StandardScaler().fit(train)
    model = umap_learn.UMAP(n_components=2, random_state=3, n_jobs=1, **settings)
    model.fit(scaler.transform(train).astype(np.float32))
    np.testing.assert_allclose(ref, model.embedding_, atol=1e-5)
    expect = model.transform(scaler.transform(val).astype(np.float32))
    np.testing.assert_allclose(placed["val"], expect, atol=1e-5)


def test_fit_maps_names_bad_input_and_keeps_its_defaults():
    from deepgal.reduce import fit_maps

    x = np.random.default_rng(2).normal(size=(24, 8)).astype(np.float32)
    cases = [
        (x.reshape(2, 12, 8), {}, "features (reference) must be (N, 8); got shape (2, 12, 8)"),
        (x, {"val": x[:3, :7]}, "features (val) must be (N, 8); got shape (3, 7)"),
        (x[:0], {}, "the reference split (train) has no rows: nothing to fit a map on"),
    ]
    for ref, others, message in cases:
        with pytest.raises(ValueError) as e:
            fit_maps(ref, others, "pca", 0)
        assert str(e.value) == message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PCA on 3 points is no fallback: no warning
        fit_maps(x[:3], {}, "pca", 0)
    # pca_dims 2 is the smallest pre-step allowed
    two = fit_maps(x, {}, "tsne", 0, 2, **TSNE)[0]
    assert not np.allclose(two, fit_maps(x, {}, "tsne", 0, None, **TSNE)[0])
    # fit_maps' own default pre-step is 50 dimensions, as reduce_2d's
    wide = np.random.default_rng(3).normal(size=(24, 51)).astype(np.float32)
    default = fit_maps(wide, {}, "tsne", 1, **TSNE)[0]
    np.testing.assert_array_equal(default, fit_maps(wide, {}, "tsne", 1, 50, **TSNE)[0])


def test_tsne_pre_step_is_scikit_learns_seeded_pca_in_float32():
    """520 x 60 features, pre-step to 10 dimensions (scikit-learn's randomized solver here):
    the t-SNE map is openTSNE on scikit-learn's scaler + PCA(10, random_state=seed), all in
    float32, whether the features come as float32 or float64; empty val is placed as (0, 2);
    the fit's seconds lie within the call."""
    import time

    from openTSNE import TSNE as OpenTSNE
    from openTSNE.nearest_neighbors import Sklearn
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from deepgal.reduce import fit_maps

    x = np.random.default_rng(5).normal(size=(520, 60))
    tsne = {"perplexity": 5, "n_iter": 10}
    t0 = time.perf_counter()
    ref, placed, seconds = fit_maps(x, {"val": x[:7], "test": x[:0]}, "tsne", 0, 10, **tsne)
    elapsed = time.perf_counter() - t0
    assert 0 < seconds["fit"] and 0 < seconds["val"] and seconds["fit"] + seconds["val"] <= elapsed
    assert placed["test"].shape == (0, 2) and placed["test"].dtype == np.float32
    x32 = x.astype(np.float32)
    ref32, placed32, _ = fit_maps(x32, {"val": x32[:7]}, "tsne", 0, 10, **tsne)
    np.testing.assert_array_equal(ref, ref32)
    np.testing.assert_array_equal(placed["val"], placed32["val"])
    z = StandardScaler().fit_transform(x32)
    z = PCA(10, random_state=0).fit(z).transform(z).astype(np.float32)
    exact = Sklearn(z, 15, "euclidean", knn_kwargs={"algorithm": "brute"})  # as reduce's
    expect = OpenTSNE(random_state=0, n_jobs=1, neighbors=exact, **tsne).fit(z)
    # placing val re-centres openTSNE's train map (a translation): compare the shapes
    np.testing.assert_allclose(centred(ref), centred(np.asarray(expect)), atol=1e-3)
