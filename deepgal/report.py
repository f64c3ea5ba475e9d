"""``report.md``: the results table of all variants, which variants did not learn at this
budget (and what they would need), then the pictures, most telling first.

A row is a plain dict (build it with :func:`report_row` from a variant's headline metrics and
its val confusion matrix):

- ``variant`` str, ``val_accuracy`` float, ``val_macro_f1`` float, ``epoch`` int (selected),
  ``train_min`` float;
- ``test_accuracy``, ``test_macro_f1`` float or None (no test split when its fraction is 0);
- ``val_correct``, ``val_count`` int and ``chance`` float (the share of the commonest class in
  val): what :func:`chance_p_value` tests.

A variant is "learned" when its val accuracy is significantly above chance: a one-sided
binomial test of ``val_correct`` of ``val_count`` against ``chance``, at :data:`ALPHA`.
Chance is the commonest class's share, the best score of any guess that ignores the image (10%
on the balanced synthetic set, 15% on the real one). A variant within noise of chance is
listed after the ranked ones, with what it would need, instead of being ranked as a result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from deepgal.data.galaxy10 import CLASS_NAMES
from deepgal.utils import atomic_write_text

REQUIRED_KEYS = (
    "variant",
    "val_accuracy",
    "val_macro_f1",
    "epoch",
    "train_min",
    "val_correct",
    "val_count",
    "chance",
)
OPTIONAL_KEYS = ("test_accuracy", "test_macro_f1")
# One-sided significance level of "above chance". With a 100-image val split and chance 10%,
# the bar is 19 correct (19%): p = 0.0046 there, 0.0100 at 18.
ALPHA = 0.01
# The report's own small nets have no ImageNet weights (deepgal.models); every other variant
# is a torchvision backbone that can start from them.
SCRATCH_ONLY = ("smallnet", "customnet")
# Below this input size a backbone sees far less than the real 256 px cut-outs.
REAL_INPUT_PX = 224


def report_row(variant: str, metrics: Mapping, val_confusion: np.ndarray) -> dict:
    """One table row from ``metrics`` (the evaluate stage's metrics.json: ``val``/``test``
    ``{accuracy, macro_f1}``, ``epoch``, ``train_min``) and the val confusion (K, K) ints."""
    cm = np.asarray(val_confusion, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.sum() == 0:
        raise ValueError(
            f"{variant}: val confusion must be a non-empty (K, K) matrix; "
            f"got shape {cm.shape} with {int(cm.sum())} images"
        )
    test = metrics.get("test") or {}
    return {
        "variant": variant,
        "val_accuracy": float(metrics["val"]["accuracy"]),
        "val_macro_f1": float(metrics["val"]["macro_f1"]),
        "test_accuracy": float(test["accuracy"]) if "accuracy" in test else None,
        "test_macro_f1": float(test["macro_f1"]) if "macro_f1" in test else None,
        "epoch": int(metrics["epoch"]),
        "train_min": float(metrics["train_min"]),
        "val_correct": int(np.trace(cm)),
        "val_count": int(cm.sum()),
        "chance": float(cm.sum(axis=1).max() / cm.sum()),
    }


def chance_p_value(correct: int, count: int, chance: float) -> float:
    """P(X >= ``correct``) for X ~ Binomial(``count``, ``chance``): how often a guess that
    ignores the image scores at least this well. Small means learned.

    Summed term by term in log space (exact to float rounding for any ``count``; the tests
    compare it with ``scipy.stats.binom.sf``): importing scipy.stats for this one sum cost the
    plot stage ~1.2 s."""
    if correct <= 0:
        return 1.0
    if correct > count:
        return 0.0
    if chance <= 0.0 or chance >= 1.0:
        return float(chance >= 1.0)
    log_p, log_q = math.log(chance), math.log1p(-chance)
    terms = [
        math.lgamma(count + 1)
        - math.lgamma(k + 1)
        - math.lgamma(count - k + 1)
        + k * log_p
        + (count - k) * log_q
        for k in range(correct, count + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


def learned(row: Mapping, alpha: float = ALPHA) -> bool:
    """Whether ``row``'s val accuracy is significantly above chance (p < ``alpha``)."""
    return chance_p_value(row["val_correct"], row["val_count"], row["chance"]) < alpha


