"""Stratified seeded split and chunked channel statistics."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from deepgal.data.split import SplitError, channel_stats, stratified_split, write_split, read_split

LABELS = np.repeat(np.arange(10), 20)


def test_fractions_and_stratification():
    s = stratified_split(LABELS, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert {k: len(v) for k, v in s.items()} == {"train": 160, "val": 20, "test": 20}
    for idx in s.values():
        assert np.bincount(LABELS[idx], minlength=10).min() > 0
    allidx = np.concatenate(list(s.values()))
    assert len(np.unique(allidx)) == len(LABELS)  # disjoint and complete


def test_seeded():
    f = {"train": 0.8, "val": 0.1, "test": 0.1}
    a, b = stratified_split(LABELS, f, 3), stratified_split(LABELS, f, 3)
    c = stratified_split(LABELS, f, 4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["val"], c["val"])


def test_report_split_without_test():
    s = stratified_split(LABELS, {"train": 0.8, "val": 0.2, "test": 0.0}, seed=0)
    assert len(s["test"]) == 0 and len(s["val"]) == 40


@pytest.mark.parametrize("fractions, match", [
    ({"train": 0.9, "val": 0.2, "test": 0.1}, "sum to 1"),
    ({"train": 1.2, "val": -0.1, "test": -0.1}, r"split.train: 1.2"),
])
def test_bad_fractions(fractions, match):
    with pytest.raises(SplitError, match=match):
        stratified_split(LABELS, fractions, 0)


def test_class_too_small():
    labels = np.concatenate([np.repeat(np.arange(9), 10), [9, 9]])
    with pytest.raises(SplitError, match=r"class 9 \(Edge-on with Bulge\) has 2 image"):
        stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, 0)


def test_channel_stats_match_numpy(small_h5):
    with h5py.File(small_h5) as f:
        x = f["images"][:].astype(np.float64) / 255
    idx = np.array([1, 5, 7, 30, 59])
    mean, std = channel_stats(small_h5, idx, chunk=2)
    np.testing.assert_allclose(mean, x[idx].reshape(-1, 3).mean(0), rtol=1e-10)
    np.testing.assert_allclose(std, x[idx].reshape(-1, 3).std(0), rtol=1e-8)


def test_write_and_read(tmp_path):
    s = stratified_split(LABELS, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    write_split(tmp_path, s, LABELS, [0.1] * 3, [0.2] * 3, source={"source": "synthetic"})
    np.testing.assert_array_equal(read_split(tmp_path, "val"), s["val"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "stats.json", "test.npy", "train.npy", "val.npy"]
