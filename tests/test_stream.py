"""Streamed splits (train.stream): the block shuffle's order, the bytes a block read gives, the
memory bound, and training on it (deterministic, resumed exactly mid-epoch, the stage path)."""

from __future__ import annotations

import json
import signal

import h5py
import numpy as np
import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal.data import galaxy10
from deepgal.models import build_model
from deepgal.training import TrainingInterrupted, fit, train_variant
from deepgal.training.epoch import Split
from deepgal.training.stream import (
    StreamedImages,
    StreamPlan,
    epoch_order,
    plan_for,
    take,
    wants_stream,
)
from deepgal.transforms import Preprocess, presize
from deepgal.utils import seed_everything
from tests.helpers import DEVICE, data, make_workdir, paths, run_cfg, spec


def _order(n, block, window, seed=0, rank=0, world=1):
    gen = torch.Generator().manual_seed(seed)
    return epoch_order(n, StreamPlan(block, window), gen, rank, world)


@pytest.mark.parametrize("n,block,window", [(100, 7, 3), (64, 16, 4), (5, 8, 4), (97, 10, 1)])
def test_epoch_order_is_a_permutation(n, block, window):
    assert sorted(_order(n, block, window).tolist()) == list(range(n))


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_take_disjoint_whole_blocks(world):
    n, block = 100, 7
    parts = [_order(n, block, 2, seed=5, rank=r, world=world) for r in range(world)]
    assert sorted(torch.cat(parts).tolist()) == list(range(n))
    owners = [{p // block for p in part.tolist()} for part in parts]
    for a in range(world):
        for b in range(a + 1, world):
            assert not owners[a] & owners[b]  # no block read by two ranks


def test_order_is_seeded_and_shuffled_within_windows():
    a, b, c = _order(200, 10, 4, seed=1), _order(200, 10, 4, seed=1), _order(200, 10, 4, seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    blocks = (a // 10).tolist()
    # A window of 4 blocks is 40 consecutive positions drawn from exactly 4 blocks, mixed:
    for w in range(0, 200, 40):
        seen = blocks[w : w + 40]
        assert len(set(seen)) == 4
        switches = sum(a != b for a, b in zip(seen[:-1], seen[1:], strict=True))
        assert switches > 12  # rows of the window interleave (block after block: 3 switches)
    # and the blocks do not come in file order
    assert set(blocks[:40]) != {0, 1, 2, 3}


def _file(tmp_path, n=60, size=24, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    path = tmp_path / "g.h5"
    galaxy10.write_galaxy10(path, images, labels)
    return path, images


def test_streamed_rows_are_the_files_bytes(tmp_path):
    path, images = _file(tmp_path)
    rows = np.array([1, 4, 5, 9, 20, 33, 34, 35, 50, 59])
    s = StreamedImages(path, rows, StreamPlan(block=3, window=2))
    assert s.shape == (10, 24, 24, 3) and len(s) == 10
    pos = torch.tensor([9, 0, 4, 4, 7, 2])
    assert np.array_equal(s.index_select(0, pos).numpy(), images[rows[pos.numpy()]])
    assert np.array_equal(s[2:8].numpy(), images[rows[2:8]])
    view = take(s, slice(5, 10))
    assert np.array_equal(view[0:5].numpy(), images[rows[5:10]])


def test_streamed_rows_are_presized_as_in_memory(tmp_path):
    path, images = _file(tmp_path, size=64)
    pre = Preprocess(input_size=16, crop=0.5)
    s = StreamedImages(path, np.arange(60), StreamPlan(block=8), pre, zoom_bound=1.1)
    expect = presize(torch.from_numpy(images), pre, 1.1)  # the oracle: the whole file at once
    assert s.shape == tuple(expect.shape) and s.shape[1] < 64
    assert torch.equal(s[0:60], expect)


def test_unsorted_rows_are_refused(tmp_path):
    path, _ = _file(tmp_path)
    with pytest.raises(ValueError, match="sorted"):
        StreamedImages(path, np.array([3, 1]), StreamPlan(block=4))


def test_an_epoch_reads_each_block_once_and_holds_at_most_two_windows(tmp_path):
    path, images = _file(tmp_path, n=200, size=8)
    plan = StreamPlan(block=10, window=3)
    s = StreamedImages(path, np.arange(200), plan)
    order = epoch_order(200, plan, torch.Generator().manual_seed(0))
    seen = []
    for batch in torch.tensor_split(order, 200 // 16):  # batches straddle windows
        got = s.index_select(0, batch)
        assert np.array_equal(got.numpy(), images[batch.numpy()])
        assert len(s._cache) <= 2 * plan.window
        seen += batch.tolist()
    assert sorted(seen) == list(range(200))
    assert s.blocks_read == 20  # every block once: no re-read at a window boundary


def test_plan_fits_the_buffer_and_gives_every_rank_blocks():
    row = 32 * 32 * 3
    big = plan_for(64, row, batch_size=32, n=10**6)
    assert 2 * big.window * big.block * row <= 64 * 2**20  # the cache fits the buffer
    small = plan_for(512, row, batch_size=8, n=100, world=2)
    assert -(-100 // small.block) >= 4 * 2 - 1  # ~4 blocks a rank even when the data is tiny
    assert plan_for(16, 10**7, batch_size=32, n=10**6).block == 32  # never below a batch


def test_auto_streams_past_the_buffer_on_cpu_and_past_a_ram_share_with_cuda():
    gib, buf = 2**30, 512 * 2**20
    assert not wants_stream("auto", buf, buf)  # the embedded default, the real 14k at 32 px
    assert wants_stream("auto", buf + 1, buf)
    # with CUDA a split that fits in RAM stays resident (faster on the GPU)
    assert not wants_stream("auto", 5 * gib, buf, cuda=True, ram_bytes=24 * gib)
    assert wants_stream("auto", 7 * gib, buf, cuda=True, ram_bytes=24 * gib)
    assert wants_stream("always", 1, buf) and not wants_stream("never", 100 * gib, buf)


# ---- training on a streamed split --------------------------------------------------------------


def _streamed(tmp_path, split: Split, name: str, block=8, window=2) -> Split:
    path = tmp_path / f"{name}.h5"
    galaxy10.write_galaxy10(path, split.images.numpy(), split.labels.numpy().astype(np.uint8))
    images = StreamedImages(path, np.arange(len(split)), StreamPlan(block, window))
    return Split(images, split.labels)


def _train_streamed(tmp_path, ckpt, **kw):
    seed_everything(7, deterministic=True)
    model = build_model("smallnet", 10, 16)
    train = _streamed(tmp_path, data(), "train")
    val = _streamed(tmp_path, data(20, seed=1), "val")
    return fit(model, train, val, spec(ckpt, **kw), DEVICE, []), model


def _untimed(history):
    return [{k: v for k, v in m.items() if k not in ("seconds", "images_per_s")} for m in history]


def test_streamed_training_scores_val_as_in_memory_and_repeats(tmp_path):
    h1, m1 = _train_streamed(tmp_path, tmp_path / "a")
    h2, m2 = _train_streamed(tmp_path, tmp_path / "b")
    assert _untimed(h1) == _untimed(h2)
    torch.testing.assert_close(m1.state_dict(), m2.state_dict(), rtol=0, atol=0)
    assert len(h1) == 3
    # val through the streamed reader = val held in memory, on the same final weights
    from deepgal.training.epoch import evaluate

    whole = evaluate(m1, data(20, seed=1), spec(tmp_path / "c"), DEVICE)
    streamed = evaluate(
        m1, _streamed(tmp_path, data(20, seed=1), "v2"), spec(tmp_path / "d"), DEVICE
    )
    assert whole == pytest.approx(streamed, abs=1e-6)


def test_streamed_sigint_mid_epoch_resumes_exactly(tmp_path, monkeypatch):
    ref, ref_model = _train_streamed(tmp_path, tmp_path / "ref", epochs=4)
    monkeypatch.setenv("DEEPGAL_FAULT", "signal=SIGINT,epoch=2,step=3")
    with pytest.raises(TrainingInterrupted, match="epoch 2 step 3/6"):
        _train_streamed(tmp_path, tmp_path / "run", epochs=4)
    monkeypatch.delenv("DEEPGAL_FAULT")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    resumed, model = _train_streamed(tmp_path, tmp_path / "run", epochs=4)
    assert _untimed(resumed) == _untimed(ref)
    torch.testing.assert_close(model.state_dict(), ref_model.state_dict(), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["always", "never"])
def test_train_stage_streams_when_asked_and_says_so(tmp_path, mode, caplog, monkeypatch):
    root = make_workdir(tmp_path / "w")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    run = run_cfg(stream=mode, epochs=1, batch_size=4)
    caplog.set_level("INFO")
    summary = train_variant(run, paths(root))
    assert summary["epochs"] == 1
    ckpts = ckpt_io.list_epochs(root / "models/smallnet/checkpoints")
    config = ckpt_io.load(ckpts[-1][1])["config"]
    assert ("streamed" in config["data"]) is (mode == "always")
    assert ("stream" in config["run"]) is (mode == "always")  # in memory, the knob changes nothing
    assert ("streamed in blocks of" in caplog.text) is (mode == "always")
    assert (
        json.loads((root / "results/smallnet/train.json").read_text())["config"]["stream"] == mode
    )


def test_streamed_and_in_memory_runs_do_not_resume_each_other(tmp_path, monkeypatch):
    """The block shuffle draws other batches: a checkpoint of one is not a resume of the other."""
    root = make_workdir(tmp_path / "w")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    train_variant(run_cfg(stream="never", epochs=1, batch_size=4), paths(root))
    first = ckpt_io.load(ckpt_io.list_epochs(root / "models/smallnet/checkpoints")[-1][1])
    train_variant(run_cfg(stream="always", epochs=1, batch_size=4), paths(root))
    second = ckpt_io.load(ckpt_io.list_epochs(root / "models/smallnet/checkpoints")[-1][1])
    assert first["fingerprint"] != second["fingerprint"]
    with h5py.File(root / "data/galaxy10.h5") as f:
        assert f[galaxy10.IMAGES_KEY].shape[0] == 100
