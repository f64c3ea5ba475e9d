"""Inference against training throughput of the same model, and peak RSS of the stages after
training, on a synthetic Galaxy10-layout file of the size you ask for.

    python benchmarks/bench_features.py --images 2000 --size 256 --variants smallnet resnet50
    python benchmarks/bench_features.py --images 17736 --unique 2000 --size 256 --rss-only

Per variant (its real settings from params.yaml: input size, crop, batch size, augmentation,
precision, channels_last), in one process, one after the other:

- ``train``: images/s of :func:`deepgal.training.epoch.train_one_epoch` on the in-memory uint8
  train split, exactly what ``history.csv``'s ``images_per_s`` records;
- ``features``: images/s of the evaluate stage's path (:func:`run_on_file` over all three
  splits, reading the HDF5 file, embeddings and probabilities from one forward pass), and
  ``evaluate``: val + test with probabilities only;
- ``old path``: the path before this change (``read_images`` per chunk of each split, whose
  sparse rows went through h5py fancy indexing), for the before/after in one run;
- ``model only``: :func:`run_model` on images already in memory: the model's own bound.

Then (``--rss``) the evaluate and reduce stage scripts run as real processes on the
file with a checkpoint of the first variant, and their wall time and peak RSS (``wait4``'s
``ru_maxrss``) are printed against the size of the file's uint8 images. A Python process with
torch loaded already holds ~0.4-0.6 GB, so at small sizes the ratio says little; the issue's
bound (1.3x) is about the real size (3.49 GB): use ``--images 17736 --unique 2000`` (rows
repeat: throughput and memory do not depend on the pixels).

The synthetic file is cached under ``--workdir`` by (images, unique, size). Timings on a shared
machine move with its load; compare the ratios printed in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from deepgal import checkpoint as ckpt_io
from deepgal import config
from deepgal.data import galaxy10
from deepgal.data.split import stratified_split, write_split
from deepgal.data.synthetic import render
from deepgal.inference import run_model
from deepgal.inference.source import run_on_file
from deepgal.models import build_model
from deepgal.training import EpochPlan, RunSpec, Split, TrainState, recipe, train_one_epoch
from deepgal.transforms import Preprocess
from deepgal.utils import pick_device

ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def synthetic_file(workdir: Path, n: int, unique: int, size: int) -> Path:
    """A Galaxy10-layout file of ``n`` rows: ``unique`` rendered images, repeated."""
    path = workdir / f"synthetic_{n}_{unique}_{size}px.h5"
    if not path.exists():
        t = time.perf_counter()
        per_class = -(-unique // galaxy10.NUM_CLASSES)
        images, labels = render([per_class] * galaxy10.NUM_CLASSES, size, seed=0)
        rows = np.random.default_rng(0).permutation(np.arange(n) % len(images))
        galaxy10.write_galaxy10(path, images[rows], labels[rows])
        print(
            f"rendered {len(images)} images at {size} px into {n} rows: "
            f"{time.perf_counter() - t:.0f} s",
            flush=True,
        )
    return path


def rate(n: int, fn) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def train_rate(
    model, run: config.RunCfg, pre: Preprocess, train: Split, device, steps: int
) -> float:
    """Images/s of ``train_one_epoch`` over ``steps`` batches, after one warm-up batch."""
    opt = recipe.make_optimizer(model, run)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    spec = RunSpec(cfg=run, preprocess=pre, ckpt_dir=Path("unused"), fingerprint="bench")
    gen = torch.Generator(device=device).manual_seed(0)
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    batches = list(perm[: (steps + 1) * run.batch_size].split(run.batch_size))
    state = TrainState(model, model, opt, sched, None)
    train_one_epoch(state, train, EpochPlan(0, batches[:1], gen), spec, device)
    sums, _ = train_one_epoch(state, train, EpochPlan(0, batches[1:], gen), spec, device)
    return sums["seen"] / sums["seconds"]


def old_path(model, path, pre, device, splits, batch_size, output) -> None:
    """The inference path before this change: each split read with read_images per chunk."""
    for idx in splits.values():
        for s in range(0, len(idx), galaxy10.READ_CHUNK):
            run_model(
                model,
                galaxy10.read_images(path, idx[s : s + galaxy10.READ_CHUNK]),
                pre,
                device,
                batch_size,
                output,
            )


def bench_variant(name: str, params: dict, path: Path, splits: dict, device, args) -> dict:
    run = config.resolve_variant(params, name)
    pre = Preprocess(run.input_size, run.crop)
    torch.manual_seed(0)
    model = build_model(run.model, galaxy10.NUM_CLASSES, run.input_size).to(
        device, memory_format=torch.channels_last if run.channels_last else torch.preserve_format
    )
    labels = torch.from_numpy(galaxy10.read_labels(path))
    train = Split(
        torch.from_numpy(galaxy10.read_images(path, splits["train"])), labels[splits["train"]]
    )
    batch = config.load_section("evaluate", params).batch_size
    n_all = sum(len(v) for v in splits.values())
    evals = {k: splits[k] for k in ("val", "test")}
    n_eval = sum(len(v) for v in evals.values())
    r = {"variant": name, "input": f"{run.input_size}px crop {run.crop:g}"}
    r["train"] = train_rate(model, run, pre, train, device, args.steps)
    r["features"] = rate(
        n_all,
        lambda: run_on_file(
            model, path, pre, device, splits, batch, "features+probs", desc="features"
        ),
    )
    r["evaluate"] = rate(
        n_eval,
        lambda: run_on_file(model, path, pre, device, evals, batch, "probs", desc="evaluate"),
    )
    if not args.no_old:
        r["old"] = rate(n_eval, lambda: old_path(model, path, pre, device, evals, batch, "probs"))
    r["model"] = rate(
        len(train), lambda: run_model(model, train.images, pre, device, batch, "features")
    )
    return r


def run_stage(argv: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one stage script run as its own process.

    Measured by GNU time (``%M``), whose small process forks the stage: Linux carries a
    process's peak RSS across ``execve``, so ``wait4`` on a child forked from this (large)
    benchmark process would report this process's size instead of the stage's.
    """
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DEEPGAL_MLFLOW": "off",
        "DEEPGAL_PROGRESS": "lines",
    }
    rss_file = cwd / "rss.txt"
    t = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-o", str(rss_file), "-f", "%M", sys.executable, *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, int(rss_file.read_text().split()[-1]) * 1024


