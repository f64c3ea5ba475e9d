"""The train stage in memory vs streamed (``train.stream``): seconds, images/s and peak RSS.

For each size, writes a Galaxy10-layout file of N images (``--side`` px, random pixels: the
data path's cost does not depend on content), its 80/10/10 split and statistics, then runs
``train@smallnet`` (the library's :func:`deepgal.training.train_variant`, one epoch, the repo's
params.yaml otherwise) in a fresh process per mode and prints one row per (N, mode): wall
seconds of the whole stage, training images/s of the epoch, and the process's peak RSS. The
two modes of one size run back to back on the same file, so their ratio is the comparison.

    python benchmarks/bench_stream.py --sizes 17740 70000 --side 64 --dir /tmp/bs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_memory import write_real_size  # noqa: E402

from tests.helpers import write_split_files  # noqa: E402


def prepare(root: Path, n: int, side: int) -> None:
    data = root / "galaxy10.h5"
    if (root / "split").exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    write_real_size(data, n, side)
    write_split_files(data, {"train": 0.8, "val": 0.1, "test": 0.1})


def child(root: Path, mode: str, variant: str, buffer_mb: int) -> None:
    import dataclasses

    from deepgal import config
    from deepgal.training import TrainPaths, train_variant

    run = config.resolve_variant(config.load_params(), variant)
    run = dataclasses.replace(
        run, epochs=1, stream=mode, stream_buffer_mb=buffer_mb, checkpoint_every=1
    )
    out = root / f"out-{mode}"
    shutil.rmtree(out, ignore_errors=True)  # else a finished run's checkpoints are "resumed"
    paths = TrainPaths(
        root / "galaxy10.h5", root / "source.json", root / "split", out / "m", out / "r"
    )
    t0 = time.perf_counter()
    summary = train_variant(run, paths)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    last = summary  # train.json: the last epoch's keys, flat
    print(
        json.dumps(
            {
                "wall_s": wall,
                "train_images_per_s": last.get("images_per_s"),
                "epoch_s": last.get("seconds"),
                "peak_rss_gb": peak / 1e9,
                "val_accuracy": last.get("val/accuracy"),
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[17740, 70000])
    p.add_argument("--side", type=int, default=64)
    p.add_argument("--dir", type=Path, default=Path("/tmp/bench_stream"))
    p.add_argument("--modes", nargs="+", default=["never", "always"])
    p.add_argument("--variant", default="smallnet")
    p.add_argument("--buffer-mb", type=int, default=512)
    p.add_argument("--child", nargs=2, metavar=("ROOT", "MODE"))
    args = p.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], args.variant, args.buffer_mb)
        return
    print("| images | mode | stage wall s | train img/s | peak RSS GB | uint8 data GB |")
    print("|---:|---|---:|---:|---:|---:|")
    for n in args.sizes:
        root = args.dir / f"n{n}"
        prepare(root, n, args.side)
        for mode in args.modes:
            env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
            cmd = [sys.executable, __file__, "--child", str(root), mode]
            cmd += ["--variant", args.variant, "--buffer-mb", str(args.buffer_mb)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if proc.returncode != 0:
                sys.exit(f"{mode} at {n} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            data_gb = n * args.side * args.side * 3 / 1e9
            print(
                f"| {n:,} | {mode} | {r['wall_s']:.1f} | {r['train_images_per_s']:,.0f} | "
                f"{r['peak_rss_gb']:.2f} | {data_gb:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
