"""The library calls the evaluate and plot stages make, reached without a stage process:
where one pass's rows go, the tracker's flat metrics, and one variant's results as the report
reads them. Expected values are counted by hand from the inputs written here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepgal.calibration import measure
from deepgal.evaluation import _Layout, tracker_metrics
from deepgal.handoff import (
    CalibrationReport,
    Embeddings,
    History,
    Predictions,
    Selection,
    TrainSummary,
    VariantMetrics,
    VariantPaths,
)
from deepgal.metrics import score
from deepgal.pipeline_report import VariantResults


def test_layout_reads_each_row_once_and_sends_it_where_it_belongs():
    # Features file: train [7, 2], val [5], test [9, 0]; outlier reference [2, 4] (4 is a
    # train row outside the mapped sample: read for the reference only).
    rows = {"train": np.array([7, 2]), "val": np.array([5]), "test": np.array([9, 0])}
    layout = _Layout(rows, np.array([2, 4]))
    np.testing.assert_array_equal(layout.file_rows, [0, 2, 4, 5, 7, 9])
    # file row 0 is the 2nd test row (file position 4), 2 the 2nd train row (1), 4 none, ...
    np.testing.assert_array_equal(layout.dest, [4, 1, -1, 2, 0, 3])
    np.testing.assert_array_equal(layout.slot, [-1, 0, 1, -1, -1, -1])
    assert layout.span == {"train": (0, 2), "val": (2, 3), "test": (3, 5)}
    np.testing.assert_array_equal(layout.positions("test"), [5, 0])


def test_tracker_metrics_flatten_scores_recall_and_calibration():
    # val: 4 images of classes 0, 0, 1, 2; predicted 0, 1, 1, 2 -> accuracy 3/4,
    # recall class 0 = 1/2, class 1 = 1, class 2 = 1.
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 0, 1, 2])
    result = {"val": score(labels, probs, ("a", "b", "c"))}
    calib = measure(None, {"val": probs}, {"val": labels})
    flat = tracker_metrics(result, calib)
    assert flat["eval/val/accuracy"] == 0.75
    assert (flat["eval/val/recall/a"], flat["eval/val/recall/b"], flat["eval/val/recall/c"]) == (
        0.5,
        1.0,
        1.0,
    )
    # NLL at temperature 1 = mean -log p(true class)
    nll = -np.mean(np.log([0.8, 0.3, 0.8, 0.8]))
    assert flat["eval/val/nll_before"] == pytest.approx(nll)
    assert flat["eval/val/nll_after"] == pytest.approx(nll)
    assert flat["eval/temperature"] == 1.0
    assert not any(k.startswith("eval/test") for k in flat)  # no test split, no test keys


def test_variant_results_read_the_seven_files(tmp_path):
    at = VariantPaths("v", results_root=tmp_path)
    parts = {"val": (np.array([5, 6, 7]), np.array([1, 1, 2]), np.eye(10)[[1, 2, 2]])}
    Predictions.from_parts(parts).write(at.predictions)
    VariantMetrics(val={"accuracy": 2 / 3, "macro_f1": 0.5}, epoch=2, train_min=0.5).write(
        at.metrics
    )
    CalibrationReport(temperature=1.5, source="val").write(at.calibration)
    History(({"epoch": 1, "seconds": 2.0}, {"epoch": 2, "seconds": 3.0})).write(at.history)
    TrainSummary(
        config={"model": "smallnet", "pretrained": "none", "input_size": 16, "lr": 0.1}
    ).write(at.train)
    Embeddings(
        pd.DataFrame(
            {
                "index": [5],
                "label": [1],
                "split": ["val"],
                "method": ["pca"],
                "x": [0.0],
                "y": [1.0],
            }
        )
    ).write(at.embeddings)
    Selection(epoch=2, run_id="abc").write(at.selection)
    res = VariantResults.read("v", tmp_path)
    assert res.ran == {"model": "smallnet", "pretrained": "none", "input_size": 16, "epochs": 2}
    assert res.run_id == "abc" and res.calibration == {"temperature": 1.5, "source": "val"}
    assert res.confusion[1, 1] == 1 and res.confusion[1, 2] == 1 and res.confusion[2, 2] == 1
    assert res.confusion.sum() == 3
    row = res.row()
    assert (row["val_correct"], row["val_count"], row["epoch"]) == (2, 3, 2)
    assert row["chance"] == pytest.approx(2 / 3)  # class 1 holds 2 of the 3 val images
