"""A checkpoint as one ONNX graph: uint8 cut-outs in, calibrated probabilities out.

``deepgal export --checkpoint CKPT --onnx model.onnx [--image-size 256]`` writes a graph with

- input ``images``: (N, H, W, 3) uint8, H = W = ``--image-size`` (the size is fixed when the
  graph is written; N is free, any batch size);
- output ``probabilities``: (N, C) float32, softmax(logits / T) with the temperature T the
  checkpoint carries (T = 1 when it has none, or with ``--uncalibrated``), class order as the
  checkpoint's ``class_names`` (stored in the graph's metadata, key ``deepgal.class_names``).

The checkpoint's evaluation preprocessing is inside the graph, as deepgal does it on a CPU
(:func:`deepgal.transforms.prepare_batch`), so the graph's probabilities are deepgal's:

1. the whole frame resized to ``presize_shape`` with torch's uint8 antialiased bilinear kernel
   (Pillow-SIMD's algorithm: fixed-point weights, horizontal pass, rounding to uint8, vertical
   pass), rebuilt bit for bit as exact float32 ``MatMul`` + ``Floor`` steps (:func:`aa_weights`,
   :func:`_split`), computed only for the pixels the crop reads (:func:`_axis_plan`);
2. the centre ``crop`` sampled at ``input_size`` px (``GridSample``, reflection padding);
3. ``(x / 255 - mean) / std`` with the checkpoint's mean and std.

(On CUDA deepgal resizes in float, without the uint8 rounding: there its probabilities differ
from the CPU's, and the graph's, by that rounding, ~1e-4.)

The file is written whole or not at all (a temporary name, then a rename).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np

from .errors import DeepgalError

OPSET = 18  # GridSample needs >= 16; torch's exporter builds for 18
INPUT, OUTPUT = "images", "probabilities"


def aa_weights(n_in: int, n_out: int) -> tuple[np.ndarray, int]:
    """torch's CPU uint8 antialiased bilinear resize of one axis, ``n_in`` -> ``n_out`` px,
    as (n_out, n_in) float64 integer weights and their precision p: output pixel i is
    ``clip(floor((sum_j W[i, j] * x[j] + 2**(p-1)) / 2**p), 0, 255)``.

    The triangle filter is stretched by the scale when shrinking (that is the antialiasing),
    normalised per output pixel, then rounded to int16 with the largest p whose biggest
    weight still fits. ``tests/test_export.py`` checks it against torch, bit for bit."""
    scale = n_in / n_out
    support, stretch = (scale, 1.0 / scale) if scale >= 1 else (1.0, 1.0)
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = scale * (i + 0.5)
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        taps = np.maximum(0.0, 1.0 - np.abs((np.arange(lo, hi) - centre + 0.5) * stretch))
        w[i, lo:hi] = taps / taps.sum() if taps.sum() else taps
    p = next((p for p in range(22) if int(0.5 + w.max() * 2 ** (p + 1)) >= 2**15), 22)
    return np.trunc(w * 2**p + np.where(w < 0, -0.5, 0.5)), p


def _split(w: np.ndarray):
    """Integer weights (n_out, n_in) in [0, 2**15) -> float32 tensors (high, low) with
    w = 256 high + low. A float32 matrix product of 0..255 pixels with either part sums
    integers below 2**24, so it is exact in any summation order; the two are combined in
    float64 (the whole sum reaches ~2**25, past float32's 24 bits)."""
    import torch

    if w.min() < 0 or w.max() >= 2**15:
        raise ValueError("resize weights outside [0, 2**15): not torch's bilinear kernel")
    high, low = np.divmod(w, 256)
    return torch.from_numpy(high.astype(np.float32)), torch.from_numpy(low.astype(np.float32))


def _axis_plan(n_in: int, n_out: int, coords: np.ndarray) -> dict:
    """What one axis of the graph computes: the resize ``n_in`` -> ``n_out`` (None when the
    size stays), restricted to the resized pixels that grid sampling at ``coords``
    (normalised, ``align_corners=False``) reads, and the input pixels those need.

    Returns ``{"inputs": (a, b), "weights": (high, low) or None, "scale": 2**p,
    "coords": coords re-normalised to the kept pixels}``. A centre crop of 0.5 keeps about
    half the pixels of each axis, so the resize costs about a quarter."""
    pix = ((coords.astype(np.float64) + 1) * n_out - 1) / 2  # pixel coordinates read
    if pix.min() < 0.5 or pix.max() > n_out - 1.5:  # reflection may read near the edges
        lo, hi = 0, n_out
    else:  # the bilinear taps floor(pix) and floor(pix) + 1, and a pixel of margin
        lo, hi = int(np.floor(pix.min())) - 1, int(np.floor(pix.max())) + 3
    kept = (2 * (pix - lo) + 1) / (hi - lo) - 1
    if n_out == n_in:
        return {"inputs": (lo, hi), "weights": None, "scale": 1.0, "coords": kept}
    w, p = aa_weights(n_in, n_out)
    w = w[lo:hi]
    used = np.flatnonzero(w.any(0))
    a, b = int(used[0]), int(used[-1]) + 1
    return {"inputs": (a, b), "weights": _split(w[:, a:b]), "scale": float(2**p), "coords": kept}


def deployable(model, pre, temperature: float, image_size: int):
    """``model`` (eval mode, CPU) wrapped as (N, image_size, image_size, 3) uint8 ->
    (N, C) float32 calibrated probabilities, preprocessing included."""
    import torch
    import torch.nn.functional as F

    from .transforms import AugParams, affine_grid, affine_theta, presize_shape

    ph, pw = presize_shape(pre, image_size, image_size)
    # The evaluation grid (no augmentation: only the centre crop) is one constant for every
    # image, (1, S, S, 2); without rotation its x depends on the column only, y on the row.
    grid = affine_grid(affine_theta(AugParams.identity(1), pre.crop), pre.input_size)
    cols = _axis_plan(image_size, pw, grid[0, 0, :, 0].numpy())
    rows = _axis_plan(image_size, ph, grid[0, :, 0, 1].numpy())
    kept = torch.stack(
        torch.meshgrid(
            torch.from_numpy(rows["coords"]), torch.from_numpy(cols["coords"]), indexing="ij"
        )[::-1],
        -1,
    )

    class Deployed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.register_buffer("grid", kept.float()[None])  # (1, S, S, 2)
            self.register_buffer("mean", torch.tensor(pre.mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(pre.std).view(1, 3, 1, 1))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            (r0, r1), (c0, c1) = rows["inputs"], cols["inputs"]
            x = images[:, r0:r1, c0:c1].permute(0, 3, 1, 2).float()  # (N, 3, h, w), 0..255
            # Horizontal pass, then vertical, each rounded to uint8 as torch's kernel does.
            x = _resize_pass(x, cols, horizontal=True)
            x = _resize_pass(x, rows, horizontal=False)
            x = F.grid_sample(
                x,
                self.grid.expand(x.shape[0], -1, -1, -1),
                mode="bilinear",
                padding_mode="reflection",
                align_corners=False,
            )
            x = (x / 255.0 - self.mean) / self.std
            return (self.model(x) / temperature).softmax(1)

    def _resize_pass(x, plan: dict, horizontal: bool):
        if plan["weights"] is None:
            return x
        # (N, 3, h, w) @ (w, w') horizontally; (h', h) @ (N, 3, h, w') vertically
        high, low = ((x @ m.T if horizontal else m @ x).double() for m in plan["weights"])
        acc = high * 256 + low
        return torch.floor((acc + plan["scale"] / 2) / plan["scale"]).clamp(0, 255).float()

    return Deployed().eval()


def export_onnx(
    checkpoint: str | Path, dest: str | Path, image_size: int = 256, calibrated: bool = True
) -> dict:
    """Write ``checkpoint`` as an ONNX graph to ``dest`` (see the module docstring); returns
    what was written: ``{"path", "model_name", "image_size", "input_size", "temperature",
    "class_names"}``. A file that is not a deepgal checkpoint raises
    :class:`deepgal.checkpoint.CheckpointError` naming it, before anything is written."""
    import torch

    from .calibration import Calibration
    from .data.galaxy10 import CLASS_NAMES
    from .inference import load_model
    from .utils import atomic_write_bytes

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise DeepgalError(
            f"deepgal export needs {' and '.join(missing)}: pip install -e '.[export]'"
        )
    if image_size < 1:
        raise ValueError(f"--image-size must be a positive number of pixels, got {image_size}")
    dest = Path(dest)
    if dest.is_dir() or not dest.parent.is_dir():
        raise ValueError(f"--onnx {dest}: give a file name in an existing folder")
    model, pre, ckpt = load_model(checkpoint, torch.device("cpu"))
    model.to(memory_format=torch.contiguous_format)
    cal = Calibration.from_checkpoint(ckpt, checkpoint) if calibrated else None
    temperature = cal.temperature if cal else 1.0
    names = list(ckpt.get("class_names") or CLASS_NAMES)
    net = deployable(model, pre, temperature, image_size)
    # The exporter's optimiser logs each pass at INFO: nothing a user of the file needs.
    quiet = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.WARNING)
    try:
        program = _to_onnx(net, image_size)
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
    proto = program.model_proto
    info = {
        "model_name": ckpt["model_name"],
        "image_size": image_size,
        "input_size": pre.input_size,
        "temperature": temperature,
        "class_names": names,
    }
    meta = {
        "deepgal.class_names": json.dumps(names),
        "deepgal.preprocess": json.dumps(pre.to_dict()),
        "deepgal.temperature": repr(temperature),
        "deepgal.model_name": ckpt["model_name"],
        "deepgal.epoch": str(ckpt.get("epoch")),
    }
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    atomic_write_bytes(dest, proto.SerializeToString())
    return {"path": str(dest), **info}


def _to_onnx(net, image_size: int):
    """torch's (dynamo) exporter on ``net`` with a free batch axis; the ONNXProgram."""
    import torch

    example = torch.zeros((2, image_size, image_size, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with torch.inference_mode(False), torch.no_grad():  # export traces; inference mode cannot
        return torch.onnx.export(
            net,
            (example,),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )


def cmd_export(args) -> int:
    """``deepgal export``: write the graph, say what it takes and gives."""
    out = export_onnx(args.checkpoint, args.onnx, args.image_size, not args.uncalibrated)
    how = (
        f"calibrated, temperature {out['temperature']:.3f}"
        if out["temperature"] != 1.0
        else "uncalibrated softmax"
    )
    print(
        f"wrote {out['path']}: {out['model_name']}, input '{INPUT}' (N, {out['image_size']}, "
        f"{out['image_size']}, 3) uint8 -> output '{OUTPUT}' (N, {len(out['class_names'])}) "
        f"float32, {how}; preprocessing to {out['input_size']} px inside the graph"
    )
    return 0


def add_parser(sub, **fmt) -> None:
    """The ``export`` subcommand on ``sub`` (argparse sub-parsers); torch loads when it runs."""
    s = sub.add_parser(
        "export",
        help="a checkpoint as an ONNX graph (uint8 images in, calibrated probabilities out)",
        **fmt,
    )
    s.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="a deepgal checkpoint, e.g. models/<variant>/selected.pt",
    )
    s.add_argument("--onnx", type=Path, required=True, help="the .onnx file to write")
    s.add_argument(
        "--image-size",
        type=int,
        default=256,
        help="side in px of the square uint8 images the graph takes (Galaxy10 "
        "DECaLS: 256); the batch size stays free",
    )
    s.add_argument(
        "--uncalibrated",
        action="store_true",
        help="the raw softmax, without the checkpoint's temperature",
    )
    s.set_defaults(func=cmd_export)
