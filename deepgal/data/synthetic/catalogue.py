"""Catalogue columns of the synthetic file: sky positions with planted duplicates, redshift, pxscale.

None of these columns feeds the images (the image model draws its own sizes): they exist so
that the synthetic file has the real file's layout and the position-grouped split has work.

The real Galaxy10 DECaLS file holds the same galaxy more than once (59 pairs of rows share
``ra``/``dec`` exactly, more lie within a few arcseconds), which is why the split groups rows by
position. The synthetic file plants a few such pairs, within one class, so that the group split
is exercised by the default pipeline: ``DUP_FRACTION`` of the rows get an exact twin and as many
get a near twin 0.1-0.5" away.
"""

from __future__ import annotations

import math

import numpy as np

from deepgal.data.synthetic.portable import each, log_uniform

# Dec band of the DECaLS footprint used by Galaxy Zoo DECaLS (SDSS DR8 overlap), degrees.
DEC_RANGE = (-20.0, 35.0)
DUP_FRACTION = 0.004  # ~0.33% of the real rows are exact repeats; a little more here
NEAR_ARCSEC = (0.1, 0.5)  # separation of a near twin
DECALS_PXSCALE = 0.262  # arcsec per DECaLS pixel
NATIVE_SIZE = 256  # px of a Galaxy10 DECaLS cut-out
REDSHIFT_RANGE = (0.005, 0.15)  # log-uniform; the Galaxy Zoo DECaLS galaxies are nearby


def positions(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Sky positions ra, dec (N,) float64 degrees, uniform on the sphere within ``DEC_RANGE``,
    with duplicates planted among rows of the same class (labels (N,) uint8).

    Returns (ra, dec, counts) with counts = {"exact": pairs with identical ra/dec,
    "near": pairs within NEAR_ARCSEC}. Seeded by ``seed`` only: same labels -> same columns.
    """
    n = len(labels)
    rng = np.random.default_rng([seed, 2])
    lo, hi = (math.sin(math.radians(d)) for d in DEC_RANGE)
    ra = rng.uniform(0.0, 360.0, n)
    dec = each(lambda v: math.degrees(math.asin(v)), rng.uniform(lo, hi, n))
    want = max(1, round(n * DUP_FRACTION))
    order = rng.permutation(n)
    used = np.zeros(n, dtype=bool)
    counts = {"exact": 0, "near": 0}
    for i in order:
        if counts["near"] >= want:
            break
        if used[i]:
            continue
        mates = np.flatnonzero((labels == labels[i]) & ~used)
        mates = mates[mates != i]
        if mates.size == 0:
            continue
        j = int(mates[rng.integers(mates.size)])
        used[[i, j]] = True
        kind = "exact" if counts["exact"] < want else "near"
        ra[j], dec[j] = ra[i], dec[i]
        if kind == "near":  # move j by 0.1-0.5" in a random direction
            sep = rng.uniform(*NEAR_ARCSEC) / 3600.0
            angle = rng.uniform(0.0, 2 * np.pi)
            dec[j] = dec[i] + sep * math.sin(angle)
            ra[j] = (ra[i] + sep * math.cos(angle) / math.cos(math.radians(dec[i]))) % 360.0
        counts[kind] += 1
    return ra, dec, counts


def pxscale(n: int, image_size: int) -> np.ndarray:
    """Pixel scale (n,) float64 arcsec/px of an ``image_size`` px image: one constant, that of
    a 256 px cut-out at the DECaLS 0.262"/px resized to ``image_size`` (the image model keeps
    no per-image sky scale, so a constant is the honest value)."""
    return np.full(n, DECALS_PXSCALE * NATIVE_SIZE / image_size, dtype=np.float64)


def redshift(n: int, seed: int) -> np.ndarray:
    """Redshifts (n,) float64, log-uniform in ``REDSHIFT_RANGE``, from a stream of its own
    (``(seed, 3)``) so that the image bytes do not change with it."""
    lo, hi = REDSHIFT_RANGE
    return log_uniform(lo, hi, np.random.default_rng([seed, 3]).random(n))
