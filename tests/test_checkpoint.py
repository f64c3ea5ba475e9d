"""deepgal.checkpoint on real files: what is written, what load refuses (and how it names the
file), which checkpoint resume takes, and the folder housekeeping. Expected values are written
by hand or come from zipfile/hashlib/torch, never from the module itself."""

from __future__ import annotations

import hashlib
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from deepgal import checkpoint as ckpt_io
from tests.malicious import OpensMarker

FP = "0123456789abcdef"
MARK = 1.2345678  # a float32 whose 4 bytes are easy to find in the file


def write(path: Path, epoch: int, fingerprint: str = FP, **extra) -> Path:
    ckpt_io.save(
        path,
        {
            "model": {"w": torch.full((8,), MARK + epoch)},
            "epoch": epoch,
            "fingerprint": fingerprint,
            **extra,
        },
    )
    return path


def flip_weight_byte(path: Path, value: float) -> None:
    """Flip one bit inside the stored bytes of a weight equal to ``value`` (same file size)."""
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<f", value))
    assert at > 0, "the weight's bytes are not stored as is"
    data[at + 1] ^= 0x10
    path.write_bytes(bytes(data))


def test_round_trip_keeps_everything_and_adds_the_format_version(tmp_path):
    state = {
        "model": {"w": torch.arange(6.0).view(2, 3)},
        "epoch": 4,
        "history": [{"a": 1.5}],
        "preprocess": {"input_size": 32, "mean": [0.1, 0.2, 0.3]},
    }
    ckpt_io.save(tmp_path / "x.pt", state)
    got = ckpt_io.load(tmp_path / "x.pt")
    assert set(got) == {"format_version", "model", "epoch", "history", "preprocess"}
    assert got["format_version"] == 1
    torch.testing.assert_close(got["model"], state["model"], rtol=0, atol=0)
    assert (got["epoch"], got["history"], got["preprocess"]) == (
        4,
        [{"a": 1.5}],
        {"input_size": 32, "mean": [0.1, 0.2, 0.3]},
    )
    # An atomic write: nothing but the file itself is left in the folder.
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_save_refuses_when_crcs_are_switched_off(tmp_path):
    torch.serialization.set_crc32_options(False)
    try:
        with pytest.raises(
            RuntimeError,
            match=r"^torch\.serialization\.set_crc32_options\(False\) "
            r"is in effect; deepgal checkpoints need CRC-32s to detect damage$",
        ):
            write(tmp_path / "x.pt", 1)
    finally:
        torch.serialization.set_crc32_options(True)
    assert not (tmp_path / "x.pt").exists()


def test_a_flipped_weight_byte_is_a_crc_error_naming_file_and_record(tmp_path):
    path = write(tmp_path / "epoch_002.pt", 2)
    flip_weight_byte(path, MARK + 2)
    # The control: torch.load alone returns the changed weight without a word.
    loaded = torch.load(path, weights_only=True)["model"]["w"]
    assert not torch.equal(loaded, torch.full((8,), MARK + 2))
    with zipfile.ZipFile(path) as z:  # zipfile's own verdict names the damaged record
        record = z.testzip().split("/", 1)[1]
    assert record == "data/0"
    with pytest.raises(ckpt_io.CheckpointError) as e:
        ckpt_io.load(path)
    assert str(e.value).startswith(
        f"{path}: unreadable or unsafe checkpoint: damaged, record 'data/0' fails its CRC-32"
    )
    assert "dvc checkout" in str(e.value)


