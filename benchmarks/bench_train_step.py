"""Training throughput per variant: images/s of prepare_batch + forward + backward + SGD step.

Batches come the way the training loop makes them: random indices into a uint8 (N, H, W, 3)
tensor on the device, augmented and normalised there by
:func:`deepgal.transforms.prepare_batch`. On CUDA: bf16 autocast and channels_last, and
``--compile`` for torch.compile; on CPU: fp32, the same code.

    python benchmarks/bench_train_step.py [--variants smallnet resnet50] [--size 256] [--compile]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import torch
import torch.nn.functional as F

from deepgal.models import MODEL_NAMES, build_model
from deepgal.transforms import Augment, Preprocess, prepare_batch

# Centre crop per variant (the pipeline's defaults): smallnet sees the central half, 32 px of
# a 64 px image; the others see the whole image at the source resolution.
CROP = {"smallnet": 0.5}


def bench_variant(name: str, size: int, crop: float, args, device: torch.device) -> dict:
    cuda = device.type == "cuda"
    source = round(size / crop)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.pool, source, source, 3), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (args.pool,), generator=g)
    # The training loop keeps a split on the GPU when it fits (3.5 GB for the real set), so
    # batches are gathered there; on CPU they are gathered in host memory.
    images, labels = images.to(device), labels.to(device)
    pre, aug = (
        Preprocess(size, crop=crop),
        Augment(rotate=True, flip=True, jitter=0.1, scale=0.1, translate=0.05),
    )
    dev_gen = torch.Generator(device=device).manual_seed(0)
    model = build_model(name, input_size=size).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if args.compile else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step() -> None:
        idx = torch.randint(0, args.pool, (args.batch_size,), generator=dev_gen, device=device)
        # index_select: ~10x faster than images[idx] for a uint8 (N, H, W, 3) tensor on CPU.
        x = prepare_batch(images.index_select(0, idx), pre, aug, dev_gen, channels_last=cuda)
        y = labels[idx]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(fwd(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    steps, t0 = 0, time.perf_counter()
    while steps < args.min_steps or time.perf_counter() - t0 < args.seconds:
        step()
        steps += 1
        if not cuda or steps % 10 == 0:
            sync()
    sync()
    dt = time.perf_counter() - t0
    return {
        "variant": name,
        "input": f"{size}px crop {crop:g}",
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "steps": steps,
        "ms_step": 1e3 * dt / steps,
        "img_s": steps * args.batch_size / dt,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--variants",
        nargs="+",
        default=[n for n in MODEL_NAMES if n != "resnet18"],
        choices=MODEL_NAMES,
    )
    p.add_argument(
        "--size",
        type=int,
        default=64,
        help="side of the source images (the real set: 256); the model input is "
        "this side, or half of it for smallnet's 0.5 centre crop",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seconds", type=float, default=8.0, help="time per variant after warm-up")
    p.add_argument("--min-steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--pool", type=int, default=1024, help="images in the in-memory uint8 set")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    args = p.parse_args()
    print("$ python " + " ".join(shlex.quote(a) for a in sys.argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"torch {torch.__version__}, {name}, {torch.get_num_threads()} CPU threads, load "
        f"average {os.getloadavg()[0]:.1f}; batch {args.batch_size}; "
        f"{'bf16 autocast + channels_last' if device.type == 'cuda' else 'fp32'}"
        f"{' + compile' if args.compile else ''}"
    )
    if args.compile:
        args.warmup = max(args.warmup, 3)  # the first calls compile
    print(f"{'variant':<14} {'input':<14} {'params':>8} {'steps':>6} {'ms/step':>9} {'img/s':>9}")
    for v in args.variants:
        crop = CROP.get(v, 1.0)
        r = bench_variant(v, round(args.size * crop), crop, args, device)
        print(
            f"{r['variant']:<14} {r['input']:<14} {r['params_m']:7.1f}M {r['steps']:>6} "
            f"{r['ms_step']:9.1f} {r['img_s']:9.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
