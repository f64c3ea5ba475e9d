"""The mirror of an unfinished run's checkpoints (deepgal.training.unfinished), on real
checkpoint files. The whole story, Ctrl-C under a real `dvc exp run` and the re-run resuming,
is tests/faults/test_sigint.py."""

from __future__ import annotations

import os

import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal.training import unfinished


def _save(folder, name, fp, value):
    folder.mkdir(parents=True, exist_ok=True)
    ckpt_io.save(folder / name, {"model": {"w": torch.full((2,), float(value))}, "fingerprint": fp})


def _w(path):
    return ckpt_io.load(path)["model"]["w"][0].item()


@pytest.fixture
def run_a(tmp_path):
    """A run of config "a" interrupted after epoch 2: epoch_002.pt, last.pt, run.json."""
    ckpt = tmp_path / "models" / "v" / "checkpoints"
    _save(ckpt, "epoch_002.pt", "a", 2)
    _save(ckpt, "last.pt", "a", 3)
    (ckpt / "run.json").write_text('{"run_id": "r-a"}')
    unfinished.mirror(ckpt)
    return ckpt


def test_mirror_links_not_copies(run_a):
    stash = unfinished.stash_dir(run_a)
    assert stash == run_a.parent / ".checkpoints.unfinished"
    assert sorted(p.name for p in stash.iterdir()) == ["epoch_002.pt", "last.pt", "run.json"]
    for p in stash.iterdir():
        assert os.path.samefile(p, run_a / p.name)


def test_mirror_follows_the_folder(run_a):
    _save(run_a, "last.pt", "a", 4)  # replaced by rename: a new file
    (run_a / "epoch_002.pt").unlink()
    unfinished.mirror(run_a)
    stash = unfinished.stash_dir(run_a)
    assert sorted(p.name for p in stash.iterdir()) == ["last.pt", "run.json"]
    assert _w(stash / "last.pt") == 4


def test_restore_after_the_folder_was_checked_out(run_a):
    # What `dvc exp run` does first: the committed run (config "b") replaces the folder.
    for p in list(run_a.iterdir()):
        p.unlink()
    _save(run_a, "epoch_004.pt", "b", 40)
    _save(run_a, "last.pt", "b", 41)
    assert unfinished.restore(run_a, "a")
    assert sorted(p.name for p in run_a.iterdir()) == ["epoch_002.pt", "last.pt", "run.json"]
    assert (_w(run_a / "epoch_002.pt"), _w(run_a / "last.pt")) == (2, 3)
    assert (run_a / "run.json").read_text() == '{"run_id": "r-a"}'
    assert ckpt_io.find_resumable(run_a, "a")["fingerprint"] == "a"


def test_restore_leaves_the_folder_alone_otherwise(run_a):
    _save(run_a, "last.pt", "a", 5)  # the folder has this config's state (a `dvc repro`)
    assert not unfinished.restore(run_a, "a")
    assert _w(run_a / "last.pt") == 5
    assert not unfinished.restore(run_a, "c")  # the mirror is another config's
    assert _w(run_a / "last.pt") == 5


def test_restore_into_a_missing_folder_and_discard(run_a):
    for p in list(run_a.iterdir()):
        p.unlink()
    run_a.rmdir()
    assert unfinished.restore(run_a, "a")
    assert _w(run_a / "last.pt") == 3
    unfinished.discard(run_a)
    assert not unfinished.stash_dir(run_a).exists()
    assert not unfinished.restore(run_a, "a")  # nothing kept: nothing to do
