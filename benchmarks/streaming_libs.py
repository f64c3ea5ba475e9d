"""Two streaming libraries for data larger than memory, measured on what deepgal needs.

MosaicML ``streaming`` (MDS shards) and Lightning ``litdata`` (optimized chunks) against the
in-memory numpy path, on N uint8 images of S x S x 3 written to a Galaxy10-layout HDF5 file
(``images`` (N, S, S, 3) uint8, ``ans`` (N,) uint8; random pixels, so no codec flatters
anyone; shards uncompressed). For each library:

- convert: HDF5 -> shards, seconds (one process);
- throughput: one shuffled epoch through the library's own DataLoader with 1 worker, batches
  of 256, images/s, and the reader's peak RSS (its own process, workers included);
- shuffle: the same seed gives the same order, another seed another one; 0 and 2 workers
  give the same order (or not);
- resume: stop after 7 batches, ``state_dict()``, a fresh dataset + loader, ``load_state_dict``,
  finish the epoch: is the concatenation the uninterrupted order, sample for sample?
- DDP: 2 gloo ranks on 127.0.0.1, one epoch each: disjoint, complete, and how many shard files
  each rank's samples come from (shared ones are read by both); ``MOSAIC_CANONICAL_NODES=2``
  sets streaming's ``num_canonical_nodes`` (default 64 per node);
- offline: every run reads local shards only (no remote), in a network namespace with no
  network at all when ``unshare -rn`` works.

The in-memory path is deepgal's: the whole split read into one uint8 array, then a seeded
permutation cut into batches (``images[idx]``), all in the main process.

Needs both libraries (mosaicml-streaming 0.13 pins numpy<2.2 and pulls transformers and four
cloud SDKs, so use a separate venv), e.g.
    python3 -m venv /tmp/streamvenv
    /tmp/streamvenv/bin/pip install torch==2.14.1 h5py mosaicml-streaming==0.13.0 litdata==0.2.76
    /tmp/streamvenv/bin/python benchmarks/streaming_libs.py --n 17740 --size 64 --work /tmp/sb
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

import h5py
import numpy as np

BATCH = 256
STOP_AFTER = 7  # batches before the interruption in the resume check
LIBS = ("mosaic", "litdata")


def make_h5(path: Path, n: int, size: int, seed: int = 0) -> None:
    """Galaxy10-layout file of random uint8 pixels and labels, written in 1,000-row blocks."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        images = f.create_dataset(
            "images", (n, size, size, 3), np.uint8, chunks=(64, size, size, 3)
        )
        f.create_dataset("ans", data=rng.integers(0, 10, n, dtype=np.uint8))
        for lo in range(0, n, 1000):
            hi = min(n, lo + 1000)
            images[lo:hi] = rng.integers(0, 256, (hi - lo, size, size, 3), dtype=np.uint8)


def _blocks(h5: Path, block: int = 1024):
    """(index, image, label) rows of the file, read 1,024 at a time."""
    with h5py.File(h5, "r") as f:
        n = len(f["ans"])
        for lo in range(0, n, block):
            images, labels = f["images"][lo : lo + block], f["ans"][lo : lo + block]
            for i in range(len(labels)):
                yield lo + i, images[i], int(labels[i])


def convert_mosaic(h5: Path, out: Path) -> None:
    from streaming import MDSWriter

    with h5py.File(h5, "r") as f:
        shape = ",".join(map(str, f["images"].shape[1:]))
    columns = {"index": "int", "image": f"ndarray:uint8:{shape}", "label": "int"}
    with MDSWriter(out=str(out), columns=columns, size_limit="32mb") as w:
        for i, image, label in _blocks(h5):
            w.write({"index": i, "image": image, "label": label})


def _litdata_rows(span: tuple[str, int, int]):
    h5, lo, hi = span
    with h5py.File(h5, "r") as f:
        images, labels = f["images"][lo:hi], f["ans"][lo:hi]
    for i in range(hi - lo):
        yield {"index": lo + i, "image": images[i], "label": int(labels[i])}


def convert_litdata(h5: Path, out: Path) -> None:
    import litdata

    with h5py.File(h5, "r") as f:
        n = len(f["ans"])
    spans = [(str(h5), lo, min(n, lo + 1024)) for lo in range(0, n, 1024)]
    litdata.optimize(
        fn=_litdata_rows, inputs=spans, output_dir=str(out), chunk_bytes="32MB", num_workers=1
    )


