"""deepgal.selection against hand-written training histories: the expected epoch of every case
is written here, worked out by hand from the rule in the module's docstring (pass = gap <=
max_gap and val loss <= (1 + max_val_loss_rise) x the lowest val loss up to that epoch; best
passing val accuracy, ties to the earlier epoch; else the lowest val loss). Checkpoints are
real files written by deepgal.checkpoint.save."""

from __future__ import annotations

import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal.selection import assess, choose

GAP, RISE = 0.15, 0.10  # params.yaml's select defaults


def hist(*rows: tuple) -> list[dict]:
    """History rows from (epoch, train acc, val acc, val loss) tuples."""
    return [
        {"epoch": e, "train/accuracy": tr, "val/accuracy": va, "val/loss": vl, "train/loss": 9.0}
        for e, tr, va, vl in rows
    ]


def keep(ckpt_dir, *epochs: int):
    """Real checkpoint files for ``epochs``, each holding its epoch number in its weights."""
    for e in epochs:
        ckpt_io.save(
            ckpt_io.epoch_path(ckpt_dir, e),
            {"epoch": e, "model": {"w": torch.full((2,), float(e))}},
        )
    return ckpt_dir


def test_best_passing_epoch_is_not_the_newest(tmp_path):
    h = hist(
        (1, 0.40, 0.35, 1.50), (2, 0.60, 0.55, 1.20), (3, 0.70, 0.62, 1.10), (4, 0.72, 0.58, 1.15)
    )  # 4 passes (gap .14, rise 4.5%) but 3 scores higher
    sel = choose(keep(tmp_path, 1, 2, 3, 4), h, GAP, RISE)
    assert sel["epoch"] == 3
    assert sel["checkpoint"] == str(ckpt_io.epoch_path(tmp_path, 3))
    assert ckpt_io.load(sel["checkpoint"])["model"]["w"][0] == 3.0
    assert sel["passed"] is True and sel["skipped"] == []
    assert (sel["val_accuracy"], sel["train_accuracy"], sel["val_loss"]) == (0.62, 0.70, 1.10)
    assert sel["gap"] == pytest.approx(0.08) and sel["val_loss_rise"] == 0.0
    assert sel["reason"].startswith(
        "highest val accuracy among 4/4 checkpoints within gap <= 0.15 and val-loss rise <= 10%"
    )
    assert [r["epoch"] for r in sel["candidates"]] == [1, 2, 3, 4]


def test_gap_filter_alone_decides(tmp_path):
    # Val loss falls every epoch (no rise anywhere); epoch 3 scores best but its gap is .20.
    h = hist((1, 0.50, 0.45, 1.40), (2, 0.60, 0.52, 1.30), (3, 0.80, 0.60, 1.25))
    sel = choose(keep(tmp_path, 1, 2, 3), h, GAP, RISE)
    assert sel["epoch"] == 2
    assert "2/3 checkpoints" in sel["reason"]
    # Without the gap filter epoch 3 would win: the filter, not the data, decided.
    assert choose(tmp_path, h, 1.0, RISE)["epoch"] == 3


def test_loss_rise_filter_alone_decides(tmp_path):
    # Gaps all small; epoch 3 scores best but its val loss is 18.75% above epoch 2's 0.80.
    h = hist((1, 0.50, 0.50, 1.00), (2, 0.55, 0.54, 0.80), (3, 0.60, 0.58, 0.95))
    sel = choose(keep(tmp_path, 1, 2, 3), h, GAP, RISE)
    assert sel["epoch"] == 2
    assert choose(tmp_path, h, GAP, 0.2)["epoch"] == 3  # a looser bound lets it through


def test_loss_rise_is_against_the_best_loss_so_far_not_later_ones(tmp_path):
    # Epoch 2 is 5% above epoch 1's loss (passes); epoch 3's much lower loss comes later and
    # must not count against epoch 2.
    h = hist((1, 0.40, 0.40, 1.00), (2, 0.62, 0.60, 1.05), (3, 0.60, 0.55, 0.50))
    rows = assess(h, [1, 2, 3], GAP, RISE)
    assert [r["val_loss_rise"] for r in rows] == pytest.approx([0.0, 0.05, 0.0])
    assert choose(keep(tmp_path, 1, 2, 3), h, GAP, RISE)["epoch"] == 2


