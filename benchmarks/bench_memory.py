"""Peak memory of loading a real-size Galaxy10 file into a uint8 tensor.

Writes a file with the layout of the real set (17,736 x 256 x 256 x 3 uint8 = 3.49 GB, same
HDF5 chunking as :func:`write_galaxy10`) in chunked writes, then, in a fresh subprocess per
reader, loads every image into a torch uint8 tensor and reports the peak resident set size
against the data size. Target: peak <= 1.3x the data. Readers:

- ``galaxy10``: :func:`deepgal.data.galaxy10.read_images` (what the stages use);
- ``direct``: :func:`read_into`, which reads each chunk straight into its rows of a
  preallocated tensor (``h5py`` ``read_direct``), with no intermediate block.

    python benchmarks/bench_memory.py [--n 17736 --side 256 --dir /tmp --keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from deepgal.data.galaxy10 import IMAGES_KEY, LABELS_KEY, READ_CHUNK

READERS = ("galaxy10", "direct")


def write_real_size(path: Path, n: int, side: int, block: int = 1024) -> None:
    """A Galaxy10-layout file of ``n`` images, written ``block`` rows at a time.

    One random block is generated and shifted per write (content does not matter for memory,
    and drawing 3.5 GB of random numbers would dominate the run).
    """
    base = np.random.default_rng(0).integers(0, 256, (block, side, side, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            IMAGES_KEY, (n, side, side, 3), dtype=np.uint8, chunks=(min(n, 64), side, side, 3)
        )
        for i, start in enumerate(range(0, n, block)):
            m = min(block, n - start)
            ds[start : start + m] = base[:m] + np.uint8(i % 256)  # wraps mod 256: cheap variety
        f.create_dataset(LABELS_KEY, data=(np.arange(n) % 10).astype(np.uint8))


def read_into(path: str | Path, chunk: int = READ_CHUNK):
    """All images of a Galaxy10 file as a torch uint8 tensor (N, H, W, 3), read in place.

    Allocates the result once and has HDF5 decode each ``chunk`` rows directly into it, so
    peak memory is the result plus HDF5's small chunk cache.
    """
    import torch

    with h5py.File(path, "r") as f:
        ds = f[IMAGES_KEY]
        out = torch.empty(ds.shape, dtype=torch.uint8)
        view = out.numpy()  # shares memory with ``out``
        for start in range(0, ds.shape[0], chunk):
            sel = np.s_[start : min(start + chunk, ds.shape[0])]
            ds.read_direct(view, source_sel=sel, dest_sel=sel)
    return out


def child(path: str, reader: str) -> None:
    """Run in a fresh process: load with ``reader``, print a JSON line of memory figures."""
    import psutil
    import torch

    from deepgal.data.galaxy10 import read_images

    before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    images = torch.from_numpy(read_images(path)) if reader == "galaxy10" else read_into(path)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(
        json.dumps(
            {
                "reader": reader,
                "shape": list(images.shape),
                "dtype": str(images.dtype),
                "nbytes": images.numel(),
                "rss_before": before,
                "peak_rss": peak,
                "seconds": seconds,
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=17736)
    p.add_argument("--side", type=int, default=256)
    p.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where to write the file (default: the system temp dir)",
    )
    p.add_argument("--keep", action="store_true", help="keep the file afterwards")
    p.add_argument("--readers", nargs="+", default=list(READERS), choices=READERS)
    p.add_argument("--child", nargs=2, metavar=("PATH", "READER"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    print("$ python " + " ".join(shlex.quote(a) for a in sys.argv))
    tmp = Path(tempfile.mkdtemp(prefix="deepgal_bench_memory_", dir=args.dir))
    path = tmp / f"galaxy10_{args.n}x{args.side}.h5"
    try:
        t0 = time.perf_counter()
        write_real_size(path, args.n, args.side)
        gb = args.n * args.side * args.side * 3 / 1e9
        print(
            f"wrote {path}: {args.n} x {args.side} x {args.side} x 3 uint8 = {gb:.2f} GB "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        for reader in args.readers:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path), reader],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            data = r["nbytes"]
            print(
                f"{reader:<9} {tuple(r['shape'])} {r['dtype']}: peak RSS "
                f"{r['peak_rss'] / 1e9:.2f} GB = {r['peak_rss'] / data:.3f}x the data "
                f"({data / 1e9:.2f} GB); above the {r['rss_before'] / 1e9:.2f} GB of the "
                f"interpreter + torch: {(r['peak_rss'] - r['rss_before']) / data:.3f}x; "
                f"{r['seconds']:.1f} s ({data / 1e9 / r['seconds']:.2f} GB/s, file in page "
                f"cache)",
                flush=True,
            )
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            path.unlink(missing_ok=True)
            os.rmdir(tmp)


if __name__ == "__main__":
    main()
