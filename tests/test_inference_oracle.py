"""run_model and load_model against hand computations: eval mode (a model with dropout and
batch norm), test-time augmentation as the mean of the 8 dihedral views' outputs (views made
here with torch.rot90/flip), batching, input checks, precision and checkpoint loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepgal import checkpoint as ckpt_io
from deepgal.inference import load_model, output_dim, run_model
from deepgal.models import build_model
from deepgal.transforms import Preprocess, prepare_batch

CPU = torch.device("cpu")
PRE = Preprocess(8)  # 8 px in, 8 px out: no resampling
C = 5


class DropNet(nn.Module):
    """features (B, 12): 2x2 average pool of each channel, batch norm, dropout; head: linear.
    In eval mode the output is an affine function of the pooled pixels, computable by hand."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.bn = nn.BatchNorm1d(12)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(12, C)
        self.feature_dim = 12
        with torch.no_grad():
            self.bn.running_mean.copy_(torch.randn(12, generator=g) * 0.1)
            self.bn.running_var.copy_(torch.rand(12, generator=g) + 0.5)
            self.bn.weight.copy_(torch.randn(12, generator=g))
            self.bn.bias.copy_(torch.randn(12, generator=g))
            self.head.weight.copy_(torch.randn(C, 12, generator=g))
            self.head.bias.copy_(torch.randn(C, generator=g))

    def features(self, x):  # x (B, 3, S, S)
        return self.drop(self.bn(F.adaptive_avg_pool2d(x, 2).flatten(1)))

    def forward(self, x):
        return self.head(self.features(x))


def eval_by_hand(net: DropNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of the network in eval mode: batch norm with its running statistics,
    dropout the identity."""
    pooled = F.adaptive_avg_pool2d(x, 2).flatten(1)
    feats = (pooled - net.bn.running_mean) / torch.sqrt(net.bn.running_var + net.bn.eps)
    feats = feats * net.bn.weight + net.bn.bias
    return feats, feats @ net.head.weight.T + net.head.bias


def images(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 150, size)[None, :, None, None] * rng.uniform(0.2, 1, (n, 1, 1, 3))
    return np.clip(ramp + rng.integers(0, 100, (n, size, size, 3)), 0, 255).astype(np.uint8)


def hand_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The dihedral group D4 on (B, C, S, S): 4 rotations, each with and without a mirror."""
    return [
        torch.rot90(base, k, dims=(2, 3))
        for base in (x, torch.flip(x, dims=(3,)))
        for k in range(4)
    ]


def test_inference_is_in_eval_mode_and_gives_the_mode_back():
    net = DropNet().train()
    running = net.bn.running_mean.clone()
    x = images(6)
    xf = prepare_batch(torch.from_numpy(x), PRE)
    with torch.no_grad():
        feats, logits = eval_by_hand(net, xf)
        got = run_model(net, x, PRE, CPU, batch_size=4, output="logits")
        again = run_model(net, x, PRE, CPU, batch_size=4, output="logits")
        np.testing.assert_array_equal(got, again)  # dropout off: the same twice
        np.testing.assert_allclose(got, logits.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            run_model(net, x, PRE, CPU, output="features"), feats.numpy(), rtol=1e-5, atol=1e-5
        )
        assert net.training  # given back
        torch.testing.assert_close(net.bn.running_mean, running, rtol=0, atol=0)  # untouched
        # The control: the same network in training mode gives other numbers.
        train_out = net(xf).numpy()
    assert np.abs(train_out - logits.numpy()).max() > 0.1
    net.eval()
    run_model(net, x, PRE, CPU)
    assert not net.training  # an eval-mode model stays in eval mode


@pytest.mark.parametrize("output", ["probs", "logits", "features", "features+probs"])
def test_tta_is_the_mean_of_the_eight_views_outputs(output):
    net = DropNet().eval()
    x = images(5, seed=1)
    xf = prepare_batch(torch.from_numpy(x), PRE)
    feats, logits = zip(*(eval_by_hand(net, v) for v in hand_views(xf)), strict=True)
    probs = [z.softmax(1) for z in logits]

    def mean(ts):
        return torch.stack(ts).mean(0)

    want = {
        "probs": mean(probs),
        "logits": mean(logits),
        "features": mean(feats),
        "features+probs": torch.cat([mean(feats), mean(probs)], 1),
    }[output]
    got = run_model(net, x, PRE, CPU, batch_size=2, output=output, tta=True)
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-5, atol=1e-5)
    if output == "probs":
        # Averaged as probabilities: rows sum to 1, and it is not the softmax of mean logits.
        np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-6)
        assert np.abs(got - mean(logits).softmax(1).detach().numpy()).max() > 1e-3
    plain = run_model(net, x, PRE, CPU, output=output)
    assert np.abs(got - plain).max() > 1e-3  # the views do differ


