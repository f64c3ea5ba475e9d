"""A user's own labelled galaxies: a Galaxy10-layout HDF5 file or a folder of class folders.

Two inputs are read, both into the pipeline's own layout (uint8 images (N, H, W, 3) and
labels (N,) 0..9 in the astroNN order of :data:`~deepgal.data.galaxy10.CLASS_NAMES`):

- an HDF5 file with ``images`` (uint8 (N, H, W, 3), any H, W) and ``ans`` (class indices);
- a folder holding one sub-folder per class, each with JPEG/PNG cut-outs (torchvision's
  ImageFolder habit). Any subset of the ten classes may be present.

**Folder names** map to classes by this rule (:func:`class_of_folder`), after lower-casing
and turning every run of characters other than letters and digits into ``_``:

1. a class index alone (``3``) or leading, followed by ``_`` (``3_in_between``,
   ``3_anything``) is that class; a remainder that is another class's name is an error;
2. otherwise the name of a class (``round_smooth``, ``Round Smooth``, ``edge-on_with_bulge``).

Anything else is an error listing the valid names. Hidden entries (``.name``) are skipped.

**Sizes.** With ``size`` None, images that all share one shape are kept as they are; images
of mixed shapes are each centre-cropped to a square and resized to the smallest side found
among them (so none is enlarged). With ``size`` set, every image is centre-cropped to a square
and resized to ``size`` x ``size``. Resizing is Pillow's bilinear filter (antialiased when
shrinking). Greyscale and RGBA images become RGB (alpha dropped).

Every file is checked (Pillow ``verify`` then a full decode, which catches truncation) before
anything is returned, so a bad file stops the work before any training.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import DeepgalError
from .galaxy10 import CLASS_NAMES, LABELS_KEY, Galaxy10FormatError, validate

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class LabelledError(DeepgalError, ValueError):
    """A labelled set that cannot be used; the message names the path and what to do."""


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


CLASS_KEYS: tuple[str, ...] = tuple(_norm(n) for n in CLASS_NAMES)
VALID_FOLDER_NAMES = ", ".join(f"{i}_{k}" for i, k in enumerate(CLASS_KEYS))


def class_of_folder(name: str) -> int | None:
    """Class index 0..9 of a class folder's name by the module's rule, or None if it has none.

    Raises :class:`LabelledError` when a leading index and a class name in the rest disagree.
    """
    key = _norm(name)
    m = re.fullmatch(r"(\d+)(?:_(.*))?", key)
    if m:
        index = int(m[1])
        if index >= len(CLASS_NAMES):
            return None
        rest = m[2] or ""
        if rest in CLASS_KEYS and CLASS_KEYS.index(rest) != index:
            raise LabelledError(
                f"folder '{name}': index {index} is {CLASS_NAMES[index]} but "
                f"the name says {CLASS_NAMES[CLASS_KEYS.index(rest)]}; rename it"
            )
        return index
    return CLASS_KEYS.index(key) if key in CLASS_KEYS else None


@dataclass(frozen=True)
class Labelled:
    """A checked labelled set before decoding: ``labels`` (N,) uint8, ``names`` (N,) row names
    (``<class folder>/<file>`` for a folder, the row number for an HDF5 file)."""

    path: Path
    kind: str  # "folder" | "hdf5"
    labels: np.ndarray
    names: tuple[str, ...]


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def scan(path: str | Path) -> Labelled:
    """Check the layout of ``path`` and list its rows, without decoding any pixels."""
    path = Path(path).expanduser()
    if not path.exists():
        raise LabelledError(
            f"{path}: no such file or folder; set data.path to a Galaxy10 HDF5 "
            "file (images + ans) or a folder of class folders of JPEG/PNG"
        )
    if path.is_file():
        return _scan_h5(path)
    entries = _visible(path)
    folders = [p for p in entries if p.is_dir()]
    loose = [p.name for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        raise LabelledError(
            f"{path}: images directly in the folder ({loose[0]}, ...); put "
            f"each in a class folder ({VALID_FOLDER_NAMES})"
        )
    if not folders:
        raise LabelledError(
            f"{path}: empty folder, no class folders; add one folder per class "
            f"({VALID_FOLDER_NAMES}) holding its JPEG/PNG cut-outs"
        )
    by_class: dict[int, Path] = {}
    for folder in folders:
        c = class_of_folder(folder.name)
        if c is None:
            raise LabelledError(
                f"{folder}: the folder name maps to no Galaxy10 class; name it "
                f"by index or class, one of: {VALID_FOLDER_NAMES}"
            )
        if c in by_class:
            raise LabelledError(
                f"{by_class[c]} and {folder} are both class {c} "
                f"({CLASS_NAMES[c]}); merge them into one folder"
            )
        by_class[c] = folder
    labels, names = [], []
    for c in sorted(by_class):
        files = _class_files(by_class[c])
        labels += [c] * len(files)
        names += [f"{by_class[c].name}/{f.name}" for f in files]
    return Labelled(path, "folder", np.asarray(labels, np.uint8), tuple(names))


def _class_files(folder: Path) -> list[Path]:
    files = _visible(folder)
    if not files:
        raise LabelledError(
            f"{folder}: empty class folder; add its JPEG/PNG cut-outs or remove the folder"
        )
    for f in files:
        if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
            raise LabelledError(
                f"{f}: not a {'/'.join(IMAGE_SUFFIXES)} file; a class folder "
                "holds only cut-outs: move or remove it"
            )
    return files


def _scan_h5(path: Path) -> Labelled:
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            if LABELS_KEY not in f:
                raise LabelledError(
                    f"{path}: no '{LABELS_KEY}' dataset (found: "
                    f"{sorted(f.keys())}); a labelled set needs the class "
                    f"index 0..9 of each image in '{LABELS_KEY}' (for "
                    "unlabelled images use `deepgal predict`)"
                )
    try:
        info = validate(path)
    except Galaxy10FormatError as e:
        raise LabelledError(
            f"{e}; data.path needs a Galaxy10-layout HDF5 file or a folder of class folders"
        ) from e
    with h5py.File(path, "r") as f:
        labels = f[LABELS_KEY][:].astype(np.uint8)
    return Labelled(path, "hdf5", labels, tuple(str(i) for i in range(info.n_images)))


def _open_checked(file: Path):
    """The decoded Pillow image of ``file`` in RGB; LabelledError if it is not a whole image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as im:
            im.verify()  # structure and checksums (PNG); verify leaves the image unusable
        im = Image.open(file)
        im.load()  # full decode: a truncated JPEG fails here
        return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise LabelledError(
            f"{file}: not a readable JPEG/PNG image or truncated ({e}); replace or remove it"
        ) from e


