"""Feature-extraction images/s per variant (batched `inference_mode`, uint8 -> device path).

    python benchmarks/bench_features.py [--n 1024] [--size 64] [--device auto]

Uses the same code as the features stage (`deepgal.inference.run_model(output="features")`) on
random uint8 images at the default input sizes of params.yaml.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml

from deepgal.models import build_model
from deepgal.inference import run_model
from deepgal.transforms import Preprocess
from deepgal.utils import pick_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--size", type=int, default=64, help="stored image side (px)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=256)
    args = p.parse_args()
    device = pick_device(args.device)
    variants = yaml.safe_load(open("params.yaml"))["variants"]
    images = np.random.default_rng(0).integers(0, 256, (args.n, args.size, args.size, 3),
                                               dtype=np.uint8)
    print(f"$ python benchmarks/bench_features.py --n {args.n} --size {args.size}  "
          f"(device {device}, {torch.get_num_threads()} threads)")
    print("| variant | input px | feature dim | images/s |\n|---|---:|---:|---:|")
    for name, v in variants.items():
        pre = Preprocess(input_size=v.get("input_size", 64), crop=v.get("crop", 1.0))
        model = build_model(v.get("model", name), 10, pre.input_size).to(
            device, memory_format=torch.channels_last).eval()
        run_model(model, images[:args.batch_size], pre, device, args.batch_size, output="features")
        t = time.perf_counter()
        out = run_model(model, images, pre, device, args.batch_size, output="features")
        sec = time.perf_counter() - t
        print(f"| {name} | {pre.input_size} | {out.shape[1]} | {args.n / sec:.0f} |", flush=True)


if __name__ == "__main__":
    main()