def stage_rss(name: str, params: dict, path: Path, splits: dict, workdir: Path) -> list[tuple]:
    """Run evaluate (scores and embeddings) and reduce for ``name`` with a fresh checkpoint."""
    run = config.resolve_variant(params, name)
    repo = workdir / "stages_repo"
    (repo / "results").mkdir(parents=True, exist_ok=True)
    (repo / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    labels = galaxy10.read_labels(path)
    write_split(repo / "split", splits, labels, [0.5] * 3, [0.25] * 3, {"source": "synthetic"})
    model = build_model(run.model, galaxy10.NUM_CLASSES, run.input_size)
    pre = Preprocess(run.input_size, run.crop)
    ckpt_io.save(
        repo / "model.pt",
        {
            "model": model.state_dict(),
            "model_name": run.model,
            "preprocess": pre.to_dict(),
            "epoch": 1,
        },
    )
    (repo / "selection.json").write_text(json.dumps({"checkpoint": "model.pt", "epoch": 1}))
    (repo / "history.csv").write_text("epoch,seconds\n1,60.0\n")
    st = str(ROOT / "stages")
    common = ["--data", str(path), "--split", "split"]
    rows = []
    for stage, argv in (
        (
            "evaluate",
            [
                f"{st}/evaluate.py",
                "--variant",
                name,
                "--selection",
                "selection.json",
                "--history",
                "history.csv",
                "--run",
                "none.json",
                *common,
                "--metrics",
                "results/metrics.json",
                "--out",
                "results/eval.json",
                "--predictions",
                "results/predictions.csv",
                "--plots",
                "results/cm",
                "--features",
                "models/features.h5",
                "--gradcam",
                "results/gradcam.npz",
            ],
        ),
        (
            "reduce",
            [
                f"{st}/reduce.py",
                "--features",
                "models/features.h5",
                "--out",
                "results/embeddings.csv",
                "--timings",
                "results/timings.json",
            ],
        ),
    ):
        rows.append((stage, *run_stage(argv, repo)))
        print(f"  {stage}: {rows[-1][1]:.1f} s, peak RSS {rows[-1][2] / 1e9:.2f} GB", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=2000, help="rows in the file")
    p.add_argument(
        "--unique",
        type=int,
        default=None,
        help="distinct rendered images (default: --images); rows repeat them",
    )
    p.add_argument("--size", type=int, default=256, help="image side in px (the real set: 256)")
    p.add_argument("--variants", nargs="+", default=None, help="default: every variant")
    p.add_argument("--steps", type=int, default=10, help="training batches timed per variant")
    p.add_argument("--device", default="auto")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/deepgal-bench"))
    p.add_argument("--no-old", action="store_true", help="skip the pre-change path")
    p.add_argument("--rss", action="store_true", help="also run the stages for peak RSS")
    p.add_argument("--rss-only", action="store_true", help="only the stages' peak RSS")
    args = p.parse_args()
    print("$ python " + " ".join(shlex.quote(a) for a in sys.argv))
    params = config.load_params(ROOT / "params.yaml")
    variants = args.variants or list(params["variants"])
    device = pick_device(args.device)
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = synthetic_file(args.workdir, args.images, args.unique or args.images, args.size)
    splits = stratified_split(galaxy10.read_labels(path), FRACTIONS, seed=0)
    data_gb = args.images * args.size * args.size * 3 / 1e9
    print(
        f"{path.name}: {args.images} images of {args.size} px ({data_gb:.2f} GB uint8); "
        f"torch {torch.__version__} on {device}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if not args.rss_only:
        print(
            "| variant | input | train img/s | features img/s | evaluate img/s | "
            f"{'' if args.no_old else 'old path img/s | '}model only img/s | "
            "features / train |"
        )
        print("|---|---|---:|---:|---:|---:|---:|" + ("" if args.no_old else "---:|"))
        for name in variants:
            r = bench_variant(name, params, path, splits, device, args)
            old = "" if args.no_old else f"{r['old']:.0f} | "
            print(
                f"| {name} | {r['input']} | {r['train']:.0f} | {r['features']:.0f} | "
                f"{r['evaluate']:.0f} | {old}{r['model']:.0f} | "
                f"{r['features'] / r['train']:.2f} |",
                flush=True,
            )
    if args.rss or args.rss_only:
        print(f"stages on {variants[0]} (peak RSS against {data_gb:.2f} GB of uint8 images):")
        rows = stage_rss(variants[0], params, path, splits, args.workdir)
        print("| stage | seconds | peak RSS GB | / uint8 data |\n|---|---:|---:|---:|")
        for stage, sec, rss in rows:
            print(f"| {stage} | {sec:.1f} | {rss / 1e9:.2f} | {rss / 1e9 / data_gb:.2f} |")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
