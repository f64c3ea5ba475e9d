"""The Galaxy10 DECaLS HDF5 layout, in one place.

``Galaxy10_DECals.h5`` (Leung & Bovy, astroNN) holds:

- ``images``: uint8 (N, H, W, 3), g/r/z colour composites (H = W = 256 in the real set);
- ``ans``: integer labels (N,), 0..9 in the astroNN order of :data:`CLASS_NAMES`;
- optional ``ra``, ``dec``, ``redshift``, ``pxscale``: float (N,).

Every stage reads this one format, whether the file came from Zenodo or from the synthetic
renderer, and :func:`validate` checks a file before any long work starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import DeepgalError

CLASS_NAMES: tuple[str, ...] = (
    "Disturbed",
    "Merging",
    "Round Smooth",
    "In-between Round Smooth",
    "Cigar Shaped Smooth",
    "Barred Spiral",
    "Unbarred Tight Spiral",
    "Unbarred Loose Spiral",
    "Edge-on without Bulge",
    "Edge-on with Bulge",
)
NUM_CLASSES = len(CLASS_NAMES)
# Class counts of the real Galaxy10 DECaLS file (17,736 images), astroNN docs.
REAL_CLASS_COUNTS: tuple[int, ...] = (1081, 1853, 2645, 2027, 334, 2043, 1829, 2628, 1423, 1873)
IMAGES_KEY = "images"
LABELS_KEY = "ans"
OPTIONAL_KEYS = ("ra", "dec", "redshift", "pxscale")
FINITE_KEYS = ("ra", "dec", "pxscale")
# Rows read per HDF5 request: large enough to amortise per-call overhead, small enough that a
# chunk of 256 px images stays ~200 MB.
READ_CHUNK = 1024


class Galaxy10FormatError(DeepgalError, ValueError):
    """A file that does not follow the Galaxy10 layout; the message names the file and the fix."""


@dataclass(frozen=True)
class Galaxy10Info:
    """Summary of a validated file."""

    path: str
    n_images: int
    height: int
    width: int
    class_counts: tuple[int, ...]
    optional_keys: tuple[str, ...]

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "n_images": self.n_images,
            "image_size": [self.height, self.width],
            "class_counts": {
                name: c for name, c in zip(CLASS_NAMES, self.class_counts, strict=True)
            },
            "optional_keys": list(self.optional_keys),
        }


def _fail(path: Path, problem: str) -> Galaxy10FormatError:
    return Galaxy10FormatError(f"{path}: {problem}")


def validate(path: str | Path) -> Galaxy10Info:
    """Check that ``path`` is a readable Galaxy10-layout HDF5 file and summarise it.

    Reads the labels (N,) fully and the first and last image, so a truncated file is caught
    without reading every pixel. Raises :class:`Galaxy10FormatError` naming the file and the
    problem; ``FileNotFoundError`` when it does not exist.
    """
    path = Path(path)
    # The pipeline's own file can be made again; any other path is the user's to check.
    own = path.name == "galaxy10.h5"
    if not path.exists():
        hint = "; run `dvc repro download` to create it" if own else ""
        raise FileNotFoundError(f"{path}: no such file{hint}")
    if path.is_dir():
        raise _fail(
            path,
            "a folder, not a Galaxy10 HDF5 file ('images' and 'ans'); for a "
            "folder of JPEG/PNG cut-outs use `deepgal predict`",
        )
    redo = (
        "delete it and run `dvc repro download` to download or render it again"
        if own
        else "check the path, or make the file again"
    )
    if not h5py.is_hdf5(path):
        raise _fail(path, f"not an HDF5 file (wrong format or truncated header); {redo}")
    try:
        with h5py.File(path, "r") as f:
            return _validate_open(path, f)
    except OSError as e:  # h5py raises OSError for truncated/corrupt datasets
        raise _fail(
            path, f"unreadable HDF5 data ({e}); the file is probably truncated: {redo}"
        ) from e


def _validate_open(path: Path, f: h5py.File) -> Galaxy10Info:
    """Check the open file ``f`` property by property (raising :class:`Galaxy10FormatError`
    at the first that fails) and summarise it."""
    _check_keys(path, f)
    images = f[IMAGES_KEY]
    n, h, w = _check_images(path, images)
    y = _check_labels(path, f[LABELS_KEY], n)
    optional = [key for key in OPTIONAL_KEYS if key in f]
    for key in optional:
        _check_column(path, key, f[key], n)
    # Touch the first and last image: a truncated file fails here, not an hour into training.
    images[0]
    images[n - 1]
    counts = np.bincount(y.astype(np.int64), minlength=NUM_CLASSES)
    return Galaxy10Info(
        str(path), int(n), int(h), int(w), tuple(int(c) for c in counts), tuple(optional)
    )


def _check_keys(path: Path, f: h5py.File) -> None:
    """Both 'images' and 'ans' are present."""
    for key in (IMAGES_KEY, LABELS_KEY):
        if key not in f:  # images alone are input for `deepgal predict`: say so
            why = (
                "images without labels, which `deepgal predict` classifies; training and "
                "`deepgal evaluate` need the labels"
                if key == LABELS_KEY
                else "a Galaxy10 file needs 'images' and 'ans'"
            )
            raise _fail(path, f"missing dataset '{key}' (found: {sorted(f.keys())}); {why}")


def _check_images(path: Path, images: h5py.Dataset) -> tuple[int, int, int]:
    """'images' is non-empty uint8 (N, H, W, 3) with H, W >= 8; returns (N, H, W)."""
    if images.dtype != np.uint8:
        raise _fail(path, f"'images' has dtype {images.dtype}, expected uint8 (0..255 pixels)")
    if images.ndim != 4 or images.shape[3] != 3:
        raise _fail(path, f"'images' has shape {images.shape}, expected (N, H, W, 3)")
    n, h, w, _ = images.shape
    if n == 0:
        raise _fail(path, "'images' holds zero images; nothing to train on")
    if h < 8 or w < 8:
        raise _fail(path, f"'images' are {h}x{w} px; at least 8x8 is needed")
    return n, h, w


def _check_labels(path: Path, labels: h5py.Dataset, n: int) -> np.ndarray:
    """'ans' is (n,) integers in 0..NUM_CLASSES-1; returns them as read."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise _fail(
            path,
            f"'ans' has shape {labels.shape} and dtype {labels.dtype}, "
            "expected integer labels of shape (N,)",
        )
    if labels.shape[0] != n:
        raise _fail(path, f"length mismatch: {n} images but {labels.shape[0]} labels in 'ans'")
    y = labels[:]
    bad = (y < 0) | (y >= NUM_CLASSES)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(
            path,
            f"label out of range at row {i}: ans[{i}] = {int(y[i])}, expected 0..{NUM_CLASSES - 1}",
        )
    return y


