"""Wall time of the default pipeline's first `dvc repro`, whole and per stage, in a fresh temp repo.

    python benchmarks/bench_pipeline.py [--keep DIR] [--warm-numba]

Runs one plain `dvc repro` on the repository's own params.yaml (the embedded synthetic
default) in a new git + DVC repository, exactly as a user's first run (with an empty numba
cache, so UMAP is compiled once, as on a fresh clone), and times each stage
from the moment DVC prints "Running stage" to the next one (so DVC's own hashing and caching
between stages is counted with the stage before). Then times the no-op re-run.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.pipeline_repo import dvc, env_for, make_repo  # noqa: E402

RUNNING = re.compile(r"^Running stage '([^']+)'")


def timed_repro(root: Path, env: dict[str, str]) -> tuple[list[tuple[str, float]], float]:
    """[(stage, seconds)] in the order DVC ran them, and the whole run's seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    starts, tail = [], []
    for line in proc.stdout:
        tail = (tail + [line])[-40:]
        if m := RUNNING.match(line):
            starts.append((m.group(1), time.perf_counter()))
            print(f"{starts[-1][1] - t0:7.1f} s  {m.group(1)}", flush=True)
    if proc.wait():
        raise SystemExit("dvc repro failed:\n" + "".join(tail))
    end = time.perf_counter()
    rows = [
        (name, (starts[i + 1][1] if i + 1 < len(starts) else end) - t)
        for i, (name, t) in enumerate(starts)
    ]
    return rows, end - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--keep", type=Path, help="build the repo here and keep it")
    p.add_argument(
        "--warm-numba",
        action="store_true",
        help="reuse this checkout's numba cache (.cache/numba) instead of starting "
        "from an empty one, as a fresh clone does",
    )
    args = p.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="deepgal-bench-")) / "repo"
    make_repo(root, tiny=False)
    env = env_for(root)
    if not args.warm_numba:
        # A fresh clone has no compiled UMAP yet: the first reduce stage compiles it (~30 s
        # here). The tests share one cache between repositories; a fair figure must not.
        env["NUMBA_CACHE_DIR"] = str(root / ".cache" / "numba")
    print(
        f"$ python benchmarks/bench_pipeline.py{' --warm-numba' if args.warm_numba else ''}"
        f"   (repo {root}, numba cache {env['NUMBA_CACHE_DIR']})"
    )
    rows, total = timed_repro(root, env)
    print("\n| stage | seconds |\n|---|---:|")
    for stage, sec in rows:
        print(f"| {stage} | {sec:.1f} |")
    kinds: dict[str, float] = {}
    for stage, sec in rows:
        kinds[stage.split("@")[0]] = kinds.get(stage.split("@")[0], 0.0) + sec
    for kind, sec in kinds.items():
        print(f"| {kind} (all variants) | {sec:.1f} |")
    print(f"| **whole `dvc repro`** | **{total:.1f}** |")
    t = time.perf_counter()
    dvc(["repro"], root, NUMBA_CACHE_DIR=env["NUMBA_CACHE_DIR"])
    print(f"| no-op re-run (`dvc repro`) | {time.perf_counter() - t:.1f} |")


if __name__ == "__main__":
    main()
