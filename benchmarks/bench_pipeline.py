"""Wall time of every stage of the default pipeline, and of the whole, in a fresh temp repo.

    python benchmarks/bench_pipeline.py [--keep DIR]

Runs `dvc repro --single-item <stage>` for each stage in DAG order on the repository's own
params.yaml (the embedded synthetic default), so the figures are what a user's first
`dvc repro` costs on this machine, stage by stage.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.pipeline_repo import dvc, make_repo  # noqa: E402


def stage_order(repo: Path) -> list[str]:
    out = dvc(["stage", "list", "--name-only"], repo).stdout.split()
    rank = {"download": 0, "split": 1, "train": 2, "select": 3, "evaluate": 4, "features": 5,
            "reduce": 6, "plot": 7}
    return sorted(out, key=lambda s: (rank[s.split("@")[0]], out.index(s)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--keep", type=Path, help="build the repo here and keep it")
    args = p.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="deepgal-bench-")) / "repo"
    make_repo(root, tiny=False)
    print(f"$ python benchmarks/bench_pipeline.py   (repo {root})")
    rows, t_all = [], time.perf_counter()
    for stage in stage_order(root):
        t = time.perf_counter()
        dvc(["repro", "--single-item", stage], root)
        rows.append((stage, time.perf_counter() - t))
        print(f"{stage:24s} {rows[-1][1]:7.1f} s", flush=True)
    total = time.perf_counter() - t_all
    print("\n| stage | seconds |\n|---|---:|")
    for stage, sec in rows:
        print(f"| {stage} | {sec:.1f} |")
    print(f"| **whole pipeline** | **{total:.1f}** |")
    t = time.perf_counter()
    dvc(["repro"], root)
    print(f"| no-op re-run (`dvc repro`) | {time.perf_counter() - t:.1f} |")


if __name__ == "__main__":
    main()
