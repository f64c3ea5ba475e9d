"""What the training loop counts, recomputed by hand.

The model is a lookup table: each image carries its id in its first pixel and the logits are
that id's row of a fixed table (its one weight enters multiplied by 0, so training never
changes what it outputs). It records the ids it sees in training mode. Every per-epoch number
``fit`` reports (train loss with label smoothing, train accuracy, val loss/accuracy, lr) is
then a NumPy computation over exactly the images the model saw, written here independently.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from deepgal import checkpoint as ckpt_io
from deepgal import config
from deepgal.training import RunSpec, Split, TrainingInterrupted, fit
from deepgal.training.loop import evaluate
from deepgal.transforms import Augment, Preprocess
from tests.pipeline_repo import tiny_params

CPU = torch.device("cpu")
C, SIDE = 4, 8
N_TRAIN, N_VAL, VAL_ID0 = 50, 20, 100  # train ids 0..49, val ids 100..119
PRE = Preprocess(input_size=SIDE)  # mean 0.5, std 0.25 per channel
EPOCHS, BATCH, LR, SMOOTH = 3, 8, 0.05, 0.1
KEYS = {
    "epoch",
    "train/loss",
    "train/accuracy",
    "val/loss",
    "val/accuracy",
    "lr",
    "images_per_s",
    "seconds",
}


class Lookup(nn.Module):
    """logits (B, C) = TABLE[id]; id = the first pixel's red value of the uint8 image."""

    def __init__(self, table: torch.Tensor, draws: bool = False):
        super().__init__()
        self.table, self.draws = table, draws  # draws: take torch's global numbers, as dropout
        self.head = nn.Linear(C, C)  # what fit's optimiser trains: its gradient is 0
        self.feature_dim = C
        self.seen: list[int] = []  # ids of training-mode forward passes, in order

    def forward(self, x):  # x (B, 3, S, S) normalised with PRE
        ids = torch.round((x[:, 0, 0, 0] * 0.25 + 0.5) * 255).long()
        if self.training:
            self.seen += ids.tolist()
            if self.draws:
                torch.rand(5)
        return self.table[ids] + 0.0 * self.head.weight.sum()


def table_and_labels(seed=0):
    rng = np.random.default_rng(seed)
    table = rng.normal(0, 2, (VAL_ID0 + N_VAL, C)).astype(np.float32)
    labels = rng.integers(0, C, VAL_ID0 + N_VAL)
    return table, labels


def split(ids: np.ndarray, labels: np.ndarray) -> Split:
    # Background 110: a val id, so a train image seen mirrored decodes to an id not in 0..49.
    images = np.full((len(ids), SIDE, SIDE, 3), 110, np.uint8)
    images[:, 0, 0, 0] = ids  # the id in one corner pixel
    return Split(torch.from_numpy(images), torch.from_numpy(labels[ids]).long())


def hand_loss(table, labels, ids, smoothing=0.0) -> float:
    """Mean cross-entropy of rows ``ids``, with label smoothing as torch defines it."""
    z = table[ids].astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    nll = -logp[np.arange(len(ids)), labels[ids]]
    return float(np.mean((1 - smoothing) * nll + smoothing * -logp.mean(1)))


def hand_accuracy(table, labels, ids) -> float:
    return int((table[ids].argmax(1) == labels[ids]).sum()) / len(ids)


def spec_for(tmp_path, **overrides) -> RunSpec:
    run = config.resolve_variant(tiny_params(), "smallnet")
    off = Augment(rotate=False, flip=False, jitter=0.0, scale=0.0, translate=0.0)
    run = dataclasses.replace(
        run,
        **{
            "epochs": EPOCHS,
            "batch_size": BATCH,
            "lr": LR,
            "label_smoothing": SMOOTH,
            "warmup_epochs": 0,
            "schedule": "cosine",
            "checkpoint_every": 2,
            "seed": 3,
            "input_size": SIDE,
            "crop": 1.0,
            "precision": "fp32",
            "augment": off,
            "ema": 0.0,
            "mixup": 0.0,
            "cutmix": 0.0,
            "compile": False,
            **overrides,
        },
    )
    return RunSpec(run, PRE, tmp_path, "fp-a", {"variant": "lookup", "model_name": "lookup"})


