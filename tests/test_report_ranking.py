"""Which variant is ranked, which is "best" and what report.md says, on hand-made rows given in
an order unlike the ranking; the headline file's numbers; edge cases of the chance test.

The expected report text is written out by hand: report.md is what a user reads. The p-values
in it are SciPy's (binom.sf(k - 1, 40, 0.4): 0.3115 at 18, 0.4319 at 17)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepgal.dvc_metrics import metrics_table, variant_row
from deepgal.report import (
    chance_p_value,
    learned,
    most_confused,
    render_report,
    report_row,
    sort_rows,
)

NAMES = ("A", "B", "C")


def row(variant, correct, f1, test=None, epoch=1, minutes=1.0, count=40, chance=0.4):
    return {
        "variant": variant,
        "val_accuracy": correct / count,
        "val_macro_f1": f1,
        "test_accuracy": None if test is None else test[0],
        "test_macro_f1": None if test is None else test[1],
        "epoch": epoch,
        "train_min": minutes,
        "val_correct": correct,
        "val_count": count,
        "chance": chance,
    }


# Input order: not the ranking. alpha and beta tie on val accuracy; beta's higher macro-F1
# ranks it first although "alpha" sorts first by name. delta and eps are within noise of
# chance (40 val images, chance 40%): listed after, by val accuracy.
ROWS = [
    row("eps", 17, 0.30, test=(0.40, 0.20), epoch=2, minutes=0.1),
    row("alpha", 30, 0.70, test=(0.70, 0.65), epoch=4, minutes=0.5),
    row("delta", 18, 0.40, epoch=1, minutes=3.0),
    row("beta", 30, 0.72, epoch=3, minutes=2.26),
    row("gamma", 36, 0.88, test=(0.88, 0.861), epoch=7, minutes=1234.5),
]
# Off-diagonal cells: A->B 3 (3/15), B->A 3 (3/24), C->A 2 (2/8), A->C 2 (2/15),
# C->B 1 (1/8), B->C 1 (1/24): count first, then share; the default k = 5 drops B->C.
CM = np.array([[10, 3, 2], [3, 20, 1], [2, 1, 5]])

EXPECTED = """\
# deepgal results

Variants that learned, by validation accuracy (the best marked), then those whose accuracy is \
within noise of chance. Test columns read "–" when there is no test split.

| # | variant | val accuracy | test accuracy | val macro-F1 | test macro-F1 | selected epoch \
| training time (min) |
|---|---|---:|---:|---:|---:|---:|---:|
| 1 | **gamma** (best) | 90.00% | 88.00% | 0.880 | 0.861 | 7 | 1,234.5 |
| 2 | beta | 75.00% | – | 0.720 | – | 3 | 2.3 |
| 3 | alpha | 75.00% | 70.00% | 0.700 | 0.650 | 4 | 0.5 |
| – | delta (not learned) | 45.00% | – | 0.400 | – | 1 | 3.0 |
| – | eps (not learned) | 42.50% | 40.00% | 0.300 | 0.200 | 2 | 0.1 |

## Not learned at this budget

Val accuracy within noise of chance (one-sided binomial test, p ≥ 0.01, against always \
answering the commonest class): listed, not ranked.

- **delta**: 45.00% (18 of 40) against chance 40.00% (p = 0.31). It would need: \
ImageNet-pretrained weights (`pretrained: imagenet`); more epochs than the 2 it ran; a GPU, \
to train at 224-256 px instead of 64 px.
- **eps**: 42.50% (17 of 40) against chance 40.00% (p = 0.43). It would need: more epochs, \
ImageNet-pretrained weights or a GPU at the real input size.

## Training curves

![Training curves](plots/curves.png)

## Most confused class pairs (gamma, val)

| true class | predicted as | count | share of true class |
|---|---|---:|---:|
| A | B | 3 | 20.0% |
| B | A | 3 | 12.5% |
| C | A | 2 | 25.0% |
| A | C | 2 | 13.3% |
| C | B | 1 | 12.5% |

### gamma: images of the most confused pairs

![gamma: images of the most confused pairs](<plots/gamma confused.png>)

## Maps

### UMAP

