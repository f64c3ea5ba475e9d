"""Probabilities that mean what they say: a temperature fitted on the validation split, the
numbers that measure calibration, and per-class purity thresholds.

Temperature scaling (Guo et al. 2017, "On calibration of modern neural networks"): the
calibrated probabilities of logits z (N, C) are softmax(z / T), one scalar T > 0 fitted by
minimising the negative log-likelihood (NLL) of the validation labels. Dividing a row's logits
by the same positive number keeps their order, so the predicted class never changes; T > 1
softens over-confident probabilities, T < 1 sharpens timid ones.

Probabilities in, probabilities out: log softmax(z) = z - logsumexp(z) differs from z by one
constant per row, which softmax ignores, so :func:`apply_temperature` on probabilities gives
softmax(z / T) exactly (up to float32 rounding of the probabilities), and every caller that has
probabilities (8-view averages included) calibrates them the same way.

Expected calibration error (ECE): the top-1 confidences in 15 equal-width bins [k/15, (k+1)/15)
(1.0 falls in the last), sum over bins of (bin share) * |accuracy - mean confidence| (L1), as
torchmetrics' ``MulticlassCalibrationError(n_bins=15, norm="l1")`` counts it (the tests compare).

Purity thresholds: a galaxy is selected for class c when c is its predicted class and its
probability of c is at least t_c; t_c is the lowest threshold at which that selection on the
validation split has precision >= P (computed from the stored val probabilities, for any P).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)
N_BINS = 15
T_BOUNDS = (0.05, 20.0)  # beyond these a fit says more about the val split than the model
_TINY = float(np.finfo(np.float32).tiny)  # log(0) guard: a float32 softmax underflows to 0


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` (N,) int under softmax(logits (N, C) / T)."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    return float(torch.nn.functional.cross_entropy(z, y)) if len(y) else float("nan")


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in :data:`T_BOUNDS` minimising the NLL of ``labels`` (N,) int under
    softmax(``logits`` (N, C) / T); 1.0 when there are no labels.

    L-BFGS (torch.optim.LBFGS, strong-Wolfe line search) on log T, in float64: the NLL is
    convex in 1/T, so its one minimum is found from T = 1. A val split the model separates
    perfectly pushes T towards 0 (ever sharper is ever better); the bounds stop it."""
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if len(y) == 0:
        return 1.0
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [log_t],
        lr=1.0,
        max_iter=200,
        tolerance_grad=1e-10,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():  # callers may be under inference_mode
        opt.step(closure)
    t = float(log_t.detach().exp())
    if not np.isfinite(t):
        return T_BOUNDS[1]
    return float(np.clip(t, *T_BOUNDS))