def loader(lib: str, shards: Path, seed: int, workers: int, state: dict | None = None):
    """The library's own shuffled dataset + loader over local shards (no remote)."""
    if lib == "mosaic":
        from streaming import StreamingDataLoader, StreamingDataset
        from streaming.base.util import clean_stale_shared_memory

        if "RANK" not in os.environ:  # under DDP a rank would remove the others' segments
            clean_stale_shared_memory()
        # MOSAIC_CANONICAL_NODES: streaming's num_canonical_nodes (its default: 64 per node)
        nodes = os.environ.get("MOSAIC_CANONICAL_NODES")
        ds = StreamingDataset(
            local=str(shards),
            shuffle=True,
            shuffle_seed=seed,
            batch_size=BATCH,
            num_canonical_nodes=int(nodes) if nodes else None,
        )
    else:
        from litdata import StreamingDataLoader, StreamingDataset

        ds = StreamingDataset(str(shards), shuffle=True, seed=seed)
    dl = StreamingDataLoader(ds, batch_size=BATCH, num_workers=workers)
    if state is not None:
        dl.load_state_dict(state)
    return dl


def order(dl, stop: int | None = None) -> tuple[list[int], dict | None]:
    """Sample indices in the order ``dl`` yields them; with ``stop``, only that many batches
    and the loader's state at that point."""
    out: list[int] = []
    for b, batch in enumerate(dl):
        out.extend(int(i) for i in batch["index"])
        if stop is not None and b + 1 == stop:
            return out, dl.state_dict()
    return out, None


