"""``data.source: labelled``: a user's labelled set (:mod:`.labelled`) as the pipeline's input.

Two steps, two stages:

- :func:`manifest` (stage ``labelled``, which DVC runs whenever the folder or file at
  ``data.path`` changes): checks the layout without decoding and digests the content. With
  another source it returns a constant, so a changed ``data.path`` re-runs nothing else.
- :func:`convert` (stage ``download``): decodes and checks every image once and writes the
  pipeline's own Galaxy10 file, so every later stage works unchanged.

The digest is SHA-256 of an HDF5 file, or for a folder SHA-256 over its sorted lines
``<class folder>/<file> <SHA-256 of the file>``: adding, removing, renaming or editing one
image changes it. ``data.path_sha256``, when set, must equal it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

from .download import sha256_file
from .galaxy10 import CLASS_NAMES, OPTIONAL_KEYS, write_galaxy10
from .labelled import LabelledError, read_labelled, scan


def digest(path: str | Path) -> str:
    """Lower-case hex digest of a labelled set (module docstring), after checking its layout."""
    ls = scan(path)
    if ls.kind == "hdf5":
        return sha256_file(ls.path)
    lines = "".join(f"{n} {sha256_file(ls.path / n)}\n" for n in ls.names)
    return hashlib.sha256(lines.encode()).hexdigest()


def manifest(source: str, path: str | Path, expected_sha256: str | None = None) -> dict:
    """What stage ``labelled`` writes: the constant ``{"source": "not labelled"}`` unless
    ``source`` is labelled (so switching between other sources re-runs nothing), else
    ``{"source": "labelled"}`` and ``path``, ``kind``, ``n_images``, ``class_counts`` and ``sha256`` (:func:`digest`).

    Raises :class:`LabelledError` for a bad layout or a digest other than ``expected_sha256``.
    """
    if source != "labelled":
        return {"source": "not labelled"}
    ls = scan(path)
    sha = digest(path)
    if expected_sha256 and sha != expected_sha256.lower():
        raise LabelledError(
            f"{ls.path}: its digest is {sha}, but data.path_sha256 is "
            f"{expected_sha256}; the set changed. Check it, then set "
            "data.path_sha256 to the new digest (or null)"
        )
    counts = np.bincount(ls.labels, minlength=len(CLASS_NAMES))
    return {
        "source": source,
        "path": str(path),
        "kind": ls.kind,
        "n_images": len(ls.labels),
        "class_counts": {n: int(c) for n, c in zip(CLASS_NAMES, counts, strict=True) if c},
        "sha256": sha,
    }


def convert(path: str | Path, out: str | Path, size: int | None = None) -> None:
    """Read the labelled set at ``path`` (every image decoded and checked) and write it to
    ``out`` in the Galaxy10 layout, atomically. An HDF5 input keeps its optional columns
    (``ra``, ``dec``, ...), so the split still groups by sky position."""
    images, labels, _ = read_labelled(path, size)
    extra = {}
    if scan(path).kind == "hdf5":
        with h5py.File(path, "r") as f:
            extra = {k: f[k][:] for k in OPTIONAL_KEYS if k in f}
    write_galaxy10(out, images, labels, extra)
