"""Stratified, seeded, grouped train/val/test indices and the train split's channel statistics.

The split stage writes **indices** into the HDF5 file (never copies of images) plus the mean/std
that every model's preprocessing normalises with. The real Galaxy10 file holds some galaxies
more than once (59 pairs of rows share identical ra/dec, more lie within arcseconds), so rows
close on the sky form one group (:func:`sky_groups`) and a group never straddles two splits.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import h5py
import numpy as np

from ..errors import DeepgalError
from ..handoff import Source, SplitRows, SplitStats
from . import galaxy10
from .galaxy10 import CLASS_NAMES, IMAGES_KEY, NUM_CLASSES, READ_CHUNK, read_images

log = logging.getLogger(__name__)
_COUNT_ROWS = 32  # images per bincount: its int64 copy of one channel stays ~17 MB at 256 px

SPLITS = ("train", "val", "test")


class SplitError(DeepgalError, ValueError):
    """Fractions that cannot split the given labels; the message names the class and count."""


def sky_groups(ra: np.ndarray, dec: np.ndarray, arcsec: float) -> np.ndarray:
    """Group ids (N,) int64: rows within ``arcsec`` of each other on the sky share a group.

    ra, dec: (N,) degrees. Grouping is transitive (a chain of close pairs is one group). Pairs
    come from scipy's KD-tree over unit vectors on the sphere, where the chord 2 sin(a / 2)
    grows with the angle a: exact on the sphere, right across ra = 0/360 and at the poles,
    O(N log N); the same pairs as scikit-learn's haversine BallTree, which was several times
    slower here both to import and to query. Components by scipy's csgraph.
    ``arcsec`` 0 groups only identical coordinates. Ids are 0..G-1 in order of first row.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    ra, dec = np.radians(np.asarray(ra, np.float64)), np.radians(np.asarray(dec, np.float64))
    n = len(ra)
    if n == 0:
        return np.empty(0, np.int64)
    xyz = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    chord = 2 * np.sin(np.radians(arcsec / 3600.0) / 2)
    # A hair over the radius so pairs exactly at it survive the rounding of the unit vectors.
    pairs = cKDTree(xyz).query_pairs(chord * (1 + 1e-9) + 1e-15, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    _, first = np.unique(comp, return_index=True)  # renumber by first row: stable, seed-free
    renumber = np.empty(len(first), np.int64)
    renumber[np.argsort(first)] = np.arange(len(first))
    return renumber[comp]


def identical_groups(h5_path: str | Path, chunk: int = 256) -> np.ndarray:
    """Group ids (N,) int64 for the images of a Galaxy10 file: rows with byte-identical
    pixels share a group (the duplicate-aware grouping where there are no sky positions).
    Ids are 0..G-1 in order of first row."""
    with h5py.File(h5_path, "r") as f:
        n = f[IMAGES_KEY].shape[0]
    keys: dict[bytes, int] = {}
    groups = np.full(n, -1, np.int64)  # -1 = not read: a skipped row can never pass for a group
    for start in range(0, n, chunk):
        block = read_images(h5_path, np.arange(start, min(start + chunk, n)))
        for i, image in enumerate(block):
            key = hashlib.sha256(image.tobytes()).digest()
            groups[start + i] = keys.setdefault(key, len(keys))
    return groups


def group_summary(groups: np.ndarray, labels: np.ndarray) -> dict:
    """What grouping merged: ``{"groups", "merged_groups", "rows_in_merged_groups",
    "mixed_label_groups"}`` (merged = groups of more than one row)."""
    groups, labels = np.asarray(groups, np.int64), np.asarray(labels)
    if len(groups) == 0:
        return {
            "groups": 0,
            "merged_groups": 0,
            "rows_in_merged_groups": 0,
            "mixed_label_groups": 0,
        }
    sizes = np.bincount(groups)
    multi = np.flatnonzero(sizes > 1)
    order = np.argsort(groups, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(groups[order]) != 0])
    lab = labels[order]
    mixed = np.minimum.reduceat(lab, starts) != np.maximum.reduceat(lab, starts)
    return {
        "groups": int(len(sizes)),
        "merged_groups": int(len(multi)),
        "rows_in_merged_groups": int(sizes[multi].sum()),
        "mixed_label_groups": int(mixed.sum()),
    }