def peak_rss_mb() -> tuple[float, float]:
    """Peak RSS of this process and of the largest of its (finished) workers, MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own / 1024, kids / 1024  # kB on Linux


def run_throughput(lib: str, work: Path) -> dict:
    """One shuffled epoch: seconds to the first batch (worker start, shard opening; for
    'memory', deepgal's path, reading the file into RAM) and images/s after it."""
    h5 = work / "galaxy10.h5"
    t0 = time.perf_counter()
    if lib == "memory":
        import torch

        with h5py.File(h5, "r") as f:
            images, labels = f["images"][:], f["ans"][:]
        perm = np.random.default_rng(0).permutation(len(labels))
        batches = (np.sort(perm[lo : lo + BATCH]) for lo in range(0, len(perm), BATCH))
        batches = ({"index": torch.from_numpy(labels[i]), "image": torch.from_numpy(images[i])}
                   for i in batches)  # fmt: skip
    else:
        batches = loader(lib, work / lib, seed=1, workers=1)
    n = n_first = 0
    for batch in batches:
        if n == 0:
            first = time.perf_counter()
            n_first = len(batch["index"])
        n += len(batch["index"])
    end = time.perf_counter()
    main_mb, worker_mb = peak_rss_mb()
    return {
        "images": n,
        "first_batch_s": first - t0,
        "steady_ips": (n - n_first) / (end - first),
        "epoch_s": end - t0,
        "rss_main_mb": main_mb,
        "rss_worker_mb": worker_mb,
    }


def run_order_checks(lib: str, work: Path) -> dict:
    shards = work / lib
    a, _ = order(loader(lib, shards, seed=1, workers=0))
    b, _ = order(loader(lib, shards, seed=1, workers=0))
    c, _ = order(loader(lib, shards, seed=2, workers=0))
    d, _ = order(loader(lib, shards, seed=1, workers=2))
    head, state = order(loader(lib, shards, seed=1, workers=0), stop=STOP_AFTER)
    try:
        tail, _ = order(loader(lib, shards, seed=1, workers=0, state=state))
        resumed = head + tail
        if resumed == a:
            resume = f"exact (stopped at sample {len(head)})"
        else:
            first = next(
                (i for i, (x, y) in enumerate(zip(resumed, a, strict=False)) if x != y),
                min(len(resumed), len(a)),
            )
            resume = f"differs from sample {first} ({len(resumed)} vs {len(a)} samples)"
    except Exception as e:  # report what the library says, whatever it is
        resume = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    complete = sorted(a) == list(range(len(a)))
    return {
        "complete": complete,
        "same_seed_same_order": a == b,
        "other_seed_other_order": a != c,
        "workers_0_and_2_same_order": a == d,
        "resume": resume,
    }


def _ddp_rank(rank: int, lib: str, work: Path, port: int, out: Path) -> None:
    import torch.distributed as tdist

    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    tdist.init_process_group("gloo", rank=rank, world_size=2)
    got, _ = order(loader(lib, work / lib, seed=1, workers=0))
    (out / f"rank{rank}.json").write_text(json.dumps(got))
    tdist.barrier()
    tdist.destroy_process_group()


def shard_bounds(lib: str, shards: Path) -> np.ndarray:
    """Cumulative sample counts of the shard files, in writing order."""
    index = json.loads((shards / "index.json").read_text())
    if lib == "mosaic":
        counts = [s["samples"] for s in index["shards"]]
    else:
        counts = [c["chunk_size"] for c in index["chunks"]]
    return np.cumsum(counts)


def run_ddp(lib: str, work: Path) -> dict:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = work / f"ddp-{lib}"
    out.mkdir(exist_ok=True)
    mp.spawn(_ddp_rank, args=(lib, work, port, out), nprocs=2)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    bounds = shard_bounds(lib, work / lib)
    files = [set(np.searchsorted(bounds, r, side="right").tolist()) for r in ranks]
    return {
        "samples_per_rank": [len(r) for r in ranks],
        "disjoint": not set(ranks[0]) & set(ranks[1]),
        "union_complete": sorted(set(ranks[0]) | set(ranks[1])) == list(range(bounds[-1])),
        "shards": len(bounds),
        "shards_per_rank": [len(f) for f in files],
        "shards_read_by_both": len(files[0] & files[1]),
    }


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    what = {"throughput": run_throughput, "order": run_order_checks, "ddp": run_ddp}[args.child]
    print(json.dumps(what(args.lib, work)))


def in_child(what: str, lib: str, work: Path, offline: bool) -> dict:
    """One measurement in a fresh process (its own peak RSS), without network if possible."""
    cmd = [sys.executable, __file__, "--work", str(work), "--child", what, "--lib", lib]
    if offline:  # a network namespace of its own: loopback only (the DDP check needs it)
        cmd = ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"{what} {lib} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=17_740)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--work", type=Path, default=Path("/tmp/streaming-bench"))
    p.add_argument("--child", choices=("throughput", "order", "ddp"), help=argparse.SUPPRESS)
    p.add_argument("--lib", choices=("memory", *LIBS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    make_h5(work / "galaxy10.h5", args.n, args.size)
    probe = ["unshare", "-rn", "sh", "-c", "ip link set lo up"]
    offline = subprocess.run(probe, capture_output=True).returncode == 0
    print(f"{args.n} images {args.size}x{args.size}x3 uint8, batch {BATCH}; "
          f"readers {'without network (unshare -rn)' if offline else 'with network present'}")  # fmt: skip
    rows = {"memory": {"convert_s": 0.0, **in_child("throughput", "memory", work, offline)}}
    for lib, convert in (("mosaic", convert_mosaic), ("litdata", convert_litdata)):
        t0 = time.perf_counter()
        convert(work / "galaxy10.h5", work / lib)
        rows[lib] = {"convert_s": time.perf_counter() - t0}
        print(f"{lib}: converted in {rows[lib]['convert_s']:.1f} s", flush=True)
        rows[lib].update(in_child("throughput", lib, work, offline))
        rows[lib].update(in_child("order", lib, work, offline))
        rows[lib].update(in_child("ddp", lib, work, offline))
        size = sum(f.stat().st_size for f in (work / lib).rglob("*") if f.is_file())
        rows[lib]["shard_mb"] = size / 2**20
    base = rows["memory"]["steady_ips"]
    print(
        f"{'path':8} {'convert s':>9} {'1st batch s':>11} {'images/s':>9} {'x memory':>8} "
        f"{'epoch s':>7} {'RSS main MB':>11} {'RSS worker MB':>13}"
    )
    for lib, r in rows.items():
        print(
            f"{lib:8} {r['convert_s']:9.1f} {r['first_batch_s']:11.2f} {r['steady_ips']:9.0f} "
            f"{r['steady_ips'] / base:8.4f} {r['epoch_s']:7.2f} {r['rss_main_mb']:11.0f} "
            f"{r['rss_worker_mb']:13.0f}"
        )
    shown = ("images", "convert_s", "first_batch_s", "steady_ips", "epoch_s", "rss_main_mb",
             "rss_worker_mb")  # fmt: skip
    for lib in LIBS:
        print(f"{lib}: {json.dumps({k: v for k, v in rows[lib].items() if k not in shown})}")


if __name__ == "__main__":
    main()