def test_rows_keep_their_order_whatever_the_batching_and_layout():
    net = DropNet().eval()
    x = images(7, seed=2)
    x.flags.writeable = False  # as Pillow hands out: must be accepted
    want = eval_by_hand(net, prepare_batch(torch.from_numpy(x.copy()), PRE))[1].detach()
    for bs, cl in ((1, True), (3, False), (7, True), (100, False)):
        got = run_model(net, x, PRE, CPU, batch_size=bs, output="logits", channels_last=cl)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)
    got = run_model(net, torch.from_numpy(x.copy()), PRE, CPU, output="logits")
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 8, 8, 4), np.uint8),
        np.zeros((2, 8, 8, 3)),
        np.zeros((8, 8, 3), np.uint8),
        np.zeros((1, 2, 8, 8, 3), np.uint8),
        torch.zeros((2, 8, 8, 3), dtype=torch.int16),
    ],
)
def test_only_uint8_nhw3_images_are_taken(bad):
    with pytest.raises(ValueError, match=r"images must be uint8 \(N, H, W, 3\); got "):
        run_model(DropNet(), bad, PRE, CPU)


def test_a_non_square_image_is_named_by_its_size():
    with pytest.raises(ValueError, match=r"^images must be square for inference; got 8x6 px$"):
        run_model(DropNet(), np.zeros((2, 8, 6, 3), np.uint8), PRE, CPU)


def test_auto_precision_is_fp32_on_cpu():
    net = build_model("smallnet", C, 8).eval()
    x = images(4, seed=3)
    fp32 = run_model(net, x, PRE, CPU, output="logits", precision="fp32")
    np.testing.assert_array_equal(run_model(net, x, PRE, CPU, output="logits"), fp32)
    bf16 = run_model(net, x, PRE, CPU, output="logits", precision="bf16")
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, fp32)  # the control


def test_output_dim():
    net = DropNet()
    assert [output_dim(net, o) for o in ("probs", "logits", "features", "features+probs")] == [
        C,
        C,
        12,
        12 + C,
    ]


def test_load_model_rebuilds_the_trained_network(tmp_path):
    src = build_model("smallnet", 3, 8)
    pre = Preprocess(8, crop=0.75, mean=(0.1, 0.2, 0.3), std=(0.3, 0.2, 0.1))
    path = tmp_path / "epoch_002.pt"
    ckpt_io.save(
        path,
        {
            "model": src.state_dict(),
            "model_name": "smallnet",
            "epoch": 2,
            "preprocess": pre.to_dict(),
            "class_names": ["a", "b", "c"],
        },
    )
    model, got_pre, ckpt = load_model(path, CPU)
    assert got_pre == pre and ckpt["epoch"] == 2
    assert not model.training and model.head.out_features == 3
    torch.testing.assert_close(model.state_dict(), src.state_dict(), rtol=0, atol=0)
    # Without class names: the Galaxy10 head of 10 classes.
    ckpt_io.save(
        path,
        {
            "model": build_model("smallnet", 10, 8).state_dict(),
            "model_name": "smallnet",
            "preprocess": Preprocess(8).to_dict(),
        },
    )
    assert load_model(path, CPU)[0].head.out_features == 10
    for key in ("model_name", "preprocess"):
        state = {"model": src.state_dict(), "model_name": "smallnet", "preprocess": pre.to_dict()}
        del state[key]
        ckpt_io.save(path, state)
        with pytest.raises(ckpt_io.CheckpointError, match=f"^{path}: checkpoint lacks '{key}'"):
            load_model(path, CPU)