class Marks:
    """A sink: how many ids the model had seen when each epoch was logged."""

    def __init__(self, model):
        self.model, self.ends, self.epochs = model, [], []

    def log_epoch(self, m):
        self.epochs.append(m["epoch"])
        self.ends.append(len(self.model.seen) if self.model is not None else None)


def run(tmp_path, epoch_images=None, resume=None, sinks=(), draws=False, **over):
    """fit on the lookup model; ``resume`` None leaves fit's default (what the train stage
    uses)."""
    table, labels = table_and_labels()
    model = Lookup(torch.from_numpy(table), draws)
    marks = Marks(model)
    spec = spec_for(tmp_path, epoch_images=epoch_images, **over)
    hist = fit(
        model,
        split(np.arange(N_TRAIN), labels),
        split(np.arange(VAL_ID0, VAL_ID0 + N_VAL), labels),
        spec,
        CPU,
        [marks, *sinks],
        **({} if resume is None else {"resume": resume}),
    )
    per_epoch = np.split(np.array(model.seen), marks.ends[:-1])
    return hist, per_epoch, table, labels


def test_each_epochs_numbers_are_those_of_the_images_it_trained_on(tmp_path):
    hist, per_epoch, table, labels = run(tmp_path)
    assert [m["epoch"] for m in hist] == [1, 2, 3] and all(set(m) == KEYS for m in hist)
    val_ids = np.arange(VAL_ID0, VAL_ID0 + N_VAL)
    for m, ids in zip(hist, per_epoch, strict=True):
        # 50 images, batch 8: 50 // 8 = 6 steps of 9, 9, 8, 8, 8, 8 images, each image once;
        # the batches differ in size, so the epoch's mean weighs each batch by its images.
        assert sorted(ids.tolist()) == list(range(N_TRAIN))
        assert m["train/loss"] == pytest.approx(hand_loss(table, labels, ids, SMOOTH), rel=1e-6)
        assert m["train/accuracy"] == hand_accuracy(table, labels, ids)
        assert m["val/loss"] == pytest.approx(hand_loss(table, labels, val_ids), rel=1e-6)
        assert m["val/accuracy"] == hand_accuracy(table, labels, val_ids)
        # cosine from LR to 0 over all steps, no warm-up: end of epoch e is LR/2 (1 + cos(pi e/3))
        assert m["lr"] == pytest.approx(
            LR * 0.5 * (1 + math.cos(math.pi * m["epoch"] / 3)), abs=1e-12
        )
        assert m["seconds"] > 0 and m["images_per_s"] == pytest.approx(50 / m["seconds"])
    assert len({tuple(ids.tolist()) for ids in per_epoch}) == 3  # a new shuffle every epoch
    # Checkpoints: every 2nd epoch and the last; each says its epoch and carries the history.
    assert [e for e, _ in ckpt_io.list_epochs(tmp_path)] == [2, 3]
    last = ckpt_io.load(tmp_path / "last.pt")
    assert (last["epoch"], last["step_in_epoch"], last["metrics"]) == (3, 0, hist[-1])
    assert last["history"] == hist and last["preprocess"] == PRE.to_dict()
    assert "train_model" not in last and "ema_n_averaged" not in last  # no EMA: one copy
    assert (last["variant"], last["fingerprint"]) == ("lookup", "fp-a")
    assert ckpt_io.load(ckpt_io.epoch_path(tmp_path, 2))["history"] == hist[:2]


