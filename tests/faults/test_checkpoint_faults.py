"""Truncated, garbage and foreign checkpoint files.

Fast cases call the library on small real checkpoint files; the slow case damages the newest
checkpoints of a real pipeline run and runs `dvc repro` / the select stage / the CLI on them.
"""

from __future__ import annotations

import json
import logging
import random
import shlex
import struct
import subprocess
import sys
import zipfile

import pytest
import torch
import yaml

from deepgal import checkpoint as ckpt_io
from deepgal.selection import choose
from tests.pipeline_repo import dvc, env_for, make_repo

from .conftest import exact_history, exact_metrics, no_traceback, sqlite_runs, sqlite_steps

FP = "f" * 16


def write_ckpt(path, epoch: int, fingerprint: str = FP) -> None:
    ckpt_io.save(
        path,
        {
            "model": {"w": torch.full((4, 4), float(epoch))},
            "epoch": epoch,
            "step_in_epoch": 0,
            "fingerprint": fingerprint,
        },
    )


def garbage(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def truncate(path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def flip_byte(path, record: str = "data/0", at: int = 5) -> None:
    """Change one byte inside a zip record's data, keeping the size: silent bit rot."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(record))
    # local header: 30 bytes + name + extra, then the (stored, uncompressed) data
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
    offset = info.header_offset + 30 + name_len + extra_len + at
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = {
    "empty": lambda p: p.write_bytes(b""),
    "truncated_1pct": lambda p: truncate(p, 0.01),
    "truncated_half": lambda p: truncate(p, 0.5),
    "truncated_last_byte": lambda p: truncate(p, (p.stat().st_size - 1) / p.stat().st_size),
    "random_bytes": lambda p: p.write_bytes(garbage(4096)),
    "text": lambda p: p.write_text("not a checkpoint\n"),
    "zip_of_other_things": lambda p: torch.save([1, 2, 3], p),
    "dict_without_model": lambda p: torch.save({"epoch": 3, "weights": torch.zeros(2)}, p),
    "zeroed_tail": lambda p: p.write_bytes(p.read_bytes()[:-512] + bytes(512)),
    "bit_flip_in_weights": lambda p: flip_byte(p, "data/0"),
    "bit_flip_in_pickle": lambda p: flip_byte(p, "data.pkl", at=40),
}


def test_bit_flip_would_load_silently_without_the_crc_check(tmp_path):
    """The control: torch.load itself takes a flipped weight byte as a different weight."""
    path = tmp_path / "epoch_001.pt"
    write_ckpt(path, 1)
    flip_byte(path, "data/0")
    weights = torch.load(path, weights_only=True)["model"]["w"]
    assert not torch.equal(weights, torch.full((4, 4), 1.0))
    with pytest.raises(
        ckpt_io.CheckpointError,
        match=r"record 'data/0' fails its CRC-32 "
        r".*changed after",
    ):
        ckpt_io.load(path)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_checkpoint_is_refused_naming_the_file(tmp_path, damage):
    path = tmp_path / "epoch_003.pt"
    write_ckpt(path, 3)
    DAMAGE[damage](path)
    with pytest.raises(ckpt_io.CheckpointError) as e:
        ckpt_io.load(path)
    assert str(e.value).startswith(f"{path}: ")


def test_a_numpy_npz_is_named_as_not_a_checkpoint(tmp_path):
    """An .npz is a whole zip with good CRCs: refused for what it is, not with torch's
    internal archive error."""
    import numpy as np

    path = tmp_path / "features.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ckpt_io.CheckpointError, match="not a PyTorch checkpoint") as e:
        ckpt_io.load(path)
    assert str(e.value).startswith(f"{path}: ") and "enforce fail" not in str(e.value)


N_FUZZ = 300


def test_fuzzed_garbage_is_always_a_checkpoint_error(tmp_path):
    """Seeded garbage of every kind: never a crash of another type, always the file named.

    Bytes that are not a zip reach torch's legacy unpickler, which fails on random input with
    IndexError or KeyError as well as UnpicklingError.
    """
    rng = random.Random(2024)
    write_ckpt(tmp_path / "good.pt", 1)
    good = (tmp_path / "good.pt").read_bytes()
    blobs = []
    for _i in range(N_FUZZ // 3):
        blobs.append(rng.randbytes(rng.randint(1, 3000)))  # anything
        blobs.append(b"\x80\x02" + rng.randbytes(rng.randint(1, 300)))  # a pickle header
        blobs.append(good[: rng.randrange(len(good))])  # truncated anywhere
    path = tmp_path / "fuzz.pt"
    for blob in blobs:
        path.write_bytes(blob)
        with pytest.raises(ckpt_io.CheckpointError, match=f"^{path}: "):
            ckpt_io.load(path)
    assert len(blobs) == N_FUZZ


def test_resume_falls_back_past_damaged_files_to_the_newest_good_one(tmp_path, caplog):
    for e in (1, 2, 3):
        write_ckpt(ckpt_io.epoch_path(tmp_path, e), e)
    write_ckpt(tmp_path / "last.pt", 3)
    truncate(tmp_path / "last.pt", 0.5)
    flip_byte(ckpt_io.epoch_path(tmp_path, 3))  # same size, one bit changed
    with caplog.at_level(logging.WARNING, logger="deepgal.checkpoint"):
        state = ckpt_io.find_resumable(tmp_path, FP)
    assert state["epoch"] == 2
    warned = caplog.text
    assert f"{tmp_path / 'last.pt'}: unreadable" in warned
    assert f"{ckpt_io.epoch_path(tmp_path, 3)}: unreadable" in warned


def test_resume_never_takes_another_configs_checkpoint(tmp_path):
    write_ckpt(tmp_path / "last.pt", 5, fingerprint="0" * 16)
    write_ckpt(ckpt_io.epoch_path(tmp_path, 4), 4)
    assert ckpt_io.find_resumable(tmp_path, FP) is None


def test_resume_with_every_file_damaged_starts_over(tmp_path):
    for name in ("last.pt", "epoch_001.pt", "epoch_002.pt"):
        (tmp_path / name).write_bytes(garbage(100, seed=len(name)))
    assert ckpt_io.find_resumable(tmp_path, FP) is None


# A hand-written history (max_gap 0.15, max_val_loss_rise 0.10): epoch 3 fails the gap (0.20),
# the other three pass; the best passing is epoch 2 (val 0.52), then epoch 1 (0.51), then
# epoch 4 (0.50). The newest epoch is not the best, nor the next best.
HISTORY = [
    {"epoch": 1, "train/accuracy": 0.53, "val/accuracy": 0.51, "val/loss": 1.50},
    {"epoch": 2, "train/accuracy": 0.60, "val/accuracy": 0.52, "val/loss": 1.30},
    {"epoch": 3, "train/accuracy": 0.80, "val/accuracy": 0.60, "val/loss": 1.25},
    {"epoch": 4, "train/accuracy": 0.62, "val/accuracy": 0.50, "val/loss": 1.28},
]


def test_select_skips_a_damaged_best_checkpoint(tmp_path):
    for e in (1, 2, 3, 4):
        write_ckpt(ckpt_io.epoch_path(tmp_path, e), e)
    assert choose(tmp_path, HISTORY, max_gap=0.15, max_val_loss_rise=0.1)["epoch"] == 2
    truncate(ckpt_io.epoch_path(tmp_path, 2), 0.3)
    sel = choose(tmp_path, HISTORY, max_gap=0.15, max_val_loss_rise=0.1)
    assert sel["epoch"] == 1
    assert sel["skipped"] == [str(ckpt_io.epoch_path(tmp_path, 2))]
    assert str(ckpt_io.epoch_path(tmp_path, 2)) in sel["reason"]


def test_select_with_every_checkpoint_damaged_names_them(tmp_path):
    for e in (1, 2):
        ckpt_io.epoch_path(tmp_path, e).write_bytes(garbage(64, seed=e))
    with pytest.raises(ckpt_io.CheckpointError) as e:
        choose(tmp_path, HISTORY[:2], max_gap=0.15, max_val_loss_rise=0.1)
    for n in (1, 2):
        assert str(ckpt_io.epoch_path(tmp_path, n)) in str(e.value)
    assert "re-run the train stage" in str(e.value)


# ---- through the pipeline -----------------------------------------------------------------

EPOCHS = 4
PARAMS = {
    "data": {"synthetic": {"image_size": 32, "per_class": 12}},
    "train": {
        "epochs": EPOCHS,
        "batch_size": 16,
        "checkpoint_every": 1,
        "warmup_epochs": 0,
        "lr": 0.02,
    },
    "variants": {"smallnet": {"input_size": 16, "crop": 0.5}},
}


def _stage_cmd(repo, stage: str, variant: str = "smallnet") -> str:
    """The command dvc.yaml gives ``stage@variant`` (a foreach stage), as DVC would run it."""
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    return " ".join(dvc_yaml["stages"][stage]["do"]["cmd"].split()).replace("${key}", variant)


def _run(cmd: str, repo) -> subprocess.CompletedProcess:
    return subprocess.run(
        shlex.split(cmd.replace("python", sys.executable, 1)),
        cwd=repo,
        env=env_for(repo),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _write_history(path, rows: list[dict]) -> None:
    keys = list(rows[0])
    path.write_text(
        ",".join(keys) + "\n" + "".join(",".join(str(r[k]) for k in keys) + "\n" for r in rows)
    )


@pytest.mark.slow
def test_damaged_checkpoints_in_a_real_pipeline(tmp_path):
    repo = make_repo(tmp_path / "repo", PARAMS)
    dvc(["repro", "select@smallnet"], repo)
    results, ckpts = repo / "results/smallnet", repo / "models/smallnet/checkpoints"
    want_history, want_metrics = exact_history(results), exact_metrics(results)
    rel = ckpts.relative_to(repo)

    # 1. Newest files damaged: the re-run resumes from the newest good one and redoes the rest.
    truncate(ckpts / "last.pt", 0.5)
    DAMAGE["random_bytes"](ckpts / f"epoch_{EPOCHS:03d}.pt")
    out = dvc(["repro", "train@smallnet"], repo)
    log = out.stdout + out.stderr
    assert f"skipping {rel}/last.pt: unreadable" in log, log[-3000:]
    assert f"skipping {rel}/epoch_{EPOCHS:03d}.pt: unreadable" in log, log[-3000:]
    assert f"at epoch {EPOCHS} step 0" in log and f"epoch {EPOCHS}/{EPOCHS}" in log
    assert f"epoch {EPOCHS - 1}/{EPOCHS}" not in log  # only the lost epoch was trained again
    assert exact_history(results) == want_history
    assert exact_metrics(results) == want_metrics
    for name in ("last.pt", f"epoch_{EPOCHS:03d}.pt"):
        assert ckpt_io.load(ckpts / name)["epoch"] == EPOCHS  # rewritten whole
    runs = [r for r in sqlite_runs(repo / "mlflow.db") if r["name"] == "smallnet"]
    assert len(runs) == 1
    assert sqlite_steps(repo / "mlflow.db", runs[0]["run_id"]) == list(range(1, EPOCHS + 1))

    # 2. The selected checkpoint is damaged: select names it and takes the next best. The
    # stage reads a hand-written history (HISTORY: best epoch 2, next best 1), so the expected
    # epochs are written here, not derived from the stage's own candidate table.
    dvc(["repro", "select@smallnet"], repo)
    history, trained = results / "history.csv", (results / "history.csv").read_bytes()
    _write_history(history, HISTORY)
    proc = _run(_stage_cmd(repo, "select"), repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = json.loads((results / "selection.json").read_text())
    assert first["epoch"] == 2
    bad = ckpts / "epoch_002.pt"
    good_bytes = bad.read_bytes()
    truncate(bad, 0.6)
    proc = _run(_stage_cmd(repo, "select"), repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sel = json.loads((results / "selection.json").read_text())
    assert sel["epoch"] == 1
    assert sel["skipped"] == [str(bad.relative_to(repo))]
    assert f"{bad.relative_to(repo)}: unreadable" in proc.stderr
    # Back to the trained outputs, so DVC sees the pipeline's own files again.
    history.write_bytes(trained)
    bad.write_bytes(good_bytes)
    dvc(["repro", "select@smallnet"], repo)

    # 2b. The selected (calibrated) checkpoint that select wrote rots after selection (one
    # bit, same size). evaluate refuses it by name; `dvc repro` sees select's output changed
    # and restores it (re-run or from DVC's cache): the same choice, evaluated.
    dvc(["repro", "evaluate@smallnet"], repo)
    chosen = json.loads((results / "selection.json").read_text())
    rotten = repo / "models/smallnet/selected.pt"
    flip_byte(rotten)
    proc = _run(_stage_cmd(repo, "evaluate"), repo)
    assert proc.returncode == 1 and no_traceback(proc.stderr), proc.stderr[-3000:]
    [error] = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert str(rotten.relative_to(repo)) in error and "CRC-32" in error, error
    dvc(["repro", "evaluate@smallnet"], repo)
    sel = json.loads((results / "selection.json").read_text())
    assert sel["epoch"] == chosen["epoch"]
    evaluated = json.loads((repo / "reports/smallnet/eval.json").read_text())  # details
    assert evaluated["epoch"] == sel["epoch"]

    # 3. Garbage everywhere: one clear error naming the files, for select and for the CLI.
    for _, path in ckpt_io.list_epochs(ckpts):
        path.write_bytes(garbage(2048, seed=len(path.name)))
    proc = _run(_stage_cmd(repo, "select"), repo)
    assert proc.returncode == 1 and no_traceback(proc.stderr), proc.stderr[-3000:]
    [error] = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    for _, path in ckpt_io.list_epochs(ckpts):
        assert str(path.relative_to(repo)) in error
    junk = ckpts / "epoch_001.pt"
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepgal.cli",
            "evaluate",
            "--checkpoint",
            str(junk),
            "--data",
            "data/galaxy10.h5",
        ],
        cwd=repo,
        env=env_for(repo),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 1 and no_traceback(cli.stderr), cli.stderr[-3000:]
    errors = [ln for ln in cli.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {junk}: unreadable"), cli.stderr