def log_probs(probs: np.ndarray) -> np.ndarray:
    """log of probabilities (N, C) in float64, zeros (float32 underflow) floored at float32's
    smallest normal number: logits up to a per-row constant."""
    return np.log(np.maximum(np.asarray(probs, dtype=np.float64), _TINY))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / T) as float32 (N, C): calibrated probabilities, same argmax."""
    if temperature == 1.0:
        return np.asarray(probs, dtype=np.float32)
    z = log_probs(probs) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict:
    """Per-bin ``count``, mean ``confidence`` and ``accuracy`` (lists of n_bins; empty bins 0)
    of the top-1 confidence of probs (N, C) against labels (N,), and ``ece`` (L1)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    conf, correct = probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)
    k = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(k, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(k, conf, minlength=n_bins)
    acc_sum = np.bincount(k, correct, minlength=n_bins)
    mean_conf = np.divide(conf_sum, count, out=np.zeros(n_bins), where=count > 0)
    acc = np.divide(acc_sum, count, out=np.zeros(n_bins), where=count > 0)
    ece = (
        float((count * np.abs(acc - mean_conf)).sum() / count.sum())
        if len(labels)
        else float("nan")
    )
    return {
        "count": count.astype(int).tolist(),
        "confidence": mean_conf.tolist(),
        "accuracy": acc.tolist(),
        "ece": ece,
    }


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error (L1, ``n_bins`` equal-width bins) of probs (N, C)."""
    return reliability(probs, labels, n_bins)["ece"]


def before_after(probs: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
    """ECE, NLL and reliability bins of uncalibrated probs (N, C) and of their calibration."""
    out = {"n": int(len(labels))}
    for when, p in (("before", probs), ("after", apply_temperature(probs, temperature))):
        rel = reliability(p, labels)
        out[f"ece_{when}"] = rel.pop("ece")
        out[f"nll_{when}"] = nll(log_probs(p), labels)
        out[f"reliability_{when}"] = rel
    return out


def measure(
    cal: Calibration | None, probs: dict[str, np.ndarray], labels: dict[str, np.ndarray]
) -> dict:
    """``{"temperature", "source", split: before_after(...)}`` of a checkpoint's calibration
    ``cal`` (None: a checkpoint without one, temperature 1) on uncalibrated probs per split."""
    t, source = (cal.temperature, cal.source) if cal else (1.0, "none: the checkpoint has none")
    out = {"temperature": t, "source": source}
    for s, p in probs.items():
        out[s] = before_after(p, labels[s], t)
        log.info(
            "%s: ECE %.3f -> %.3f, NLL %.3f -> %.3f at temperature %.3f",
            s,
            out[s]["ece_before"],
            out[s]["ece_after"],
            out[s]["nll_before"],
            out[s]["nll_after"],
            t,
        )
    return out


@dataclass(frozen=True)
class Threshold:
    """One class's purity threshold on the validation split. ``threshold`` None: no
    threshold reaches the purity asked (``best_precision`` is the best any reached, NaN when
    val has no galaxy predicted as the class); ``kept``: val galaxies selected at it."""

    class_id: int
    threshold: float | None
    precision: float
    kept: int
    predicted: int
    best_precision: float


def purity_thresholds(probs: np.ndarray, labels: np.ndarray, min_purity: float) -> list[Threshold]:
    """Per class c, the lowest t such that val galaxies predicted c with probability >= t
    are at least ``min_purity`` c (precision); probs (N, C) calibrated, labels (N,) int."""
    if not 0.0 < min_purity <= 1.0:
        raise ValueError(f"min purity must be in (0, 1], got {min_purity}")
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    pred = probs.argmax(axis=1)
    out = []
    for c in range(probs.shape[1]):
        score = probs[pred == c, c]
        hit = labels[pred == c] == c
        order = np.argsort(-score, kind="stable")
        score, hit = score[order], hit[order]
        # Selection at t = score[i] keeps every galaxy scoring >= it: up to the last tie.
        last = np.searchsorted(-score, -score, side="right") - 1
        prec = np.cumsum(hit)[last] / (last + 1) if len(score) else np.empty(0)
        ok = np.flatnonzero(prec >= min_purity - 1e-12)
        best = float(prec.max()) if len(prec) else float("nan")
        if len(ok):
            i = ok[-1]  # scores descend: the last qualifying position is the lowest threshold
            out.append(
                Threshold(c, float(score[i]), float(prec[i]), int(last[i] + 1), len(score), best)
            )
        else:
            out.append(Threshold(c, None, float("nan"), 0, len(score), best))
    return out


@dataclass(frozen=True)
class Calibration:
    """What a calibrated checkpoint carries under ``"calibration"``: the ``temperature``, what
    it was fitted on (``source``, words), and the validation split's calibrated probabilities
    ``val_probs`` (N, C) float32 with ``val_labels`` (N,) int64, from which the purity
    threshold of any purity is computed. N = 0 with temperature 1 when val is empty."""

    temperature: float
    source: str
    val_probs: np.ndarray
    val_labels: np.ndarray

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray, what: str) -> Calibration:
        """Fit on val logits (N, C) and labels (N,); ``what`` names the images, e.g.
        ``"the validation split"``. No images: temperature 1, said in ``source``."""
        logits, labels = np.asarray(logits, np.float32), np.asarray(labels, np.int64)
        if len(labels) == 0:
            log.warning(
                "%s is empty: temperature 1 (probabilities stay uncalibrated) and no "
                "purity thresholds",
                what,
            )
            return cls(1.0, f"none: {what} is empty, temperature 1 (uncalibrated)", logits, labels)
        t = fit_temperature(logits, labels)
        probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float64) / t, 1)
        return cls(t, f"{what}, {len(labels)} images", probs.float().numpy(), labels)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, C) float32 of uncalibrated ``probs`` (N, C)."""
        return apply_temperature(probs, self.temperature)

    def thresholds(self, min_purity: float) -> list[Threshold]:
        """Per-class purity thresholds on the stored validation probabilities."""
        if len(self.val_labels) == 0:
            raise ValueError(
                f"no validation images to set purity thresholds on ({self.source}); "
                "give the split a val fraction (split.val) and re-run the pipeline"
            )
        return purity_thresholds(
            self.val_probs.reshape(len(self.val_labels), -1), self.val_labels, min_purity
        )

    def to_dict(self) -> dict:
        """Plain data and tensors: loadable with ``torch.load(weights_only=True)``."""
        return {
            "temperature": float(self.temperature),
            "source": self.source,
            "val_probs": torch.as_tensor(self.val_probs, dtype=torch.float32),
            "val_labels": torch.as_tensor(self.val_labels, dtype=torch.int64),
        }

    @classmethod
    def from_checkpoint(cls, ckpt: dict, path: object = "checkpoint") -> Calibration | None:
        """The record in checkpoint dict ``ckpt``, or None when it has none (a raw epoch
        checkpoint of the train stage); a malformed one raises ValueError naming ``path``."""
        d = ckpt.get("calibration")
        if d is None:
            return None
        try:
            t = float(d["temperature"])
            probs, labels = d["val_probs"].numpy(), d["val_labels"].numpy()
            source = str(d["source"])
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ValueError(
                f"{path}: malformed calibration record ({type(e).__name__}: {e}); "
                "re-run the select stage"
            ) from e
        if not (np.isfinite(t) and t > 0) or len(probs) != len(labels):
            raise ValueError(
                f"{path}: calibration record has temperature {t} and "
                f"{len(probs)} probabilities for {len(labels)} labels; re-run "
                "the select stage"
            )
        return cls(t, source, probs, labels)
