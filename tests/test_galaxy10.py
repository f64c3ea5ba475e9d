"""The Galaxy10 layout: every malformed file gets one clear error naming the file and problem."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from deepgal.data import galaxy10
from deepgal.data.galaxy10 import Galaxy10FormatError, validate

from .conftest import make_h5


def write_raw(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
    return path


def good(n=4, size=16):
    return dict(images=np.zeros((n, size, size, 3), np.uint8), ans=np.arange(n, dtype=np.uint8))


def test_valid_file_summary(small_h5):
    info = validate(small_h5)
    assert (info.n_images, info.height, info.width) == (60, 16, 16)
    assert info.class_counts == (6,) * 10
    assert info.as_dict()["class_counts"]["Round Smooth"] == 6


def test_real_sample_validates(real_sample):
    info = validate(real_sample)
    assert info.n_images == 50 and (info.height, info.width) == (256, 256)
    assert info.class_counts == (5,) * 10


def test_class_names_in_astronn_order():
    assert galaxy10.CLASS_NAMES[0] == "Disturbed"
    assert galaxy10.CLASS_NAMES[4] == "Cigar Shaped Smooth"
    assert galaxy10.CLASS_NAMES[9] == "Edge-on with Bulge"
    assert sum(galaxy10.REAL_CLASS_COUNTS) == 17736


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("images"), "missing dataset 'images'"),
        (lambda d: d.pop("ans"), "missing dataset 'ans'"),
        (
            lambda d: d.update(images=d["images"].astype(np.float32)),
            "dtype float32, expected uint8",
        ),
        (lambda d: d.update(images=np.zeros((4, 16, 16), np.uint8)), "expected (N, H, W, 3)"),
        (
            lambda d: d.update(
                images=np.zeros((0, 16, 16, 3), np.uint8), ans=np.zeros(0, np.uint8)
            ),
            "zero images",
        ),
        (lambda d: d.update(ans=np.array([0, 1, 2, 10], np.uint8)), "ans[3] = 10"),
        (lambda d: d.update(ans=np.array([0, 1, -1, 2], np.int16)), "ans[2] = -1"),
        (lambda d: d.update(ans=np.arange(3, dtype=np.uint8)), "4 images but 3 labels"),
        (lambda d: d.update(ans=np.zeros(4, np.float32)), "expected integer labels"),
        (lambda d: d.update(ra=np.zeros(3)), "'ra' has shape (3,)"),
        (lambda d: d.update(dec=np.array([0.0, np.nan, 1.0, 2.0])), "'dec' is not finite at row 1"),
        (lambda d: d.update(ra=np.array([0.0, 1.0, np.inf, 2.0])), "'ra' is not finite at row 2"),
        (lambda d: d.update(dec=np.array([0.0, 1.0, 2.0, -90.5])), "'dec' is -90.5 at row 3"),
    ],
)
def test_bad_layouts_are_named(tmp_path, mutate, message):
    d = good()
    mutate(d)
    path = write_raw(tmp_path / "bad.h5", **d)
    with pytest.raises(Galaxy10FormatError) as e:
        validate(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_unknown_redshift_is_allowed(tmp_path):
    d = good()
    path = write_raw(tmp_path / "z.h5", **d, redshift=np.array([0.1, np.nan, 0.2, 0.3]))
    assert validate(path).optional_keys == ("redshift",)


def test_not_hdf5(tmp_path):
    """A file the user passed is theirs to check; only the pipeline's own can be re-made."""
    path = tmp_path / "notes.h5"
    path.write_text("this is not HDF5\n")
    with pytest.raises(Galaxy10FormatError, match="not an HDF5 file") as e:
        validate(path)
    assert "check the path" in str(e.value) and "dvc repro" not in str(e.value)
    own = tmp_path / "data" / "galaxy10.h5"
    own.parent.mkdir()
    own.write_text("this is not HDF5\n")
    with pytest.raises(Galaxy10FormatError, match="`dvc repro download`"):
        validate(own)


def test_truncated_file(tmp_path):
    path = make_h5(tmp_path / "full.h5", n_per_class=20, size=32)
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(Galaxy10FormatError, match="cut.h5") as e:
        validate(cut)
    assert "truncated" in str(e.value) or "not an HDF5" in str(e.value)


def test_missing_file(tmp_path):
    """The pipeline's own file says how to make it; a user's path is named, with no advice
    that cannot help."""
    with pytest.raises(FileNotFoundError, match="dvc repro download"):
        validate(tmp_path / "data" / "galaxy10.h5")
    with pytest.raises(FileNotFoundError) as e:
        validate(tmp_path / "nope.h5")
    assert str(e.value) == f"{tmp_path / 'nope.h5'}: no such file"


def test_read_images_any_order(small_h5):
    with h5py.File(small_h5) as f:
        all_images = f["images"][:]
    idx = np.array([17, 3, 59, 3, 0])
    np.testing.assert_array_equal(galaxy10.read_images(small_h5, idx, chunk=2), all_images[idx])
    np.testing.assert_array_equal(galaxy10.read_images(small_h5, chunk=7), all_images)
    np.testing.assert_array_equal(
        galaxy10.read_images(small_h5, np.arange(10, 30), chunk=8), all_images[10:30]
    )  # the read_direct branch
    sparse = np.array([0, 40, 59])  # far apart: the fancy-index branch
    np.testing.assert_array_equal(
        galaxy10.read_images(small_h5, sparse, chunk=8), all_images[sparse]
    )


def test_write_is_atomic_and_leaves_no_tmp(tmp_path):
    path = tmp_path / "x.h5"
    with pytest.raises(TypeError):
        galaxy10.write_galaxy10(path, np.zeros((2, 8, 8, 3), np.uint8), object())
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_read_coordinates(tmp_path, small_h5):
    assert galaxy10.read_coordinates(small_h5) is None  # no ra/dec: the sample's case
    d = good()
    d.update(ra=np.array([0.0, 359.5, 10.0, 20.0]), dec=np.array([-90.0, 90.0, 0.0, 1.5]))
    path = write_raw(tmp_path / "pos.h5", **d)
    validate(path)
    ra, dec = galaxy10.read_coordinates(path)
    assert ra.dtype == dec.dtype == np.float64
    np.testing.assert_array_equal(dec, d["dec"])
    np.testing.assert_array_equal(ra, d["ra"])


def test_scattered_rows_with_repeats_read_as_runs(tmp_path):
    """Rows far apart (the sparse val/test case) come back in the order asked, repeats kept."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (500, 8, 8, 3), dtype=np.uint8)
    path = tmp_path / "g.h5"
    galaxy10.write_galaxy10(path, images, np.arange(500) % 10)
    idx = np.array([400, 3, 3, 250, 251, 252, 7, 499, 0, 120])
    np.testing.assert_array_equal(galaxy10.read_images(path, idx, chunk=4), images[idx])
