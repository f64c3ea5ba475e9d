"""Seconds and trustworthiness of UMAP, t-SNE (openTSNE) and PCA on realistic 2048-D features,
with and without PCA-50 pre-reduction (``reduce.pca_dims``), with params.yaml's method settings;
and (``--startup``) the wall time of the reduce stage as a fresh process, cold and warm numba
cache, of this tree and of another (e.g. an older commit unpacked with ``git archive``).

The features are synthetic stand-ins for ResNet-50 penultimate embeddings: the ten Galaxy10
classes in their real proportions as Gaussian clusters in a 32-D subspace, rotated into 2048-D,
plus isotropic noise, float32. Times are ``reduce_2d`` end to end (standardise, optional PCA,
the method), single run each. Trustworthiness (k=10, sklearn) is measured on a fixed subsample
against the standardised 2048-D features, so whatever PCA-50 throws away counts against it.

On a shared machine run it with ``OMP_WAIT_POLICY=passive``: t-SNE's OpenMP threads otherwise
spin while they wait, and with other processes on the cores a 1,000-point t-SNE took 49 s
instead of 6 s (load average 8 on 2 cores).

UMAP compiles its numba kernels on first use (exact kNN below 4,096 points, pynndescent above),
so a warm-up on both paths is timed separately, before any measured run.

    OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/bench_reduce.py --sizes 800 14189
    .venv/bin/python benchmarks/bench_reduce.py --startup . /tmp/old-tree --points 800
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_reduce.py --scale 17740 283000 \
        --dim 512 --fit-max none 14000 50000

``--scale``: the whole of ``reduce_features`` (params.yaml's methods, ``exact_max`` and
``pca_dims``) on each number of images split 80/10/10 train/val/test, each run in a fresh
process, at each ``--fit-max`` (``none``: fit on every train point): seconds, seconds per
image and the process's peak RSS while reducing (the features resident), and the ratio of
seconds per image to those of the smallest size fitted on all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import yaml
from sklearn.manifold import trustworthiness
from sklearn.preprocessing import StandardScaler

from deepgal.data.galaxy10 import REAL_CLASS_COUNTS
from deepgal.handoff import Features
from deepgal.reduce import reduce_2d, reduce_features

ROOT = Path(__file__).resolve().parents[1]
REDUCE = yaml.safe_load((ROOT / "params.yaml").read_text())["reduce"]
METHODS = REDUCE["methods"]

LATENT_DIMS = 32


def synthetic_features(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, dim) float32 and labels (n,) int64: ten overlapping clusters in a
    32-D subspace of a ``dim``-D space plus isotropic noise, classes in Galaxy10 proportions."""
    rng = np.random.default_rng(seed)
    p = np.asarray(REAL_CLASS_COUNTS, dtype=np.float64)
    labels = rng.choice(len(p), size=n, p=p / p.sum())
    centres = rng.normal(scale=1.2, size=(len(p), LATENT_DIMS))
    latent = centres[labels] + rng.normal(size=(n, LATENT_DIMS))
    basis = np.linalg.qr(rng.normal(size=(dim, LATENT_DIMS)))[0].T  # (32, dim), orthonormal
    x = latent @ basis * 8.0 + rng.normal(scale=0.3, size=(n, dim))
    return x.astype(np.float32), labels.astype(np.int64)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def warm_up_umap(seed: int) -> float:
    """Seconds to JIT-compile UMAP's kernels: exact-kNN path (< 4,096 points) and pynndescent."""
    x, _ = synthetic_features(5000, 50, seed)
    _, small = timed(reduce_2d, x[:500], "umap", seed, None, **METHODS["umap"])
    _, large = timed(reduce_2d, x, "umap", seed, None, **METHODS["umap"])
    return small + large


def bench_size(n: int, dim: int, pca_dims: int, trust_n: int, seed: int) -> list[dict]:
    x, _ = synthetic_features(n, dim, seed)
    sub = np.sort(np.random.default_rng(seed).choice(n, size=min(n, trust_n), replace=False))
    reference = StandardScaler().fit_transform(x)[sub]
    runs = [("pca", None), ("umap", pca_dims), ("umap", None), ("tsne", pca_dims), ("tsne", None)]
    results = []
    for method, dims in runs:
        xy, seconds = timed(reduce_2d, x, method, seed, dims, **METHODS[method])
        trust = trustworthiness(reference, xy[sub], n_neighbors=10)
        results.append(
            {"n": n, "method": method, "pca_dims": dims, "seconds": seconds, "trust": trust}
        )
        print(f"  n={n} {method} pca_dims={dims}: {seconds:.1f} s, T={trust:.4f}", flush=True)
    return results