![UMAP](plots/umap.png)
"""


def test_sort_rows_ranks_by_val_accuracy_then_macro_f1_and_sets_chance_apart():
    ranked, unranked = sort_rows(ROWS)
    assert [r["variant"] for r in ranked] == ["gamma", "beta", "alpha"]
    assert [r["variant"] for r in unranked] == ["delta", "eps"]
    # Full ties fall back to the name.
    ranked, _ = sort_rows([row("b", 30, 0.7), row("a", 30, 0.7)])
    assert [r["variant"] for r in ranked] == ["a", "b"]


def test_a_row_without_its_variant_name_is_named_by_position():
    bad = dict(ROWS[0])
    del bad["variant"]
    with pytest.raises(ValueError, match=r"^report row 1 \(\?\) lacks \['variant'\]; a row needs"):
        sort_rows([ROWS[1], bad])


def test_render_report_by_hand():
    runs = {"delta": {"model": "resnet18", "pretrained": "none", "epochs": 2, "input_size": 64}}
    text = render_report(
        ROWS,
        {"gamma": CM, "beta": np.eye(3, dtype=int)},
        runs=runs,
        lead={"Training curves": "plots/curves.png"},
        gallery={"gamma": "plots/gamma confused.png", "beta": "plots/beta.png"},
        sections={"Maps": {"UMAP": "plots/umap.png"}},
        class_names=NAMES,
    )
    assert text == EXPECTED


def test_render_report_of_a_perfect_best_variant():
    text = render_report(
        [row("solo", 40, 1.0)], {"solo": np.eye(3, dtype=int) * 4}, class_names=NAMES
    )
    assert text.endswith(
        "| 1 | **solo** (best) | 100.00% | – | 1.000 | – | 1 | 1.0 |\n\n"
        "## Most confused class pairs (solo, val)\n\nNo misclassifications.\n"
    )
    assert "Not learned" not in text


def test_most_confused_breaks_ties_by_share_then_row_then_column():
    # Equal counts, the earlier row with the larger share: share decides, not the row.
    cm = np.array([[2, 2, 0], [0, 9, 0], [0, 2, 20]])
    assert [(p["true"], p["predicted"]) for p in most_confused(cm, NAMES)] == [
        ("A", "B"),
        ("C", "B"),
    ]
    # Equal counts and shares: the true class's order decides, then the predicted one's.
    cm = np.array([[5, 0, 2], [2, 5, 0], [0, 0, 7]])
    assert [(p["true_id"], p["pred_id"]) for p in most_confused(cm, NAMES)] == [(0, 2), (1, 0)]
    cm = np.array([[7, 0, 0], [0, 5, 2], [0, 2, 5]])
    assert [(p["true_id"], p["pred_id"]) for p in most_confused(cm, NAMES)] == [(1, 2), (2, 1)]
    every = np.ones((3, 3), dtype=int)  # six cells of 1: the default k keeps five
    assert len(most_confused(every, NAMES)) == 5


def test_report_row_checks_its_confusion_and_reads_the_test_split():
    metrics = {
        "val": {"accuracy": 0.5, "macro_f1": 0.4},
        "epoch": 2,
        "train_min": 1.0,
        "test": {"accuracy": 0.75, "macro_f1": 0.6},
    }
    got = report_row("v", metrics, [[2, 1], [1, 0]])
    assert (got["test_accuracy"], got["test_macro_f1"]) == (0.75, 0.6)
    assert (got["val_correct"], got["val_count"], got["chance"]) == (2, 4, 0.75)
    for bad in ([[1, 2, 3], [4, 5, 6]], [1, 2, 3]):
        with pytest.raises(ValueError, match="v: val confusion must be a non-empty"):
            report_row("v", metrics, bad)


def test_chance_p_value_edges():
    assert chance_p_value(6, 5, 0.3) == 0.0  # more correct than images: impossible
    assert chance_p_value(0, 10, 0.16) == 1.0  # P(X >= 0) exactly, not a sum that rounds
    assert chance_p_value(3, 5, 0.0) == 0.0 and chance_p_value(3, 5, 1.0) == 1.0
    assert chance_p_value(1, 50, 0.5) <= 1.0  # the sum rounds above 1 here; it is clamped
    # p = 0.5 exactly (1 of 1 at chance 0.5): "below alpha" is strict.
    one = {"val_correct": 1, "val_count": 1, "chance": 0.5}
    assert chance_p_value(1, 1, 0.5) == 0.5
    assert not learned(one, alpha=0.5) and learned(one, alpha=0.5000001)


def test_variant_headline_rounds_and_types_what_dvc_shows():
    metrics = {
        "val": {"accuracy": 0.123456, "macro_f1": 0.654321},
        "test": {"accuracy": 0.98765432, "macro_f1": 0.5},
        "epoch": 3.0,
        "train_min": 12.3456,
        "extra": 1,
    }
    assert json.dumps(variant_row(metrics)) == (
        '{"test_acc": 0.9877, "test_f1": 0.5, "val_acc": 0.1235, "val_f1": 0.6543, '
        '"epoch": 3, "train_min": 12.35}'
    )
    del metrics["test"]
    metrics["val"] = {"accuracy": "0.5", "macro_f1": "0.25"}  # as text: read as numbers
    assert json.dumps(variant_row(metrics)) == (
        '{"val_acc": 0.5, "val_f1": 0.25, "epoch": 3, "train_min": 12.35}'
    )


def test_pipeline_headline_keeps_the_given_variant_order():
    one = {"val": {"accuracy": 0.5, "macro_f1": 0.4}, "epoch": 1, "train_min": 0.5}
    two = {"val": {"accuracy": 0.7, "macro_f1": 0.6}, "epoch": 2, "train_min": 1.5}
    got = metrics_table({"zeta": one, "alpha": two})
    assert list(got) == ["zeta", "alpha"]
    assert got["alpha"] == {"val_acc": 0.7, "val_f1": 0.6, "epoch": 2, "train_min": 1.5}


def test_render_report_passes_k_and_words_its_errors():
    text = render_report([row("solo", 36, 0.9)], {"solo": CM}, class_names=NAMES, k=2)
    assert text.endswith("| A | B | 3 | 20.0% |\n| B | A | 3 | 12.5% |\n")
    text = render_report(
        [row("solo", 36, 0.9)], {}, class_names=NAMES, sections={"Maps": {"UMAP": "u.png"}}
    )
    assert "No confusion matrix was given for solo.\n\n## Maps\n" in text
    with pytest.raises(ValueError) as err:
        render_report([], {})
    assert str(err.value) == "no result rows to report; expected one row per variant"
    with pytest.raises(ValueError) as err:
        render_report([row("solo", 36, 0.9)], {}, lead={"c": "/abs/c.png"})
    assert str(err.value) == (
        "picture 'c' has absolute path /abs/c.png; give it relative to "
        "report.md so the report works wherever it is copied"
    )
