"""deepgal.report: the results table ranks the variants that learned by val accuracy and lists
those within noise of chance apart, with what they would need; the most confused pairs match a
hand-computed confusion matrix; pictures are linked relatively, the table and curves first."""

import os

import numpy as np
import pytest

from deepgal.report import (
    budget_needs,
    chance_p_value,
    learned,
    most_confused,
    report_row,
    write_report,
)

NAMES = ("A", "B", "C", "D")
# Rows true, columns predicted. Off-diagonal by count: A->B 6, C->D 6 (ties broken by share:
# C->D is 6/10, A->B 6/20), D->A 4, B->C 3, A->C 2, B->A 1; every other off-diagonal cell is 0.
CM = np.array([[12, 6, 2, 0], [1, 16, 3, 0], [0, 0, 4, 6], [4, 0, 0, 20]])


def test_most_confused_by_hand():
    pairs = most_confused(CM, NAMES, k=3)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("C", "D", 6),
        ("A", "B", 6),
        ("D", "A", 4),
    ]
    assert [(p["true_id"], p["pred_id"]) for p in pairs] == [(2, 3), (0, 1), (3, 0)]
    assert pairs[0]["share"] == pytest.approx(0.6)
    assert pairs[1]["share"] == pytest.approx(0.3)
    assert pairs[2]["share"] == pytest.approx(4 / 24)
    everything = most_confused(CM, NAMES, k=100)
    assert [p["count"] for p in everything] == [6, 6, 4, 3, 2, 1]  # zero cells never listed
    assert most_confused(np.diag([5, 5, 5, 5]), NAMES) == []
    with pytest.raises(ValueError, match=r"shape \(4, 4\); expected \(3, 3\)"):
        most_confused(CM, NAMES[:3])