def test_missing_truncated_and_foreign_files_name_themselves(tmp_path):
    with pytest.raises(ckpt_io.CheckpointError, match=f"^{tmp_path / 'nope.pt'}: no such"):
        ckpt_io.load(tmp_path / "nope.pt")
    trunc = write(tmp_path / "trunc.pt", 1)
    trunc.write_bytes(trunc.read_bytes()[:200])
    with pytest.raises(ckpt_io.CheckpointError) as e:
        ckpt_io.load(trunc)
    assert str(e.value) == (
        f"{trunc}: unreadable or unsafe checkpoint: not a complete torch "
        "zip file (BadZipFile: File is not a zip file)"
    )
    npz = tmp_path / "feats.npz"
    np.savez(npz, a=np.zeros(2))
    with pytest.raises(ckpt_io.CheckpointError, match=f"^{npz}: a zip file but not a PyTorch"):
        ckpt_io.load(npz)
    other = tmp_path / "other.pt"
    torch.save({"epoch": 1, "weights": torch.zeros(2)}, other)  # a torch file, no "model"
    with pytest.raises(ckpt_io.CheckpointError, match=f"^{other}: not a deepgal checkpoint"):
        ckpt_io.load(other)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1), "model"], listed)  # "model" in it, but not a dict
    with pytest.raises(ckpt_io.CheckpointError, match=f"^{listed}: not a deepgal checkpoint"):
        ckpt_io.load(listed)


def test_a_code_carrying_pickle_is_refused_naming_the_object(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"model": OpensMarker(marker)}, path)  # CRCs are fine: a well-formed zip
    with pytest.raises(ckpt_io.CheckpointError) as e:
        ckpt_io.load(path)
    msg = str(e.value)
    # open pickles under its module's name (io.open): the object is named, not "objects".
    assert re.match(
        rf"{re.escape(str(path))}: unreadable or unsafe checkpoint: it holds the "
        r"Python object \w+\.open, which loading with weights_only=True refuses",
        msg,
    )
    assert msg.endswith(
        "since unpickling it could run code; deepgal checkpoints hold only "
        "tensors and plain data. Do not load it by other means unless you made "
        "it yourself"
    )
    assert "weights_only=False" not in msg  # torch's own advice is not passed on
    assert not marker.exists()


def test_damage_torch_itself_reports_is_a_checkpoint_error(tmp_path):
    """A zip whose CRCs match but whose pickle names a tensor record that is not there:
    torch.load fails (RuntimeError), load says which file."""
    good = write(tmp_path / "good.pt", 1)
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("/data/0"):
                dst.writestr(info.filename, src.read(info.filename))
    with pytest.raises(ckpt_io.CheckpointError) as e:
        ckpt_io.load(bad)
    with pytest.raises(Exception) as direct:  # torch's own error: the oracle for the text
        torch.load(bad, weights_only=True)
    first = str(direct.value).strip().splitlines()[0]
    assert str(e.value) == (
        f"{bad}: unreadable or unsafe checkpoint ({type(direct.value).__name__}: {first})"
    )


def test_save_for_inference_keeps_what_prediction_needs(tmp_path):
    full = {
        "model": {"w": torch.ones(3)},
        "model_name": "smallnet",
        "preprocess": {"input_size": 16},
        "class_names": ["a", "b"],
        "variant": "v",
        "epoch": 7,
        "metrics": {"val/accuracy": 0.5},
        "fingerprint": FP,
        "config": {"lr": 0.1},
        "mlflow_run_id": "r1",
        "optimizer": {"state": {0: torch.zeros(3)}},
        "scheduler": {"last_epoch": 3},
        "rng": {"ranks": [1]},
        "train_model": {"w": torch.zeros(3)},
        "history": [{}],
    }
    ckpt_io.save(tmp_path / "full.pt", full)
    slim = ckpt_io.save_for_inference(tmp_path / "full.pt", tmp_path / "slim.pt")
    want = {
        "model",
        "model_name",
        "preprocess",
        "class_names",
        "variant",
        "epoch",
        "metrics",
        "fingerprint",
        "config",
        "mlflow_run_id",
    }
    assert set(slim) == want
    got = ckpt_io.load(tmp_path / "slim.pt")
    assert set(got) == want | {"format_version"}
    assert (got["epoch"], got["class_names"], got["mlflow_run_id"]) == (7, ["a", "b"], "r1")
    assert (tmp_path / "slim.pt").stat().st_size < (tmp_path / "full.pt").stat().st_size
    # A checkpoint without the optional keys gives just what it has.
    ckpt_io.save(tmp_path / "bare.pt", {"model": {"w": torch.ones(1)}, "epoch": 1})
    assert set(ckpt_io.save_for_inference(tmp_path / "bare.pt", tmp_path / "b2.pt")) == {
        "model",
        "epoch",
    }


