"""`deepgal export`: the ONNX graph run by onnxruntime gives deepgal's own calibrated
probabilities (run_model + the checkpoint's temperature) on the same uint8 images, for any
batch size; its resize is torch's uint8 kernel bit for bit; bad input fails before writing."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from deepgal.calibration import Calibration
from deepgal.cli import main
from deepgal.export import aa_weights
from deepgal.inference import load_model, run_model
from deepgal.transforms import Preprocess
from tests.helpers import selected_checkpoint

CPU = torch.device("cpu")


def session(path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # a shared CPU
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("n_in, n_out", [(256, 64), (256, 45), (40, 32), (69, 32), (32, 48)])
def test_resize_weights_are_torch_uint8_antialias_bit_for_bit(n_in, n_out):
    """Oracle: torch's own uint8 kernel, which deepgal's CPU preprocessing uses."""
    x = np.random.default_rng(n_in + n_out).integers(0, 256, (3, n_in, n_in, 3), np.uint8)
    want = F.interpolate(
        torch.from_numpy(x).permute(0, 3, 1, 2),
        (n_out, n_out),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    w, p = aa_weights(n_in, n_out)
    y = x.astype(np.float64)
    y = np.clip(np.floor((np.einsum("nhwc,ow->nhoc", y, w) + 2 ** (p - 1)) / 2**p), 0, 255)
    y = np.clip(np.floor((np.einsum("nhwc,oh->nowc", y, w) + 2 ** (p - 1)) / 2**p), 0, 255)
    np.testing.assert_array_equal(y.astype(np.uint8), want.permute(0, 2, 3, 1).numpy())


ARCHS = [  # (variant, preprocessing, image side): crop + resize; crop alone; resize alone
    pytest.param("smallnet", None, 40, id="smallnet-crop-resize"),
    pytest.param("smallnet", None, 32, id="smallnet-crop", marks=pytest.mark.slow),
    pytest.param(
        "customnet",
        Preprocess(16, 1.0, (0.3, 0.3, 0.2), (0.2, 0.3, 0.25)),
        24,
        id="customnet-resize",
        marks=pytest.mark.slow,
    ),
    # resnet18_s2d's space-to-depth stem (PixelUnshuffle) must survive the export too.
    pytest.param(
        "resnet18_s2d",
        Preprocess(32, 0.6, (0.3, 0.3, 0.2), (0.2, 0.3, 0.25)),
        56,
        id="resnet18_s2d-crop-resize",
        marks=pytest.mark.slow,
    ),
    # resnet18_d4 expands its filters by an index on every call: the graph must carry that.
    pytest.param(
        "resnet18_d4",
        Preprocess(33, 0.6, (0.3, 0.3, 0.2), (0.2, 0.3, 0.25)),
        56,
        id="resnet18_d4-crop-resize",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize("variant, pre, side", ARCHS)
def test_onnx_graph_gives_deepgals_calibrated_probabilities(tmp_path, capsys, variant, pre, side):
    ckpt = selected_checkpoint(tmp_path / "selected.pt", variant, pre, temperature=0.5)
    dest = tmp_path / "model.onnx"
    assert (
        main(["export", "--checkpoint", str(ckpt), "--onnx", str(dest), "--image-size", str(side)])
        == 0
    )
    assert f"(N, {side}, {side}, 3) uint8" in capsys.readouterr().out
    images = np.random.default_rng(1).integers(0, 256, (64, side, side, 3), np.uint8)
    model, prep, raw = load_model(ckpt, CPU)
    want = Calibration.from_checkpoint(raw).apply(run_model(model, images, prep, CPU))
    sess = session(dest)
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, inp.type, out.name) == ("images", "tensor(uint8)", "probabilities")
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [side, side, 3]  # free batch
    got = sess.run(None, {"images": images})[0]
    assert got.shape == (64, 10) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    one = sess.run(None, {"images": images[5:6]})[0]
    assert np.abs(one - want[5:6]).max() <= 1e-4
    # The temperature is in the graph: T = 0.5 sharpens, so the raw softmax is further away.
    raw_softmax = run_model(model, images, prep, CPU)
    assert np.abs(raw_softmax - got).max() > 100 * np.abs(got - want).max()
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["deepgal.class_names"])[2] == "Round Smooth"
    assert float(meta["deepgal.temperature"]) == 0.5


@pytest.mark.parametrize("bad", ["garbage", "missing", "no preprocessing"])
def test_export_refuses_what_is_not_a_checkpoint_and_writes_nothing(tmp_path, capsys, bad):
    path = tmp_path / "model.pt"
    if bad == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif bad == "no preprocessing":
        torch.save({"model": {}, "model_name": "smallnet"}, path)
    dest = tmp_path / "model.onnx"
    dest.write_bytes(b"an earlier export")
    assert main(["export", "--checkpoint", str(path), "--onnx", str(dest)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and err.count("\n") == 1, err
    assert dest.read_bytes() == b"an earlier export"  # untouched, no temporary file left
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model.onnx"] + ([] if bad == "missing" else ["model.pt"])
    )
