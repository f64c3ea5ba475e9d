"""deepgal.metrics' standard error, bootstrap interval, input checks and headline against
textbook values, SciPy and scikit-learn (tests/test_metrics.py covers ``score``)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import binom
from sklearn.metrics import confusion_matrix, f1_score

from deepgal.metrics import (
    accuracy_and_f1,
    binomial_se,
    bootstrap_macro_f1,
    confusion_from_labels,
    score,
)


@pytest.mark.parametrize(
    "p, n, se",
    [
        (0.5, 100, 0.05),  # sqrt(.25 / 100)
        (0.9, 100, 0.03),  # sqrt(.09 / 100)
        (0.2, 25, 0.08),  # sqrt(.16 / 25)
        (0.5, 50, 0.0707107),  # the docstring's "±7 points at 50 images"
        (1.0, 40, 0.0),
        (0.0, 40, 0.0),
    ],
)
def test_binomial_se_textbook(p, n, se):
    assert binomial_se(p, n) == pytest.approx(se, abs=1e-7)


def test_binomial_se_of_no_images_is_nan():
    assert math.isnan(binomial_se(0.5, 0))


def test_bootstrap_of_one_class_follows_the_binomial_quantiles():
    # Every label is class 0; 23 of 27 predicted right, the rest as class 1 (absent from the
    # labels, so not averaged). Macro-F1 is then class 0's F1 = 2k / (27 + k) for k right,
    # and a resample's k is Binomial(27, 23/27): the percentile interval is 2k/(27+k) at
    # the binomial's 2.5% and 97.5% quantiles, k = 19 and 26 (each CDF at least 0.0118
    # away from 0.025/0.975, about 5 standard errors of a 4,000-resample percentile).
    n, k = 27, 23
    assert (binom.ppf(0.025, n, k / n), binom.ppf(0.975, n, k / n)) == (19, 26)
    labels = np.zeros(n, dtype=int)
    pred = np.r_[np.zeros(k, dtype=int), np.ones(n - k, dtype=int)]
    lo, hi = bootstrap_macro_f1(labels, pred, 10, reps=4000, seed=3)
    assert (lo, hi) == pytest.approx((38 / 46, 52 / 53))


def _sklearn_bootstrap(labels, pred, reps=1000, seed=0):
    """The documented procedure restated with scikit-learn's F1: ``reps`` resamples of the
    images with replacement from ``default_rng(seed)``, macro-F1 over the classes present in
    each resample, then the 2.5th and 97.5th percentiles."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(reps):
        i = rng.integers(0, len(labels), len(labels))
        vals.append(
            f1_score(
                labels[i], pred[i], labels=np.unique(labels[i]), average="macro", zero_division=0
            )
        )
    return np.percentile(vals, 2.5), np.percentile(vals, 97.5)


def test_bootstrap_matches_the_procedure_with_sklearn_f1():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, 60)
    pred = np.where(rng.random(60) < 0.6, labels, rng.integers(0, 4, 60))
    got = bootstrap_macro_f1(labels, pred, 4)  # the defaults: 1000 resamples, seed 0
    assert got == pytest.approx(_sklearn_bootstrap(labels, pred))
    assert bootstrap_macro_f1(labels, pred, 4, reps=200, seed=5) == pytest.approx(
        _sklearn_bootstrap(labels, pred, 200, 5)
    )
    assert got[0] < f1_score(labels, pred, average="macro") < got[1]


def test_bootstrap_degenerate_cases():
    right = np.array([0, 1, 2, 3] * 5)
    assert bootstrap_macro_f1(right, right, 4) == (1.0, 1.0)
    assert bootstrap_macro_f1(right, (right + 1) % 4, 4) == (0.0, 0.0)
    assert all(map(math.isnan, bootstrap_macro_f1(np.array([], int), np.array([], int), 4)))


def test_confusion_counts_small_integer_and_float_inputs():
    # uint8 labels (as Galaxy10 stores them) with 20 classes: label * 20 + pred must not wrap
    # at 256; predictions that arrive as whole floats (from a CSV) count as their integers.
    labels = np.array([19, 19, 13, 0, 5], dtype=np.uint8)
    pred = np.array([19, 3, 13, 0, 5], dtype=np.uint8)
    want = confusion_matrix(labels, pred, labels=range(20))
    np.testing.assert_array_equal(confusion_from_labels(labels, pred, 20), want)
    np.testing.assert_array_equal(confusion_from_labels(labels, pred.astype(float), 20), want)
    np.testing.assert_array_equal(confusion_from_labels(labels.astype(float), pred, 20), want)


def test_out_of_range_predictions_are_named():
    # A prediction equal to n_classes would otherwise land in the next row's first cell.
    with pytest.raises(ValueError, match=r"^predictions must lie in 0\.\.9; got 0\.\.10$"):
        confusion_from_labels(np.array([0, 1]), np.array([0, 10]), 10)
    with pytest.raises(ValueError, match=r"^labels must lie in 0\.\.9; got -1\.\.1$"):
        confusion_from_labels(np.array([-1, 1]), np.array([0, 1]), 10)


def test_no_labels_score_nan_without_numpy_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty mean would warn "Mean of empty slice"
        got = score(np.array([], dtype=int), np.zeros((0, 3)), ("a", "b", "c"))
    assert math.isnan(got["accuracy"]) and math.isnan(got["macro_f1"])


def test_headline_keeps_accuracy_and_macro_f1_of_val_and_test_only():
    result = {
        "val": {"accuracy": 0.5, "macro_f1": 0.4, "n": 10, "per_class": {}},
        "test": {"accuracy": 0.6, "macro_f1": 0.3, "n": 12},
        "train": {"accuracy": 0.9, "macro_f1": 0.9},
        "epoch": 3,
    }
    assert accuracy_and_f1(result) == {
        "val": {"accuracy": 0.5, "macro_f1": 0.4},
        "test": {"accuracy": 0.6, "macro_f1": 0.3},
    }
    assert accuracy_and_f1({"val": result["val"]}) == {"val": {"accuracy": 0.5, "macro_f1": 0.4}}


def test_bootstrap_with_rare_classes_and_small_integer_inputs():
    # Classes with one image: a resample holding it once still averages its F1.
    labels = np.array([0, 0, 0, 0, 1, 2, 2, 3])
    pred = np.array([0, 0, 1, 0, 1, 2, 0, 3])
    assert bootstrap_macro_f1(labels, pred, 4) == pytest.approx(_sklearn_bootstrap(labels, pred))
    # uint8 labels with 20 classes (label * 20 must not wrap) and whole-float predictions.
    big = np.array([19, 18, 19, 5, 18], dtype=np.uint8)
    got = bootstrap_macro_f1(big, np.array([19, 18, 5, 5, 18], dtype=float), 20, reps=300)
    assert got == pytest.approx(
        _sklearn_bootstrap(big.astype(int), np.array([19, 18, 5, 5, 18]), 300)
    )
    assert bootstrap_macro_f1(np.array([2]), np.array([2]), 4) == (1.0, 1.0)  # one image