def budget_needs(run: Mapping | None) -> list[str]:
    """What a variant that did not learn would need, from its resolved run settings ``run``
    (``model``, ``pretrained``, ``epochs``, ``input_size``; None when unknown)."""
    if run is None:
        return ["more epochs, ImageNet-pretrained weights or a GPU at the real input size"]
    needs = []
    if run["model"] not in SCRATCH_ONLY and str(run["pretrained"]) == "none":
        needs.append("ImageNet-pretrained weights (`pretrained: imagenet`)")
    needs.append(f"more epochs than the {run['epochs']} it ran")
    if int(run["input_size"]) < REAL_INPUT_PX:
        needs.append(f"a GPU, to train at {REAL_INPUT_PX}-256 px instead of {run['input_size']} px")
    return needs


def sort_rows(rows: Sequence[Mapping]) -> tuple[list[dict], list[dict]]:
    """(learned, not learned): each by validation accuracy, best first; ties by val macro-F1,
    then variant name."""
    for i, row in enumerate(rows):
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise ValueError(
                f"report row {i} ({row.get('variant', '?')}) lacks {missing}; "
                f"a row needs {list(REQUIRED_KEYS)}"
            )
    ordered = sorted(
        (dict(r) for r in rows),
        key=lambda r: (-r["val_accuracy"], -r["val_macro_f1"], r["variant"]),
    )
    return [r for r in ordered if learned(r)], [r for r in ordered if not learned(r)]


