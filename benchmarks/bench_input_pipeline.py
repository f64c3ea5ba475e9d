"""Input pipeline throughput: the usual per-image PIL DataLoader vs deepgal's batched path.

Both read the same Galaxy10-layout file and apply the same augmentations (rotation by any
angle, horizontal and vertical flips, colour jitter, resize, normalise), at the same batch size,
for the same number of epochs, alternating epoch by epoch in one run so both see the same
load on a shared, noisy machine:

(a) the usual way: a ``Dataset`` that opens the HDF5 file in each worker and reads one image
    per ``__getitem__``, torchvision's PIL transforms, ``DataLoader(shuffle=True,
    num_workers=2)``;
(b) deepgal: ``read_images`` once into a uint8 tensor, then per batch random indices and
    :func:`deepgal.transforms.prepare_batch` (on CPU here, as the training loop would run it).

    python benchmarks/bench_input_pipeline.py [--n 4000 --size 64 --n-large 1000 --large 256]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from deepgal.data.galaxy10 import IMAGES_KEY, LABELS_KEY, read_images, read_labels, write_galaxy10
from deepgal.transforms import Augment, Preprocess, prepare_batch

MEAN, STD, JITTER = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 0.1


def galaxy_like(n: int, side: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, side, side, 3) uint8: an elliptical blob of random size/colour on a noisy sky."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, side, side, 3), np.uint8)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side - 0.5
    for start in range(0, n, 256):  # a block at a time keeps float temporaries small
        m = min(256, n - start)
        r = rng.uniform(0.03, 0.15, (m, 1, 1)).astype(np.float32)
        q = rng.uniform(0.3, 1.0, (m, 1, 1)).astype(np.float32)
        blob = np.exp(-(xx**2 + (yy / q) ** 2) / (2 * r**2))  # (m, side, side)
        colour = rng.uniform(80, 200, (m, 1, 1, 3)).astype(np.float32)
        sky = rng.normal(30, 8, (m, side, side, 3)).astype(np.float32)
        images[start : start + m] = np.clip(sky + blob[..., None] * colour, 0, 255)
    return images, rng.integers(0, 10, n).astype(np.uint8)


class H5ItemDataset(Dataset):
    """One image per ``__getitem__`` from HDF5, opened lazily per worker (h5py is not fork-safe)."""

    def __init__(self, path: Path, transform):
        self.path, self.transform, self.file = path, transform, None
        with h5py.File(path, "r") as f:
            self.n = len(f[LABELS_KEY])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if self.file is None:
            self.file = h5py.File(self.path, "r")
        return self.transform(self.file[IMAGES_KEY][i]), int(self.file[LABELS_KEY][i])


def usual_pipeline(path: Path, out_size: int, batch_size: int, workers: int) -> DataLoader:
    transform = T.Compose(
        [
            T.ToPILImage(),
            T.Resize(out_size),
            T.RandomRotation(180),
            T.RandomHorizontalFlip(),
            T.RandomVerticalFlip(),
            T.ColorJitter(JITTER, JITTER, JITTER),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )
    return DataLoader(
        H5ItemDataset(path, transform), batch_size=batch_size, shuffle=True, num_workers=workers
    )


def epoch_usual(loader: DataLoader) -> float:
    """Images/s of one epoch, worker start-up included (the usual per-epoch cost)."""
    seen, t0 = 0, time.perf_counter()
    for x, _y in loader:
        seen += len(x)
    return seen / (time.perf_counter() - t0)


def epoch_ours(
    images: torch.Tensor,
    labels: torch.Tensor,
    pre: Preprocess,
    aug: Augment,
    batch_size: int,
    gen: torch.Generator,
) -> float:
    """Images/s of one epoch of shuffled batches through :func:`prepare_batch`."""
    seen, t0 = 0, time.perf_counter()
    perm = torch.randperm(len(images), generator=gen)
    for start in range(0, len(images), batch_size):
        idx = perm[start : start + batch_size]
        # index_select copies whole rows; images[idx] (advanced indexing) is ~10x slower for
        # uint8 (N, H, W, 3) on CPU.
        x = prepare_batch(images.index_select(0, idx), pre, aug, gen)
        _y = labels[idx]
        seen += len(x)
    return seen / (time.perf_counter() - t0)


def run_case(path: Path, out_size: int, args) -> None:
    """Alternate one epoch of each pipeline, ``args.epochs`` rounds: both see the same load."""
    with h5py.File(path, "r") as f:
        n, side = f[IMAGES_KEY].shape[:2]
    loader = usual_pipeline(path, out_size, args.batch_size, args.workers)
    t0 = time.perf_counter()
    images = torch.from_numpy(read_images(path))  # (N, H, W, 3) uint8, no copy
    labels = torch.from_numpy(read_labels(path))
    load_s = time.perf_counter() - t0
    pre, aug = (
        Preprocess(out_size, mean=MEAN, std=STD),
        Augment(rotate=True, flip=True, jitter=JITTER, scale=0.0, translate=0.0),
    )
    gen = torch.Generator().manual_seed(0)
    default_threads = torch.get_num_threads()
    rates: dict[str, list[float]] = {"usual": []} | {f"ours{t}": [] for t in args.threads}
    for _ in range(args.epochs):
        rates["usual"].append(epoch_usual(loader))
        for t in args.threads:
            torch.set_num_threads(t)
            rates[f"ours{t}"].append(epoch_ours(images, labels, pre, aug, args.batch_size, gen))
        torch.set_num_threads(default_threads)
    med = {k: statistics.median(v) for k, v in rates.items()}
    case = f"{n:>5} x {side:>3} px -> {out_size:>3} px"
    print(
        f"{case} | usual: DataLoader, {args.workers} workers  | median {med['usual']:7.0f} "
        f"img/s (best {max(rates['usual']):7.0f}) |",
        flush=True,
    )
    for t in args.threads:
        k = f"ours{t}"
        print(
            f"{case} | deepgal: prepare_batch, {t} thread{'s' * (t > 1)} | median "
            f"{med[k]:7.0f} img/s (best {max(rates[k]):7.0f}) | {med[k] / med['usual']:5.1f}x "
            f"median, {max(rates[k]) / max(rates['usual']):5.1f}x best",
            flush=True,
        )
    print(f"{case} | deepgal's one-off read_images of the file: {load_s:.2f} s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=4000, help="images in the small-image file")
    p.add_argument("--size", type=int, default=64, help="side of the small images, px")
    p.add_argument("--n-large", type=int, default=1000, help="images in the large file (0: skip)")
    p.add_argument("--large", type=int, default=256, help="side of the large images, px")
    p.add_argument("--out", type=int, default=64, help="model input side S, px")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5, help="rounds of one epoch each")
    p.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, torch.get_num_threads()],
        help="torch intra-op thread counts to time deepgal's path with",
    )
    p.add_argument("--dir", type=Path, default=None, help="where to write the test files")
    args = p.parse_args()
    print("$ python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; batch {args.batch_size}, {args.epochs} alternating "
        f"epochs each; augment: rotate any angle, h/v flip, jitter {JITTER}, resize, "
        f"normalise"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        cases = [(args.n, args.size)] + ([(args.n_large, args.large)] if args.n_large else [])
        for n, side in cases:
            path = Path(tmp) / f"bench_{n}x{side}.h5"
            write_galaxy10(path, *galaxy_like(n, side))
            run_case(path, args.out, args)


if __name__ == "__main__":
    main()
