"""Images/s of the exported ONNX graph (onnxruntime, CPU) against deepgal's PyTorch inference
(:func:`deepgal.inference.run_model` + the temperature), side by side in one run.

    python benchmarks/export_speed.py --variants smallnet customnet --size 256 --threads 1

Per variant (input size and crop from params.yaml, random weights: speed does not depend on
them), both paths take the same (N, size, size, 3) uint8 images and return calibrated
probabilities, preprocessing included (resize, crop, normalise); the graph is written by
:func:`deepgal.export.export_onnx`. Each path runs ``--repeat`` times over ``--images`` images
in batches of ``--batch``, after one warm-up batch; the best run counts (a shared machine only
ever slows a run down). The two outputs are compared too (max |difference| in probability).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from deepgal import checkpoint as ckpt_io
from deepgal import config
from deepgal.calibration import Calibration
from deepgal.data import galaxy10
from deepgal.export import export_onnx
from deepgal.inference import load_model, run_model
from deepgal.models import build_model
from deepgal.transforms import Preprocess

ROOT = Path(__file__).resolve().parents[1]
TEMPERATURE = 1.5


def write_checkpoint(path: Path, name: str, params: dict) -> Path:
    run = config.resolve_variant(params, name)
    pre = Preprocess(run.input_size, run.crop, (0.1, 0.1, 0.1), (0.15, 0.15, 0.15))
    model = build_model(name, galaxy10.NUM_CLASSES, pre.input_size, pretrained="none")
    cal = Calibration(
        TEMPERATURE, "benchmark", np.zeros((0, 10), np.float32), np.zeros(0, np.int64)
    )
    ckpt_io.save(
        path,
        {
            "model": model.state_dict(),
            "model_name": name,
            "epoch": 0,
            "preprocess": pre.to_dict(),
            "calibration": cal.to_dict(),
            "class_names": list(galaxy10.CLASS_NAMES),
        },
    )
    return path


def best_rate(fn, images: np.ndarray, batch: int, repeat: int) -> tuple[float, np.ndarray]:
    """(images/s of the fastest of ``repeat`` passes, the last pass's output)."""
    fn(images[:batch])  # warm-up: allocations, onnxruntime's first-run planning
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = np.concatenate([fn(images[i : i + batch]) for i in range(0, len(images), batch)])
        best = min(best, time.perf_counter() - start)
    return len(images) / best, out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--variants", nargs="+", default=["smallnet", "customnet"])
    ap.add_argument("--size", type=int, default=256, help="image side (Galaxy10: 256)")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="for torch and onnxruntime alike")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
    params = config.load_params(ROOT / "params.yaml")
    images = np.random.default_rng(0).integers(
        0, 256, (args.images, args.size, args.size, 3), dtype=np.uint8
    )
    print(
        f"{args.images} images of {args.size} px, batch {args.batch}, {args.threads} "
        f"thread(s), best of {args.repeat}; torch {torch.__version__}, onnxruntime "
        f"{ort.__version__}"
    )
    print(
        f"{'variant':<12} {'input':>6} {'PyTorch img/s':>14} {'ONNX img/s':>11} "
        f"{'ONNX/PyTorch':>13} {'max |dp|':>9}"
    )
    with tempfile.TemporaryDirectory(prefix="export-speed-") as tmp:
        for name in args.variants:
            ckpt = write_checkpoint(Path(tmp) / f"{name}.pt", name, params)
            export_onnx(ckpt, Path(tmp) / f"{name}.onnx", args.size)
            compare(name, ckpt, Path(tmp) / f"{name}.onnx", images, args, opts)


def compare(name: str, ckpt: Path, onnx_path: Path, images: np.ndarray, args, opts) -> None:
    """One row: both paths' images/s on ``images``, their ratio, their largest difference."""
    cpu = torch.device("cpu")
    model, pre, raw = load_model(ckpt, cpu)
    cal = Calibration.from_checkpoint(raw)
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    torch_rate, want = best_rate(
        lambda x: cal.apply(run_model(model, x, pre, cpu, batch_size=args.batch)),
        images,
        args.batch,
        args.repeat,
    )
    onnx_rate, got = best_rate(
        lambda x: sess.run(None, {"images": x})[0], images, args.batch, args.repeat
    )
    print(
        f"{name:<12} {pre.input_size:>4}px {torch_rate:>14.1f} {onnx_rate:>11.1f} "
        f"{onnx_rate / torch_rate:>12.2f}x {np.abs(got - want).max():>9.1e}"
    )


if __name__ == "__main__":
    main()
