"""deepgal.metrics counts with numpy; scikit-learn is the reference for every number."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from deepgal.metrics import confusion_from_labels, score

CLASSES = tuple(f"c{i}" for i in range(10))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=60))
def test_score_matches_sklearn(pairs):
    labels = np.array([t for t, _ in pairs])
    pred = np.array([p for _, p in pairs])
    probs = np.eye(10)[pred] * 0.9 + 0.01  # argmax is pred
    got = score(labels, probs, CLASSES)
    classes = list(range(10))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=classes, zero_division=0)
    present = sorted(set(labels.tolist()))
    assert got["macro_f1"] == pytest.approx(
        f1_score(labels, pred, labels=present, average="macro", zero_division=0)
    )
    assert got["accuracy"] == pytest.approx((labels == pred).mean())
    assert got["confusion"] == confusion_matrix(labels, pred, labels=classes).tolist()
    for i, name in enumerate(CLASSES):
        row = got["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p[i], r[i], f[i]))
        assert row["support"] == s[i]


def test_empty_labels_give_nan_and_zero_counts():
    got = score(np.array([], dtype=int), np.zeros((0, 10)), CLASSES)
    assert got["n"] == 0 and np.isnan(got["accuracy"]) and np.isnan(got["macro_f1"])
    assert sum(map(sum, got["confusion"])) == 0


def test_out_of_range_labels_are_named():
    with pytest.raises(ValueError, match="labels must lie in 0..9; got 0..12"):
        confusion_from_labels(np.array([0, 12]), np.array([0, 1]), 10)
