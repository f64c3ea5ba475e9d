"""Random draws and per-class priors of the synthetic galaxies (see :mod:`deepgal.data.synthetic`).

Every image owns a NumPy ``Generator`` seeded from ``(seed, image index)``, and takes the same
fixed-size draws in the same order whatever its class or the batch it is rendered in. So an
image's bytes depend only on the seed, its index and the image size, never on the batch size;
and the same galaxy (parameters, stars, clumps) appears at every image size.

Units: lengths are fractions of the frame (the frame is 1 wide, centred on 0); surface
brightness is in units of the sky-noise standard deviation of one native 256 px pixel.
The priors were set by measuring the 50 real Galaxy10 DECaLS images (apparent size, core
brightness, colour, sky level and noise, density of stars and background galaxies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepgal.data.synthetic.portable import powf

NATIVE_SIZE = 256  # px of a real Galaxy10 DECaLS cut-out; the unit of noise and PSF widths
N_STARS = 96  # fixed draw sizes keep every image's random stream aligned
N_BACKGROUND = 48
N_CLUMPS = 40
PATCH_GRID = 24  # low-resolution grid of the patchiness field (texture in frame units)

# One uniform column per scalar parameter; the order is part of the seed contract.
PARAMS = (
    "cx",
    "cy",
    "pa",
    "q_body",
    "size",
    "bulge_amp",
    "bulge_re",
    "bulge_n",
    "bulge_q",
    "disc_amp",
    "disc_h",
    "disc_q",
    "arm_amp",
    "arm_m",
    "pitch",
    "arm_k",
    "arm_phase",
    "bar_amp",
    "bar_len",
    "bar_q",
    "bar_angle",
    "ring_amp",
    "patch",
    "clump_amp",
    "n_clumps",
    "comp_amp",
    "comp_sep",
    "comp_angle",
    "comp_re",
    "comp_q",
    "comp_pa",
    "tail_amp",
    "tail_pitch",
    "tail_len",
    "tail_m",
    "tail_phase",
    "dust",
    "lopsided",
    "lop_angle",
    "col_bulge",
    "col_disc",
    "col_comp",
    "sky",
    "sky_tint",
    "noise",
    "noise_corr",
    "chroma",
    "beta",
    "gain",
    "psf",
    "psf_wing",
    "n_stars",
    "star_slope",
    "n_background",
    "bg_blur",
    "clump_spread",
    "arm_clumps",
    "comp_kind",
    "bright",
)
COL = {name: i for i, name in enumerate(PARAMS)}


@dataclass(frozen=True)
class Draws:
    """Raw uniform/normal draws of a batch of B images (all float32).

    u: (B, len(PARAMS)) uniforms; stars: (B, N_STARS, 4); background: (B, N_BACKGROUND, 5);
    clumps: (B, N_CLUMPS, 4); patch: (B, PATCH_GRID, PATCH_GRID) normals;
    noise: (B, 4, S, S//2 + 1, 2) normals (one luminance and three colour noise fields,
    drawn directly as Fourier coefficients).
    """

    u: np.ndarray
    stars: np.ndarray
    background: np.ndarray
    clumps: np.ndarray
    patch: np.ndarray
    noise: np.ndarray


def draw(seed: int, indices: np.ndarray, image_size: int) -> Draws:
    """Draw the random numbers of images ``indices`` (global positions in the data set)."""
    f32 = np.float32
    parts: list[list[np.ndarray]] = [[] for _ in range(6)]
    for i in indices:
        rng = np.random.default_rng([seed, 1, int(i)])
        parts[0].append(rng.random(len(PARAMS), dtype=f32))
        parts[1].append(rng.random((N_STARS, 4), dtype=f32))
        parts[2].append(rng.random((N_BACKGROUND, 5), dtype=f32))
        parts[3].append(rng.random((N_CLUMPS, 4), dtype=f32))
        parts[4].append(rng.standard_normal((PATCH_GRID, PATCH_GRID), dtype=f32))
        parts[5].append(rng.standard_normal((4, image_size, image_size // 2 + 1, 2), dtype=f32))
    return Draws(*(np.stack(p) for p in parts))


def _table(values: dict[int, tuple[float, float]], default: tuple[float, float]) -> np.ndarray:
    """(10, 2) array of (lo, hi) per class: ``default`` unless ``values`` overrides a class."""
    return np.array([values.get(c, default) for c in range(10)], dtype=np.float32)


# Per-class (lo, hi) ranges: class -> range, one default for the rest.
# Classes: 0 Disturbed, 1 Merging, 2 Round, 3 In-between, 4 Cigar, 5 Barred spiral,
# 6 Tight spiral, 7 Loose spiral, 8 Edge-on no bulge, 9 Edge-on with bulge.
SMOOTH, SPIRAL, EDGE = (2, 3, 4), (5, 6, 7), (8, 9)
PRIORS: dict[str, tuple[str, np.ndarray]] = {
    # Overall apparent size (frame fraction): the scale of the main body.
    "size": (
        "log",
        _table(
            {
                2: (0.035, 0.10),
                3: (0.03, 0.075),
                4: (0.03, 0.07),
                8: (0.06, 0.16),
                9: (0.05, 0.12),
                0: (0.025, 0.06),
                1: (0.03, 0.07),
                7: (0.035, 0.085),
            },
            (0.04, 0.10),
        ),
    ),
    # Axis ratio of smooth bodies (bulge-dominated classes) and of discs (cos inclination).
    "q_body": (
        "lin",
        _table(
            {
                2: (0.78, 1.0),
                3: (0.48, 0.8),
                4: (0.25, 0.5),
                8: (0.05, 0.16),
                9: (0.06, 0.2),
                0: (0.3, 1.0),
                1: (0.5, 1.0),
            },
            (0.45, 1.0),
        ),
    ),
    # Bulge surface brightness at its effective radius (noise units) and Re/size.
    "bulge_amp": (
        "log",
        _table(
            {
                8: (0.0, 0.0),
                0: (0.0, 25.0),
                1: (15.0, 100.0),
                9: (12.0, 80.0),
                5: (20.0, 120.0),
                6: (20.0, 150.0),
                7: (5.0, 50.0),
            },
            (8.0, 60.0),
        ),
    ),
    "bulge_re": (
        "lin",
        _table(
            {
                2: (0.7, 1.3),
                3: (0.7, 1.3),
                4: (0.7, 1.3),
                1: (0.5, 1.0),
                9: (0.25, 0.5),
                6: (0.3, 0.6),
                7: (0.15, 0.35),
            },
            (0.2, 0.45),
        ),
    ),
    "bulge_n": ("lin", _table({2: (2.0, 5.0), 3: (2.0, 5.0), 4: (1.5, 4.0)}, (1.0, 4.0))),
    # Disc central surface brightness (noise units); smooth classes get a faint one at most.
    "disc_amp": (
        "log",
        _table(
            {
                2: (0.0, 0.0),
                3: (0.0, 5.0),
                4: (0.0, 10.0),
                8: (10.0, 50.0),
                9: (12.0, 50.0),
                0: (6.0, 40.0),
                1: (0.0, 20.0),
            },
            (12.0, 60.0),
        ),
    ),
    "arm_amp": (
        "lin",
        _table({5: (0.2, 0.7), 6: (0.15, 0.45), 7: (0.3, 0.8), 0: (0.0, 0.5)}, (0.0, 0.0)),
    ),
    "arm_m": ("lin", _table({6: (2.0, 4.0), 7: (2.0, 3.0), 5: (2.0, 2.0)}, (2.0, 2.0))),
    # Pitch angle (degrees): tight vs loose is the whole difference between classes 6 and 7.
    "pitch": (
        "lin",
        _table({6: (9.0, 17.0), 7: (18.0, 35.0), 5: (12.0, 30.0), 0: (15.0, 40.0)}, (15.0, 30.0)),
    ),
    "bar_amp": ("log", _table({5: (15.0, 80.0)}, (0.0, 0.0))),
    "ring_amp": ("lin", _table({5: (0.0, 0.7), 6: (0.0, 0.3)}, (0.0, 0.0))),
    "patch": (
        "lin",
        _table(
            {
                0: (0.3, 0.8),
                7: (0.2, 0.5),
                6: (0.1, 0.35),
                5: (0.1, 0.4),
                8: (0.1, 0.4),
                9: (0.1, 0.35),
                1: (0.2, 0.6),
            },
            (0.0, 0.1),
        ),
    ),
    "clump_amp": (
        "log",
        _table(
            {0: (10.0, 80.0), 7: (5.0, 60.0), 6: (3.0, 30.0), 5: (3.0, 30.0), 1: (3.0, 40.0)},
            (0.0, 0.0),
        ),
    ),
    "comp_amp": ("lin", _table({1: (0.25, 1.0)}, (0.0, 0.0))),
    "comp_sep": ("lin", _table({1: (0.7, 2.2)}, (2.5, 5.0))),
    "tail_amp": ("log", _table({1: (1.0, 6.0), 0: (0.0, 5.0)}, (0.0, 0.0))),
    "dust": ("lin", _table({8: (0.0, 0.5), 9: (0.2, 0.85)}, (0.0, 0.0))),
    "lopsided": ("lin", _table({0: (0.3, 1.0), 1: (0.0, 0.5)}, (0.0, 0.1))),
    # Colour: 0 = blue star-forming disc, 1 = yellow-orange old population.
    "col_bulge": ("lin", _table({0: (0.3, 0.9), 2: (0.3, 1.0)}, (0.5, 1.0))),
    "col_disc": (
        "lin",
        _table(
            {
                0: (-0.1, 0.4),
                8: (0.2, 0.8),
                9: (0.3, 0.8),
                6: (0.2, 0.75),
                3: (0.5, 0.9),
                4: (0.5, 0.9),
            },
            (0.15, 0.65),
        ),
    ),
}


def _map(u: np.ndarray, labels: np.ndarray, name: str) -> np.ndarray:
    """Map column ``name`` of ``u`` (B,) through the per-class prior of that parameter."""
    kind, table = PRIORS[name]
    lo, hi = table[labels, 0], table[labels, 1]
    x = u[:, COL[name]]
    if kind == "log":  # log-uniform on (lo, hi]; a zero lower bound switches the part off
        on = lo > 0
        lo_safe = np.where(on, lo, 1.0)
        out = np.where(on, lo_safe * powf(np.where(on, hi / lo_safe, 1), x), hi * x * (hi > 0))
        return out.astype(np.float32)
    return (lo + (hi - lo) * x).astype(np.float32)


def lin(u: np.ndarray, name: str, lo: float, hi: float) -> np.ndarray:
    """Class-independent uniform parameter in [lo, hi)."""
    return (lo + (hi - lo) * u[:, COL[name]]).astype(np.float32)


def logu(u: np.ndarray, name: str, lo: float, hi: float) -> np.ndarray:
    """Class-independent log-uniform parameter in [lo, hi)."""
    return (lo * powf(hi / lo, u[:, COL[name]])).astype(np.float32)


def galaxy_params(u: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image physical parameters (each (B,) float32) from uniforms ``u`` (B, K)."""
    p = {name: _map(u, labels, name) for name in PRIORS}
    # Surface brightness varies widely at a given morphology: one factor scales every part.
    bright = logu(u, "bright", 0.8, 2.5)
    for name in ("bulge_amp", "disc_amp", "bar_amp", "tail_amp", "clump_amp"):
        p[name] = p[name] * bright
    size = p["size"]
    spiral = np.isin(labels, SPIRAL)
    p["cx"], p["cy"] = lin(u, "cx", -0.02, 0.02), lin(u, "cy", -0.02, 0.02)
    p["pa"] = lin(u, "pa", 0.0, np.pi)
    p["bulge_re"] = p["bulge_re"] * size
    p["bulge_q"] = np.where(
        np.isin(labels, SMOOTH) | (labels == 1), p["q_body"], lin(u, "bulge_q", 0.6, 1.0)
    ).astype(np.float32)
    p["disc_h"] = size * lin(u, "disc_h", 0.8, 1.25)
    p["disc_q"] = np.where(spiral, lin(u, "disc_q", 0.35, 1.0), p["q_body"]).astype(np.float32)
    p["arm_m"] = np.floor(p["arm_m"] + u[:, COL["arm_m"]] * 0.999).astype(np.float32)
    p["arm_k"] = lin(u, "arm_k", 1.0, 4.0)
    p["arm_phase"] = lin(u, "arm_phase", 0.0, 2 * np.pi)
    p["bar_len"] = size * lin(u, "bar_len", 1.0, 2.0)
    p["bar_q"] = lin(u, "bar_q", 0.15, 0.3)
    p["bar_angle"] = lin(u, "bar_angle", 0.0, np.pi)
    p["n_clumps"] = np.floor(lin(u, "n_clumps", 3, 25)).astype(np.int64)
    p["clump_spread"] = lin(u, "clump_spread", 0.6, 1.8)
    p["arm_clumps"] = (u[:, COL["arm_clumps"]] < np.where(spiral, 0.8, 0.0)).astype(np.float32)
    p["comp_angle"] = lin(u, "comp_angle", 0.0, 2 * np.pi)
    p["comp_re"] = size * lin(u, "comp_re", 0.3, 0.9)
    p["comp_q"] = lin(u, "comp_q", 0.35, 1.0)
    p["comp_pa"] = lin(u, "comp_pa", 0.0, np.pi)
    p["comp_kind"] = u[:, COL["comp_kind"]]  # < 0.5: smooth companion, else a disc with arms
    p["tail_pitch"] = lin(u, "tail_pitch", 25.0, 55.0)
    p["tail_len"] = lin(u, "tail_len", 2.0, 5.0)
    p["tail_m"] = np.where(u[:, COL["tail_m"]] < 0.5, 1.0, 2.0).astype(np.float32)
    p["tail_phase"] = lin(u, "tail_phase", 0.0, 2 * np.pi)
    p["lop_angle"] = lin(u, "lop_angle", 0.0, 2 * np.pi)
    p["col_comp"] = lin(u, "col_comp", 0.0, 1.0)
    p["sky"] = lin(u, "sky", 0.10, 0.155)  # display units (0..1): real median 35/255
    p["sky_tint"] = lin(u, "sky_tint", -0.01, 0.01)
    p["noise"] = lin(u, "noise", 1.7, 2.7)  # native-pixel noise, noise units
    p["noise_corr"] = lin(u, "noise_corr", 0.2, 0.6) / NATIVE_SIZE
    p["chroma"] = lin(u, "chroma", 0.2, 0.55)
    p["beta"] = logu(u, "beta", 4.0, 12.0)
    p["gain"] = lin(u, "gain", 0.025, 0.04)  # display slope per noise unit at faint end
    p["psf"] = lin(u, "psf", 1.3, 2.4) / NATIVE_SIZE
    p["psf_wing"] = lin(u, "psf_wing", 0.03, 0.12)
    p["n_stars"] = np.floor(lin(u, "n_stars", 5, 50)).astype(np.int64)
    p["star_slope"] = lin(u, "star_slope", 0.55, 0.9)
    p["n_background"] = np.floor(lin(u, "n_background", 3, 30)).astype(np.int64)
    p["bg_blur"] = lin(u, "bg_blur", 1.0, 3.0) / NATIVE_SIZE
    return p
