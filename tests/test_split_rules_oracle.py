"""The split's dealing rule on small hand-counted cases (the expected counts are written here,
worked out from the documented rule), its errors, and the files it writes and reads."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from deepgal.data.galaxy10 import CLASS_NAMES, write_galaxy10
from deepgal.data.split import (
    SplitError,
    channel_stats,
    read_split,
    read_stats,
    stratified_split,
    write_split,
)

from .malicious import OpensMarker


def per_class(labels, rows):
    return np.bincount(labels[rows], minlength=10).tolist()


@pytest.mark.parametrize("seed", range(6))
def test_three_galaxies_of_a_class_go_one_to_each_split(seed):
    """3 rows per class, val 0.5 and test 0.25: targets are val 2 and test 1, which would leave
    train without the class; the rule keeps one row per split for every class."""
    labels = np.repeat(np.arange(10), 3)
    s = stratified_split(labels, {"train": 0.25, "val": 0.5, "test": 0.25}, seed)
    for rows in s.values():
        assert per_class(labels, rows) == [1] * 10


@pytest.mark.parametrize("seed", range(3))
def test_exact_counts_with_one_row_per_galaxy(seed):
    """10 rows per class at 0.2/0.5/0.3: 2/5/3 of each class, whatever the seed."""
    labels = np.tile(np.arange(10), 10)
    s = stratified_split(labels, {"train": 0.2, "val": 0.5, "test": 0.3}, seed)
    assert per_class(labels, s["train"]) == [2] * 10
    assert per_class(labels, s["val"]) == [5] * 10
    assert per_class(labels, s["test"]) == [3] * 10


@pytest.mark.parametrize("seed", range(8))
def test_small_grouped_classes_reach_every_split(seed):
    """Random classes of 3-6 galaxies of 1-3 rows each and random val/test fractions: every
    split holds every class, each galaxy whole in one split, no row lost or doubled."""
    rng = np.random.default_rng(100 + seed)
    labels, groups = [], []
    for c in range(10):
        for _ in range(rng.integers(3, 7)):
            size = int(rng.integers(1, 4))
            labels += [c] * size
            groups += [len(set(groups))] * size
    labels, groups = np.array(labels), np.array(groups)
    val, test = rng.uniform(0.05, 0.45, 2)
    s = stratified_split(labels, {"train": 1 - val - test, "val": val, "test": test}, seed, groups)
    where = np.full(len(labels), -1)
    for k, rows in enumerate(s.values()):
        assert (where[rows] == -1).all()
        where[rows] = k
        assert sorted(set(labels[rows])) == list(range(10))
    assert (where >= 0).all()
    for g in np.unique(groups):
        assert len(set(where[groups == g])) == 1


def test_a_missing_class_does_not_stop_the_others():
    """Class 3 absent: the classes after it are split as the ones before it."""
    labels = np.tile(np.delete(np.arange(10), 3), 10)
    s = stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, 0)
    expect = {"train": 8, "val": 1, "test": 1}
    for name, rows in s.items():
        assert per_class(labels, rows) == [0 if c == 3 else expect[name] for c in range(10)]


def test_fractions_without_a_test_key_and_empty_splits_index():
    labels = np.tile(np.arange(10), 5)
    s = stratified_split(labels, {"train": 0.6, "val": 0.4}, 0)
    assert per_class(labels, s["val"]) == [2] * 10 and per_class(labels, s["train"]) == [3] * 10
    assert len(s["test"]) == 0
    for rows in s.values():  # every split, empty or not, indexes an array
        assert rows.dtype == np.int64
        assert labels[rows].shape == (len(rows),)


def test_errors_name_what_is_wrong():
    labels = np.tile(np.arange(10), 5)
    f = {"train": 0.8, "val": 0.1, "test": 0.1}
    with pytest.raises(
        SplitError,
        match=r"groups has shape \(49,\), labels \(50,\): one group "
        r"id per row is needed",
    ):
        stratified_split(labels, f, 0, np.arange(49))
    few = np.r_[labels[labels != 7], 7, 7]
    with pytest.raises(
        SplitError,
        match=r"class 7 \(.*\) has 2 image\(s\) in 2 group\(s\), too "
        r"few to split into train, val, test: it needs at "
        r"least 3 ",
    ):
        stratified_split(few, f, 0)
    one = np.r_[labels[labels != 7], 7]
    with pytest.raises(
        SplitError,
        match=r"too few to split into train, val: it needs at least "
        r"2 .*set split.test to 0",
    ):
        stratified_split(one, {"train": 0.8, "val": 0.2, "test": 0.0}, 0)


def test_channel_stats_of_no_rows_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "named.h5"
    write_galaxy10(path, np.zeros((10, 4, 4, 3), np.uint8), np.arange(10, dtype=np.uint8))
    with pytest.raises(SplitError, match=r"named\.h5: the train split is empty"):
        channel_stats(path, np.array([], np.int64))


def test_one_pixel_image_statistics(tmp_path):
    """Two 1x1 images, (0, 255, 51) and (255, 255, 102): mean (0.5, 1, 0.3), std (0.5, 0, 0.1)."""
    path = tmp_path / "px.h5"
    images = np.array([[[[0, 255, 51]]], [[[255, 255, 102]]]], np.uint8)
    write_galaxy10(path, images, np.array([0, 1], np.uint8))
    mean, std = channel_stats(path, np.array([1, 0]))
    np.testing.assert_allclose(mean, [0.5, 1.0, 0.3], rtol=1e-12)
    np.testing.assert_allclose(std, [0.5, 1e-6, 0.1], rtol=1e-9)  # std floor: sqrt(1e-12)
    mean1, _ = channel_stats(path, np.array([0]))
    np.testing.assert_allclose(mean1, [0.0, 1.0, 0.2], rtol=1e-12)


def test_write_split_makes_missing_folders_and_counts_per_class(tmp_path):
    labels = np.array([0, 0, 1, 2, 2, 2])
    splits = {"train": np.array([0, 3, 4]), "val": np.array([1, 2]), "test": np.array([5])}
    out = tmp_path / "a" / "b" / "split"
    write_split(
        out,
        splits,
        labels,
        [0.1, 0.2, 0.3],
        [0.4, 0.5, 0.6],
        {"source": "x"},
        grouping={"groups": 6},
    )
    stats = json.loads((out / "stats.json").read_text())
    zero = {name: 0 for name in CLASS_NAMES}
    assert stats["counts"]["train"] == {**zero, CLASS_NAMES[0]: 1, CLASS_NAMES[2]: 2}
    assert stats["counts"]["val"] == {**zero, CLASS_NAMES[0]: 1, CLASS_NAMES[1]: 1}
    assert stats["sizes"] == {"train": 3, "val": 2, "test": 1}
    assert stats["grouping"] == {"groups": 6} and stats["mean"] == [0.1, 0.2, 0.3]
    assert sorted(os.listdir(out)) == ["stats.json", "test.npy", "train.npy", "val.npy"]
    assert read_split(out, "test").tolist() == [5]


def test_missing_files_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"val\.npy: missing \(.*\); run `dvc repro split`"):
        read_split(tmp_path, "val")
    with pytest.raises(
        FileNotFoundError, match=r"stats\.json: missing \(.*\); run `dvc repro split`"
    ):
        read_stats(tmp_path)


def test_a_pickled_index_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    np.save(
        tmp_path / "train.npy", np.array([OpensMarker(marker)], dtype=object), allow_pickle=True
    )
    with pytest.raises(ValueError, match="allow_pickle"):
        read_split(tmp_path, "train")
    assert not marker.exists()
