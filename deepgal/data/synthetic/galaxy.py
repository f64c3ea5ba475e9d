"""Assemble one batch of synthetic Galaxy10 images from their parameters (vectorised over B).

Each component is computed only for the images that have it (a subset index), as (b, S, S)
float32 fields on a shared coordinate grid, then coloured and summed into (B, 3, S, S).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from deepgal.data.synthetic import draw as sd
from deepgal.data.synthetic import params as sp
from deepgal.data.synthetic.portable import atan2f, powf, tanf

F32 = np.float32


def _at(p: dict, idx: np.ndarray) -> dict:
    return {k: v[idx] for k, v in p.items()}


def _add(target: np.ndarray, idx: np.ndarray, field: np.ndarray, rgb: np.ndarray) -> None:
    """target[idx] += field (b, S, S) coloured by rgb (b, 3)."""
    target[idx] += field[:, None] * rgb[:, :, None, None]


def _disc(grid, q: dict, patch: np.ndarray, size: int):
    """Exponential disc with arms, bar ring, lopsidedness and patchiness -> (b, S, S)."""
    x, y = sd.frame(grid, q["cx"], q["cy"], q["pa"])
    yd = y / sd.bcast(q["disc_q"])
    r = np.sqrt(x * x + yd * yd)
    h = sd.bcast(q["disc_h"])
    theta = atan2f(yd, x)
    mod = np.ones_like(r)
    spiral = q["arm_amp"] > 0
    if spiral.any():
        sign = np.where(q["arm_phase"] < np.pi, 1.0, -1.0).astype(F32)
        arms = sd.spiral_pattern(
            r / h, theta, q["arm_m"], q["pitch"], q["arm_phase"], q["arm_k"], sign
        )
        k = q["arm_k"].astype(np.float64)  # mean of ((1+cos)/2)^k over a turn
        mean = sd.bcast(np.exp(gammaln(k + 0.5) - gammaln(k + 1) - 0.5 * np.log(np.pi)).astype(F32))
        amp = sd.bcast(q["arm_amp"])
        # Arms start outside the bulge/bar: the inner disc stays smooth.
        r_in = sd.bcast(
            np.maximum(q["bulge_re"] * 2.0, np.where(q["bar_amp"] > 0, q["bar_len"], 0))
        )
        inner = np.exp(-((r / (r_in + F32(1e-4))) ** 2))
        mod = inner + (1 - inner) * ((1 - amp) + amp * arms / mean)
    ring = sd.bcast(q["ring_amp"] * 2.0)
    bar_len = sd.bcast(np.maximum(q["bar_len"], 1e-3))
    mod = mod + ring * np.exp(-(((r - bar_len) / (0.3 * bar_len)) ** 2))
    lop = sd.bcast(q["lopsided"])
    mod *= np.exp(lop * np.cos(theta - sd.bcast(q["lop_angle"])) * np.minimum(r / h, 2.5))
    # Inclined discs are brighter per unit area (longer path through a partly opaque disc).
    disc = sd.bcast(q["disc_amp"] * powf(q["disc_q"], -0.6)) * np.exp(-r / h) * mod
    disc *= sd.patch_field(patch, size, q["patch"])
    # Dust lane along the mid-plane of (nearly) edge-on discs.
    dust = (
        sd.bcast(q["dust"])
        * np.exp(-0.5 * (y / (0.35 * h * sd.bcast(q["disc_q"]))) ** 2)
        * (np.exp(-((x / (2.5 * h)) ** 2)))
    )
    return disc, x, y, dust


def _bar(x, y, q: dict):
    c, s = sd.bcast(np.cos(q["bar_angle"])), sd.bcast(np.sin(q["bar_angle"]))
    yd = y / sd.bcast(q["disc_q"])
    xb, yb = x * c + yd * s, yd * c - x * s
    L = sd.bcast(q["bar_len"])
    # (xb / L)^4 as a square of a square: exact on every CPU, unlike ``** 4`` (portable.py).
    fourth = np.square((xb / L) ** 2)
    return sd.bcast(q["bar_amp"]) * np.exp(-fourth - (yb / (sd.bcast(q["bar_q"]) * L)) ** 2)


def _tails(grid, q: dict):
    """Faint, loosely wound tidal tails (1 or 2) around the system centre -> (b, S, S)."""
    x, y = sd.frame(grid, q["cx"], q["cy"], q["pa"])
    r = np.sqrt(x * x + y * y)
    size = sd.bcast(q["size"])
    sign = np.where(q["tail_phase"] < np.pi, 1.0, -1.0).astype(F32)
    arm = sd.spiral_pattern(
        r / size,
        atan2f(y, x),
        q["tail_m"],
        q["tail_pitch"],
        q["tail_phase"],
        np.full_like(q["size"], 6.0),
        sign,
    )
    window = (1 - np.exp(-((r / (1.2 * size)) ** 2))) * np.exp(
        -r / (sd.bcast(q["tail_len"]) * size)
    )
    return sd.bcast(q["tail_amp"]) * arm * window


def _clumps(draws_c: np.ndarray, q: dict):
    """Star-forming knots (b, N, 3 colours) at positions in the frame: along arms or scattered."""
    u = draws_c
    n = u.shape[1]
    h = q["disc_h"][:, None] * q["clump_spread"][:, None]
    r = h * (0.3 - np.log(1 - 0.95 * u[..., 0]))
    m = np.maximum(q["arm_m"], 1)[:, None]
    sign = np.where(q["arm_phase"] < np.pi, 1.0, -1.0)[:, None]
    on_arm = (
        sign * np.log(r / q["disc_h"][:, None] + 1e-4) / tanf(np.deg2rad(q["pitch"]))[:, None]
        + (2 * np.pi * np.floor(u[..., 1] * m) - q["arm_phase"][:, None]) / m
        + (u[..., 2] - 0.5) * 0.5
    )
    theta = np.where(q["arm_clumps"][:, None] > 0, on_arm, u[..., 1] * 2 * np.pi)
    xd, yd = r * np.cos(theta), r * np.sin(theta) * q["disc_q"][:, None]
    c, s = np.cos(q["pa"])[:, None], np.sin(q["pa"])[:, None]
    px = q["cx"][:, None] + xd * c - yd * s
    py = q["cy"][:, None] + xd * s + yd * c
    flux = q["clump_amp"][:, None] * u[..., 3] ** 2 * (np.arange(n)[None] < q["n_clumps"][:, None])
    rgb = flux[..., None] * sd.colour(np.clip(q["col_disc"] - 0.3, -0.3, None))[:, None, :]
    return px.astype(F32), py.astype(F32), rgb.astype(F32)


def _field_sources(u: np.ndarray, count: np.ndarray, fmin: float, slope, fmax: float, tcol):
    """Stars or background galaxies: positions (b, N), fluxes (b, N, 3) from uniforms (b, N, >=4)."""
    n = u.shape[1]
    flux = np.minimum(fmin * powf(1 - u[..., 2], -1.0 / slope), fmax)
    flux = flux * (np.arange(n)[None] < count[:, None])
    t = tcol(u[..., 3])
    rgb = flux[..., None] * np.clip(sd.BLUE + t[..., None] * (sd.ORANGE - sd.BLUE), 0.05, None)
    return u[..., 0] - 0.5, u[..., 1] - 0.5, rgb.astype(F32)


def render_batch(labels: np.ndarray, draws: sp.Draws, size: int) -> np.ndarray:
    """Render images (B, S, S, 3) uint8 of classes ``labels`` (B,) from their random draws."""
    b = len(labels)
    p = sp.galaxy_params(draws.u, labels)
    grid = (np.arange(size, dtype=F32) + F32(0.5)) / F32(size) - F32(0.5)
    sharp = np.zeros((b, 3, size, size), dtype=F32)
    soft = np.zeros_like(sharp)
    _centre_pairs(p)
    # The components are summed in this order: float32 sums depend on it, and so do the bytes.
    att = _add_discs(sharp, p, grid, draws.patch, size)
    _add_bulges(sharp, p, grid)
    _add_companions(sharp, p, grid)
    idx = np.flatnonzero(p["tail_amp"] > 0)
    if idx.size:
        q = _at(p, idx)
        _add(sharp, idx, _tails(grid, q), sd.colour(0.5 * q["col_disc"] + 0.25))
    sharp *= powf(1 - att[:, None], sd.DUST_REDDENING[None, :, None, None])
    scale = F32((size / sp.NATIVE_SIZE) ** 2)  # total flux in native-pixel units -> per pixel
    idx = np.flatnonzero(p["clump_amp"] > 0)
    if idx.size:
        q = _at(p, idx)
        px, py, rgb = _clumps(draws.clumps[idx], q)
        soft[idx] += sd.deposit(px, py, rgb * scale, size)
    _add_field(sharp, soft, p, draws, scale, size)
    return sd.stretch(sd.compose(sharp, soft, p, draws, size), p)


def _centre_pairs(p: dict) -> None:
    """Mergers: shift the main body (p's cx, cy, in place) so that the pair, not the main
    galaxy, is centred."""
    merger = p["comp_amp"] > 0
    off = p["comp_sep"] * p["size"] * merger / (1 + p["comp_amp"])
    ox, oy = off * np.cos(p["comp_angle"]), off * np.sin(p["comp_angle"])
    p["cx"], p["cy"] = p["cx"] - ox, p["cy"] - oy


def _add_discs(sharp: np.ndarray, p: dict, grid, patch: np.ndarray, size: int) -> np.ndarray:
    """Add the discs and their bars to ``sharp`` (B, 3, S, S) in place; return the dust
    attenuation (B, S, S) float32 of the discs (0 where there is none)."""
    att = np.zeros((len(sharp), size, size), dtype=F32)
    idx = np.flatnonzero(p["disc_amp"] > 0)
    if idx.size:
        q = _at(p, idx)
        disc, x, y, dust = _disc(grid, q, patch[idx], size)
        _add(sharp, idx, disc, sd.colour(q["col_disc"]))
        att[idx] = dust
        bar = np.flatnonzero(q["bar_amp"] > 0)
        if bar.size:
            _add(
                sharp,
                idx[bar],
                _bar(x[bar], y[bar], _at(q, bar)),
                sd.colour(q["col_bulge"][bar] - 0.1),
            )
    return att


def _add_bulges(sharp: np.ndarray, p: dict, grid) -> None:
    """Add the Sersic bulges to ``sharp`` (B, 3, S, S) in place."""
    idx = np.flatnonzero(p["bulge_amp"] > 0)
    if idx.size:
        q = _at(p, idx)
        bulge = sd.sersic(
            grid,
            q["cx"],
            q["cy"],
            q["pa"],
            q["bulge_q"],
            q["bulge_re"],
            q["bulge_n"],
            q["bulge_amp"],
        )
        _add(sharp, idx, bulge, sd.colour(q["col_bulge"]))


def _add_companions(sharp: np.ndarray, p: dict, grid) -> None:
    """Add the merging companions (Sersic profiles beside the main galaxy) to ``sharp``
    (B, 3, S, S) in place."""
    idx = np.flatnonzero(p["comp_amp"] > 0)
    if idx.size:
        q = _at(p, idx)
        dist = q["comp_sep"] * q["size"]
        cx = q["cx"] + dist * np.cos(q["comp_angle"])
        cy = q["cy"] + dist * np.sin(q["comp_angle"])
        amp = q["comp_amp"] * np.maximum(q["bulge_amp"], 3.0)
        comp = sd.sersic(grid, cx, cy, q["comp_pa"], q["comp_q"], q["comp_re"], q["bulge_n"], amp)
        _add(sharp, idx, comp, sd.colour(q["col_comp"]))


def _add_field(
    sharp: np.ndarray, soft: np.ndarray, p: dict, draws: sp.Draws, scale, size: int
) -> None:
    """Add the foreground stars to ``sharp`` and the background galaxies to ``soft``
    (both (B, 3, S, S), in place), fluxes times ``scale`` (native pixel -> output pixel)."""
    sx, sy, srgb = _field_sources(
        draws.stars,
        p["n_stars"],
        60.0,
        p["star_slope"][:, None],
        5e4,
        lambda t: 1.9 - 2.6 * t * np.sqrt(t),
    )
    sharp += sd.deposit(sx, sy, srgb * scale, size)
    bx, by, brgb = _field_sources(
        draws.background, p["n_background"], 40.0, 0.9, 2e4, lambda t: 0.1 + 1.1 * t
    )
    soft += sd.deposit(bx, by, brgb * scale, size)
