"""Random draws and per-class priors of the synthetic galaxies (see :mod:`deepgal.data.synthetic`).

Every image owns a NumPy ``Generator`` seeded from ``(seed, image index)``, and takes the same
fixed-size draws in the same order whatever its class or the batch it is rendered in. So an
image's bytes depend only on the seed, its index and the image size, never on the batch size;
and the same galaxy (parameters, stars, clumps) appears at every image size.

Units: lengths are fractions of the frame (the frame is 1 wide, centred on 0); surface
brightness is in stretch units: band flux / band scale (GZ DECaLS colour map) per native
0.262" pixel. The priors follow published facts (docs/renderer.md): the cut-out scaling of
Galaxy Zoo DECaLS, DECaLS seeing and depth, galaxy colours, and the decision-tree answers that
define each Galaxy10 class; every nuisance is drawn wider than its real range.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NATIVE_SIZE = 256  # px of a real Galaxy10 DECaLS cut-out; the unit of noise amplitudes
N_STARS = 96       # fixed draw sizes keep every image's random stream aligned
N_BACKGROUND = 48
N_CLUMPS = 40
PATCH_GRID = 24    # low-resolution grid of the patchiness field (texture in frame units)
N_BANDS = 3        # g, r, z: independent sky noise in each

# How a Galaxy10 DECaLS cut-out was made (sources in docs/renderer.md): the Galaxy Zoo DECaLS
# downloader asked the Legacy Surveys cut-out service for 424 x 424 px at
# pixscale = max(0.04 * petroTheta50, 0.10) arcsec/px, so a galaxy's half-light radius spans
# ~25 of the 424 px whatever its size; Galaxy10 then resized 424 -> 256 px.
CUTOUT_PX = 424
SURVEY_PIXSCALE = 0.262  # arcsec per native DECam / Legacy Surveys pixel

# One uniform column per scalar parameter; the order is part of the seed contract.
PARAMS = (
    "cx", "cy", "pa", "q_body", "r50_arcsec", "bulge_amp", "bulge_re", "bulge_n", "bulge_q",
    "disc_amp", "disc_h", "disc_q", "arm_amp", "arm_m", "pitch", "arm_k", "arm_phase",
    "bar_amp", "bar_len", "bar_q", "bar_angle", "ring_amp", "patch", "clump_amp",
    "n_clumps", "comp_amp", "comp_sep", "comp_angle", "comp_re", "comp_q", "comp_pa",
    "tail_amp", "tail_pitch", "tail_len", "tail_m", "tail_phase", "dust", "lopsided",
    "lop_angle", "col_bulge", "col_disc", "col_comp", "sky", "sky_g", "sky_z", "sigma_x",
    "depth_g", "depth_z", "bal_g", "bal_z", "softening", "stretch_max", "stretch_min",
    "desat", "desat_div", "chroma", "fwhm", "psf_g", "psf_z", "psf_wing", "pix_factor", "pix_floor", "n_stars",
    "star_slope", "n_background", "bg_blur", "clump_spread", "arm_clumps", "comp_kind",
    "bright", "centre_on", "jpeg", "jpeg_q", "redshift",
)
COL = {name: i for i, name in enumerate(PARAMS)}


@dataclass(frozen=True)
class Draws:
    """Raw uniform/normal draws of a batch of B images (all float32).

    u: (B, len(PARAMS)) uniforms; stars: (B, N_STARS, 4); background: (B, N_BACKGROUND, 5);
    clumps: (B, N_CLUMPS, 4); patch: (B, PATCH_GRID, PATCH_GRID) normals;
    noise: (B, 3, S, S//2 + 1, 2) normals (the g, r and z sky noise fields, drawn directly
    as Fourier coefficients).
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
        parts[5].append(rng.standard_normal((N_BANDS, image_size, image_size // 2 + 1, 2), dtype=f32))
    return Draws(*(np.stack(p) for p in parts))


def _table(values: dict[int, tuple[float, float]], default: tuple[float, float]) -> np.ndarray:
    """(10, 2) array of (lo, hi) per class: ``default`` unless ``values`` overrides a class."""
    return np.array([values.get(c, default) for c in range(10)], dtype=np.float32)


# Per-class (lo, hi) ranges: class -> range, one default for the rest. What separates the
# classes follows the Galaxy Zoo DECaLS decision tree that Galaxy10 DECaLS selects on (smooth
# vs featured, edge-on, bar, spiral winding, bulge, merger/disturbance) -- never apparent size,
# which the cut-out scaling normalises (see galaxy_params).
# Classes: 0 Disturbed, 1 Merging, 2 Round, 3 In-between, 4 Cigar, 5 Barred spiral,
# 6 Tight spiral, 7 Loose spiral, 8 Edge-on no bulge, 9 Edge-on with bulge.
SMOOTH, SPIRAL, EDGE = (2, 3, 4), (5, 6, 7), (8, 9)
DISCY = (0, 5, 6, 7, 8, 9)  # classes whose half-light radius is set by an exponential disc
PRIORS: dict[str, tuple[str, np.ndarray]] = {
    # Half-light radius on the sky (arcsec). A class is kept in Galaxy10 only when most
    # volunteers saw its feature, so arms, bars, tidal features and thin discs come from
    # galaxies resolved well beyond the seeing (r50 >= 2.5-3"), smooth bodies from any size.
    "r50_arcsec": ("log", _table({0: (3.0, 20.0), 1: (3.0, 20.0), 5: (3.0, 20.0),
                                  6: (3.0, 20.0), 7: (3.0, 20.0), 8: (2.5, 20.0),
                                  9: (2.5, 20.0)}, (1.2, 20.0))),
    # Axis ratio of smooth bodies ("how rounded": completely round / in between / cigar) and
    # of discs (cos inclination; edge-on discs are thin, q ~ 0.1).
    "q_body": ("lin", _table({2: (0.8, 1.0), 3: (0.45, 0.8), 4: (0.18, 0.45),
                              8: (0.05, 0.18), 9: (0.06, 0.22), 0: (0.3, 1.0),
                              1: (0.45, 1.0)}, (0.45, 1.0))),
    # Bulge surface brightness at its effective radius (sky-noise units) and Re / disc scale.
    # Tight arms go with bigger bulges (the Hubble sequence), loose arms with small ones.
    "bulge_amp": ("log", _table({8: (0.0, 0.0), 0: (0.0, 20.0), 1: (15.0, 100.0),
                                 9: (12.0, 80.0), 5: (15.0, 120.0), 6: (20.0, 150.0),
                                 7: (4.0, 40.0)}, (8.0, 60.0))),
    "bulge_re": ("lin", _table({2: (0.8, 1.2), 3: (0.8, 1.2), 4: (0.8, 1.2),
                                1: (0.8, 1.2), 9: (0.3, 0.6), 6: (0.3, 0.6),
                                7: (0.15, 0.35)}, (0.2, 0.45))),
    "bulge_n": ("lin", _table({2: (2.5, 6.0), 3: (2.0, 5.0), 4: (1.5, 4.0)}, (1.0, 4.0))),
    # Disc central surface brightness (noise units); smooth classes get a faint one at most.
    "disc_amp": ("log", _table({2: (0.0, 0.0), 3: (0.0, 5.0), 4: (0.0, 10.0),
                                8: (10.0, 50.0), 9: (12.0, 50.0), 0: (4.0, 30.0),
                                1: (0.0, 20.0)}, (12.0, 60.0))),
    "arm_amp": ("lin", _table({5: (0.2, 0.7), 6: (0.2, 0.5), 7: (0.35, 0.85),
                               0: (0.0, 0.4)}, (0.0, 0.0))),
    "arm_m": ("lin", _table({6: (2.0, 4.0), 7: (2.0, 4.0), 5: (2.0, 2.0)}, (2.0, 2.0))),
    # Pitch angle (degrees): spiral-arm winding, tight vs loose, is the whole of 6 vs 7.
    "pitch": ("lin", _table({6: (7.0, 16.0), 7: (22.0, 42.0), 5: (10.0, 32.0),
                             0: (15.0, 45.0)}, (15.0, 30.0))),
    "bar_amp": ("log", _table({5: (10.0, 80.0)}, (0.0, 0.0))),
    "ring_amp": ("lin", _table({5: (0.0, 0.7), 6: (0.0, 0.3)}, (0.0, 0.0))),
    "patch": ("lin", _table({0: (0.4, 0.9), 7: (0.2, 0.55), 6: (0.1, 0.35), 5: (0.1, 0.4),
                             8: (0.1, 0.4), 9: (0.1, 0.35), 1: (0.1, 0.5)}, (0.0, 0.1))),
    "clump_amp": ("log", _table({0: (10.0, 80.0), 7: (5.0, 60.0), 6: (3.0, 30.0),
                                 5: (3.0, 30.0), 1: (2.0, 30.0)}, (0.0, 0.0))),
    # A second body (mergers: a companion of comparable light, overlapping or close).
    "comp_amp": ("lin", _table({1: (0.3, 1.0)}, (0.0, 0.0))),
    "comp_sep": ("lin", _table({1: (0.6, 2.4)}, (2.5, 5.0))),
    # Tidal tails, plumes and shells: the mark of both disturbance and mergers.
    "tail_amp": ("log", _table({1: (1.0, 8.0), 0: (1.0, 8.0)}, (0.0, 0.0))),
    "dust": ("lin", _table({8: (0.0, 0.5), 9: (0.2, 0.85)}, (0.0, 0.0))),
    "lopsided": ("lin", _table({0: (0.4, 1.2), 1: (0.0, 0.5)}, (0.0, 0.1))),
    # Colour: 0 = blue star-forming population, 1 = red old population (see draw.colour).
    "col_bulge": ("lin", _table({0: (0.1, 0.8), 2: (0.5, 1.2)}, (0.5, 1.2))),
    "col_disc": ("lin", _table({0: (-0.3, 0.5), 8: (0.1, 0.8), 9: (0.2, 0.9), 6: (0.0, 0.8),
                                3: (0.5, 1.1), 4: (0.5, 1.1)}, (-0.2, 0.7))),
}


def _map(u: np.ndarray, labels: np.ndarray, name: str) -> np.ndarray:
    """Map column ``name`` of ``u`` (B,) through the per-class prior of that parameter."""
    kind, table = PRIORS[name]
    lo, hi = table[labels, 0], table[labels, 1]
    x = u[:, COL[name]]
    if kind == "log":  # log-uniform on (lo, hi]; a zero lower bound switches the part off
        on = lo > 0
        lo_safe = np.where(on, lo, 1.0)
        out = np.where(on, lo_safe * (hi / lo_safe) ** x, hi * x * (hi > 0))
        return out.astype(np.float32)
    return (lo + (hi - lo) * x).astype(np.float32)


def lin(u: np.ndarray, name: str, lo: float, hi: float) -> np.ndarray:
    """Class-independent uniform parameter in [lo, hi)."""
    return (lo + (hi - lo) * u[:, COL[name]]).astype(np.float32)


def logu(u: np.ndarray, name: str, lo: float, hi: float) -> np.ndarray:
    """Class-independent log-uniform parameter in [lo, hi)."""
    return (lo * (hi / lo) ** u[:, COL[name]]).astype(np.float32)


def cutout_geometry(u: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Apparent size, seeing and pixel scale of each cut-out (each (B,) float32).

    r50_arcsec: half-light radius on the sky, log-uniform up to 20" (GZ DECaLS galaxies,
    r < 17.77, have petroTheta50 of ~1.5-10"; the GZ2 part of Galaxy10, r < 17, larger),
    from 1.2" for smooth classes and 2.5-3" for the others (PRIORS); pix424: the cut-out's arcsec/px at 424 px, the GZ rule
    max(f * r50, floor) with f around 0.04 and floor around 0.10" (both randomised wider);
    r50: the half-light radius as a fraction of the frame; psf: the Gaussian sigma of the
    seeing (FWHM 0.8-2.0", the survey's range being ~1.0-1.5") in frame units; native: one
    0.262" survey pixel in frame units; pxscale: arcsec per pixel of the 256 px image.
    """
    r50_as = _map(u, labels, "r50_arcsec")
    pix = np.maximum(lin(u, "pix_factor", 0.03, 0.055) * r50_as, lin(u, "pix_floor", 0.08, 0.14))
    frame_as = pix * CUTOUT_PX
    fwhm = lin(u, "fwhm", 0.8, 2.0)
    return {"r50_arcsec": r50_as, "r50": (r50_as / frame_as).astype(np.float32),
            "psf": (fwhm / 2.3548 / frame_as).astype(np.float32),
            "native": (SURVEY_PIXSCALE / frame_as).astype(np.float32),
            "pxscale": (frame_as / NATIVE_SIZE).astype(np.float32)}


def galaxy_params(u: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image physical parameters (each (B,) float32) from uniforms ``u`` (B, K)."""
    p = {name: _map(u, labels, name) for name in PRIORS}
    p.update(cutout_geometry(u, labels))
    # Surface brightness varies widely at a given morphology: one factor scales every part.
    bright = logu(u, "bright", 0.5, 3.0)
    for name in ("bulge_amp", "disc_amp", "bar_amp", "tail_amp", "clump_amp"):
        p[name] = p[name] * bright
    # The main body's scale: the disc scale length (r50 = 1.68 h) or the smooth body's Re.
    size = p["r50"] * np.where(np.isin(labels, DISCY), 1 / 1.678, 1.0).astype(np.float32)
    p["size"] = size
    spiral = np.isin(labels, SPIRAL)
    p["cx"], p["cy"] = lin(u, "cx", -0.04, 0.04), lin(u, "cy", -0.04, 0.04)
    p["pa"] = lin(u, "pa", 0.0, np.pi)
    p["bulge_re"] = p["bulge_re"] * size
    p["bulge_q"] = np.where(np.isin(labels, SMOOTH) | (labels == 1), p["q_body"],
                            lin(u, "bulge_q", 0.6, 1.0)).astype(np.float32)
    p["disc_h"] = size * lin(u, "disc_h", 0.8, 1.25)
    p["disc_q"] = np.where(spiral, lin(u, "disc_q", 0.35, 1.0), p["q_body"]).astype(np.float32)
    p["arm_m"] = np.floor(p["arm_m"] + u[:, COL["arm_m"]] * 0.999).astype(np.float32)
    p["arm_k"] = lin(u, "arm_k", 1.0, 4.0)
    p["arm_phase"] = lin(u, "arm_phase", 0.0, 2 * np.pi)
    p["bar_len"] = size * lin(u, "bar_len", 1.0, 2.2)
    p["bar_q"] = lin(u, "bar_q", 0.15, 0.35)
    p["bar_angle"] = lin(u, "bar_angle", 0.0, np.pi)
    p["n_clumps"] = np.floor(lin(u, "n_clumps", 3, 25)).astype(np.int64)
    p["clump_spread"] = lin(u, "clump_spread", 0.6, 1.8)
    p["arm_clumps"] = (u[:, COL["arm_clumps"]] < np.where(spiral, 0.8, 0.0)).astype(np.float32)
    p["comp_angle"] = lin(u, "comp_angle", 0.0, 2 * np.pi)
    p["comp_re"] = size * lin(u, "comp_re", 0.3, 1.0)
    p["comp_q"] = lin(u, "comp_q", 0.35, 1.0)
    p["comp_pa"] = lin(u, "comp_pa", 0.0, np.pi)
    p["comp_kind"] = u[:, COL["comp_kind"]]  # < 0.5: smooth companion, else a disc with arms
    # The cut-out is centred on the catalogued galaxy, not on the pair: 0 = main body centred,
    # 1 = the pair's light-weighted centre.
    p["centre_on"] = lin(u, "centre_on", 0.0, 1.0)
    p["tail_pitch"] = lin(u, "tail_pitch", 25.0, 55.0)
    p["tail_len"] = lin(u, "tail_len", 2.0, 5.0)
    p["tail_m"] = np.where(u[:, COL["tail_m"]] < 0.5, 1.0, 2.0).astype(np.float32)
    p["tail_phase"] = lin(u, "tail_phase", 0.0, 2 * np.pi)
    p["lop_angle"] = lin(u, "lop_angle", 0.0, 2 * np.pi)
    p["col_comp"] = lin(u, "col_comp", -0.2, 1.2)
    p["psf_wing"] = lin(u, "psf_wing", 0.0, 0.15)
    # Foreground stars and faint background galaxies: a sky density (per arcsec^2, to the
    # survey depth r ~ 23.5 at high Galactic latitude: stars ~5e3 per deg^2 = 4e-4 per
    # arcsec^2, galaxies ~10x more) times the cut-out's area, so small cut-outs hold few.
    area = (p["pxscale"] * NATIVE_SIZE) ** 2
    p["n_stars"] = np.minimum(logu(u, "n_stars", 1e-4, 2e-3) * area, N_STARS).astype(np.int64)
    p["star_slope"] = lin(u, "star_slope", 0.5, 0.95)
    p["n_background"] = np.minimum(logu(u, "n_background", 1e-3, 6e-3) * area,
                                   N_BACKGROUND).astype(np.int64)
    # Faint background galaxies are ~0.3-1.5" across before seeing.
    p["bg_blur"] = lin(u, "bg_blur", 0.3, 1.5) / (p["pxscale"] * NATIVE_SIZE)
    p.update(display_params(u))
    return p


def display_params(u: np.ndarray) -> dict[str, np.ndarray]:
    """Sky, noise, colour balance, stretch and compression of each image (each (B,)).

    Stretch units are those of the GZ DECaLS ``dstn_rgb`` map: band flux divided by its scale
    (g 0.008, r 0.014, z 0.019 nanomaggies), then asinh, with (-0.5, 300) mapped to black and
    white. Everything is drawn wider than the real range (domain randomisation).
    """
    return {
        # r-band sky noise of one native pixel in stretch units (DECaLS r depth 23.4 -> ~0.6), the
        # g and z noise relative to r (survey depths g 24.0, r 23.4, z 22.5 give ~1.0 and ~1.7).
        "sigma_x": logu(u, "sigma_x", 0.15, 2.0),
        "depth_g": logu(u, "depth_g", 0.6, 1.6),
        "depth_z": logu(u, "depth_z", 1.0, 2.8),
        # Residual sky level (imperfect background subtraction), per band, stretch units.
        "sky": lin(u, "sky", 0.05, 0.9),
        "sky_g": lin(u, "sky_g", -0.25, 0.25),
        "sky_z": lin(u, "sky_z", -0.25, 0.25),
        # Colour balance: the band scales, x/ 1.55.
        "bal_g": logu(u, "bal_g", 0.65, 1.55),
        "bal_z": logu(u, "bal_z", 0.65, 1.55),
        # Seeing of g and z relative to r (separate exposures).
        "psf_g": logu(u, "psf_g", 0.8, 1.25),
        "psf_z": logu(u, "psf_z", 0.8, 1.25),
        "softening": logu(u, "softening", 0.5, 2.0),
        "stretch_max": logu(u, "stretch_max", 100.0, 900.0),
        "stretch_min": lin(u, "stretch_min", -1.0, -0.2),
        "desat": (u[:, COL["desat"]] < 0.85).astype(np.float32),
        "desat_div": lin(u, "desat_div", 1.5, 4.0),
        # Display saturation (colour distance from grey x this): image makers differ.
        "chroma": logu(u, "chroma", 0.8, 2.6),
        "jpeg": (u[:, COL["jpeg"]] < 0.6).astype(np.float32),
        "jpeg_q": np.floor(lin(u, "jpeg_q", 40, 96)).astype(np.int64),
    }
