"""Vectorised drawing of synthetic galaxies: light profiles, points, PSF, sky noise and stretch.

Everything works on whole batches: profiles are (B, S, S) float32 fields from one shared
coordinate grid, point sources are deposited with ``np.bincount`` and blurred in Fourier space
together with the galaxy, and the sky noise is drawn directly as Fourier coefficients. No
Python loop runs over pixels or over galaxies. Units are those of
:mod:`deepgal.data.synthetic.params`.
"""
from __future__ import annotations

import io

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from deepgal.data.synthetic.params import Draws

F32 = np.float32
# Colours in the channels of the GZ DECaLS colour map (R, G, B) = (z, r, g), each band divided
# by its scale (z 0.019, r 0.014, g 0.008 nanomaggies) and normalised to r. A population of
# colour t has g - r = 0.35 + 0.55 t and r - z = 0.15 + 0.35 t (mag): t = 0 a blue
# star-forming disc, t = 1 a red old population (SDSS/DECaLS colours of nearby galaxies).
SCALE_RATIO = np.array([0.014 / 0.019, 1.0, 0.014 / 0.008], dtype=F32)
DUST_REDDENING = np.array([0.75, 1.0, 1.35], dtype=F32)  # blue light is absorbed more
RES_SIGMA_PX = 0.4  # pixel-integration blur (px of the target size): like an antialiased resize


def colour(t: np.ndarray) -> np.ndarray:
    """(..., 3) channel colours (R, G, B) = (z, r, g) for colour parameters ``t`` (...)."""
    t = np.asarray(t, dtype=F32)
    gr, rz = 0.35 + 0.55 * t, 0.15 + 0.35 * t
    flux = np.stack([10 ** (0.4 * rz), np.ones_like(t), 10 ** (-0.4 * gr)], -1)
    return (flux * SCALE_RATIO).astype(F32)


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
    wind = bcast(sign / np.tan(np.deg2rad(pitch_deg)))
    phi = bcast(m) * (theta - wind * np.log(r + F32(1e-4))) + bcast(phase)
    return np.exp(bcast(k) * np.log(F32(0.5) + F32(0.5) * np.cos(phi) + F32(1e-6)))


def patch_field(patch: np.ndarray, size: int, sigma: np.ndarray) -> np.ndarray:
    """Log-normal patchiness (B, S, S) with mean ~1 from a coarse normal grid (B, L, L)."""
    g = ndi.zoom(patch, (1, size / patch.shape[1], size / patch.shape[2]), order=1,
                 mode="nearest", grid_mode=True)
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


