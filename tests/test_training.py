"""The training loop: determinism, resume (boundary and mid-epoch), config changes, NaN guard."""

from __future__ import annotations

import signal

import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal import config
from deepgal.models import build_model
from deepgal.training import TrainingDiverged, TrainingInterrupted, fit
from deepgal.utils import seed_everything
from tests.helpers import DEVICE, data, spec, train
from tests.pipeline_repo import tiny_params


def untimed(history: list[dict]) -> list[dict]:
    """The history without its timing columns (seconds, images_per_s), which legitimately vary."""
    return [{k: v for k, v in m.items() if k not in ("seconds", "images_per_s")} for m in history]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Same keys, shapes, dtypes and bits (a zip over values would hide a missing key)."""
    torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=0)


def test_two_runs_identical(tmp_path):
    h1, m1 = train(tmp_path / "a")
    h2, m2 = train(tmp_path / "b")
    assert untimed(h1) == untimed(h2)
    assert_same_weights(m1, m2)
    assert [e for e, _ in ckpt_io.list_epochs(tmp_path / "a")] == [1, 2, 3]


class Crash(Exception):
    pass


class CrashAfter:
    """A sink that dies after epoch ``n`` has been checkpointed, like a SIGKILL would."""

    def __init__(self, n):
        self.n = n

    def log_epoch(self, m):
        if m["epoch"] == self.n:
            raise Crash


def test_resume_after_crash_matches_uninterrupted(tmp_path):
    ref, ref_model = train(tmp_path / "ref")
    with pytest.raises(Crash):
        train(tmp_path / "run", sinks=[CrashAfter(2)])
    assert ckpt_io.load(tmp_path / "run" / "last.pt")["epoch"] == 2
    stale = tmp_path / "run" / ".last.pt.abc123.tmp"  # a save cut short by the crash
    stale.write_bytes(b"half a checkpoint")
    resumed, model = train(tmp_path / "run")
    assert not stale.exists()
    assert untimed(resumed) == untimed(ref)
    assert_same_weights(model, ref_model)


def test_sigint_mid_epoch_saves_and_resumes_exactly(tmp_path, monkeypatch):
    ref, ref_model = train(tmp_path / "ref", epochs=4)
    # Ctrl-C arrives, synchronously (no timer), at the start of epoch 2's step 3:
    # 48 images / batch 8 = 6 steps an epoch, so it is mid-epoch.
    monkeypatch.setenv("DEEPGAL_FAULT", "signal=SIGINT,epoch=2,step=3")
    with pytest.raises(TrainingInterrupted, match="epoch 2 step 3/6; checkpoint saved"):
        train(tmp_path / "run", epochs=4)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    monkeypatch.delenv("DEEPGAL_FAULT")
    state = ckpt_io.load(tmp_path / "run" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 3)
    resumed, model = train(tmp_path / "run", epochs=4)
    # Bit for bit, train/loss included: the resumed epoch's sums go on from the saved ones.
    assert untimed(resumed) == untimed(ref)
    assert_same_weights(model, ref_model)


def test_changed_config_starts_over(tmp_path):
    with pytest.raises(Crash):
        train(tmp_path, sinks=[CrashAfter(2)], fingerprint="old")
    seen = []

    class Record:
        def log_epoch(self, m):
            seen.append(m["epoch"])

    train(tmp_path, sinks=[Record()], fingerprint="new")
    assert seen == [1, 2, 3]  # not resumed from the other config's epoch 2
    assert all(ckpt_io.load(p)["fingerprint"] == "new" for _, p in ckpt_io.list_epochs(tmp_path))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    holder = {}

    class Poison:
        def log_epoch(self, m):
            if m["epoch"] == 1:
                with torch.no_grad():
                    next(holder["model"].parameters()).fill_(float("nan"))

    seed_everything(7, deterministic=True)
    model = holder["model"] = build_model("smallnet", 10, 16)
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2") as e:
        fit(model, data(), data(20, 1), spec(tmp_path), DEVICE, [Poison()])
    assert "Lower train.lr" in str(e.value)
    good = ckpt_io.load(tmp_path / "epoch_001.pt")
    assert all(torch.isfinite(t).all() for t in good["model"].values() if t.is_floating_point())
    assert ckpt_io.load(tmp_path / "last.pt")["epoch"] == 1


def test_deterministic_seeding_turns_kernels_on_without_importing_inductor():
    """seed_everything's determinism is torch's flag, without torch._inductor's ~1.8 s import
    (every train process paid it); compiling sets Inductor's own flag (recipe.maybe_compile)."""
    import subprocess
    import sys

    code = (
        "import sys, torch; from deepgal.utils import seed_everything; "
        "seed_everything(1, deterministic=True); "
        "print(torch.are_deterministic_algorithms_enabled(), 'torch._inductor' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


def test_epoch_images_trains_on_a_subset_per_epoch(tmp_path, monkeypatch):
    # 48 train images, batch 8: 6 steps an epoch on the whole split, 2 on a 16-image subset.
    from deepgal.training import loop

    subsets, real_shard = [], loop.shard

    def recording_shard(perm, dist, steps):  # the images each epoch draws from
        subsets.append(frozenset(perm.tolist()))
        return real_shard(perm, dist, steps)

    monkeypatch.setattr(loop, "shard", recording_shard)
    train(tmp_path / "sub", epoch_images=16)
    monkeypatch.undo()
    sched = ckpt_io.load(tmp_path / "sub" / "last.pt")["scheduler"]
    assert sched["last_epoch"] == 3 * 2
    assert [len(s) for s in subsets] == [16] * 3 and len(set(subsets)) == 3  # a fresh subset
    whole, m_whole = train(tmp_path / "whole")
    assert ckpt_io.load(tmp_path / "whole" / "last.pt")["scheduler"]["last_epoch"] == 3 * 6
    # A cap at or above the split's size is the whole split: the same run, bit for bit.
    capped, m_capped = train(tmp_path / "capped", epoch_images=1000)
    assert untimed(capped) == untimed(whole)
    assert_same_weights(m_whole, m_capped)


def test_epoch_images_is_validated():
    params = tiny_params()
    params["variants"]["smallnet"]["epoch_images"] = 0
    with pytest.raises(config.ConfigError, match="variants.smallnet.epoch_images"):
        config.resolve_variant(params, "smallnet")


def test_checkpoint_record_keeps_the_file_layout(tmp_path):
    """A checkpoint written through CheckpointRecord has the keys deepgal.checkpoint's readers
    expect, in this order (hand-written list), and reads back into an equal record."""
    from deepgal.training import CheckpointRecord

    train(tmp_path, ema=0.9)
    ckpt = ckpt_io.load(tmp_path / "last.pt")
    assert list(ckpt) == [
        "format_version",
        "model",
        "optimizer",
        "scheduler",
        "epoch",
        "step_in_epoch",
        "accum",
        "rng",
        "history",
        "metrics",
        "fingerprint",
        "preprocess",
        "variant",
        "model_name",
        "train_model",
        "ema_n_averaged",
    ]
    record = CheckpointRecord.from_dict(ckpt)
    assert record.meta == {"variant": "smallnet", "model_name": "smallnet"}
    assert record.epoch == 3 and record.step_in_epoch == 0 and record.ema_n_averaged > 0
    back = record.to_dict()
    assert list(back) == list(ckpt)[1:] and back["metrics"] == ckpt["history"][-1]