def test_epoch_images_trains_each_epoch_on_that_many_fresh_images(tmp_path):
    hist, per_epoch, table, labels = run(tmp_path, epoch_images=17)
    for m, ids in zip(hist, per_epoch, strict=True):
        # 17 images an epoch, batch 8: 2 steps (9 + 8 images), 17 distinct of the 50
        assert len(ids) == 17 and len(set(ids.tolist())) == 17
        assert m["train/loss"] == pytest.approx(hand_loss(table, labels, ids, SMOOTH), rel=1e-6)
        assert m["train/accuracy"] == hand_accuracy(table, labels, ids)
    assert len({frozenset(ids.tolist()) for ids in per_epoch}) == 3
    # The schedule runs over 3 x 2 steps, so it still ends at 0 after epoch 3.
    assert [m["lr"] for m in hist] == pytest.approx([LR * 0.75, LR * 0.25, 0.0], abs=1e-12)
    assert ckpt_io.load(tmp_path / "last.pt")["scheduler"]["last_epoch"] == 6


def test_warmup_and_step_schedule_per_step(tmp_path):
    """warm-up over epoch 1 (6 steps), then step decay over the 12 steps left: lr after epoch
    e is LR x 0.1^(t >= 0.5) x 0.1^(t >= 0.75), t = steps past warm-up / 12."""
    hist, *_ = run(tmp_path, warmup_epochs=1, schedule="step")
    assert [m["lr"] for m in hist] == pytest.approx([LR, LR * 0.1, LR * 0.01], abs=1e-12)


def test_a_mid_epoch_stop_keeps_the_sums_of_the_steps_done(tmp_path, monkeypatch):
    """Ctrl-C at epoch 2 step 3: last.pt holds the sums over the 9 + 9 + 8 images done; the
    resumed run's epoch 2 reports the 50 images of both halves, as if never stopped."""
    ref, ref_epochs, table, labels = run(tmp_path / "ref")
    monkeypatch.setenv("DEEPGAL_FAULT", "signal=SIGINT,epoch=2,step=3")
    with pytest.raises(TrainingInterrupted, match="epoch 2 step 3/6"):
        run(tmp_path / "run")
    monkeypatch.delenv("DEEPGAL_FAULT")
    state = ckpt_io.load(tmp_path / "run" / "last.pt")
    done = ref_epochs[1][:26]  # the same seeded shuffle: the first 3 batches of epoch 2
    assert (state["epoch"], state["step_in_epoch"]) == (1, 3)
    assert state["accum"]["seen"] == 26
    assert state["accum"]["correct"] == round(26 * hand_accuracy(table, labels, done))
    assert state["accum"]["loss"] == pytest.approx(
        26 * hand_loss(table, labels, done, SMOOTH), rel=1e-6
    )
    assert state["scheduler"]["last_epoch"] == 6 + 3
    resumed, rest, *_ = run(tmp_path / "run")
    # Only the 3 steps left of epoch 2, then epoch 3 (epoch 1 is re-delivered, not retrained).
    assert np.concatenate(rest).tolist() == ref_epochs[1][26:].tolist() + ref_epochs[2].tolist()

    def strip(h):
        return [{k: m[k] for k in KEYS - {"seconds", "images_per_s"}} for m in h]

    assert strip(resumed) == strip(ref)


def test_evaluate_scores_the_whole_split(tmp_path):
    table, labels = table_and_labels(1)
    model = Lookup(torch.from_numpy(table))
    val_ids = np.arange(VAL_ID0, VAL_ID0 + N_VAL)
    got = evaluate(model, split(val_ids, labels), spec_for(tmp_path), CPU, batch_size=6)
    assert got["loss"] == pytest.approx(hand_loss(table, labels, val_ids), rel=1e-6)
    assert got["accuracy"] == hand_accuracy(table, labels, val_ids)
    empty = evaluate(model, split(val_ids[:0], labels), spec_for(tmp_path), CPU)
    assert math.isnan(empty["loss"]) and math.isnan(empty["accuracy"])


