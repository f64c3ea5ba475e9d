"""GPU throughput check: images/s of ResNet-50 and ConvNeXt-Tiny, training step and inference,
with the input path and for the model alone, so a slow input path shows as the gap between them.

Run as it is on a machine with a GPU (bf16 autocast, channels_last, compiled and not)::

    python benchmarks/bench_gpu.py                       # cuda, 224 px, batch 256, 30 steps
    python benchmarks/bench_gpu.py --device cpu --steps 2 --batch 8 --size 64   # smoke

Goal: >= 2,500 img/s for a ResNet-50 training step on one H100, with the input path never the
bottleneck (``train + input`` within a few % of ``train, model only``).

Input paths, as :mod:`deepgal.training.loop` runs them:

- ``host``: the split is a uint8 (N, 256, 256, 3) host tensor; per batch ``index_select`` ->
  pinned copy to the device -> :func:`deepgal.transforms.prepare_batch` (crop/resize,
  rotation/flip/jitter/zoom/shift augmentation when training, normalise) -> the model;
- ``resident``: the split lives in GPU memory (what ``place_split`` does when it fits; the
  real set is 3.5 GB), so ``index_select`` runs on the device (CUDA only);
- ``model only``: a ready (B, 3, S, S) batch, the ceiling.
- ``input only``: the host path without the model: what it can feed at most.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from deepgal.config import load_section
from deepgal.models import build_model
from deepgal.training.recipe import has_compiler
from deepgal.transforms import Preprocess, prepare_batch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, n: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``step`` after ``warmup`` calls (compilation happens there)."""
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return (time.perf_counter() - t0) / n


def bench_model(
    name: str, compiled: bool, args, device: torch.device, pool: torch.Tensor, labels: torch.Tensor
) -> list[dict]:
    cuda = device.type == "cuda"
    b, s = args.batch, args.size
    pre = Preprocess(input_size=s)
    aug = load_section("train").augment  # params.yaml's, what every variant trains with
    model = build_model(name, 10, s).to(device, memory_format=torch.channels_last)
    fwd = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    gen = torch.Generator(device=device).manual_seed(0)
    cpu_gen = torch.Generator().manual_seed(0)
    resident = (pool.to(device), labels.to(device)) if cuda else None
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    ready = torch.randn(b, 3, s, s, device=device).contiguous(memory_format=torch.channels_last)
    ready_y = torch.randint(0, 10, (b,), device=device)

    def batch(where: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(pool), (b,), generator=cpu_gen)
        if where == "resident":
            imgs, lab = resident
            xb, y = imgs.index_select(0, idx.to(device)), lab.index_select(0, idx.to(device))
        else:
            xb, y = pool.index_select(0, idx), labels.index_select(0, idx)
            if cuda:
                xb, y = xb.pin_memory().to(device, non_blocking=True), y.to(device)
        x = prepare_batch(xb, pre, aug if train else None, generator=gen, channels_last=True)
        return x, y

    def train_step(where: str):
        def step():
            x, y = (ready, ready_y) if where == "model only" else batch(where, True)
            with amp:
                out = fwd(x)
            loss = F.cross_entropy(out.float(), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    def infer_step(where: str):
        @torch.no_grad()
        def step():
            x = ready if where == "model only" else batch(where, False)[0]
            with amp:
                fwd(x).float().softmax(1)

        return step

    def input_step():
        batch("host", True)

    wheres = ["model only", "host"] + (["resident"] if cuda else [])
    rows = []
    model.train()
    for where in wheres:
        rows.append(("train", where, timed(train_step(where), args.steps, args.warmup, device)))
    model.eval()
    for where in wheres:
        rows.append(("inference", where, timed(infer_step(where), args.steps, args.warmup, device)))
    if not compiled:  # the input path alone does not depend on the model's compilation
        rows.append(("input only", "host", timed(input_step, args.steps, args.warmup, device)))
    return [
        {
            "model": name,
            "compiled": compiled,
            "phase": ph,
            "input": wh,
            "img_s": b / sec,
            "ms": sec * 1e3,
        }
        for ph, wh, sec in rows
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--models", nargs="+", default=["resnet50", "convnext_tiny"])
    p.add_argument("--size", type=int, default=224, help="model input px (default 224)")
    p.add_argument("--source", type=int, default=256, help="stored image px (real set: 256)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=None, help="default: 10 on CUDA, 1 on CPU")
    p.add_argument("--pool", type=int, default=2048, help="images in the host uint8 split")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument(
        "--compile",
        default="auto",
        choices=["auto", "both", "no", "yes"],
        help="auto: both on CUDA, no on CPU (Inductor on CPU takes minutes)",
    )
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA device; use --device cpu for the smoke run")
    device = torch.device(args.device)
    args.warmup = args.warmup if args.warmup is not None else (10 if device.type == "cuda" else 1)
    args.source = max(args.source, args.size)
    modes = {
        "auto": [False, True] if device.type == "cuda" else [False],
        "both": [False, True],
        "no": [False],
        "yes": [True],
    }[args.compile]
    if device.type == "cpu" and True in modes and not has_compiler():
        modes = [False]
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    g = torch.Generator().manual_seed(0)
    pool = torch.randint(
        0, 256, (args.pool, args.source, args.source, 3), dtype=torch.uint8, generator=g
    )
    labels = torch.randint(0, 10, (args.pool,), generator=g)
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {dev}, torch {torch.__version__}, {args.precision}, channels_last, batch "
        f"{args.batch}, {args.size} px from {args.source} px uint8, {args.steps} timed steps "
        f"after {args.warmup} warm-up"
    )
    print()
    print("| model | compiled | phase | input path | img/s | ms/batch |")
    print("|---|---|---|---|---:|---:|")
    for name in args.models:
        for compiled in modes:
            for r in bench_model(name, compiled, args, device, pool, labels):
                print(
                    f"| {r['model']} | {'yes' if r['compiled'] else 'no'} | {r['phase']} | "
                    f"{r['input']} | {r['img_s']:,.0f} | {r['ms']:.1f} |",
                    flush=True,
                )
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
