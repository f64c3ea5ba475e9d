"""Vectorised drawing of synthetic galaxies: light profiles, points, PSF, sky noise and stretch.

Everything works on whole batches: profiles are (B, S, S) float32 fields from one shared
coordinate grid, point sources are deposited with ``np.bincount`` and blurred in Fourier space
together with the galaxy, and the sky noise is drawn directly as Fourier coefficients. No
Python loop runs over pixels or over galaxies. Units are those of
:mod:`deepgal.data.synthetic.params`.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from deepgal.data.synthetic.params import NATIVE_SIZE, Draws
from deepgal.data.synthetic.portable import asinhf, hypotf, tanf

F32 = np.float32
# Flux colours (R, G, B) of the two stellar populations; colour t interpolates (and
# extrapolates a little) between them. Chosen so that, after the stretch, the galaxies' light
# spans the colour range of the real sample (R/G/B fractions ~0.29/0.33/0.39 for blue
# star-forming systems to ~0.40/0.34/0.27 for yellow-orange bulges).
BLUE = np.array([0.66, 1.0, 1.55], dtype=F32)
ORANGE = np.array([1.55, 1.0, 0.5], dtype=F32)
DUST_REDDENING = np.array([0.75, 1.0, 1.35], dtype=F32)  # blue light is absorbed more
# Measured: the real sky noise falls 3.5x from 256 to 64 px (10.6 -> 3.0 grey levels).
NOISE_EXPONENT = 1.2
RES_SIGMA_PX = 0.4  # pixel-integration blur (px of the target size): like an antialiased resize


def colour(t: np.ndarray) -> np.ndarray:
    """(B, 3) flux colours for colour parameters ``t`` (B,): 0 blue disc, 1 orange bulge."""
    return np.clip(BLUE + t[:, None] * (ORANGE - BLUE), 0.05, None).astype(F32)


def bcast(x: np.ndarray) -> np.ndarray:
    """(B,) per-image values -> (B, 1, 1), to broadcast against (B, S, S) fields."""
    return x[:, None, None]


def frame(grid: np.ndarray, cx, cy, pa):
    """Coordinates (B, S, S) along the major and minor axis of a body at (cx, cy), angle pa."""
    dx = grid[None, None, :] - bcast(cx)
    dy = grid[None, :, None] - bcast(cy)
    c, s = bcast(np.cos(pa)), bcast(np.sin(pa))
    return dx * c + dy * s, dy * c - dx * s


def sersic(grid, cx, cy, pa, q, re, n, amp) -> np.ndarray:
    """Sérsic surface brightness (B, S, S); ``amp`` is the brightness at the effective radius."""
    x, y = frame(grid, cx, cy, pa)
    r = np.sqrt(x * x + (y / bcast(q)) ** 2) / bcast(re) + F32(1e-6)
    bn = 2.0 * n - 1.0 / 3.0 + 0.009876 / n  # Ciotti & Bertin approximation
    return bcast(amp) * np.exp(bcast(bn) * (1.0 - np.exp(np.log(r) / bcast(n))))


def spiral_pattern(r, theta, m, pitch_deg, phase, k, sign) -> np.ndarray:
    """Logarithmic arms (B, S, S) in [0, 1]: m arms of pitch angle ``pitch_deg``, width via ``k``."""
    wind = bcast(sign / tanf(np.deg2rad(pitch_deg)))
    phi = bcast(m) * (theta - wind * np.log(r + F32(1e-4))) + bcast(phase)
    return np.exp(bcast(k) * np.log(F32(0.5) + F32(0.5) * np.cos(phi) + F32(1e-6)))


def patch_field(patch: np.ndarray, size: int, sigma: np.ndarray) -> np.ndarray:
    """Log-normal patchiness (B, S, S) with mean ~1 from a coarse normal grid (B, L, L)."""
    g = ndi.zoom(
        patch,
        (1, size / patch.shape[1], size / patch.shape[2]),
        order=1,
        mode="nearest",
        grid_mode=True,
    )
    s = bcast(sigma) * F32(1.5)  # linear interpolation halves the variance of the coarse grid
    return np.exp(s * g - s * s / 2)


def deposit(pos_x, pos_y, flux_rgb, size: int) -> np.ndarray:
    """Point fluxes (B, N, 3) at frame positions (B, N) -> (B, 3, S, S), bilinear, in-frame only."""
    b, n = pos_x.shape
    px, py = (pos_x + 0.5) * size - 0.5, (pos_y + 0.5) * size - 0.5
    x0, y0 = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    fx, fy = (px - x0).astype(F32), (py - y0).astype(F32)
    batch = np.repeat(np.arange(b), n).reshape(b, n)
    idx, wts = [], []
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            ok = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
            idx.append(np.where(ok, (batch * size + yi) * size + xi, 0).ravel())
            wts.append((wx * wy * ok).ravel())
    idx, wts = np.concatenate(idx), np.concatenate(wts)
    out = np.empty((b, 3, size, size), dtype=F32)
    for c in range(3):
        w = wts * np.tile(flux_rgb[:, :, c].ravel(), 4)
        out[:, c] = np.bincount(idx, w, minlength=b * size * size).reshape(b, size, size)
    return out


def gaussian_mtf(size: int, sigma: np.ndarray) -> np.ndarray:
    """Fourier transfer (B, 1, S, S//2+1) of Gaussians of widths ``sigma`` (frame units, (B,)).

    Built from the periodic Gaussian sampled in real space (separable, sum 1), not by sampling
    the continuous transfer function: at 64 px a PSF is under a pixel wide, and a truncated
    transfer function rings into crosses around bright stars.
    """
    d = sfft.fftfreq(size, 1.0 / size).astype(F32)  # periodic pixel offsets 0, 1, ..., -1
    s_px = np.maximum(sigma.astype(F32) * size, F32(0.05))[:, None]
    g = np.exp(-0.5 * (d[None, :] / s_px) ** 2)
    g /= g.sum(1, keepdims=True)
    gy, gx = sfft.fft(g, axis=1).real, sfft.rfft(g, axis=1).real  # (B, S), (B, S//2+1)
    return (gy[:, :, None] * gx[:, None, :])[:, None].astype(F32)


def compose(sharp: np.ndarray, soft: np.ndarray, p: dict, draws: Draws, size: int) -> np.ndarray:
    """Blur and add noise in one Fourier pass.

    sharp: (B, 3, S, S) galaxy + stars, blurred by the PSF (core + wide wing);
    soft: (B, 3, S, S) clumps and background galaxies, blurred by PSF and an extra Gaussian.
    Returns the noisy flux (B, 3, S, S) float32 in noise units.
    """
    res = np.full(len(sharp), RES_SIGMA_PX / size, dtype=F32)
    psf = (
        gaussian_mtf(size, hypotf(p["psf"], res)) * bcast(1 - p["psf_wing"])[..., None]
        + gaussian_mtf(size, hypotf(3 * p["psf"], res)) * bcast(p["psf_wing"])[..., None]
    )
    spec = sfft.rfft2(sharp, workers=-1) * psf
    spec += sfft.rfft2(soft, workers=-1) * psf * gaussian_mtf(size, p["bg_blur"])
    # Sky noise: 1 luminance + 3 colour fields, as Fourier coefficients of white noise whose
    # per-native-pixel std is p["noise"] (before a slight correlation); a pixel of the S grid
    # averages (256/S)^2 of them, so its std falls as (S/256)^NOISE_EXPONENT.
    nz = draws.noise[..., 0] + 1j * draws.noise[..., 1]  # (B, 4, S, S//2+1)
    chroma = bcast(p["chroma"])[..., None]
    rgb = (nz[:, :1] + chroma * nz[:, 1:]) / np.sqrt(1 + chroma**2)
    scale = p["noise"] * size * (size / NATIVE_SIZE) ** NOISE_EXPONENT / np.sqrt(2)
    spec += (
        rgb.astype(np.complex64)
        * bcast(scale)[..., None]
        * gaussian_mtf(size, hypotf(p["noise_corr"], res))
    )
    return sfft.irfft2(spec, s=(size, size), workers=-1).astype(F32)


def stretch(flux: np.ndarray, p: dict) -> np.ndarray:
    """Colour-preserving asinh stretch (Lupton et al. 2004) of flux (B, 3, S, S) onto a grey
    sky -> uint8 (B, S, S, 3). Every channel is scaled by asinh(I/beta)/I of the mean flux I,
    so bright cores keep their yellow-orange hue and clip to a yellowish white, as in DECaLS."""
    beta = bcast(p["beta"])[..., None]
    tint = bcast(p["sky_tint"])[..., None] * np.array([1, 0, -1], dtype=F32)[None, :, None, None]
    i = flux.mean(1, keepdims=True) / beta
    small = np.abs(i) < 1e-3
    ratio = np.where(small, F32(1), asinhf(i) / np.where(small, F32(1), i))
    disp = bcast(p["sky"])[..., None] + tint + bcast(p["gain"])[..., None] * flux * ratio
    out = np.clip(disp * F32(255) + F32(0.5), 0, 255).astype(np.uint8)
    return out.transpose(0, 2, 3, 1)
