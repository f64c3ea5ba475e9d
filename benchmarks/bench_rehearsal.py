"""The real-size rehearsal at several sizes: wall time and peak RSS of every stage, and how
they grow with the number of images.

    python benchmarks/bench_rehearsal.py                        # 1,000, 4,000 and 17,736 images
    python benchmarks/bench_rehearsal.py --sizes 1000 4000      # smaller: ~20 min on 2 cores
    # cost growth (issue 27): 64 px, two variants, training streamed
    python benchmarks/bench_rehearsal.py --sizes 17740 70000 283000 --side 64 \
        --variants smallnet customnet --set train.stream=always --set variants.customnet.epoch_images=2000

Each size gets a new git + DVC repository holding this checkout's code with
``profiles/rehearsal.yaml`` applied (synthetic 256x256x3 galaxies in the real class mix, every
variant one epoch) and ``per_class`` set so the file holds about that many images; one plain
``dvc repro`` runs there, as a user's ``dvc exp run $(deepgal profile rehearsal)`` would. The
numba cache is the temporary repository's own (empty), as on a fresh clone.

Per stage: seconds from DVC's "Running stage" line to the next, and the peak resident memory
of the stage's own processes (the ``stages/*.py`` process and any children, e.g. torchrun's
workers, sampled every 0.2 s with psutil), also as a multiple of the uint8 image bytes
(N x 196,608). The target is every stage <= 1.3 x the uint8 data at 17,736 images.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deepgal import profiles  # noqa: E402
from tests.pipeline_repo import REPO, env_for, make_repo, run  # noqa: E402

RUNNING = re.compile(r"^Running stage '([^']+)'")
IMAGE_BYTES = 256 * 256 * 3


class StageMemory:
    """Peak RSS of the processes running ``stages/*.py`` under ``root_pid``, per stage name."""

    def __init__(self, root_pid: int, every_s: float = 0.2):
        self.root, self.every_s = psutil.Process(root_pid), every_s
        self.stage: str | None = None
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _stage_rss(self) -> int:
        total = 0
        try:
            procs = self.root.children(recursive=True)
        except psutil.Error:
            return 0
        for p in procs:
            try:
                cmd = " ".join(p.cmdline())
                # the stage script and what it starts (torchrun ranks), not DVC or the shell
                if "stages/" in cmd or any("stages/" in " ".join(a.cmdline()) for a in p.parents()):
                    total += p.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            if self.stage is not None:
                rss = self._stage_rss()
                self.peak[self.stage] = max(self.peak.get(self.stage, 0), rss)


def rehearsal_params(
    n_images: int, side: int = 256, variants: list[str] | None = None, sets: list[str] = ()
) -> dict:
    """params.yaml with the rehearsal profile applied, resized to about ``n_images`` of
    ``side`` px, only ``variants`` (all when None), then each ``key=value`` of ``sets``."""
    params = profiles.check("rehearsal", REPO / "params.yaml", REPO)
    params["data"]["synthetic"]["per_class"] = max(1, round(n_images / 10))
    params["data"]["synthetic"]["image_size"] = side
    if variants:
        params["variants"] = {k: v for k, v in params["variants"].items() if k in variants}
    for item in sets:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = params
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return params


def repro(root: Path, env: dict) -> tuple[list[tuple[str, float, int]], float]:
    """[(stage, seconds, peak RSS bytes)] in DVC's order, and the whole run's seconds."""
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
    with StageMemory(proc.pid) as mem:
        for line in proc.stdout:
            tail = (tail + [line])[-40:]
            if m := RUNNING.match(line):
                starts.append((m.group(1), time.perf_counter()))
                mem.stage = m.group(1)
                print(f"  {starts[-1][1] - t0:7.1f} s  {m.group(1)}", flush=True)
        if proc.wait():
            raise SystemExit("dvc repro failed:\n" + "".join(tail))
    end = time.perf_counter()
    rows = [
        (name, (starts[i + 1][1] if i + 1 < len(starts) else end) - t, mem.peak.get(name, 0))
        for i, (name, t) in enumerate(starts)
    ]
    return rows, end - t0


def per_image_table(results: dict[int, tuple[list[tuple[str, float, int]], float]]) -> str:
    """Markdown: each stage's milliseconds per image at every size, the last size's figure as a
    multiple of the first's (goal <= 1.5x), and its peak RSS at every size (goal <= 2.5 GB)."""
    sizes = list(results)
    head = " | ".join(f"ms/img @ {n:,}" for n in sizes)
    rss = " | ".join(f"RSS GB @ {n:,}" for n in sizes)
    lines = [
        f"| stage | {head} | {sizes[-1]:,} / {sizes[0]:,} | {rss} |",
        "|---|" + "---:|" * (2 * len(sizes) + 1),
    ]
    for name, _, _ in results[sizes[-1]][0]:
        rows = [next(((s, r) for st, s, r in results[n][0] if st == name), None) for n in sizes]
        ms = [1e3 * r[0] / n if r else float("nan") for r, n in zip(rows, sizes, strict=True)]
        gb = [r[1] / 1e9 if r else float("nan") for r in rows]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{m:.3f}" for m in ms)
            + f" | {ms[-1] / ms[0]:.2f}x | "
            + " | ".join(f"{g:.2f}" for g in gb)
            + " |"
        )
    return "\n".join(lines)


def growth_table(results: dict[int, tuple[list[tuple[str, float, int]], float]]) -> str:
    """Markdown: each stage's seconds at every size, its growth first -> last size, and its
    peak RSS at the last size (a stage missing at a size shows nan)."""
    sizes = list(results)
    first, last = sizes[0], sizes[-1]
    lines = [
        "| stage | "
        + " | ".join(f"s @ {n}" for n in sizes)
        + f" | growth {first} -> {last} | peak RSS GB @ {last} |",
        "|---|" + "---:|" * (len(sizes) + 2),
    ]
    for name, _, rss in results[last][0]:
        secs = [next((s for st, s, _ in results[n][0] if st == name), float("nan")) for n in sizes]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{s:.1f}" for s in secs)
            + f" | {secs[-1] / secs[0]:.1f}x | {rss / 1e9:.2f} |"
        )
    totals = [results[n][1] for n in sizes]
    lines.append(
        "| **whole** | "
        + " | ".join(f"{t:.0f}" for t in totals)
        + f" | {totals[-1] / totals[0]:.1f}x | |"
    )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 17736])
    p.add_argument("--keep", type=Path, help="build the repositories under this folder")
    p.add_argument("--side", type=int, default=256, help="image size in px (the real set: 256)")
    p.add_argument("--variants", nargs="+", help="train only these variants (default: all)")
    p.add_argument("--set", action="append", default=[], help="a params key=value, repeatable")
    args = p.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="deepgal-rehearsal-"))
    try:
        results = measure(base, args.sizes, args.side, args.variants, args.set)
    finally:
        if not args.keep:  # ~10 GB at 1k + 4k, ~15 GB at full size
            shutil.rmtree(base, ignore_errors=True)
    if len(results) > 1:
        print(growth_table(results))
        print()
        print(per_image_table(results))


def measure(
    base: Path,
    sizes: list[int],
    side: int = 256,
    variants: list[str] | None = None,
    sets: list[str] = (),
) -> dict[int, tuple[list, float]]:
    """One repository and one ``dvc repro`` per size under ``base``; prints each table."""
    results: dict[int, tuple[list, float]] = {}
    image_bytes = side * side * 3
    for n in sizes:
        root = base / f"n{n}"
        make_repo(root, tiny=False)
        params = rehearsal_params(n, side, variants, sets)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = env_for(root, NUMBA_CACHE_DIR=str(root / ".cache" / "numba"))
        run(["git", "commit", "-qam", f"rehearsal, {n} images"], root, env)
        n_real = 10 * params["data"]["synthetic"]["per_class"]
        print(
            f"$ dvc repro  ({n_real} images of {side}x{side}x3 = {n_real * image_bytes / 1e9:.2f} "
            f"GB uint8; repo {root})",
            flush=True,
        )
        results[n] = repro(root, env)
        rows, total = results[n]
        data_gb = n_real * image_bytes / 1e9
        print(f"\n| stage ({n_real} images) | seconds | peak RSS (GB) | x uint8 data |")
        print("|---|---:|---:|---:|")
        for stage, sec, rss in rows:
            print(f"| {stage} | {sec:.1f} | {rss / 1e9:.2f} | {rss / 1e9 / data_gb:.2f} |")
        print(
            f"| **whole `dvc repro`** | **{total:.1f}** ({total / 60:.1f} min) | | |\n", flush=True
        )
    return results


if __name__ == "__main__":
    main()
