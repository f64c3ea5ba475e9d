"""Seconds of exact cosine k-NN search, scikit-learn vs faiss, side by side: where faiss pays.

For each N and each workload, both backends of :class:`deepgal.explore.index.NeighbourIndex`
build the index on N embedding rows and answer it; the figure is build + search seconds (best
of ``--repeat``), plus a check that the two return the same neighbours. Workloads:

- ``one``: a single query, k = 12 (``deepgal similar --query``);
- ``all``: every row against the set, k = 11 (``deepgal similar --outliers``: N queries).

The rows are synthetic stand-ins for penultimate embeddings (ten Gaussian clusters in a 32-D
subspace of ``--dim`` dimensions, plus noise, passed through a ReLU as real features are).
Threads: one by default (``--threads``), as the CLI runs on a shared CPU. The crossover, in
queries x rows, is what ``deepgal.explore.index.FAISS_MIN_WORK`` holds.

    OMP_NUM_THREADS=1 python benchmarks/similar_index.py --sizes 1000 4000 17736 --dim 2048
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from deepgal.explore.index import NeighbourIndex


def embeddings(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """(n, dim) float32: ten clusters in a 32-D subspace, noise, rectified."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.5, size=(10, 32))
    latent = centres[rng.integers(0, 10, n)] + rng.normal(size=(n, 32))
    basis = np.linalg.qr(rng.normal(size=(dim, 32)))[0].T  # (32, dim), orthonormal rows
    x = latent @ basis * 8.0 + rng.normal(scale=0.3, size=(n, dim))
    return np.maximum(x, 0).astype(np.float32)


def timed(backend: str, x: np.ndarray, queries: np.ndarray, k: int, repeat: int):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = NeighbourIndex(x, backend).search(queries, k)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 17736])
    p.add_argument("--dim", type=int, default=2048, help="embedding width (resnet50: 2048)")
    p.add_argument("--workloads", nargs="+", default=["one", "all"], choices=["one", "all"])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(args.threads)
    print(
        f"dim {args.dim}, {args.threads} thread(s), best of {args.repeat}; seconds are build "
        "+ search"
    )
    print(
        f"{'N':>7} {'workload':>8} {'queries x rows':>15} {'sklearn s':>10} {'faiss s':>9} "
        f"{'sklearn/faiss':>13} {'same neighbours':>15}"
    )
    with threadpool_limits(args.threads):
        for n in args.sizes:
            x = embeddings(n, args.dim)
            for work in args.workloads:
                q, k = (x[:1], 12) if work == "one" else (x, 11)
                ts, (ds, i_s) = timed("sklearn", x, q, k, args.repeat)
                tf, (df, i_f) = timed("faiss", x, q, k, args.repeat)
                # Ties (exact duplicates) may come in either order; compare distances as well.
                same = np.mean(np.all(i_s == i_f, 1) | np.all(np.abs(ds - df) < 1e-5, 1))
                print(
                    f"{n:>7} {work:>8} {len(q) * n:>15,} {ts:>10.4f} {tf:>9.4f} "
                    f"{ts / tf:>13.1f} {same:>14.1%}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
