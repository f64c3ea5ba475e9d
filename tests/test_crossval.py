"""deepgal.crossval: folds dealt and run as promised, figures against hand-worked values and
scikit-learn, and one real (tiny) training fold through the library loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from deepgal.crossval import FoldResult, identical_images, run_folds, summarise, train_fold
from tests import helpers

NAMES = ("a", "b", "c")


def _onehot(pred, c=3):
    out = np.full((len(pred), c), 0.1, np.float32)
    out[np.arange(len(pred)), pred] = 0.8
    return out


def test_summarise_hand_worked():
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    # fold 0 scores rows 0-3 (3 of 4 right), fold 1 rows 4-7 (2 of 4 right)
    r0 = FoldResult(0, np.array([0, 1, 2, 3]), {"plain": _onehot([0, 1, 1, 1])}, 1.0)
    r1 = FoldResult(1, np.array([4, 5, 6, 7]), {"plain": _onehot([2, 0, 0, 2])}, 1.0)
    s = summarise(labels, [r0, r1], "plain", folds=2, class_names=NAMES)
    assert s.fold_acc == [0.75, 0.5]
    assert s.acc == pytest.approx(0.625)
    assert s.spread == pytest.approx(0.125)  # population std of (0.75, 0.5)
    assert s.pooled_acc == pytest.approx(5 / 8)
    assert s.se == pytest.approx(math.sqrt(0.625 * 0.375 / 8))
    assert (s.n, s.folds, s.folds_run) == (8, 2, 2)
    truth = labels[[0, 1, 2, 3, 4, 5, 6, 7]]
    pred = [0, 1, 1, 1, 2, 0, 0, 2]
    assert s.macro_f1 == pytest.approx(f1_score(truth, pred, average="macro"))
    rec = recall_score(truth, pred, average=None)
    assert s.recall == pytest.approx(dict(zip(NAMES, rec, strict=True)))
    assert s.confusion == [[2, 1, 0], [0, 2, 1], [1, 0, 1]]


def test_summarise_pools_unequal_folds_and_skips_absent_classes():
    labels = np.array([0, 0, 0, 1, 1, 0])
    r0 = FoldResult(0, np.array([0, 1, 2, 3, 4]), {"tta": _onehot([0, 0, 0, 0, 0])}, 0.0)
    r1 = FoldResult(1, np.array([5]), {"tta": _onehot([1])}, 0.0)
    s = summarise(labels, [r0, r1], "tta", folds=2, class_names=NAMES)
    assert s.acc == pytest.approx((0.6 + 0.0) / 2)  # mean of folds, not pooled
    assert s.pooled_acc == pytest.approx(3 / 6)
    assert set(s.recall) == {"a", "b"}  # class "c" has no image: no recall
    assert s.recall == pytest.approx({"a": 0.75, "b": 0.0})
    with pytest.raises(ValueError, match="no folds"):
        summarise(labels, [], "tta", folds=2)


def test_run_folds_trains_never_on_held_rows_and_covers_each_once():
    labels = np.repeat(np.arange(3), 6)
    groups = np.arange(18) // 2  # pairs of rows are one galaxy
    seen, held_all = [], []

    def fake_train(tr, te, k):
        assert not set(tr) & set(te)
        assert not set(groups[tr]) & set(groups[te])  # a galaxy never on both sides
        seen.append(k)
        held_all.extend(te.tolist())
        return {"plain": np.full((len(te), 3), 1 / 3)}

    results = run_folds(labels, 3, 0, fake_train, groups=groups)
    assert seen == [0, 1, 2] and sorted(held_all) == list(range(18))
    assert [r.fold for r in results] == [0, 1, 2]
    again = run_folds(
        labels, 3, 0, lambda tr, te, k: {"plain": np.zeros((len(te), 3))}, groups=groups
    )
    assert all(np.array_equal(a.held, b.held) for a, b in zip(results, again, strict=True))


def test_run_folds_only_and_shape_check():
    labels = np.repeat(np.arange(2), 4)
    got = run_folds(labels, 4, 1, lambda tr, te, k: {"p": np.zeros((len(te), 2))}, only=[1, 3])
    assert [r.fold for r in got] == [1, 3]
    with pytest.raises(ValueError, match="rows of probabilities"):
        run_folds(labels, 2, 1, lambda tr, te, k: {"p": np.zeros((len(te) + 1, 2))})


def test_identical_images_groups_byte_equal_rows():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    c = a.copy()
    c[0, 0, 0] ^= 1  # one bit off: another galaxy
    assert identical_images(np.stack([a, b, a, c, b])).tolist() == [0, 1, 0, 2, 1]


def test_train_fold_scores_only_held_rows(tmp_path):
    split = helpers.data(40)
    run = helpers.run_cfg(epochs=2)
    tr, te = np.arange(30), np.arange(30, 40)
    views = train_fold(run, split.images, split.labels, tr, te, tmp_path, 0)
    assert set(views) == {"plain", "tta"}
    for p in views.values():
        assert p.shape == (10, 10)
        np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    assert not np.allclose(views["plain"], views["tta"])  # TTA really averages other views


def test_fold_normalisation_counts_levels_as_numpy_does():
    """The statistics train_fold normalises with (count_levels + level_moments, the split
    stage's exact uint8 counting) against numpy's float64 mean and population std."""
    from deepgal.data.split import count_levels, level_moments

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (70, 9, 7, 3), dtype=np.uint8)  # > one 32-image slice
    mean, std = level_moments(count_levels(images, np.zeros((3, 256), np.int64)))
    x = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, x.mean((0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, x.std((0, 1, 2)), rtol=1e-9)