@pytest.mark.parametrize("count", [1, 7, 101, 1774])
@pytest.mark.parametrize("chance", [0.05, 0.1, 0.26, 0.5, 0.9])
def test_chance_p_value_matches_scipy(count, chance):
    from scipy.stats import binom

    for correct in sorted({0, 1, count // 10, count // 4, count // 2, count - 1, count}):
        want = float(binom.sf(correct - 1, count, chance))
        assert chance_p_value(correct, count, chance) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_chance_p_value_by_hand():
    # P(X >= 2) for X ~ Bin(2, 0.5) = 1/4; P(X >= 0) = 1; P(X >= 3) of 3 at 0.1 = 0.001.
    assert chance_p_value(2, 2, 0.5) == pytest.approx(0.25)
    assert chance_p_value(0, 5, 0.3) == pytest.approx(1.0)
    assert chance_p_value(3, 3, 0.1) == pytest.approx(0.001)
    # The default split's bar: 100 val images, chance 10%: 18 correct is noise, 19 is learned.
    assert chance_p_value(18, 100, 0.1) == pytest.approx(0.010007, rel=1e-4)
    base = {"val_count": 100, "chance": 0.1}
    assert not learned(base | {"val_correct": 18}) and learned(base | {"val_correct": 19})


def row(variant, correct, count=100, f1=0.5, test=None, epoch=3, minutes=1.5, chance=0.1):
    return {
        "variant": variant,
        "val_accuracy": correct / count,
        "val_macro_f1": f1,
        "test_accuracy": test,
        "test_macro_f1": None if test is None else f1 - 0.01,
        "epoch": epoch,
        "train_min": minutes,
        "val_correct": correct,
        "val_count": count,
        "chance": chance,
    }


def rows():
    return [
        row("smallnet", 61, f1=0.55, test=0.6, epoch=12, minutes=1.58),
        row("resnet50", 13, f1=0.05, test=0.12, minutes=88.69),  # chance: not learned
        row("customnet", 74, f1=0.72, epoch=20, minutes=13.33),
        row("convnext_tiny", 10, f1=0.02, test=0.1, minutes=20.0),  # chance too
        row("resnet152", 87, f1=0.861, test=0.8612, epoch=9, minutes=5321.4 / 60),
    ]


RUNS = {
    "resnet50": {"model": "resnet50", "pretrained": "none", "epochs": 3, "input_size": 48},
    "convnext_tiny": {
        "model": "convnext_tiny",
        "pretrained": "imagenet",
        "epochs": 3,
        "input_size": 224,
    },
}


def test_report_ranks_the_learned_lists_the_rest_and_leads_with_table_and_curves(tmp_path):
    path = tmp_path / "out" / "report.md"
    text = write_report(
        path,
        rows(),
        {"resnet152": CM, "smallnet": np.eye(4, dtype=int)},
        runs=RUNS,
        lead={
            "Training curves": "plots/curves.png",
            "val UMAP of every variant": "plots/variants umap.png",
        },
        gallery={
            "resnet152": "plots/resnet152_confused.png",
            "smallnet": "plots/smallnet_confused.png",
        },
        sections={"smallnet": {"smallnet maps": "plots/smallnet_embeddings.png"}},
        class_names=NAMES,
    )
    assert path.read_text(encoding="utf-8") == text
    assert os.listdir(path.parent) == ["report.md"]  # no temporary left behind
    table = [line for line in text.splitlines() if line.count("|") == 9 and "%" in line]
    assert [line.split("|")[1:3] for line in table] == [
        [" 1 ", " **resnet152** (best) "],
        [" 2 ", " customnet "],
        [" 3 ", " smallnet "],
        [" – ", " resnet50 (not learned) "],
        [" – ", " convnext_tiny (not learned) "],
    ]
    assert table[0] == "| 1 | **resnet152** (best) | 87.00% | 86.12% | 0.861 | 0.851 | 9 | 88.7 |"
    assert table[1] == "| 2 | customnet | 74.00% | – | 0.720 | – | 20 | 13.3 |"
    # What the variants at chance would need, from their own settings.
    assert (
        "- **resnet50**: 13.00% (13 of 100) against chance 10.00% (p = 0.2). It would need: "
        "ImageNet-pretrained weights (`pretrained: imagenet`); more epochs than the 3 it "
        "ran; a GPU, to train at 224-256 px instead of 48 px."
    ) in text
    assert (
        "- **convnext_tiny**: 10.00% (10 of 100) against chance 10.00% (p = 0.55). It would "
        "need: more epochs than the 3 it ran."
    ) in text
    # Order: table, not learned, curves, all variants' maps, confused pairs of the best with
    # its gallery (not smallnet's), then the sections.
    marks = [
        "| 1 | **resnet152**",
        "## Not learned at this budget",
        "![Training curves]",
        "![val UMAP of every variant](<plots/variants umap.png>)",
        "## Most confused class pairs (resnet152, val)",
        "| C | D | 6 | 60.0% |\n| A | B | 6 | 30.0% |\n| D | A | 4 | 16.7% |",
        "(plots/resnet152_confused.png)",
        "## smallnet",
        "![smallnet maps](plots/smallnet_embeddings.png)",
    ]
    positions = [text.index(m) for m in marks]
    assert positions == sorted(positions)
    assert "smallnet_confused.png" not in text


def test_report_when_nothing_learned_names_the_best_of_them(tmp_path):
    text = write_report(tmp_path / "r.md", [row("a", 11), row("b", 12)], {}, class_names=NAMES)
    assert "| – | b (not learned) |" in text and "| 1 |" not in text
    assert "## Most confused class pairs (b, val)" in text
    assert "No confusion matrix was given for b." in text
    # No settings known: generic advice rather than none.
    assert "It would need: more epochs, ImageNet-pretrained weights or a GPU" in text


def test_report_rejects_bad_rows_and_absolute_pictures(tmp_path):
    bad = rows()
    del bad[1]["epoch"]
    with pytest.raises(ValueError, match=r"row 1 \(resnet50\) lacks \['epoch'\]"):
        write_report(tmp_path / "r.md", bad, {})
    with pytest.raises(ValueError, match="absolute path"):
        write_report(tmp_path / "r.md", rows(), {}, lead={"curves": "/tmp/curves.png"})
    with pytest.raises(ValueError, match="no result rows"):
        write_report(tmp_path / "r.md", [], {})
    assert not (tmp_path / "r.md").exists()


def test_budget_needs_follow_the_settings():
    scratch = {"model": "smallnet", "pretrained": "none", "epochs": 12, "input_size": 32}
    assert budget_needs(scratch) == [
        "more epochs than the 12 it ran",
        "a GPU, to train at 224-256 px instead of 32 px",
    ]
    big = {"model": "resnet50", "pretrained": "imagenet", "epochs": 30, "input_size": 256}
    assert budget_needs(big) == ["more epochs than the 30 it ran"]


def test_report_row_from_headline_metrics_and_confusion():
    metrics = {"val": {"accuracy": 0.6, "macro_f1": 0.5}, "epoch": 4, "train_min": 0.2}
    cm = np.array([[3, 1], [1, 0]])  # 3 of 5 right; the commonest class holds 4 of 5
    assert report_row("smallnet", metrics, cm) == {
        "variant": "smallnet",
        "val_accuracy": 0.6,
        "val_macro_f1": 0.5,
        "test_accuracy": None,
        "test_macro_f1": None,
        "epoch": 4,
        "train_min": 0.2,
        "val_correct": 3,
        "val_count": 5,
        "chance": 0.8,
    }
    metrics["test"] = {"accuracy": 0.75, "macro_f1": 0.6}
    assert report_row("smallnet", metrics, cm)["test_accuracy"] == 0.75
    with pytest.raises(ValueError, match="smallnet: val confusion must be a non-empty"):
        report_row("smallnet", metrics, np.zeros((2, 2)))
