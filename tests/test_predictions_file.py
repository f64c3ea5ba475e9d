"""deepgal.handoff.Predictions: the evaluate stage's per-image file round-trips, its confusion
matches one counted by hand, and a damaged file is named with what is wrong."""

import numpy as np
import pytest

from deepgal.handoff import PREDICTION_COLUMNS, Predictions


def write_predictions(path, parts):
    return Predictions.from_parts(parts).write(path)


def read_predictions(path, num_classes=10):
    return Predictions.read(path, num_classes).frame


def split_confusion(df, split, num_classes):
    return Predictions(df).confusion_matrix(split, num_classes)


def parts():
    probs_val = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]], dtype=np.float32)
    probs_test = np.array([[0.1, 0.8, 0.1]], dtype=np.float32)
    return {
        "val": (np.array([7, 3, 9]), np.array([0, 1, 1]), probs_val),
        "test": (np.array([4]), np.array([2]), probs_test),
    }


def test_round_trip_and_confusion_by_hand(tmp_path):
    path = write_predictions(tmp_path / "sub" / "predictions.csv", parts())
    assert sorted(p.name for p in path.parent.iterdir()) == ["predictions.csv"]
    df = read_predictions(path, num_classes=3)
    assert tuple(df.columns) == PREDICTION_COLUMNS
    assert df["split"].tolist() == ["val", "val", "val", "test"]
    assert df["index"].tolist() == [7, 3, 9, 4]
    assert df["pred"].tolist() == [0, 2, 1, 1]
    np.testing.assert_allclose(df["confidence"], [0.7, 0.6, 0.5, 0.8], atol=1e-5)
    # val: 0->0 right, 1->2 wrong, 1->1 right.
    np.testing.assert_array_equal(split_confusion(df, "val", 3), [[1, 0, 0], [0, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(split_confusion(df, "test", 3), [[0, 0, 0], [0, 0, 0], [0, 1, 0]])
    assert split_confusion(df, "train", 3).sum() == 0


def test_damaged_files_are_named(tmp_path):
    path = write_predictions(tmp_path / "p.csv", parts())
    with pytest.raises(ValueError, match=r"p.csv: label 2 \(line 5\) is not a class 0..1"):
        read_predictions(path, num_classes=2)
    path.write_text(path.read_text().replace("val,3,1,2", "val,3,1,-1"))
    with pytest.raises(ValueError, match=r"pred -1 \(line 3\) is not a class 0..2"):
        read_predictions(path, num_classes=3)
    path.write_text("split,index,label,pred\nval,1,0,0\n")
    with pytest.raises(ValueError, match=r"p.csv lacks columns \['confidence'\]"):
        read_predictions(path)
    with pytest.raises(ValueError, match=r"index \(N,\), label \(N,\), probs \(N, K\)"):
        write_predictions(tmp_path / "q.csv", {"val": (np.arange(2), np.arange(3), np.eye(3))})
    assert not (tmp_path / "q.csv").exists()