def test_resume_false_trains_again_and_resuming_keeps_older_files(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "v"  # created with its parents
    monkeypatch.setenv("DEEPGAL_FAULT", "signal=SIGINT,epoch=3,step=1")
    with pytest.raises(TrainingInterrupted):
        run(folder)
    monkeypatch.delenv("DEEPGAL_FAULT")
    logged = Marks(None)
    _, rest, *_ = run(folder, sinks=[logged])  # fit's default: resume
    assert len(np.concatenate(rest)) == 50 - 9  # epoch 3 from its step 1
    # The history so far goes to the sinks again (they skip what they have), then epoch 3.
    assert logged.epochs == [1, 2, 3]
    assert [e for e, _ in ckpt_io.list_epochs(folder)] == [2, 3]  # epoch 2's file kept
    _, again, *_ = run(folder, resume=False)
    assert [len(ids) for ids in again] == [50, 50, 50]  # from scratch, though all was done


def test_augmentation_is_drawn_from_the_epochs_seeded_generator(tmp_path):
    """With flips on, some images reach the model mirrored (their id pixel moves away); the
    draws come from the loop's seeded generator, not torch's global one."""
    flip = Augment(rotate=False, flip=True, jitter=0.0, scale=0.0, translate=0.0)
    torch.manual_seed(1)
    h1, seen1, *_ = run(tmp_path / "a", augment=flip)
    torch.manual_seed(2)
    h2, seen2, *_ = run(tmp_path / "b", augment=flip)
    moved = [np.isin(ids, np.arange(N_TRAIN), invert=True).sum() for ids in seen1]
    assert all(m > 0 for m in moved)  # their corner pixel is background
    assert [ids.tolist() for ids in seen1] == [ids.tolist() for ids in seen2]

    def strip(h):
        return [{k: m[k] for k in KEYS - {"seconds", "images_per_s"}} for m in h]

    assert strip(h1) == strip(h2)
    # The model's own random numbers (dropout) come from another stream: the same data.
    h3, seen3, *_ = run(tmp_path / "c", augment=flip, draws=True)
    assert [ids.tolist() for ids in seen3] == [ids.tolist() for ids in seen1]
    assert strip(h3) == strip(h1)


def test_mixup_alone_mixes_reproducibly(tmp_path):
    torch.manual_seed(1)
    h1, seen, table, labels = run(tmp_path / "a", mixup=0.4)
    torch.manual_seed(2)
    h2, *_ = run(tmp_path / "b", mixup=0.4)
    assert [m["train/loss"] for m in h1] == [m["train/loss"] for m in h2]
    h3, *_ = run(tmp_path / "d", mixup=0.4, draws=True)  # a model drawing numbers: same mixing
    assert [m["train/loss"] for m in h3] == [m["train/loss"] for m in h1]
    plain, *_ = run(tmp_path / "c")  # soft targets and blends: another loss every epoch
    assert all(a["train/loss"] != b["train/loss"] for a, b in zip(h1, plain, strict=True))


def test_epoch_seconds_are_within_the_call_and_add_up_across_a_stop(tmp_path, monkeypatch):
    import time

    t0 = time.perf_counter()
    hist, *_ = run(tmp_path / "ref")
    assert 0 < sum(m["seconds"] for m in hist) <= time.perf_counter() - t0
    monkeypatch.setenv("DEEPGAL_FAULT", "signal=SIGINT,epoch=2,step=3")
    with pytest.raises(TrainingInterrupted):
        run(tmp_path / "run")
    monkeypatch.delenv("DEEPGAL_FAULT")
    # The saved seconds of the steps done, made far longer than any run here, so the resumed
    # epoch's figure shows whether it starts from them (not a race against the clock).
    state = ckpt_io.load(tmp_path / "run" / "last.pt")
    assert 0 < state["accum"]["seconds"] <= time.perf_counter() - t0
    state["accum"]["seconds"] = carried = 1000.0
    ckpt_io.save(tmp_path / "run" / "last.pt", state)
    t0 = time.perf_counter()
    resumed, *_ = run(tmp_path / "run")
    assert carried < resumed[1]["seconds"] <= carried + time.perf_counter() - t0
    assert resumed[2]["seconds"] < carried  # the next epoch starts from 0
