"""deepgal.report: the results table is sorted by val accuracy with the best marked, the most
confused pairs match a hand-computed confusion matrix, pictures are linked relatively."""
import os

import numpy as np
import pytest

from deepgal.report import most_confused, report_row, write_report

NAMES = ("A", "B", "C", "D")
# Rows true, columns predicted. Off-diagonal by count: A->B 6, C->D 6 (ties broken by share:
# C->D is 6/10, A->B 6/20), D->A 4, B->C 3, A->C 2, B->A 1; every other off-diagonal cell is 0.
CM = np.array([[12, 6, 2, 0],
               [1, 16, 3, 0],
               [0, 0, 4, 6],
               [4, 0, 0, 20]])


def test_most_confused_by_hand():
    pairs = most_confused(CM, NAMES, k=3)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == \
        [("C", "D", 6), ("A", "B", 6), ("D", "A", 4)]
    assert pairs[0]["share"] == pytest.approx(0.6)
    assert pairs[1]["share"] == pytest.approx(0.3)
    assert pairs[2]["share"] == pytest.approx(4 / 24)
    everything = most_confused(CM, NAMES, k=100)
    assert [p["count"] for p in everything] == [6, 6, 4, 3, 2, 1]  # zero cells never listed
    assert most_confused(np.diag([5, 5, 5, 5]), NAMES) == []
    with pytest.raises(ValueError, match=r"shape \(4, 4\); expected \(3, 3\)"):
        most_confused(CM, NAMES[:3])


def rows():
    return [
        {"variant": "smallnet", "val_accuracy": 0.61, "val_macro_f1": 0.55, "test_accuracy": 0.6,
         "test_macro_f1": 0.54, "epoch": 12, "train_seconds": 95.0},
        {"variant": "resnet50", "val_accuracy": 0.8734, "val_macro_f1": 0.861,
         "test_accuracy": 0.8612, "test_macro_f1": 0.85, "epoch": 9, "train_seconds": 5321.4},
        {"variant": "customnet", "val_accuracy": 0.74, "val_macro_f1": 0.72,
         "test_accuracy": None, "test_macro_f1": None, "epoch": 20, "train_seconds": 800.0},
    ]


def test_report_table_sorted_best_marked_pairs_and_pictures(tmp_path):
    path = tmp_path / "out" / "report.md"
    pictures = {"Training curves": "plots/curves.png", "UMAP resnet50 train": "plots/u t.png"}
    text = write_report(path, rows(), {"resnet50": CM, "smallnet": np.eye(4, dtype=int)},
                        pictures, class_names=NAMES)
    assert path.read_text(encoding="utf-8") == text
    assert os.listdir(path.parent) == ["report.md"]  # no temporary left behind
    table = [line for line in text.splitlines() if line.startswith("| ") and "%" in line
             and ("net" in line)]
    assert [line.split("|")[2].strip() for line in table] == \
        ["**resnet50** (best)", "customnet", "smallnet"]
    assert table[0] == "| 1 | **resnet50** (best) | 87.34% | 86.12% | 0.861 | 0.850 | 9 | 5,321.4 |"
    assert table[1] == "| 2 | customnet | 74.00% | – | 0.720 | – | 20 | 800.0 |"
    assert "## Most confused class pairs (resnet50, val)" in text
    assert "| C | D | 6 | 60.0% |\n| A | B | 6 | 30.0% |\n| D | A | 4 | 16.7% |" in text
    assert "![Training curves](plots/curves.png)" in text
    assert "![UMAP resnet50 train](<plots/u t.png>)" in text
    assert text.index("Training curves") < text.index("UMAP resnet50 train")


def test_report_rejects_bad_rows_and_absolute_pictures(tmp_path):
    bad = rows()
    del bad[1]["epoch"]
    with pytest.raises(ValueError, match=r"row 1 \(resnet50\) lacks \['epoch'\]"):
        write_report(tmp_path / "r.md", bad, {}, {})
    with pytest.raises(ValueError, match="absolute path"):
        write_report(tmp_path / "r.md", rows(), {}, {"curves": "/tmp/curves.png"})
    with pytest.raises(ValueError, match="no result rows"):
        write_report(tmp_path / "r.md", [], {}, {})
    assert not (tmp_path / "r.md").exists()


def test_report_without_confusion_of_best_says_so(tmp_path):
    text = write_report(tmp_path / "r.md", rows(), {}, {}, class_names=NAMES)
    assert "No confusion matrix was given for resnet50." in text


def test_report_row_from_stage_outputs():
    evaluation = {"val": {"accuracy": 0.8, "macro_f1": 0.7, "per_class": {}, "confusion": []}}
    selection = {"checkpoint": "c.pt", "epoch": 4, "val_accuracy": 0.8, "gap": 0.01,
                 "reason": "best val accuracy"}
    row = report_row("smallnet", evaluation, selection, {"train_seconds": 12.5, "epochs": 5})
    assert row == {"variant": "smallnet", "val_accuracy": 0.8, "val_macro_f1": 0.7,
                   "test_accuracy": None, "test_macro_f1": None, "epoch": 4,
                   "train_seconds": 12.5}
    evaluation["test"] = {"accuracy": 0.75, "macro_f1": 0.6}
    assert report_row("smallnet", evaluation, selection, {"train_seconds": 1})["test_accuracy"] \
        == 0.75
