"""A Galaxy10 HDF5 file as litdata chunks, for data larger than memory (a sketch, not wired in).

Why litdata: docs/streaming.md (measured against MosaicML streaming). The HDF5 file stays the
user's input; :func:`write_shards` converts it once into a folder of uncompressed chunks plus
litdata's ``index.json``, in file order, one sample per galaxy:
``{"index": int, "image": uint8 (H, W, 3), "label": int}``. :func:`open_shards` streams them
back: ``StreamingDataset(...)[i]`` is row ``i`` of the file, and a ``StreamingDataLoader``
over it has a ``state_dict()`` from which a fresh loader resumes at the same batch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py

from . import galaxy10

BLOCK = 1024  # rows read from the HDF5 file at a time: the converter's memory is one block


def write_shards(h5: str | Path, out: str | Path, chunk_bytes: str | int = "64MB") -> Path:
    """Convert the Galaxy10 file ``h5`` into litdata chunks in the folder ``out``.

    Reads ``BLOCK`` rows at a time (peak memory one block, whatever N is); writes into
    ``out.partial`` and renames it to ``out`` at the end, so an interrupted conversion leaves
    no folder that looks finished. Returns ``out``.
    """
    from litdata.streaming.writer import BinaryWriter

    h5, out = Path(h5), Path(out)
    galaxy10.validate(h5)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writer = BinaryWriter(str(tmp), chunk_bytes=chunk_bytes)
    with h5py.File(h5, "r") as f:
        images, labels = f[galaxy10.IMAGES_KEY], f[galaxy10.LABELS_KEY]
        for lo in range(0, len(labels), BLOCK):
            block, block_labels = images[lo : lo + BLOCK], labels[lo : lo + BLOCK]
            for i, (image, label) in enumerate(zip(block, block_labels, strict=True)):
                writer[lo + i] = {"index": lo + i, "image": image, "label": int(label)}
    writer.done()
    writer.merge()
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def open_shards(folder: str | Path, shuffle: bool = False, seed: int = 0):
    """litdata's ``StreamingDataset`` over :func:`write_shards`' folder (local, no remote)."""
    from litdata import StreamingDataset

    return StreamingDataset(str(folder), shuffle=shuffle, seed=seed)