def _check_column(path: Path, key: str, col: h5py.Dataset, n: int) -> None:
    """Optional column ``key`` holds one number per image: finite where it must be (positions,
    pixel scales), a declination in [-90, 90]."""
    if col.shape != (n,):
        raise _fail(path, f"'{key}' has shape {col.shape}, expected ({n},)")
    if col.dtype.kind not in "fiu":
        raise _fail(path, f"'{key}' has dtype {col.dtype}, expected a number per image")
    # Positions and pixel scales must be real numbers; a redshift may be unknown (NaN).
    if key in FINITE_KEYS and col.dtype.kind == "f":
        values = col[:]
        if not np.isfinite(values).all():
            i = int(np.flatnonzero(~np.isfinite(values))[0])
            raise _fail(
                path,
                f"'{key}' is not finite at row {i} ({values[i]}); "
                "positions and pixel scales must be real numbers",
            )
    if key == "dec":
        values = col[:]
        if (np.abs(values) > 90).any():
            i = int(np.flatnonzero(np.abs(values) > 90)[0])
            raise _fail(
                path, f"'dec' is {values[i]} at row {i}; a declination is in [-90, 90] degrees"
            )


def read_labels(path: str | Path) -> np.ndarray:
    """Labels (N,) int64 of a Galaxy10 file."""
    with h5py.File(path, "r") as f:
        return f[LABELS_KEY][:].astype(np.int64)


