"""CV folds: disjoint, covering, stratified, groups whole, seeded. Oracles: set arithmetic and
hand counts (5 folds of 10 per class -> exactly 2 per class per fold)."""

from __future__ import annotations

import numpy as np
import pytest

from deepgal.data.folds import cv_folds
from deepgal.data.labelled import LabelledError

LABELS = np.repeat(np.arange(4), 10)  # 4 classes x 10 rows


def test_disjoint_covering_stratified():
    folds = cv_folds(LABELS, 5, seed=0)
    held = np.concatenate([te for _, te in folds])
    assert sorted(held.tolist()) == list(range(40))  # each row held out exactly once
    for tr, te in folds:
        assert not set(tr) & set(te) and len(tr) + len(te) == 40
        np.testing.assert_array_equal(np.bincount(LABELS[te], minlength=4), [2, 2, 2, 2])


def test_groups_never_split():
    groups = np.arange(40) // 2  # pairs of identical images
    for _, te in cv_folds(LABELS, 5, seed=1, groups=groups):
        for g in np.unique(groups[te]):
            assert set(np.flatnonzero(groups == g)) <= set(te)


def test_seeded():
    a = [te.tolist() for _, te in cv_folds(LABELS, 5, seed=3)]
    assert a == [te.tolist() for _, te in cv_folds(LABELS, 5, seed=3)]
    assert a != [te.tolist() for _, te in cv_folds(LABELS, 5, seed=4)]


def test_too_few_per_class():
    with pytest.raises(LabelledError, match="fewer than cv.folds = 11"):
        cv_folds(LABELS, 11, seed=0)
