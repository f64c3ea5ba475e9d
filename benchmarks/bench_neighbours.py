"""Exact (scikit-learn brute force) against approximate (faiss HNSW) k-nearest-neighbour graphs,
as UMAP (k=15) and t-SNE (k=3 x perplexity 30 = 90) use them: seconds, recall@k against the
exact graph, the crossover size where HNSW gets faster, and the process's peak RSS.

Features: the synthetic stand-ins of ``bench_reduce.py`` (ten Galaxy10 classes in their real
proportions, Gaussian clusters in a 32-D subspace of ``--dim``-D (default 512, ResNet-18's
width) plus noise), standardised and PCA'd to 50-D as ``reduce`` does before its searches.
Times are :func:`deepgal.neighbours.build_index` + ``self_neighbours(k)`` (build and search of
every point), one thread (``OMP_NUM_THREADS=1``), single run each; recall@k is the mean
fraction of each point's k exact neighbours that the approximate graph also lists.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_neighbours.py --sizes 2000 4000 8000 \\
        16000 32000 64000
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from benchmarks.bench_reduce import synthetic_features
from deepgal.neighbours import build_index


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over rows of |approx row ∩ exact row| / k, for (N, k) index arrays."""
    k = exact.shape[1]
    hits = (np.sort(approx, axis=1)[:, :, None] == exact[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / k)


def timed_graph(z: np.ndarray, k: int, exact_max: int | None) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    idx, _ = build_index(z, "euclidean", exact_max).self_neighbours(k)
    return idx, time.perf_counter() - start


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def bench(n: int, dim: int, ks: list[int], seed: int) -> list[dict]:
    x, _ = synthetic_features(n, dim, seed)
    z = PCA(50, random_state=seed).fit_transform(StandardScaler().fit_transform(x))
    z = z.astype(np.float32)
    rows = []
    for k in ks:
        exact, t_exact = timed_graph(z, k, None)
        approx, t_hnsw = timed_graph(z, k, 0)
        rows.append(
            {
                "n": n,
                "k": k,
                "exact": t_exact,
                "hnsw": t_hnsw,
                "recall": recall(approx, exact),
                "rss": peak_rss_gb(),
            }
        )
        r = rows[-1]
        print(
            f"  n={n} k={k}: exact {t_exact:.2f} s, HNSW {t_hnsw:.2f} s, "
            f"recall {r['recall']:.4f}, peak RSS {r['rss']:.2f} GB",
            flush=True,
        )
    return rows


def crossover(rows: list[dict], k: int) -> str:
    """The first measured size from which HNSW is faster at every larger size too."""
    sizes = [r for r in rows if r["k"] == k]
    for i, r in enumerate(sizes):
        if all(s["hnsw"] < s["exact"] for s in sizes[i:]):
            if i == 0:
                return f"k={k}: HNSW faster at every size measured"
            return (
                f"k={k}: crossover between {sizes[i - 1]['n']:,} (exact faster) and "
                f"{r['n']:,} points (HNSW faster from there on)"
            )
    return f"k={k}: exact faster at every size measured"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000, 16000, 32000])
    parser.add_argument("--k", type=int, nargs="+", default=[15, 90])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"cores: {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows = [r for n in args.sizes for r in bench(n, args.dim, args.k, args.seed)]
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}\n")
    print("| points | k | exact s | HNSW s | HNSW recall@k | peak RSS GB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['n']:,} | {r['k']} | {r['exact']:.2f} | {r['hnsw']:.2f} | "
            f"{r['recall']:.4f} | {r['rss']:.2f} |"
        )
    for k in args.k:
        print(crossover(rows, k))


if __name__ == "__main__":
    main()
