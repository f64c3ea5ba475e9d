"""Throughput of the embedded-galaxy renderer: images/s at 64 px and 256 px.

    python benchmarks/bench_synthetic.py [--per-class 100] [--repeats 3]

Renders ``--per-class`` images of every class at each size, ``--repeats`` times, and prints
the best rate (the machine is shared; the best run is the least disturbed one).
"""

from __future__ import annotations

import argparse
import time

from deepgal.data.synthetic import render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    args = ap.parse_args()
    render(1, 64, seed=0)  # warm up imports and FFT plans
    for size in args.sizes:
        per_class = args.per_class if size <= 64 else max(1, args.per_class // 4)
        best = float("inf")
        for r in range(args.repeats):
            t0 = time.perf_counter()
            images, _ = render(per_class, size, seed=r)
            best = min(best, time.perf_counter() - t0)
        print(
            f"{size:4d} px: {len(images) / best:7.0f} images/s "
            f"({len(images)} images, best of {args.repeats})"
        )


if __name__ == "__main__":
    main()
