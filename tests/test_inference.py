"""deepgal.inference.run_model: the one batched inference path (contract 2), with and without
test-time augmentation over the 8 dihedral views."""

import numpy as np
import pytest
import torch

from deepgal.inference import N_VIEWS, dihedral_views, run_model
from deepgal.models import build_model
from deepgal.transforms import Preprocess, prepare_batch

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("smallnet", 10, 32).eval()


def images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Random uint8 (n, size, size, 3) with structure at every scale (noise on a gradient), so
    a random network's outputs depend on the orientation."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 160, size)[None, :, None, None] * rng.uniform(0, 1, (n, 1, 1, 3))
    return np.clip(ramp + rng.integers(0, 96, (n, size, size, 3)), 0, 255).astype(np.uint8)


def views_of(x: np.ndarray) -> list[np.ndarray]:
    """The 8 dihedral views of uint8 images (N, H, W, 3), made on the pixels themselves."""
    out = []
    for flipped in (x, x[:, :, ::-1]):
        out += [np.ascontiguousarray(np.rot90(flipped, k, axes=(1, 2))) for k in range(4)]
    return out


def test_without_tta_it_is_the_model_on_the_preprocessed_batch(model):
    pre = Preprocess(32, crop=0.75, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    x = images(7, 48)
    with torch.inference_mode():
        logits = model(prepare_batch(torch.from_numpy(x), pre)).numpy()
    got = run_model(model, x, pre, CPU, batch_size=3, output="logits")
    assert got.dtype == np.float32 and got.shape == (7, 10)
    np.testing.assert_allclose(got, logits, rtol=1e-5, atol=1e-5)
    probs = run_model(model, torch.from_numpy(x), pre, CPU, output="probs")  # torch input too
    np.testing.assert_allclose(probs, torch.from_numpy(logits).softmax(1).numpy(), atol=1e-6)
    feats = run_model(model, x, pre, CPU, output="features")
    assert feats.shape == (7, model.feature_dim)
    both = run_model(model, x, pre, CPU, batch_size=4, output="features+probs")
    assert both.shape == (7, model.feature_dim + 10)  # one forward pass, side by side
    np.testing.assert_allclose(both[:, : model.feature_dim], feats, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(both[:, model.feature_dim :], probs, rtol=1e-5, atol=1e-6)


def test_tta_output_is_invariant_to_rotations_and_flips(model):
    pre = Preprocess(32)  # 32 px in, 32 px out: no resampling, so views are exact
    x = images(6)
    base = run_model(model, x, pre, CPU, output="probs", tta=True)
    plain = run_model(model, x, pre, CPU, output="probs")
    for v in views_of(x)[1:]:
        np.testing.assert_allclose(
            run_model(model, v, pre, CPU, output="probs", tta=True), base, atol=1e-5
        )
    # Without TTA the random network does see the orientation: the check above can fail.
    moved = run_model(model, views_of(x)[1], pre, CPU, output="probs")
    assert np.abs(moved - plain).max() > 1e-3


def test_tta_is_the_mean_over_the_eight_pixel_views(model):
    # Views are taken after preprocessing (one resize per batch, not eight); with a crop and a
    # 48 -> 32 px resize that must still equal averaging the model over rotated input images.
    pre = Preprocess(32, crop=0.75)
    x = images(5, 48, seed=1)
    for output in ("logits", "probs", "features"):
        want = np.mean([run_model(model, v, pre, CPU, output=output) for v in views_of(x)], 0)
        got = run_model(model, x, pre, CPU, output=output, tta=True)
        # The CPU resize rounds to uint8 (transforms.py), so a mirrored image may differ by one
        # grey level in a few pixels: far below any difference between views (checked below).
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)
    assert np.abs(got - run_model(model, x, pre, CPU, output="features")).max() > 0.05


def test_dihedral_views_are_eight_distinct_symmetries():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    views = list(dihedral_views(x, torch.channels_last))
    assert len(views) == N_VIEWS
    assert all(v.is_contiguous(memory_format=torch.channels_last) for v in views)
    assert len({tuple(v[0, 0].flatten().tolist()) for v in views}) == N_VIEWS
    torch.testing.assert_close(views[0], x)


def test_mode_is_restored_and_empty_input_works(model):
    pre = Preprocess(32)
    model.train()
    try:
        a = run_model(model, images(3), pre, CPU)
        assert model.training  # eval for the call (dropout/BN frozen), training mode given back
        np.testing.assert_array_equal(a, run_model(model, images(3), pre, CPU))
    finally:
        model.eval()
    empty = np.zeros((0, 32, 32, 3), np.uint8)
    assert run_model(model, empty, pre, CPU).shape == (0, 10)
    assert run_model(model, empty, pre, CPU, output="features").shape == (0, model.feature_dim)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(images=np.zeros((2, 32, 32, 3), np.float32)), "uint8"),
        (dict(images=np.zeros((2, 32, 32), np.uint8)), r"\(N, H, W, 3\)"),
        (dict(images=np.zeros((2, 32, 40, 3), np.uint8)), "square"),
        (dict(output="logit"), "output must be one of"),
        (dict(precision="fp16"), "precision must be one of"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_arguments_fail_with_the_value(model, bad, match):
    kwargs = dict(images=images(2), output="probs") | bad
    with pytest.raises(ValueError, match=match):
        run_model(model, kwargs.pop("images"), Preprocess(32), CPU, **kwargs)


def test_bf16_precision_runs_on_cpu(model):
    pre = Preprocess(32)
    x = images(4)
    fp32 = run_model(model, x, pre, CPU, precision="fp32")
    bf16 = run_model(model, x, pre, CPU, precision="bf16")
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, fp32, atol=0.05)  # bf16 keeps ~3 significant digits


def test_run_on_file_reads_each_split_in_its_own_order(model, tmp_path):
    """Several splits in one pass over a real HDF5 file: unsorted, sparse, repeated and
    contiguous rows, chunk boundaries inside runs; each split comes back in its own order."""
    from deepgal.data.galaxy10 import write_galaxy10
    from deepgal.inference.source import iter_rows, run_on_file

    x = images(50, 40, seed=3)
    write_galaxy10(tmp_path / "g.h5", x, np.zeros(50, np.int64))
    pre = Preprocess(32)
    splits = {
        "train": np.arange(5, 30),
        "val": np.array([44, 2, 31, 2, 49]),
        "test": np.array([], np.int64),
    }
    got = run_on_file(
        model, tmp_path / "g.h5", pre, CPU, splits, batch_size=4, chunk=7, output="logits"
    )
    assert list(got) == ["train", "val", "test"] and got["test"].shape == (0, 10)
    for name, idx in splits.items():
        np.testing.assert_allclose(
            got[name], run_model(model, x[idx], pre, CPU, output="logits"), rtol=1e-5, atol=1e-5
        )
    plain = run_on_file(model, tmp_path / "g.h5", pre, CPU, np.array([3, 1]), output="probs")
    np.testing.assert_allclose(plain, run_model(model, x[[3, 1]], pre, CPU), atol=1e-6)
    with pytest.raises(ValueError, match=r"g.h5: row 50 is outside 'images' \(50 rows\)"):
        list(iter_rows(tmp_path / "g.h5", np.array([0, 50])))