def test_best_loss_counts_epochs_whose_checkpoint_was_not_kept(tmp_path):
    # checkpoint_every 2: only epochs 2 and 4 are kept. Epoch 1 (not kept) had the lowest
    # loss, 1.0, so epoch 2 (loss 1.2, +20%) fails and epoch 4 (1.05, +5%) is chosen, although
    # epoch 2 scores higher; epoch 3 scores highest of all but has no checkpoint.
    h = hist(
        (1, 0.40, 0.40, 1.00), (2, 0.62, 0.60, 1.20), (3, 0.70, 0.65, 1.10), (4, 0.60, 0.55, 1.05)
    )
    sel = choose(keep(tmp_path, 2, 4), h, GAP, RISE)
    assert sel["epoch"] == 4
    assert [r["epoch"] for r in sel["candidates"]] == [2, 4]
    assert [r["passed"] for r in sel["candidates"]] == [False, True]
    assert "1/2 checkpoints" in sel["reason"]


def test_bounds_are_inclusive(tmp_path):
    # Exactly representable: gap 0.75 - 0.5 = 0.25, rise 1.25 / 1.0 - 1 = 0.25.
    h = hist((1, 0.50, 0.40, 1.00), (2, 0.75, 0.50, 1.25))
    rows = assess(h, [1, 2], 0.25, 0.25)
    assert (rows[1]["gap"], rows[1]["val_loss_rise"], rows[1]["passed"]) == (0.25, 0.25, True)
    assert choose(keep(tmp_path, 1, 2), h, 0.25, 0.25)["epoch"] == 2
    assert [r["passed"] for r in assess(h, [1, 2], 0.25, 0.24)] == [True, False]
    assert [r["passed"] for r in assess(h, [1, 2], 0.24, 0.25)] == [True, False]


def test_nothing_passes_falls_back_to_lowest_val_loss(tmp_path):
    # Every gap is about .4: none passes. Lowest val loss is epoch 2, not the best val
    # accuracy (3) nor the newest (3) nor the first (1).
    h = hist((1, 0.90, 0.50, 1.30), (2, 0.95, 0.55, 1.10), (3, 0.99, 0.60, 1.20))
    sel = choose(keep(tmp_path, 1, 2, 3), h, GAP, RISE)
    assert sel["epoch"] == 2 and sel["passed"] is False
    assert sel["reason"] == (
        "no checkpoint passed gap <= 0.15 and val-loss rise <= 10%; fallback: lowest val loss"
    )


def test_ties_go_to_the_earlier_epoch(tmp_path):
    keep(tmp_path, 1, 2, 3, 4)
    h = hist(
        (1, 0.50, 0.50, 1.00), (2, 0.60, 0.60, 0.90), (3, 0.62, 0.60, 0.85), (4, 0.55, 0.50, 0.84)
    )
    assert choose(tmp_path, h, GAP, RISE)["epoch"] == 2  # 2 and 3 tie at .60
    # Fallback ties on val loss: 2 and 3 at 0.9, below 1 and 4.
    h = hist(
        (1, 0.99, 0.50, 1.00), (2, 0.99, 0.60, 0.90), (3, 0.99, 0.70, 0.90), (4, 0.99, 0.80, 0.95)
    )
    assert choose(tmp_path, h, GAP, RISE)["epoch"] == 2


def test_an_unreadable_best_checkpoint_is_skipped_for_the_next_best(tmp_path, caplog):
    h = hist(
        (1, 0.40, 0.35, 1.50), (2, 0.60, 0.55, 1.20), (3, 0.70, 0.62, 1.10), (4, 0.72, 0.58, 1.15)
    )
    keep(tmp_path, 1, 2, 3, 4)
    bad = ckpt_io.epoch_path(tmp_path, 3)
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    sel = choose(tmp_path, h, GAP, RISE)
    assert sel["epoch"] == 4  # next highest val accuracy among the passing, not the newest
    assert sel["skipped"] == [str(bad)]
    assert sel["reason"].endswith(f"; skipped unreadable {bad}")
    assert str(bad) in caplog.text and "next best" in caplog.text