def _square_resize(im, side: int):
    """Centre square of a Pillow image, resized to ``side`` px (bilinear, antialiased)."""
    from PIL import Image

    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s))
    return im if s == side else im.resize((side, side), Image.Resampling.BILINEAR)


def _fit(images: list, size: int | None, path: Path) -> np.ndarray:
    """Stack Pillow images (N,) into uint8 (N, H, W, 3) by the module's size rule."""
    shapes = {im.size for im in images}
    if size is None and len(shapes) == 1:
        return np.stack([np.asarray(im, np.uint8) for im in images])
    side = size or min(min(s) for s in shapes)
    if size is None:
        log.warning(
            "%s: images of %d different sizes; each is centre-cropped to a square and "
            "resized to %d px (the smallest side)",
            path,
            len(shapes),
            side,
        )
    if side < 8:
        raise LabelledError(f"{path}: images would be {side} px; at least 8 px is needed")
    return np.stack([np.asarray(_square_resize(im, side), np.uint8) for im in images])


def read_labelled(
    path: str | Path, size: int | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read a labelled set: (images uint8 (N, H, W, 3), labels uint8 (N,), row names (N,)).

    ``path``: a Galaxy10-layout HDF5 file or a folder of class folders (module docstring for
    the folder-name and size rules). ``size``: None keeps a common size; an int gives every
    image ``size`` x ``size`` px. Raises :class:`LabelledError` naming the path and the fix.
    """
    ls = scan(path)
    if ls.kind == "hdf5":
        from .galaxy10 import read_images

        images = read_images(ls.path)
        if size is not None and images.shape[1:3] != (size, size):
            from PIL import Image

            images = _fit([Image.fromarray(im) for im in images], size, ls.path)
        return images, ls.labels, ls.names
    pictures = [_open_checked(ls.path / n) for n in ls.names]
    return _fit(pictures, size, ls.path), ls.labels, ls.names


def check_folds(
    labels: np.ndarray,
    folds: int,
    path: str | Path,
    groups: np.ndarray | None = None,
    key: str = "cv.folds",
) -> None:
    """Raise LabelledError unless every class present has at least ``folds`` galaxies
    (``groups`` (N,): rows of one group count once). ``folds`` < 2 checks nothing. ``key``:
    the parameter the message tells the user to lower."""
    if folds < 2:
        return
    labels = np.asarray(labels)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    for c in np.unique(labels):
        n = len(np.unique(groups[labels == c]))
        if n < folds:
            raise LabelledError(
                f"{path}: class {int(c)} ({CLASS_NAMES[c]}) has {n} distinct "
                f"image(s), fewer than {key} = {folds}; add images of "
                f"this class, remove the class, or lower {key}"
            )