def test_list_epochs_is_numeric_and_ignores_other_files(tmp_path):
    assert ckpt_io.list_epochs(tmp_path / "missing") == []
    for e in (10, 2, 1000, 9):
        write(ckpt_io.epoch_path(tmp_path, e), e)
    for name in (
        "last.pt",
        "epoch_3.pt.bak",
        "epoch_x.pt",
        ".epoch_004.pt.ab12.tmp",
        "xepoch_005.pt",
        "epoch_006.pth",
    ):
        (tmp_path / name).write_bytes(b"")
    assert ckpt_io.epoch_path(tmp_path, 7) == tmp_path / "epoch_007.pt"
    assert ckpt_io.list_epochs(tmp_path) == [
        (2, tmp_path / "epoch_002.pt"),
        (9, tmp_path / "epoch_009.pt"),
        (10, tmp_path / "epoch_010.pt"),
        (1000, tmp_path / "epoch_1000.pt"),
    ]


def test_find_resumable_prefers_last_then_the_newest_good_epoch(tmp_path):
    assert ckpt_io.find_resumable(tmp_path / "missing", FP) is None
    for e in (8, 9, 10):  # 10 sorts before 9 as text: the order must be numeric
        write(ckpt_io.epoch_path(tmp_path, e), e)
    write(tmp_path / "last.pt", 11, step_in_epoch=3)  # mid-epoch: newer than any epoch file
    assert ckpt_io.find_resumable(tmp_path, FP)["epoch"] == 11
    flip_weight_byte(tmp_path / "last.pt", MARK + 11)
    assert ckpt_io.find_resumable(tmp_path, FP)["epoch"] == 10
    (tmp_path / "epoch_010.pt").write_bytes(b"garbage")
    assert ckpt_io.find_resumable(tmp_path, FP)["epoch"] == 9
    (tmp_path / "last.pt").unlink()
    assert ckpt_io.find_resumable(tmp_path, FP)["epoch"] == 9


def test_find_resumable_never_takes_another_config(tmp_path):
    write(ckpt_io.epoch_path(tmp_path, 1), 1)
    write(tmp_path / "last.pt", 2, fingerprint="f" * 16)
    assert ckpt_io.find_resumable(tmp_path, FP) is None  # not the older file of this config
    assert ckpt_io.find_resumable(tmp_path, "f" * 16)["epoch"] == 2


def test_fingerprint_is_a_stable_hash_of_the_config():
    cfg = {"lr": 0.1, "data": {"sha256": "ab", "path": Path("/x/y.h5")}, "epochs": 3}
    # The hash of the canonical JSON, written out by hand: key order and Path -> str.
    text = '{"data": {"path": "/x/y.h5", "sha256": "ab"}, "epochs": 3, "lr": 0.1}'
    assert ckpt_io.fingerprint(cfg) == hashlib.sha256(text.encode()).hexdigest()[:16]
    reordered = {"epochs": 3, "data": {"path": Path("/x/y.h5"), "sha256": "ab"}, "lr": 0.1}
    assert ckpt_io.fingerprint(reordered) == ckpt_io.fingerprint(cfg)
    assert ckpt_io.fingerprint({**cfg, "lr": 0.2}) != ckpt_io.fingerprint(cfg)


def test_housekeeping_removes_only_its_own_files(tmp_path):
    ckpt_io.remove_partial_writes(tmp_path / "missing")  # no folder: nothing to do
    ckpt_io.clear(tmp_path / "missing")
    write(tmp_path / "last.pt", 1)
    write(tmp_path / "epoch_001.pt", 1)
    for name in (".last.pt.k2j3.tmp", ".epoch_002.pt.zz.tmp", "run.json", "notes.tmp"):
        (tmp_path / name).write_text("x")
    ckpt_io.remove_partial_writes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch_001.pt",
        "last.pt",
        "notes.tmp",
        "run.json",
    ]
    ckpt_io.clear(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "run.json"]