def read_coordinates(path: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(ra, dec), each (N,) float64 degrees, or None when the file has no ``ra``/``dec``
    (the 50-image sample, files written without positions)."""
    with h5py.File(path, "r") as f:
        if "ra" not in f or "dec" not in f:
            return None
        return f["ra"][:].astype(np.float64), f["dec"][:].astype(np.float64)


def read_images(
    path: str | Path, indices: np.ndarray | None = None, chunk: int = READ_CHUNK
) -> np.ndarray:
    """Images (len(indices), H, W, 3) uint8, read in chunks of ``chunk`` rows.

    ``indices`` need not be sorted; rows come back in the order given. Memory stays at the
    uint8 size of the result plus one chunk: never a float copy.
    """
    with h5py.File(path, "r") as f:
        ds = f[IMAGES_KEY]
        if indices is None:
            indices = np.arange(ds.shape[0])
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *ds.shape[1:]), dtype=np.uint8)
        order = np.argsort(indices, kind="stable")
        sorted_idx = indices[order]
        in_order = bool((order == np.arange(len(order))).all())
        for start in range(0, len(sorted_idx), chunk):
            part = sorted_idx[start : start + chunk]
            lo, hi = int(part[0]), int(part[-1]) + 1
            if in_order and hi - lo == len(part):
                # A contiguous run landing in consecutive rows: HDF5 writes straight into the
                # result, with no intermediate block (peak memory stays ~1x the result).
                ds.read_direct(out, np.s_[lo:hi], np.s_[start : start + len(part)])
            elif hi - lo <= 4 * len(part):
                # One contiguous read per chunk is far faster than h5py fancy indexing.
                out[order[start : start + chunk]] = ds[lo:hi][part - lo]
            else:
                out[order[start : start + chunk]] = read_runs(ds, part)
        return out


def read_runs(ds: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (k,) sorted, repeats allowed, of ``ds`` as one (k, ...) array.

    Reads each run of consecutive rows with one ``read_direct``: h5py's fancy indexing
    (``ds[[i, j, ...]]``) of scattered 256 px rows runs at ~30 img/s, runs at thousands.
    """
    out = np.empty((len(rows), *ds.shape[1:]), dtype=ds.dtype)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True):
        if b - a == 1:  # h5py's simple-index path is ~3x faster than read_direct here
            out[a] = ds[rows[a]]
        else:
            ds.read_direct(out, np.s_[rows[a] : rows[b - 1] + 1], np.s_[a:b])
    return out


def write_galaxy10(
    path: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    extra: dict[str, np.ndarray] | None = None,
) -> None:
    """Write ``images`` (N, H, W, 3) uint8 and ``labels`` (N,) in the Galaxy10 layout, atomically.

    The file appears at ``path`` only once complete (written to ``path.tmp``, then renamed).
    """
    write_galaxy10_blocks(path, images.shape[1:3], [images], labels, extra)


def write_galaxy10_blocks(
    path: str | Path,
    size: tuple[int, int],
    blocks: Iterable[np.ndarray],
    labels: np.ndarray,
    extra: dict[str, np.ndarray] | None = None,
) -> None:
    """:func:`write_galaxy10` with the images arriving as consecutive (b, H, W, 3) uint8
    ``blocks`` (H, W = ``size``) that together are ``len(labels)`` rows: memory holds one block,
    not the file (a renderer or converter can write 283,000 images in a few MB)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    n, (h, w) = len(labels), size
    try:
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset(
                IMAGES_KEY, (n, h, w, 3), dtype=np.uint8, chunks=(max(min(n, 64), 1), h, w, 3)
            )
            pos = 0
            for block in blocks:
                ds[pos : pos + len(block)] = block
                pos += len(block)
            if pos != n:
                raise ValueError(f"{path}: {pos} images written for {n} labels")
            f.create_dataset(LABELS_KEY, data=np.asarray(labels, dtype=np.uint8))
            for key, col in (extra or {}).items():
                f.create_dataset(key, data=col)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