def _noise_filter(size: int, corr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transfer (B, 1, S, S//2+1) of the noise correlation (Gaussian, ``corr`` frame units) and
    the factor (B,) by which it lowers the per-pixel std of white noise."""
    mtf = gaussian_mtf(size, corr)
    d = sfft.fftfreq(size, 1.0 / size).astype(F32)
    s_px = np.maximum(corr.astype(F32) * size, F32(0.05))[:, None]
    g = np.exp(-0.5 * (d[None, :] / s_px) ** 2)
    g /= g.sum(1, keepdims=True)
    return mtf, (g * g).sum(1)  # 2-D factor: sqrt of (sum g^2)^2


def compose(sharp: np.ndarray, soft: np.ndarray, p: dict, draws: Draws, size: int) -> np.ndarray:
    """Blur and add sky noise in one Fourier pass.

    sharp: (B, 3, S, S) galaxy + stars, blurred by the seeing (Gaussian core + wide wing);
    soft: (B, 3, S, S) clumps and background galaxies, blurred by seeing and an extra Gaussian.
    Returns the noisy flux (B, 3, S, S) float32 in stretch units (band flux / band scale per
    native 0.262" pixel, see :func:`stretch`).
    """
    b = len(sharp)
    res = np.full(b, RES_SIGMA_PX / size, dtype=F32)
    # The g, r and z images were taken on different nights: each band has its own seeing.
    seeing = p["psf"][:, None] * np.stack([p["psf_z"], np.ones_like(p["psf"]), p["psf_g"]], 1)
    seeing, wing = seeing.ravel(), np.repeat(p["psf_wing"], 3)
    psf = (gaussian_mtf(size, np.hypot(seeing, np.repeat(res, 3))) * (1 - wing)[:, None, None, None]
           + gaussian_mtf(size, np.hypot(3 * seeing, np.repeat(res, 3))) * wing[:, None, None, None])
    psf = psf.reshape(b, 3, size, size // 2 + 1)
    spec = sfft.rfft2(sharp, workers=-1) * psf
    spec += sfft.rfft2(soft, workers=-1) * psf * gaussian_mtf(size, p["bg_blur"])
    # Sky noise, independent in g, r, z. It is white on the survey's 0.262" pixels; the
    # cut-out resamples it: finer pixels see it correlated over a native pixel (same std),
    # coarser ones average it (std falls with the number of native pixels per pixel).
    n_px = p["native"] * size                                    # native pixel, in pixels
    target = np.minimum(n_px, 1.0)                                # std per pixel, r band
    mtf, shrink = _noise_filter(size, np.hypot(0.45 * p["native"], res))
    depth = np.stack([p["depth_z"], np.ones_like(n_px), p["depth_g"]], 1)  # (B, 3): R, G, B
    amp = (p["sigma_x"] * target / shrink)[:, None] * depth * F32(size / np.sqrt(2))
    nz = (draws.noise[..., 0] + 1j * draws.noise[..., 1]).astype(np.complex64)
    spec += nz * amp[:, :, None, None].astype(F32) * mtf
    return sfft.irfft2(spec, s=(size, size), workers=-1).astype(F32)


def _desaturate(rgb: np.ndarray, div: np.ndarray) -> np.ndarray:
    """The GZ DECaLS ``desaturate`` step on (b, 3, S, S): pixels dominated by one channel
    (coloured sky speckle) are pulled toward their grey mean."""
    a = rgb.mean(1, keepdims=True)
    a[a == 0] = 1
    wt = (rgb / (a * bcast(div)[..., None])).max(1, keepdims=True)
    np.minimum(wt, 1, out=wt)
    wt = np.sin((1 - wt) * F32(np.pi / 2))
    return rgb * wt + a * (1 - wt) * (1 + (1 - wt) * rgb)


def stretch(flux: np.ndarray, p: dict) -> np.ndarray:
    """Flux (B, 3, S, S) -> uint8 (B, S, S, 3) with the Galaxy Zoo DECaLS colour map: each band
    on its own (so colours depend on brightness and cores saturate to white), x -> asinh(Q x)
    with (min, max) -> (0, 1), then ``desaturate`` and a display saturation; every constant
    randomised per image. Works in place on ``flux``."""
    ones = np.ones_like(p["bal_z"])
    bal = np.stack([p["bal_z"], ones, p["bal_g"]], 1)[:, :, None, None]
    sky = np.stack([p["sky"] + p["sky_z"], p["sky"], p["sky"] + p["sky_g"]], 1)[:, :, None, None]
    q = bcast(p["softening"])[..., None]
    lo = np.arcsinh(q * bcast(p["stretch_min"])[..., None])
    hi = np.arcsinh(q * bcast(p["stretch_max"])[..., None])
    x = flux
    x *= bal
    x += sky
    x *= q
    np.arcsinh(x, out=x)
    x -= lo
    x *= 1 / (hi - lo)
    on = np.flatnonzero(p["desat"] > 0)
    if on.size:
        x[on] = _desaturate(x[on], p["desat_div"][on])
    grey = x.mean(1, keepdims=True)
    x -= grey
    x *= bcast(p["chroma"] * 255)[..., None]
    x += grey * 255 + 0.5
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8).transpose(0, 2, 3, 1)


def jpeg(images: np.ndarray, p: dict) -> np.ndarray:
    """JPEG-compress, in place, the images (B, S, S, 3) uint8 whose ``p["jpeg"]`` is set, at
    quality ``p["jpeg_q"]`` (real cut-outs travelled as JPEG at least once)."""
    from PIL import Image  # only here: the renderer's one use of Pillow

    for i in np.flatnonzero(p["jpeg"] > 0):
        buf = io.BytesIO()
        Image.fromarray(images[i]).save(buf, format="JPEG", quality=int(p["jpeg_q"][i]))
        images[i] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return images
