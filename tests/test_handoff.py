"""deepgal.handoff: every file between stages round-trips, and a wrong one fails where it is
read with the file, the key and what to do.

Oracles: the committed baseline files in results/ (written by the stages before the records
existed: the records must read them and write the same bytes back, plus ``version``), JSON
written here by hand, and dvc.yaml itself for a variant's paths."""

from __future__ import annotations

import json
import re
import shutil

import h5py
import numpy as np
import pytest
import yaml

from deepgal.handoff import (
    CalibrationReport,
    Embeddings,
    Features,
    FeaturesWriter,
    HandoffError,
    History,
    MlflowRun,
    PipelineMetrics,
    Selection,
    Source,
    SplitRows,
    SplitStats,
    TrainSummary,
    VariantMetrics,
    VariantPaths,
)
from tests.pipeline_repo import REPO

BASELINE = REPO / "results" / "smallnet"


@pytest.mark.parametrize(
    "cls, name",
    [
        (Selection, "selection.json"),
        (TrainSummary, "train.json"),
        (CalibrationReport, "calibration.json"),
    ],
)
def test_committed_files_round_trip_byte_for_byte_plus_version(tmp_path, cls, name):
    """The pipeline's own file reads and writes back byte for byte; the same file without its
    version key (as written before layouts were numbered) reads as version 1."""
    original = json.loads((BASELINE / name).read_text())
    cls.read(BASELINE / name).write(tmp_path / name)
    assert (tmp_path / name).read_text() == (BASELINE / name).read_text()
    unnumbered = {k: v for k, v in original.items() if k != "version"}
    (tmp_path / "old.json").write_text(json.dumps(unnumbered, indent=2) + "\n")
    cls.read(tmp_path / "old.json").write(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == json.dumps(
        {**unnumbered, "version": 1}, indent=2
    ) + "\n"


def test_metrics_files_keep_their_exact_bytes(tmp_path):
    """DVC reads these keys as metrics: no version key is added, nothing moves."""
    VariantMetrics.read(BASELINE / "metrics.json").write(tmp_path / "m.json")
    assert (tmp_path / "m.json").read_bytes() == (BASELINE / "metrics.json").read_bytes()
    PipelineMetrics.read(REPO / "metrics.json").write(tmp_path / "all.json")
    assert (tmp_path / "all.json").read_bytes() == (REPO / "metrics.json").read_bytes()


def test_typed_fields_read_back(tmp_path):
    path = Source(source="synthetic", sha256="ab" * 32, n_images=3, image_size=[8, 8]).write(
        tmp_path / "source.json"
    )
    assert json.loads(path.read_text()) == {
        "source": "synthetic",
        "sha256": "ab" * 32,
        "n_images": 3,
        "image_size": [8, 8],
        "version": 1,
    }
    got = Source.read(path)
    assert (got.source, got.n_images, got.labelled_path) == ("synthetic", 3, None)
    stats = SplitStats(
        mean=[0.1, 0.2, 0.3], std=[1, 1, 1], source={"source": "s"}, sizes={"train": 2}
    ).write(tmp_path / "stats.json")
    assert SplitStats.read(stats).sizes == {"train": 2}
    run = MlflowRun(run_id=None, run_name="v").write(tmp_path / "run.json")
    assert json.loads(run.read_text()) == {
        "run_id": None,
        "run_name": "v",
        "tracking_uri": None,
        "version": 1,
    }


def test_missing_key_names_file_key_and_stage(tmp_path):
    sel = json.loads((BASELINE / "selection.json").read_text())
    del sel["epoch"]
    (tmp_path / "selection.json").write_text(json.dumps(sel))
    with pytest.raises(
        HandoffError,
        match=r"selection.json: no key 'epoch' \(int\).*older "
        r"layout.*re-run `dvc repro select`",
    ):
        Selection.read(tmp_path / "selection.json")
    (tmp_path / "m.json").write_text(
        json.dumps({"val": {"accuracy": 0.5, "macro_f1": 0.4}, "epoch": 2})
    )
    with pytest.raises(HandoffError, match=r"m.json: no key 'train_min'.*dvc repro evaluate"):
        VariantMetrics.read(tmp_path / "m.json")


def test_wrong_type_names_the_key_and_what_it_got(tmp_path):
    (tmp_path / "selection.json").write_text(json.dumps({"epoch": "8", "run_id": None}))
    with pytest.raises(HandoffError, match=r"key 'epoch' must be int, got str '8'"):
        Selection.read(tmp_path / "selection.json")
    (tmp_path / "selection.json").write_text(json.dumps({"epoch": True}))
    with pytest.raises(HandoffError, match=r"key 'epoch' must be int, got bool"):
        Selection.read(tmp_path / "selection.json")
    (tmp_path / "stats.json").write_text(
        json.dumps({"mean": [0.1, 0.2], "std": [1, 1, 1], "source": {}, "sizes": {}})
    )
    with pytest.raises(HandoffError, match=r"stats.json: 'mean' must hold 3 channel values"):
        SplitStats.read(tmp_path / "stats.json")
    (tmp_path / "m.json").write_text(
        json.dumps({"val": {"accuracy": "high"}, "epoch": 1, "train_min": 1.0})
    )
    with pytest.raises(HandoffError, match=r"'val' must hold numbers 'accuracy' and"):
        VariantMetrics.read(tmp_path / "m.json")


def test_other_layout_versions_say_what_to_rerun(tmp_path):
    sel = json.loads((BASELINE / "selection.json").read_text())
    (tmp_path / "old.json").write_text(json.dumps(sel | {"version": 0}))
    with pytest.raises(
        HandoffError,
        match=r"old.json: a selection.json .* layout version 0, "
        r"from an older deepgal.*re-run `dvc repro select`",
    ):
        Selection.read(tmp_path / "old.json")
    (tmp_path / "new.json").write_text(json.dumps(sel | {"version": 2}))
    with pytest.raises(HandoffError, match=r"version 2, written by a newer deepgal"):
        Selection.read(tmp_path / "new.json")
    with pytest.raises(HandoffError, match=r"gone.json: missing.*`dvc repro train`"):
        MlflowRun.read(tmp_path / "gone.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(HandoffError, match=r"bad.json: not readable JSON"):
        CalibrationReport.read(tmp_path / "bad.json")


def test_history_reads_numbers_and_names_a_bad_cell(tmp_path):
    shutil.copy(BASELINE / "history.csv", tmp_path / "history.csv")
    hist = History.read(tmp_path / "history.csv")
    lines = (BASELINE / "history.csv").read_text().splitlines()
    assert len(hist.rows) == len(lines) - 1 == 12
    assert hist.rows[7]["val/accuracy"] == float(lines[8].split(",")[4])
    assert hist.seconds() == pytest.approx(sum(float(x.split(",")[-1]) for x in lines[1:]))
    hist.write(tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_text() == (BASELINE / "history.csv").read_text()
    (tmp_path / "h.csv").write_text("epoch,val/accuracy\n1,0.5\n2,oops\n")
    with pytest.raises(HandoffError, match=r"h.csv: line 3, column 'val/accuracy': 'oops'"):
        History.read(tmp_path / "h.csv")


def test_features_and_embeddings_round_trip(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], np.int64)
    rows = {"train": np.array([4, 0]), "val": np.array([2])}
    feats = {"train": np.ones((2, 3), np.float32), "val": np.zeros((1, 3), np.float32)}
    got = Features.read(Features.from_splits(feats, rows, labels).write(tmp_path / "f.h5"))
    np.testing.assert_array_equal(got.index, [4, 0, 2])
    np.testing.assert_array_equal(got.label, [5, 3, 4])
    assert got.split.tolist() == ["train", "train", "val"] and got.features.shape == (3, 3)
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f["features"], f["index"] = np.zeros((1, 2)), np.zeros(1)
    with pytest.raises(HandoffError, match=r"old.h5 lacks arrays \['label', 'split'\]"):
        Features.read(tmp_path / "old.h5")
    np.savez(tmp_path / "old.npz", features=np.zeros((1, 2)))
    with pytest.raises(HandoffError, match=r"old.npz is not a readable HDF5 file.*dvc repro"):
        Features.read(tmp_path / "old.npz")
    (tmp_path / "e.csv").write_text("index,label,split,method,x\n1,2,val,pca,0.5\n")
    with pytest.raises(HandoffError, match=r"e.csv lacks columns \['y'\]"):
        Embeddings.read(tmp_path / "e.csv")


def test_features_writer_takes_blocks_in_any_order_and_only_a_whole_file_lands(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(700, 5)).astype(np.float32)  # > one HDF5 chunk of rows
    index, label = np.arange(700) * 3, rng.integers(0, 10, 700)
    split = np.where(np.arange(700) < 500, "train", "val")
    path = tmp_path / "f.h5"
    order = rng.permutation(700)
    with FeaturesWriter(path, index, label, split, dim=5) as w:
        for block in np.array_split(order, 9):  # scattered rows, unsorted within a block
            w.put(block, x[block])
        assert not path.exists()  # nothing under the real name until the block ends
    got = Features.read(path)
    np.testing.assert_array_equal(got.features, x)
    np.testing.assert_array_equal(got.index, index)
    assert got.split.tolist() == split.tolist()
    before = path.read_bytes()
    # A failure half way, or rows never written: the old file stays, no temporary is left.
    with pytest.raises(RuntimeError, match="disk"):
        with FeaturesWriter(path, index, label, split, dim=5) as w:
            w.put(order[:100], x[order[:100]] + 1)
            raise RuntimeError("disk full")
    with pytest.raises(HandoffError, match=r"f.h5: 1 of 700 feature rows were never written"):
        with FeaturesWriter(path, index, label, split, dim=5) as w:
            w.put(order[1:], x[order[1:]] + 1)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["f.h5"]


def test_variant_paths_are_the_paths_dvc_yaml_names():
    """Every per-variant path in dvc.yaml's deps/outs/plots is a VariantPaths attribute and
    every attribute is such a path: the two cannot drift apart."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    named = set()
    for stage in stages.values():
        body = stage.get("do", stage)
        for entry in [*body.get("deps", []), *body.get("outs", []), *body.get("plots", [])]:
            path = entry if isinstance(entry, str) else next(iter(entry))
            if "${key}" in path:
                named.add(path.replace("${key}", "V"))
    assert named == {str(p) for p in VariantPaths("V").files().values()}


def test_split_rows_round_trip_and_reject_other_arrays(tmp_path):
    rows = np.array([9, 2, 5], np.int64)
    path = SplitRows(rows).write(tmp_path / "val.npy")
    np.testing.assert_array_equal(np.load(path), rows)  # a plain .npy numpy reads itself
    np.testing.assert_array_equal(SplitRows.read(path).rows, rows)
    for bad in (np.array([0.5, 1.5]), np.zeros((2, 2), np.int64)):
        np.save(tmp_path / "bad.npy", bad)
        want = f"bad.npy: must hold (n,) integer rows, got {bad.dtype} {bad.shape}"
        with pytest.raises(HandoffError, match=re.escape(want)):
            SplitRows.read(tmp_path / "bad.npy")
    with pytest.raises(HandoffError, match=r"test.npy: missing.*`dvc repro split`"):
        SplitRows.read(tmp_path / "test.npy")
