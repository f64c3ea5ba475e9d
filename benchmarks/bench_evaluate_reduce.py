"""Peak memory and seconds per image of the evaluate and reduce stages as the data set grows.

For each size: a Galaxy10-layout file of that many 64 px images (random pixels: the stages'
cost does not depend on what the pixels show), the split stage's outputs beside it, and a
smallnet checkpoint at its default 32 px input (its embedding is 4,096-D, the widest of the
variants: a flattened conv map). Then ``stages/evaluate.py`` and ``stages/reduce.py`` of each
source tree run on it as the pipeline runs them (``params.yaml`` of that tree, MLflow off),
each under ``/usr/bin/time``: peak RSS and wall seconds per stage process.

``--tree`` adds another checkout (e.g. ``git worktree add /tmp/old <commit>``) run on the same
files, so old and new are compared side by side in one run (this machine is noisy).

    python benchmarks/bench_evaluate_reduce.py --sizes 17740 70000 283000 \
        [--tree /tmp/old] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.helpers, benchmarks.bench_memory

from benchmarks.bench_memory import write_real_size  # noqa: E402
from deepgal import checkpoint as ckpt_io  # noqa: E402
from deepgal.models import build_model  # noqa: E402
from deepgal.transforms import Preprocess  # noqa: E402
from tests.helpers import write_split_files  # noqa: E402

SIDE = 64


def prepare(work: Path, n: int) -> None:
    """The data file, its split and a selected smallnet checkpoint under ``work``."""
    (work / "data").mkdir(parents=True)
    write_real_size(work / "data/galaxy10.h5", n, SIDE)
    write_split_files(work / "data/galaxy10.h5", {"train": 0.8, "val": 0.1, "test": 0.1})
    torch.manual_seed(0)
    model = build_model("smallnet", 10, 32).eval()
    pre = Preprocess(32, crop=0.5)
    ckpt_io.save(
        work / "selected.pt",
        {"model": model.state_dict(), "model_name": "smallnet", "preprocess": pre.to_dict()}
        | {"epoch": 1},
    )
    (work / "selection.json").write_text(json.dumps({"checkpoint": "selected.pt", "epoch": 1}))
    (work / "history.csv").write_text("epoch,seconds\n1,1.0\n")
    (work / "run.json").write_text(json.dumps({"run_id": None}))


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS GB) of ``cmd`` under GNU time; exits with its log on failure."""
    stats = cwd / "time.txt"
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", "-o", str(stats), *cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    wall, kb = stats.read_text().split()[-2:]
    return float(wall), int(kb) / 1e6


def run_tree(tree: Path, work: Path) -> dict[str, tuple[float, float]]:
    """{stage: (seconds, peak GB)} of evaluate then reduce of ``tree`` on ``work``'s files."""
    out = work / f"out-{tree.name}"
    out.mkdir()
    shutil.copy(tree / "params.yaml", out / "params.yaml")
    # The features file's name and format are the tree's own (features.npz before the HDF5).
    features = out / (
        "features.h5" if "features.h5" in (tree / "dvc.yaml").read_text() else "features.npz"
    )
    env = {**os.environ, "PYTHONPATH": str(tree), "DEEPGAL_MLFLOW": "off"}
    evaluate = [sys.executable, str(tree / "stages/evaluate.py"), "--variant", "smallnet"]
    for flag, path in {
        "selection": work / "selection.json",
        "checkpoint": work / "selected.pt",
        "calibration": out / "calibration.json",
        "history": work / "history.csv",
        "run": work / "run.json",
        "data": work / "data/galaxy10.h5",
        "split": work / "data/split",
        "metrics": out / "metrics.json",
        "out": out / "eval.json",
        "predictions": out / "predictions.csv",
        "plots": out / "confusion",
        "features": features,
        "gradcam": out / "gradcam.npz",
    }.items():
        evaluate += [f"--{flag}", str(path)]
    reduce = [sys.executable, str(tree / "stages/reduce.py"), "--features", str(features)]
    reduce += ["--out", str(out / "embeddings.csv"), "--timings", str(out / "timings.json")]
    return {"evaluate": timed(evaluate, out, env), "reduce": timed(reduce, out, env)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[17740, 70000])
    ap.add_argument("--tree", type=Path, action="append", default=[], help="another checkout")
    ap.add_argument("--dir", type=Path, default=None, help="where the data files go")
    args = ap.parse_args()
    trees = [ROOT, *(t.resolve() for t in args.tree)]
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-eval-reduce-", dir=args.dir) as tmp:
            work = Path(tmp)
            prepare(work, n)
            for tree in trees:
                for stage, (s, gb) in run_tree(tree, work).items():
                    rows.append((n, tree, stage, s, gb))
                    print(f"{n} {tree} {stage}: {s:.1f} s, {gb:.2f} GB", flush=True)
    print("\n| images | tree | stage | seconds | ms / image | peak RSS GB |")
    print("|---:|---|---|---:|---:|---:|")
    for n, tree, stage, s, gb in rows:
        print(f"| {n:,} | {tree} | {stage} | {s:.1f} | {1000 * s / n:.2f} | {gb:.2f} |")


if __name__ == "__main__":
    main()
