"""The labelled-set reader on real files: planted folders of real PNG/JPEG files written with
Pillow, real HDF5 files, and the shared 700 real galaxies where ../shared is present.

Oracles: each planted image's pixel value encodes the class it was planted for (hand-written
table below), the shared files' names end in their class (``image_<N>_<c>.jpg``)."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from deepgal.data.labelled import LabelledError, check_folds, class_of_folder, read_labelled
from tests.conftest import make_h5

REAL700 = Path(__file__).resolve().parents[2] / "shared" / "data" / "galaxy10_decals_real700"

# folder name -> the class an astronomer means by it (written by hand, not by the code)
PLANTED = {
    "3": 3,
    "0_disturbed": 0,
    "Round Smooth": 2,
    "edge-on_with_bulge": 9,
    "7_my_loose_ones": 7,
    "CIGAR_SHAPED_SMOOTH": 4,
}


def _png(path: Path, value: int, size=(12, 12)) -> None:
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def plant(root: Path, per_class: int = 3) -> Path:
    for name, c in PLANTED.items():
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            _png(root / name / f"g{k}.png", 20 * c + k)
    return root


def test_planted_folders_get_the_right_labels(tmp_path):
    images, labels, names = read_labelled(plant(tmp_path / "set"))
    assert images.shape == (18, 12, 12, 3) and images.dtype == np.uint8
    assert labels.dtype == np.uint8
    # each image carries the class it was planted for in its pixels
    np.testing.assert_array_equal(labels, images[:, 0, 0, 0] // 20)
    assert sorted(set(labels.tolist())) == [0, 2, 3, 4, 7, 9]
    assert len(set(names)) == 18 and all("/g" in n for n in names)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("3", 3),
        ("03_x", 3),
        ("9", 9),
        ("10", None),
        ("barred spiral", 5),
        ("Unbarred-Tight-Spiral", 6),
        ("spirals", None),
        ("in_between_round_smooth", 3),
    ],
)
def test_folder_name_rule(name, expected):
    assert class_of_folder(name) == expected


def test_index_and_name_that_disagree_are_refused(tmp_path):
    with pytest.raises(LabelledError, match="index 3 is In-between Round Smooth"):
        class_of_folder("3_barred_spiral")


def test_mixed_sizes_are_centre_cropped_and_resized_to_the_smallest(tmp_path):
    root = tmp_path / "set"
    (root / "2").mkdir(parents=True)
    # 30 wide x 20 high: black 5-px bands left and right, white centre square of 20
    wide = np.zeros((20, 30, 3), np.uint8)
    wide[:, 5:25] = 255
    Image.fromarray(wide).save(root / "2" / "a.png")
    _png(root / "2" / "b.png", 100, size=(16, 16))
    images, _, names = read_labelled(root)
    assert images.shape == (2, 16, 16, 3)
    assert names == ("2/a.png", "2/b.png")
    assert (images[0] == 255).all() and (images[1] == 100).all()
    assert read_labelled(root, size=8)[0].shape == (2, 8, 8, 3)


def test_hdf5_of_any_size_and_resized(tmp_path):
    path = make_h5(tmp_path / "s.h5", n_per_class=2, size=40)
    images, labels, _ = read_labelled(path)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(images, f["images"][:])
        np.testing.assert_array_equal(labels, f["ans"][:])
    assert read_labelled(path, size=20)[0].shape == (20, 20, 20, 3)


def _truncated_jpeg(path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda r: None, "no such file or folder"),
        (lambda r: r.mkdir(), "empty folder"),
        (lambda r: (r / "4").mkdir(parents=True), "empty class folder"),
        (lambda r: (r / "spirals").mkdir(parents=True), "maps to no Galaxy10 class.*0_disturbed"),
        (
            lambda r: ((r / "1").mkdir(parents=True), (r / "1" / "x.jpg").write_text("hello")),
            "not a readable JPEG/PNG image",
        ),
        (
            lambda r: ((r / "1").mkdir(parents=True), _truncated_jpeg(r / "1" / "t.jpg")),
            "truncated",
        ),
        (
            lambda r: ((r / "1").mkdir(parents=True), (r / "1" / "notes.txt").write_text("x")),
            "not a .jpg/.jpeg/.png file",
        ),
        (
            lambda r: ((r / "2").mkdir(parents=True), (r / "round_smooth").mkdir()),
            "are both class 2",
        ),
    ],
)
def test_bad_folders_name_the_path(tmp_path, make, match):
    root = tmp_path / "set"
    make(root)
    with pytest.raises(LabelledError, match=match) as e:
        read_labelled(root)
    assert str(tmp_path) in str(e.value)


def test_hdf5_without_ans(tmp_path):
    path = tmp_path / "nolabels.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.raises(LabelledError, match=rf"{path}: no 'ans' dataset"):
        read_labelled(path)


def test_check_folds_counts_groups_once(tmp_path):
    labels = np.array([0, 0, 0, 1, 1, 1])
    check_folds(labels, 3, tmp_path)
    with pytest.raises(LabelledError, match=r"class 1 \(Merging\) has 2 distinct.*cv.folds = 3"):
        check_folds(labels, 3, tmp_path, groups=np.array([0, 1, 2, 3, 3, 4]))
    check_folds(labels, 0, tmp_path, groups=np.zeros(6))  # off: nothing checked


@pytest.mark.skipif(not REAL700.exists(), reason="../shared/data/galaxy10_decals_real700 absent")
def test_real700_labels_match_the_file_names():
    images, labels, names = read_labelled(REAL700, size=32)
    assert images.shape == (700, 32, 32, 3)
    from_names = [int(re.fullmatch(r".*_(\d)\.jpg", n)[1]) for n in names]
    np.testing.assert_array_equal(labels, from_names)
    np.testing.assert_array_equal(np.bincount(labels), [70] * 10)