def startup(trees: list[Path], points: int, dim: int, seed: int) -> None:
    """Wall seconds of ``stages/reduce.py`` of each tree in a fresh process on a small features
    file (so start-up dominates): twice, the first with an empty NUMBA_CACHE_DIR."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-reduce-"))
    x, y = synthetic_features(points, dim, seed)
    split = np.where(
        np.arange(points) % 10 < 8, "train", np.where(np.arange(points) % 10 < 9, "val", "test")
    )
    Features(x, np.arange(points), y, split).write(tmp / "features.h5")
    print(f"reduce stage on {points} points of {dim}-D, methods {sorted(METHODS)}:")
    print("| tree | run | seconds |\n|---|---|---:|")
    for tree in trees:
        tree = tree.resolve()
        cache = tmp / f"numba-{tree.name}"
        env = {
            **os.environ,
            "NUMBA_CACHE_DIR": str(cache),
            "PYTHONPATH": str(tree),
            "DEEPGAL_MLFLOW": "off",
        }
        for run in ("cold numba cache", "warm numba cache"):
            t = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    str(tree / "stages/reduce.py"),
                    "--features",
                    str(tmp / "features.h5"),
                    "--out",
                    str(tmp / "emb.csv"),
                    "--timings",
                    str(tmp / "t.json"),
                ],
                cwd=tree,
                env=env,
                check=True,
                capture_output=True,
            )
            print(f"| {tree} | {run} | {time.perf_counter() - t:.1f} |", flush=True)


def one_scale_run(n: int, dim: int, fit_max: int | None, seed: int) -> dict:
    """reduce_features on n synthetic images (80/10/10 train/val/test) in this process."""
    x, y = synthetic_features(n, dim, seed)
    split = np.array(["train", "val", "test"])[
        np.searchsorted([0.8, 0.9], np.arange(n) / n, "right")
    ]
    feats = {"features": x, "index": np.arange(n), "label": y, "split": split}
    # Peak RSS from here on (the features resident, as in the stage): generating them in
    # float64 above peaks higher than reduce itself at 283k images. "5" resets VmHWM (Linux).
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    _, timings = reduce_features(
        feats, METHODS, seed, REDUCE["pca_dims"], REDUCE["exact_max"], fit_max
    )
    seconds = time.perf_counter() - start
    status = Path("/proc/self/status").read_text()
    rss = int(status.split("VmHWM:")[1].split()[0]) / 2**20  # KiB -> GiB
    per_method = {m: round(sum(t.values()), 1) for m, t in timings.items()}
    return {"n": n, "fit_max": fit_max, "seconds": seconds, "rss": rss, "methods": per_method}


def scale(sizes: list[int], dim: int, caps: list[int | None], seed: int) -> None:
    """Each size at each fit_max (None: fit on all), each in a fresh process (its own peak
    RSS); a fit_max not below a size's train split is the None run, skipped."""
    rows = []
    for cap in caps:
        for n in sizes:
            if cap is not None and cap >= int(0.8 * n):
                continue
            args = [str(n), str(dim), str(cap), str(seed)]
            code = (
                "import json, sys; from benchmarks.bench_reduce import one_scale_run as f; "
                "a = sys.argv[1:]; print(json.dumps(f(int(a[0]), int(a[1]), "
                "None if a[2] == 'None' else int(a[2]), int(a[3]))))"
            )
            out = subprocess.run(
                [sys.executable, "-c", code, *args], cwd=ROOT, check=True, capture_output=True
            )
            rows.append(json.loads(out.stdout.decode().strip().splitlines()[-1]))
            print(f"  {rows[-1]}", flush=True)
    print(f"\n{dim}-D, exact_max {REDUCE['exact_max']}, load {os.getloadavg()[0]:.1f}\n")
    base = min((r for r in rows if r["fit_max"] is None), key=lambda r: r["n"], default=None)
    print("| images | fit_max | seconds | ms per image | ratio | peak RSS GB | per method s |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ratio = (r["seconds"] / r["n"]) / (base["seconds"] / base["n"]) if base else float("nan")
        print(
            f"| {r['n']:,} | {r['fit_max']} | {r['seconds']:.0f} | "
            f"{1000 * r['seconds'] / r['n']:.2f} | {ratio:.2f} | {r['rss']:.2f} | "
            f"{r['methods']} |"
        )
    if base:
        print(f"ratio: seconds per image / those at {base['n']:,} fitting on all")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 17736])
    parser.add_argument("--dim", type=int, default=2048, help="feature width (ResNet-50: 2048)")
    parser.add_argument("--pca-dims", type=int, default=50)
    parser.add_argument(
        "--trust-sample", type=int, default=2000, help="points on which trustworthiness is computed"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--startup",
        type=Path,
        nargs="+",
        metavar="TREE",
        help="time the reduce stage of these source trees instead",
    )
    parser.add_argument("--points", type=int, default=800, help="--startup: features rows")
    parser.add_argument(
        "--scale", type=int, nargs="+", metavar="N", help="time reduce_features at these sizes"
    )
    parser.add_argument(
        "--fit-max",
        nargs="+",
        default=["none"],
        type=lambda v: None if v.lower() in ("none", "null") else int(v),
        help="--scale: the fit_max values to run (none: fit on all)",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", category=FutureWarning)
    if args.scale:
        scale(args.scale, args.dim, args.fit_max, args.seed)
        return
    if args.startup:
        startup(args.startup, args.points, args.dim, args.seed)
        return

    # Other work on the machine slows OpenMP t-SNE badly; the load average says how quiet it was.
    print(
        f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
        "UMAP seeded -> single-threaded layout",
        flush=True,
    )
    warm = warm_up_umap(args.seed)
    print(f"UMAP numba JIT warm-up: {warm:.1f} s", flush=True)
    rows = [
        r
        for n in args.sizes
        for r in bench_size(n, args.dim, args.pca_dims, args.trust_sample, args.seed)
    ]

    print(
        f"\nUMAP first-call JIT warm-up (not in the table): {warm:.1f} s; "
        f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print(
        f"| points | method | PCA-{args.pca_dims} first | seconds | "
        f"trustworthiness (k=10, {args.trust_sample} pts) |"
    )
    print("|---:|---|---|---:|---:|")
    for r in rows:
        first = "–" if r["method"] == "pca" else ("yes" if r["pca_dims"] else "no")
        print(f"| {r['n']:,} | {r['method']} | {first} | {r['seconds']:.1f} | {r['trust']:.4f} |")


if __name__ == "__main__":
    main()