def group_rows(
    labels: np.ndarray,
    coords: tuple[np.ndarray, np.ndarray] | None,
    arcsec: float,
    identical: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Group ids (N,) int64 for :func:`stratified_split` and a summary for ``stats.json``.

    ``coords``: (ra, dec) in degrees, or None (no positions). Without positions the groups
    are ``identical`` (N,) (rows with identical pixels share one) when given, else one row
    each. The summary is :func:`group_summary` plus ``arcsec`` and ``coordinates`` (bool), and
    ``identical_images`` (True) when those groups were used."""
    if coords is not None:
        groups = sky_groups(*coords, arcsec)
    else:
        groups = np.arange(len(labels)) if identical is None else np.asarray(identical, np.int64)
    extra = {"identical_images": True} if coords is None and identical is not None else {}
    return groups, {
        "arcsec": arcsec,
        "coordinates": coords is not None,
        **extra,
        **group_summary(groups, np.asarray(labels)),
    }


def stratified_split(
    labels: np.ndarray, fractions: dict[str, float], seed: int, groups: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Split row indices per class with the given fractions, keeping each group in one split.

    labels: (N,) int. fractions: {"train": .8, "val": .1, "test": .1}, summing to 1.
    groups: (N,) int group ids (e.g. :func:`sky_groups`), or None for one row per group.
    Returns {split: sorted (n_split,) int64 indices}.

    Hand-written greedy rather than scikit-learn's ``StratifiedGroupKFold``: that makes k equal
    folds (fractions that are not multiples of 1/k do not fit) and promises no class in every
    fold. Here each group is stratified by its majority label (ties: the lower class); per
    class, groups are shuffled with ``seed`` and dealt to val, then test, while each is short
    of its target row count (``max(1, round(n * fraction))``), the rest to train, except that
    a split still without a group of the class takes one while no more are left to spare. With one row
    per group the counts are exact; a group of k rows can overshoot a target by k - 1 rows.
    Every split with a fraction > 0 gets at least one group of every class present, so a class
    with too few groups is an error.
    """
    labels = np.asarray(labels)
    _check_fractions(fractions)
    groups = _check_groups(groups, labels)
    members, sizes, group_class = _group_classes(labels, groups)
    rng = np.random.default_rng(seed)
    wanted = [s for s in ("val", "test") if fractions.get(s, 0.0) > 0]
    out: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in range(NUM_CLASSES):
        gidx = np.flatnonzero(group_class == c)
        if len(gidx) == 0:
            continue
        n = int(sizes[gidx].sum())
        if len(gidx) < 1 + len(wanted):
            raise SplitError(
                f"class {c} ({CLASS_NAMES[c]}) has {n} image(s) in {len(gidx)} group(s), too "
                f"few to split into {', '.join(['train', *wanted])}: it needs at least "
                f"{1 + len(wanted)} (galaxies within split.group_arcsec count once). Use more "
                f"images (data.synthetic.per_class) or set split.test to 0."
            )
        target = {s: max(1, int(round(n * fractions[s]))) for s in wanted}
        for split, g in _deal(rng.permutation(gidx), sizes, target):
            out[split].append(members[g])
    return {
        s: np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.empty(0, np.int64)
        for s, parts in out.items()
    }


def _check_fractions(fractions: dict[str, float]) -> None:
    """Raise SplitError unless every fraction is in [0, 1] and they sum to 1."""
    for name, frac in fractions.items():
        if not 0.0 <= frac <= 1.0:
            raise SplitError(f"split.{name}: {frac!r} must be a fraction in [0, 1]")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise SplitError(f"split fractions must sum to 1, got {total:g} ({fractions})")


def _check_groups(groups: np.ndarray | None, labels: np.ndarray) -> np.ndarray:
    """Group ids (N,) int64: ``groups`` checked to have one id per label, or one group per
    row when None."""
    if groups is None:
        groups = np.arange(len(labels))
    groups = np.asarray(groups, np.int64)
    if groups.shape != labels.shape:
        raise SplitError(
            f"groups has shape {groups.shape}, labels {labels.shape}: one group "
            "id per row is needed"
        )
    return groups


def _group_classes(
    labels: np.ndarray, groups: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per group, in order of group id: its rows (in row order), its size (G,) and the class
    it is stratified by (G,) int64, its majority label (ties: the lower class)."""
    # Rows of each group (a stable sort keeps row order inside a group).
    order = np.argsort(groups, kind="stable")
    _, starts, sizes = np.unique(groups[order], return_index=True, return_counts=True)
    members = np.split(order, starts[1:])
    group_class = np.array(
        [np.bincount(labels[m], minlength=NUM_CLASSES).argmax() for m in members], dtype=np.int64
    )
    return members, sizes, group_class


def _deal(perm: np.ndarray, sizes: np.ndarray, target: dict[str, int]):
    """Yield (split, group) for one class's groups in the shuffled order ``perm``: to the first
    of ``target``'s splits (val, test) still short of its row count, else to train, except that
    a split still without a group takes one while no more are left to spare."""
    wanted = list(target)
    rows = {s: 0 for s in SPLITS}
    for k, g in enumerate(perm):
        short = [s for s in wanted if rows[s] < target[s]]
        split = short[0] if short else "train"
        # Each split still without a group of this class needs one of the groups left.
        empty = [s for s in (*wanted, "train") if rows[s] == 0 and s != split]
        if len(empty) > len(perm) - k - 1:
            split = empty[0]
        rows[split] += int(sizes[g])
        yield split, g


def channel_stats(
    h5_path: str | Path, indices: np.ndarray, chunk: int = READ_CHUNK
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the given images, in units of pixel/255.

    Counted exactly: a 256-bin histogram of each channel's uint8 values (integer counts, so
    the result does not depend on the chunking), reduced to the moments with Python integers.
    Memory stays at one uint8 chunk of ``chunk`` images plus a small slice being counted;
    there is no float copy of the images (a float64 copy of a 1,024-image chunk of 256 px
    pictures was 1.6 GB, three times over, the split stage's peak).
    """
    hist = np.zeros((3, 256), np.int64)
    indices = np.sort(np.asarray(indices, dtype=np.int64))
    for start in range(0, len(indices), chunk):
        count_levels(read_images(h5_path, indices[start : start + chunk]), hist)
    if int(hist[0].sum()) == 0:
        raise SplitError(f"{h5_path}: the train split is empty; cannot compute statistics")
    return level_moments(hist)


def count_levels(images: np.ndarray, hist: np.ndarray) -> np.ndarray:
    """Add the uint8 values of images (N, H, W, 3) to ``hist`` (3, 256) int64, per channel, a
    few images at a time (no float copy); returns ``hist``."""
    for row in range(0, len(images), _COUNT_ROWS):  # bincount widens to int64: slices
        part = np.asarray(images[row : row + _COUNT_ROWS])
        for c in range(3):
            hist[c] += np.bincount(part[..., c].ravel(), minlength=256)
    return hist


def level_moments(hist: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std in pixel/255 units of a (3, 256) level count,
    exact in Python integers until the division."""
    count = int(hist[0].sum())
    levels = np.arange(256, dtype=np.int64)
    mean, std = [], []
    for c in range(3):
        s1, s2 = int(hist[c] @ levels), int(hist[c] @ (levels * levels))
        var = (count * s2 - s1 * s1) / (count * count) / 255.0**2  # exact until the division
        mean.append(s1 / count / 255.0)
        std.append(math.sqrt(max(var, 1e-12)))
    return mean, std


def write_split(
    out_dir: str | Path,
    splits: dict[str, np.ndarray],
    labels: np.ndarray,
    mean: list[float],
    std: list[float],
    source: dict,
    grouping: dict | None = None,
) -> None:
    """Write ``<split>.npy`` index files and ``stats.json``; each file atomically.

    ``grouping``: what the sky grouping did (:func:`group_summary` plus ``arcsec`` and
    ``coordinates``), stored under ``stats.json``'s ``"grouping"``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for s, idx in splits.items():
        SplitRows(idx).write(out_dir / f"{s}.npy")
    SplitStats(
        mean=list(mean),
        std=list(std),
        source=dict(source),
        counts={
            s: {name: int((labels[idx] == c).sum()) for c, name in enumerate(CLASS_NAMES)}
            for s, idx in splits.items()
        },
        sizes={s: int(len(idx)) for s, idx in splits.items()},
        grouping=grouping,
    ).write(out_dir / "stats.json")


def _log_grouping(data: str | Path, g: dict) -> None:
    if g["coordinates"]:
        log.info(
            "merged %d rows into %d groups (galaxies within %g arcsec; %d with mixed "
            "labels); %d groups in all",
            g["rows_in_merged_groups"],
            g["merged_groups"],
            g["arcsec"],
            g["mixed_label_groups"],
            g["groups"],
        )
    else:
        log.info(
            "no ra/dec in %s: rows with identical pixels are one galaxy (%d rows merged "
            "into %d groups; %d with mixed labels)",
            data,
            g["rows_in_merged_groups"],
            g["merged_groups"],
            g["mixed_label_groups"],
        )


def file_groups(data: str | Path, labels: np.ndarray, arcsec: float) -> tuple[np.ndarray, dict]:
    """The duplicate-aware groups (N,) int64 of a validated Galaxy10 file and their summary
    (:func:`group_rows`): rows within ``arcsec`` on the sky, or, without ra/dec (a user's
    folder of cut-outs), rows with identical pixels. The split and the k-fold CV both use it."""
    coords = galaxy10.read_coordinates(data)
    identical = identical_groups(data) if coords is None else None
    return group_rows(labels, coords, arcsec, identical)


def split_file(
    data: str | Path,
    source: Source | dict,
    out_dir: str | Path,
    fractions: dict[str, float],
    seed: int,
    arcsec: float,
) -> dict:
    """The split stage's work: validate the Galaxy10 file ``data``, group its rows on the sky
    (or, without ra/dec, rows with identical pixels: :func:`group_rows`), split them (:func:`stratified_split`), count the channel statistics
    of the **train** rows only (:func:`channel_stats`) and write it all (:func:`write_split`).

    ``source``: the download's ``source.json`` record (its ``source`` and ``sha256`` are kept).
    Returns {"splits": {split: indices}, "mean": [3], "std": [3], "grouping": summary}.
    """
    source = Source.coerce(source)
    galaxy10.validate(data)
    labels = galaxy10.read_labels(data)
    groups, grouping = file_groups(data, labels, arcsec)
    _log_grouping(data, grouping)  # before the split: a too-small class's error follows it
    splits = stratified_split(labels, fractions, seed, groups)
    mean, std = channel_stats(data, splits["train"])
    write_split(
        out_dir,
        splits,
        labels,
        mean,
        std,
        source={"source": source.source, "sha256": source.sha256},
        grouping=grouping,
    )
    return {"splits": splits, "mean": mean, "std": std, "grouping": grouping}


def read_split(split_dir: str | Path, name: str) -> np.ndarray:
    """Indices (n,) int64 of split ``name`` written by :func:`write_split`."""
    return SplitRows.read(Path(split_dir) / f"{name}.npy").rows


def read_stats(split_dir: str | Path) -> SplitStats:
    """The ``stats.json`` of the split folder ``split_dir`` (HandoffError when missing/wrong)."""
    return SplitStats.read(Path(split_dir) / "stats.json")


def sample_rows(rows: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """At most ``n`` of ``rows``: a seeded random subset in the rows' own order (all of them
    when ``n`` is None or not smaller). The same (rows, n, seed) always gives the same subset."""
    if n is None or n >= len(rows):
        return rows
    keep = np.random.default_rng([seed, 2]).choice(len(rows), n, replace=False)
    return rows[np.sort(keep)]