def test_every_checkpoint_unreadable_or_none_kept_is_an_error(tmp_path):
    h = hist((1, 0.40, 0.35, 1.50), (2, 0.60, 0.55, 1.20))
    with pytest.raises(ckpt_io.CheckpointError, match="no epoch checkpoints with metrics"):
        choose(tmp_path, h, GAP, RISE)
    keep(tmp_path, 5)  # kept, but the history has no epoch 5
    with pytest.raises(ckpt_io.CheckpointError, match="no epoch checkpoints with metrics"):
        choose(tmp_path, h, GAP, RISE)
    for e in (1, 2):
        ckpt_io.epoch_path(tmp_path, e).write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt_io.CheckpointError) as err:
        choose(tmp_path, h, GAP, RISE)
    want = (
        f"every kept checkpoint is unreadable ({ckpt_io.epoch_path(tmp_path, 2)}, "
        f"{ckpt_io.epoch_path(tmp_path, 1)}); re-run the train stage"
    )
    assert want in str(err.value)


def test_assess_rows_hold_hand_computed_gap_and_rise():
    h = hist((1, 0.50, 0.25, 2.00), (2, 0.75, 0.50, 1.00), (3, 1.00, 0.50, 1.50))
    rows = assess(h, [3, 1], GAP, 0.5)  # epochs in the order given; only those kept
    assert [r["epoch"] for r in rows] == [3, 1]
    r3 = rows[0]
    assert r3 == {
        "epoch": 3,
        "val_accuracy": 0.50,
        "val_loss": 1.50,
        "train_accuracy": 1.00,
        "gap": 0.50,
        "val_loss_rise": 0.50,
        "passed": False,
    }
    assert rows[1]["gap"] == 0.25 and rows[1]["val_loss_rise"] == 0.0
    # A best loss of exactly 0 gives no rise (not a division by zero).
    rows = assess(hist((1, 0.5, 0.5, 0.0), (2, 0.5, 0.5, 0.5)), [2], GAP, RISE)
    assert rows[0]["val_loss_rise"] == 0.0 and rows[0]["passed"] is True


def test_a_kept_epoch_missing_from_the_history_does_not_hide_later_ones(tmp_path):
    h = hist((1, 0.50, 0.40, 1.00), (3, 0.62, 0.60, 0.90))  # no row for epoch 2
    assert [r["epoch"] for r in assess(h, [1, 2, 3], GAP, RISE)] == [1, 3]
    assert choose(keep(tmp_path, 1, 2, 3), h, GAP, RISE)["epoch"] == 3


def test_messages_a_user_reads_name_the_files_and_the_fix(tmp_path, caplog):
    with pytest.raises(ckpt_io.CheckpointError) as err:
        choose(tmp_path, hist((1, 0.5, 0.5, 1.0)), GAP, RISE)
    assert str(err.value) == (
        f"{tmp_path}: no epoch checkpoints with metrics in the history; run the train stage first"
    )
    h = hist((1, 0.40, 0.35, 1.50), (2, 0.60, 0.55, 1.20), (3, 0.70, 0.62, 1.10))
    keep(tmp_path, 1, 2, 3)
    for e in (2, 3):
        ckpt_io.epoch_path(tmp_path, e).write_bytes(b"not a checkpoint")
    sel = choose(tmp_path, h, GAP, RISE)
    bad = [str(ckpt_io.epoch_path(tmp_path, e)) for e in (3, 2)]
    assert sel["epoch"] == 1 and sel["reason"].endswith(f"; skipped unreadable {', '.join(bad)}")
    assert (
        f"; using the next best checkpoint (the choice changes: where DVC tracks the file, "
        f"`dvc checkout {tmp_path}` restores it, then run again)"
    ) in caplog.text