def most_confused(
    cm: np.ndarray, class_names: Sequence[str] = CLASS_NAMES, k: int = 5
) -> list[dict]:
    """The ``k`` largest off-diagonal cells of ``cm`` (K, K) ints (rows true, columns predicted).

    Returns ``[{"true": name, "predicted": name, "true_id": int, "pred_id": int, "count": int,
    "share": float}, ...]`` with ``share`` = count / images of the true class; ordered by
    count, then share, then class order. Cells with zero count are never listed, so fewer than
    ``k`` may come back.
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = len(class_names)
    if cm.shape != (n, n):
        raise ValueError(f"confusion matrix has shape {cm.shape}; expected ({n}, {n})")
    support = cm.sum(axis=1)
    cells = [
        (int(cm[i, j]), cm[i, j] / support[i], i, j)
        for i in range(n)
        for j in range(n)
        if i != j and cm[i, j] > 0
    ]
    cells.sort(key=lambda c: (-c[0], -c[1], c[2], c[3]))
    return [
        {
            "true": class_names[i],
            "predicted": class_names[j],
            "true_id": i,
            "pred_id": j,
            "count": count,
            "share": float(share),
        }
        for count, share, i, j in cells[:k]
    ]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _f1(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _results_table(ranked: list[dict], unranked: list[dict]) -> list[str]:
    lines = [
        "| # | variant | val accuracy | test accuracy | val macro-F1 | test macro-F1 "
        "| selected epoch | training time (min) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    numbered = [(str(i), r) for i, r in enumerate(ranked, start=1)] + [("–", r) for r in unranked]
    for rank, r in numbered:
        name = (
            f"**{r['variant']}** (best)"
            if rank == "1"
            else f"{r['variant']} (not learned)"
            if rank == "–"
            else r["variant"]
        )
        lines.append(
            f"| {rank} | {name} | {_pct(r['val_accuracy'])} "
            f"| {_pct(r.get('test_accuracy'))} | {_f1(r['val_macro_f1'])} "
            f"| {_f1(r.get('test_macro_f1'))} | {r['epoch']} | {r['train_min']:,.1f} |"
        )
    return lines


def _not_learned_section(unranked: list[dict], runs: Mapping[str, Mapping]) -> list[str]:
    if not unranked:
        return []
    lines = [
        "## Not learned at this budget",
        "",
        f"Val accuracy within noise of chance (one-sided binomial test, p ≥ {ALPHA}, against "
        "always answering the commonest class): listed, not ranked.",
        "",
    ]
    for r in unranked:
        p = chance_p_value(r["val_correct"], r["val_count"], r["chance"])
        needs = "; ".join(budget_needs(runs.get(r["variant"])))
        lines.append(
            f"- **{r['variant']}**: {_pct(r['val_accuracy'])} ({r['val_correct']} of "
            f"{r['val_count']}) against chance {_pct(r['chance'])} (p = {p:.2g}). "
            f"It would need: {needs}."
        )
    return lines + [""]


def _confused_section(
    best: str, cm: np.ndarray | None, class_names: Sequence[str], split: str, k: int
) -> list[str]:
    lines = [f"## Most confused class pairs ({best}, {split})", ""]
    if cm is None:
        return lines + [f"No confusion matrix was given for {best}.", ""]
    pairs = most_confused(cm, class_names, k)
    if not pairs:
        return lines + ["No misclassifications.", ""]
    lines += ["| true class | predicted as | count | share of true class |", "|---|---|---:|---:|"]
    lines += [
        f"| {p['true']} | {p['predicted']} | {p['count']} | {100 * p['share']:.1f}% |"
        for p in pairs
    ]
    return lines + [""]


def _picture_lines(pictures: Mapping[str, str], level: str = "###") -> list[str]:
    lines = []
    for caption, rel in pictures.items():
        rel_path = PurePosixPath(Path(rel).as_posix())
        if rel_path.is_absolute():
            raise ValueError(
                f"picture '{caption}' has absolute path {rel}; give it relative "
                "to report.md so the report works wherever it is copied"
            )
        target = f"<{rel_path}>" if " " in str(rel_path) else str(rel_path)
        lines += [f"{level} {caption}", "", f"![{caption}]({target})", ""]
    return lines


def render_report(
    rows: Sequence[Mapping],
    confusions: Mapping[str, np.ndarray],
    runs: Mapping[str, Mapping] | None = None,
    lead: Mapping[str, str] | None = None,
    gallery: Mapping[str, str] | None = None,
    sections: Mapping[str, Mapping[str, str]] | None = None,
    calibration: Sequence[str] = (),
    attention: Sequence[str] = (),
    class_names: Sequence[str] = CLASS_NAMES,
    confusion_split: str = "val",
    k: int = 5,
) -> str:
    """The markdown text of the report (see :func:`write_report`)."""
    if not rows:
        raise ValueError("no result rows to report; expected one row per variant")
    ranked, unranked = sort_rows(rows)
    best = (ranked or unranked)[0]["variant"]
    lines = [
        "# deepgal results",
        "",
        "Variants that learned, by validation accuracy (the best marked), then those whose "
        'accuracy is within noise of chance. Test columns read "–" when there is no test '
        "split.",
        "",
    ]
    lines += _results_table(ranked, unranked) + [""]
    lines += _not_learned_section(unranked, runs or {})
    lines += _picture_lines(lead or {}, "##")
    lines += list(calibration)  # ready markdown lines (deepgal.plots.calibration)
    lines += _confused_section(best, confusions.get(best), class_names, confusion_split, k)
    if best in (gallery or {}):
        lines += _picture_lines({f"{best}: images of the most confused pairs": gallery[best]})
    lines += list(attention)  # ready markdown lines (deepgal.plots.gradcam)
    for title, pictures in (sections or {}).items():
        lines += [f"## {title}", ""] + _picture_lines(pictures)
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    path: str | Path, rows: Sequence[Mapping], confusions: Mapping[str, np.ndarray], **pictures
) -> str:
    """Write ``report.md`` at ``path`` atomically (parent dirs created) and return its text.

    ``rows``: one dict per variant (module docstring); ``confusions``: variant -> (K, K) int
    confusion matrix on the confusion split (val). Keywords, as :func:`render_report`:
    ``runs`` (variant -> resolved run settings, for what a variant that did not learn would
    need), ``lead`` (caption -> picture, shown right after the table), ``gallery`` (variant ->
    its confused-pairs picture; the best variant's goes under its confused-pairs table),
    ``sections`` (title -> {caption -> picture}), ``calibration`` and ``attention`` (ready
    markdown lines: the calibration table, the best variant's Grad-CAM gallery); every picture
    path relative to the report.
    """
    text = render_report(rows, confusions, **pictures)
    atomic_write_text(path, text)
    return text
