"""deepgal.calibration against independent oracles: a temperature known by construction,
torchmetrics' calibration error, scikit-learn's log loss, SciPy's softmax, and purity
thresholds whose precision is counted by hand."""

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import log_loss
from torchmetrics.classification import MulticlassCalibrationError

from deepgal import checkpoint as ckpt_io
from deepgal.calibration import (
    Calibration,
    apply_temperature,
    ece,
    fit_temperature,
    nll,
    purity_thresholds,
    reliability,
)
from deepgal.inference.purity import select_pure


def sampled(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits z (n, c) and labels drawn from softmax(z): z is calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, (n, c))
    p = softmax(z, axis=1)
    labels = (rng.uniform(size=(n, 1)) > p.cumsum(1)).sum(1)
    return z, np.minimum(labels, c - 1)


@pytest.mark.parametrize("factor", [3.0, 0.5, 1.0])
def test_fitted_temperature_recovers_a_known_scale(factor):
    z, labels = sampled(20000, 10, seed=1)
    t = fit_temperature(z * factor, labels)
    assert t == pytest.approx(factor, rel=0.05)


def test_fitted_temperature_minimises_the_nll():
    z, labels = sampled(3000, 5, seed=2)
    t = fit_temperature(z * 2.0, labels)
    grid = np.linspace(0.5, 6, 1101)  # oracle: brute force over T
    best = grid[np.argmin([nll(z * 2.0, labels, g) for g in grid])]
    assert t == pytest.approx(best, abs=0.01)


def test_nll_is_sklearn_log_loss():
    z, labels = sampled(500, 4, seed=3)
    assert nll(z, labels, 1.7) == pytest.approx(
        log_loss(labels, softmax(z / 1.7, axis=1), labels=range(4)), rel=1e-9
    )


@pytest.mark.parametrize("seed", range(6))
def test_ece_agrees_with_torchmetrics(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(20, 3000)), int(rng.integers(2, 12))
    probs = softmax(rng.normal(0, rng.uniform(0.5, 4), (n, c)), axis=1).astype(np.float32)
    labels = rng.integers(0, c, n)
    oracle = MulticlassCalibrationError(num_classes=c, n_bins=15, norm="l1")
    want = float(oracle(torch.from_numpy(probs), torch.from_numpy(labels)))
    assert ece(probs, labels) == pytest.approx(want, abs=1e-5)


def test_reliability_bins_by_hand():
    # confidences 0.95 (right), 0.95 (wrong), 0.5 (right): bins 14 and 7 of 15
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.5, 0.5]])
    rel = reliability(probs, np.array([0, 1, 0]))
    assert rel["count"][14] == 2 and rel["count"][7] == 1 and sum(rel["count"]) == 3
    assert rel["accuracy"][14] == pytest.approx(0.5) and rel["accuracy"][7] == 1.0
    assert rel["ece"] == pytest.approx((2 * 0.45 + 1 * 0.5) / 3)


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0, 3.0, 15.0])
def test_temperature_is_softmax_of_scaled_logits_and_keeps_argmax(t):
    rng = np.random.default_rng(4)
    z = rng.normal(0, 3, (400, 10))
    probs = softmax(z, axis=1).astype(np.float32)
    cal = apply_temperature(probs, t)
    np.testing.assert_allclose(cal, softmax(z / t, axis=1), atol=2e-6)
    assert np.array_equal(cal.argmax(1), probs.argmax(1))


def hand_case():
    """Class 0 predicted for five val galaxies scoring 0.95 (is 0), 0.9 (is 0), 0.8 (is 2),
    0.7 (is 0), 0.6 (is 1): precision at t = each score is 1, 1, 2/3, 3/4, 3/5 (not monotone).
    Class 1 predicted twice, both wrong. Class 2 never predicted."""
    s = [0.95, 0.9, 0.8, 0.7, 0.6]
    rows = [[p, (1 - p) / 2, (1 - p) / 2] for p in s] + [[0.1, 0.8, 0.1], [0.2, 0.7, 0.1]]
    return np.array(rows), np.array([0, 0, 2, 0, 1, 0, 2])


@pytest.mark.parametrize(
    "purity, threshold, precision, kept",
    [
        (0.9, 0.9, 1.0, 2),
        (1.0, 0.9, 1.0, 2),
        (0.75, 0.7, 0.75, 4),
        (0.7, 0.7, 0.75, 4),
        (0.6, 0.6, 0.6, 5),
        (0.1, 0.6, 0.6, 5),
    ],
)
def test_purity_threshold_by_hand(purity, threshold, precision, kept):
    t0, t1, t2 = purity_thresholds(*hand_case(), purity)
    assert (t0.threshold, t0.kept, t0.predicted) == (pytest.approx(threshold), kept, 5)
    assert t0.precision == pytest.approx(precision)
    assert t1.threshold is None and t1.best_precision == 0.0 and t1.predicted == 2
    assert t2.threshold is None and t2.predicted == 0 and np.isnan(t2.best_precision)


def test_tied_scores_are_kept_or_dropped_together():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.8, 0.2]])
    (t0, _) = purity_thresholds(probs, np.array([0, 0, 1]), 0.9)
    assert t0.threshold == pytest.approx(0.9) and t0.kept == 1  # 0.8 would keep 2 of 3


def test_select_pure_keeps_rows_at_or_above_their_class_threshold():
    thresholds = purity_thresholds(*hand_case(), 0.9)  # class 0: 0.9; 1 and 2: none
    new = np.array([[0.95, 0.03, 0.02], [0.9, 0.05, 0.05], [0.85, 0.1, 0.05], [0.1, 0.9, 0.0]])
    kept, thr = select_pure(new, thresholds)
    assert kept.tolist() == [True, True, False, False]
    assert thr[:3] == pytest.approx([0.9] * 3) and np.isnan(thr[3])


def test_bad_purity_is_refused():
    with pytest.raises(ValueError, match="min purity"):
        purity_thresholds(*hand_case(), 1.5)


def test_record_survives_a_weights_only_checkpoint(tmp_path):
    z, labels = sampled(300, 10, seed=5)
    cal = Calibration.fit(z * 2, labels, "the validation split")
    ckpt_io.save(tmp_path / "c.pt", {"model": {}, "calibration": cal.to_dict()})
    back = Calibration.from_checkpoint(ckpt_io.load(tmp_path / "c.pt"))
    assert back.temperature == cal.temperature and back.source == cal.source
    np.testing.assert_array_equal(back.val_labels, labels)
    np.testing.assert_allclose(back.val_probs, softmax(z * 2 / cal.temperature, axis=1), atol=1e-6)
    assert Calibration.from_checkpoint({"model": {}}) is None


def test_empty_validation_split_stores_temperature_one():
    cal = Calibration.fit(np.empty((0, 10)), np.empty(0, np.int64), "the validation split")
    assert cal.temperature == 1.0 and "empty" in cal.source
    with pytest.raises(ValueError, match="no validation images"):
        cal.thresholds(0.9)
