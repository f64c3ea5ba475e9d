"""Reading what astronomers have (deepgal.inference.cutouts/source): the exact errors a user
reads, Pillow's own crop/resize as the oracle for a cut-out, and rows read by index."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from deepgal.data.galaxy10 import write_galaxy10
from deepgal.inference.cutouts import CutoutError, load_cutout, open_cutouts
from deepgal.inference.source import iter_rows


def test_folder_lists_images_sorted_any_case_and_nothing_else(tmp_path):
    for name in ("b.PNG", "a.jpeg", "c.jpg", "notes.txt"):
        Image.new("RGB", (4, 4)).save(tmp_path / name, format="PNG")
    (tmp_path / "sub.png").mkdir()
    cut = open_cutouts(tmp_path)
    assert (cut.kind, cut.names, cut.labels) == ("folder", ("a.jpeg", "b.PNG", "c.jpg"), None)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.txt").write_text("x")
    with pytest.raises(CutoutError, match=rf"^{empty}: no \.jpg/\.jpeg/\.png files in this"):
        open_cutouts(empty)
    with pytest.raises(FileNotFoundError, match=f"^{tmp_path / 'nope'}: no such file or folder"):
        open_cutouts(tmp_path / "nope")
    with pytest.raises(CutoutError, match=rf"^{tmp_path / 'notes.txt'}: neither a folder"):
        open_cutouts(tmp_path / "notes.txt")


def h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f[k] = v
    return path


@pytest.mark.parametrize(
    "data, says",
    [
        (
            dict(pixels=np.zeros((2, 4, 4, 3), np.uint8)),
            r"no 'images' dataset \(found: \['pixels'\]\); predict needs uint8 images \(N, H, W, 3\)",
        ),
        (
            dict(images=np.zeros((2, 4, 4, 3), np.float32)),
            r"'images' is float32 \(2, 4, 4, 3\); expected uint8 \(N, H, W, 3\) with N > 0",
        ),
        (dict(images=np.zeros((0, 4, 4, 3), np.uint8)), r"'images' is uint8 \(0, 4, 4, 3\)"),
        (dict(images=np.zeros((2, 4, 4, 4), np.uint8)), r"'images' is uint8 \(2, 4, 4, 4\)"),
        (dict(images=np.zeros((2, 4, 4), np.uint8)), r"'images' is uint8 \(2, 4, 4\)"),
        (
            dict(images=np.zeros((2, 4, 6, 3), np.uint8)),
            r"images are 4x6 px; square cut-outs are expected",
        ),
        (
            dict(images=np.zeros((2, 4, 4, 3), np.uint8), ans=np.zeros(3, np.uint8)),
            r"'ans' has shape \(3,\), expected \(2,\)",
        ),
    ],
)
def test_bad_hdf5_says_what_is_wrong(tmp_path, data, says):
    path = h5(tmp_path / "in.h5", **data)
    with pytest.raises(CutoutError, match=f"^{path}: {says}"):
        open_cutouts(path)


def test_hdf5_rows_and_labels(tmp_path):
    path = h5(
        tmp_path / "in.h5",
        images=np.zeros((3, 4, 4, 3), np.uint8),
        ans=np.array([2, 0, 9], np.uint8),
    )
    cut = open_cutouts(path)
    assert (cut.kind, cut.names) == ("hdf5", ("0", "1", "2"))
    assert cut.labels.dtype == np.int64 and cut.labels.tolist() == [2, 0, 9]


def test_a_cutout_is_the_centre_square_resized_bilinear(tmp_path):
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (6, 11, 3), dtype=np.uint8)  # h 6, w 11: left = 2
    Image.fromarray(wide).save(tmp_path / "wide.png")
    np.testing.assert_array_equal(load_cutout(tmp_path / "wide.png", 6), wide[:, 2:8])
    tall = rng.integers(0, 256, (11, 6, 3), dtype=np.uint8)  # top = 2
    Image.fromarray(tall).save(tmp_path / "tall.png")
    np.testing.assert_array_equal(load_cutout(tmp_path / "tall.png", 6), tall[2:8])
    want = np.asarray(
        Image.fromarray(np.ascontiguousarray(wide[:, 2:8])).resize(
            (4, 4), Image.Resampling.BILINEAR
        )
    )
    np.testing.assert_array_equal(load_cutout(tmp_path / "wide.png", 4), want)
    odd = rng.integers(0, 256, (6, 13, 3), dtype=np.uint8)  # left = 7 // 2 = 3, not 3.5
    Image.fromarray(odd).save(tmp_path / "odd.png")
    np.testing.assert_array_equal(load_cutout(tmp_path / "odd.png", 6), odd[:, 3:9])
    Image.fromarray(np.ascontiguousarray(odd.transpose(1, 0, 2))).save(tmp_path / "odd_t.png")
    np.testing.assert_array_equal(
        load_cutout(tmp_path / "odd_t.png", 6), odd.transpose(1, 0, 2)[3:9]
    )
    grey = rng.integers(0, 256, (5, 5), dtype=np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    got = load_cutout(tmp_path / "grey.png", 5)
    assert got.shape == (5, 5, 3) and all(np.array_equal(got[..., c], grey) for c in range(3))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(
        CutoutError,
        match=rf"^{tmp_path / 'bad.jpg'}: not a readable JPEG/PNG"
        r" image \(.*\); remove or replace it$",
    ):
        load_cutout(tmp_path / "bad.jpg", 4)


def test_a_truncated_hdf5_says_copy_it_again(tmp_path):
    path = h5(tmp_path / "t.h5", images=np.zeros((200, 8, 8, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(
        CutoutError,
        match=rf"^{path}: unreadable HDF5 data \(.*\); the file is "
        r"probably truncated: copy or download it again$",
    ):
        open_cutouts(path)


@pytest.fixture(scope="module")
def net():
    import torch

    from deepgal.models import build_model

    torch.manual_seed(0)
    return build_model("smallnet", 10, 8).eval()


def test_predict_a_folder_as_run_model_would(tmp_path, net):
    """Folder and HDF5 give run_model's probabilities row for row, with and without TTA, the
    default being without."""
    import torch

    from deepgal.inference import run_model
    from deepgal.inference.cutouts import predict
    from deepgal.inference.source import run_on_file
    from deepgal.transforms import Preprocess

    pre, cpu = Preprocess(8), torch.device("cpu")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    for i, img in enumerate(x):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    write_galaxy10(tmp_path / "g.h5", x, np.zeros(5, np.int64))
    for tta in (False, True):
        want = run_model(net, x, pre, cpu, output="probs", tta=tta)
        for cut in (open_cutouts(tmp_path), open_cutouts(tmp_path / "g.h5")):
            got = predict(cut, net, pre, cpu, batch_size=2, tta=tta)
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        predict(open_cutouts(tmp_path), net, pre, cpu),
        predict(open_cutouts(tmp_path), net, pre, cpu, tta=False),
    )
    # run_on_file: probabilities by default, features sized by the model, float32, no splits.
    plain = run_on_file(net, tmp_path / "g.h5", pre, cpu, [4, 0])
    np.testing.assert_allclose(plain, run_model(net, x[[4, 0]], pre, cpu), atol=1e-6)
    feats = run_on_file(net, tmp_path / "g.h5", pre, cpu, {"a": [1, 2]}, output="features")
    assert feats["a"].dtype == np.float32 and feats["a"].shape == (2, net.feature_dim)
    assert run_on_file(net, tmp_path / "g.h5", pre, cpu, {}) == {}


def test_iter_rows_reads_any_order_and_names_a_row_outside(tmp_path):
    images = np.arange(9)[:, None, None, None] * np.ones((9, 2, 2, 3), np.uint8)
    path = tmp_path / "g.h5"
    write_galaxy10(path, images.astype(np.uint8), np.zeros(9, np.int64))
    want = [7, 0, 7, 3, 8, 1, 0]
    got = {}
    for pos, rows in iter_rows(path, want, chunk=3):
        assert len(pos) <= 3
        for p, img in zip(pos, rows, strict=True):
            got[int(p)] = int(img[0, 0, 0])
    assert [got[i] for i in range(len(want))] == want
    # Equal indices keep their input order (stable sort): positions 1 and 6 for row 0.
    first = next(iter_rows(path, want, chunk=2))[0].tolist()
    assert first == [1, 6]
    for bad, row in (([0, 9], 9), ([-1, 3], -1), ([3, -2, 4], -2), ([0, 3, 12], 12)):
        with pytest.raises(
            ValueError,
            match=rf"^{path}: row {row} is outside 'images' "
            r"\(9 rows\); was the split made from another",
        ):
            list(iter_rows(path, bad))
