"""Batch preprocessing and augmentation on the training device, vectorised over the batch.

The data path: a split lives in memory once as a uint8 tensor (N, H, W, 3) (on the CPU already
shrunk to what the input needs: :func:`presize`); per step the loop
indexes a batch, moves it to the device (pinned + ``non_blocking`` on CUDA) and calls
:func:`prepare_batch`, which returns normalised float (B, 3, S, S). There is no per-image Python
and no float copy of the whole set: float exists only for one batch at a time.

Geometry (centre crop, resize, rotation by any angle, flips, zoom, shift) is one
``affine_grid`` + ``grid_sample`` per batch with a per-sample 2x3 matrix; colour jitter is
per-sample factors broadcast over the batch. All randomness is drawn from the ``generator``
passed in, so a fixed seed reproduces the batches exactly. Mixup/CutMix of prepared batches is
training's business: :mod:`deepgal.training.mix`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from .config import AugmentCfg

# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale: the grey level contrast and
# saturation jitter pivot around.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Preprocess:
    """Deterministic preprocessing, saved in every checkpoint so a model carries its own.

    ``input_size`` S: output side in px. ``crop``: fraction of the image side kept around the
    centre before resizing (0.5 of 64 px -> the report's 32x32 smallnet crop). ``mean``/``std``:
    per channel, in units of pixel/255.
    """

    input_size: int
    crop: float = 1.0
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def __post_init__(self):
        # JSON/YAML give lists; store tuples so the dataclass stays hashable and comparable.
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if int(self.input_size) != self.input_size or self.input_size < 1:
            raise ValueError(
                f"Preprocess.input_size must be a positive integer, got {self.input_size!r}"
            )
        if not 0.0 < self.crop <= 1.0:
            raise ValueError(f"Preprocess.crop must be in (0, 1], got {self.crop!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(
                f"Preprocess.mean/std need 3 values (R, G, B), got {self.mean!r} / {self.std!r}"
            )
        if min(self.std) <= 0:
            raise ValueError(f"Preprocess.std must be > 0 per channel, got {self.std!r}")

    def to_dict(self) -> dict:
        """Plain dict (lists for mean/std) for checkpoints and JSON."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        """Inverse of :meth:`to_dict`; an unknown key raises ``ValueError`` naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown Preprocess keys {unknown}; valid keys: {sorted(known)}")
        return cls(**d)


# The augmentation settings are the config's own dataclass: one set of keys and bounds, checked
# when params load (naming train.augment.<key>) and again on any direct construction.
Augment = AugmentCfg


@dataclass(frozen=True)
class AugParams:
    """Per-sample augmentation parameters, each (B,) on the batch's device (shift: (B, 2)).

    ``angle`` radians, counter-clockwise as displayed; ``flip_h``/``flip_v`` bool; ``zoom`` > 1
    magnifies; ``shift`` (x, y) in fractions of the side; ``brightness``/``contrast``/
    ``saturation`` multiplicative factors, or ``None`` for no colour jitter (decided on the
    host, so the eval path never syncs with the device to find out). ``zoom_bound``: a host
    float >= every ``zoom``, so the antialiased pre-resize keeps enough pixels for zooming in.
    """

    angle: torch.Tensor
    flip_h: torch.Tensor
    flip_v: torch.Tensor
    zoom: torch.Tensor
    shift: torch.Tensor
    brightness: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    saturation: torch.Tensor | None = None
    zoom_bound: float = 1.0

    @classmethod
    def identity(cls, batch_size: int, device: torch.device | str = "cpu") -> AugParams:
        """No augmentation: the eval path (centre crop + resize only)."""
        zeros = torch.zeros(batch_size, device=device)
        ones = torch.ones(batch_size, device=device)
        no = torch.zeros(batch_size, dtype=torch.bool, device=device)
        return cls(zeros, no, no.clone(), ones, torch.zeros(batch_size, 2, device=device))

    def replace(self, **changes) -> AugParams:
        """A copy with some fields replaced (e.g. the preview's one-augmentation panels)."""
        return dataclasses.replace(self, **changes)


def sample_params(
    aug: Augment,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> AugParams:
    """Draw :class:`AugParams` for ``batch_size`` samples from ``generator`` (on ``device``).

    Only enabled augmentations consume random numbers; the draw order is fixed, so the same
    ``aug``, seed and batch size give the same parameters.
    """
    p = AugParams.identity(batch_size, device)

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        u = torch.rand(batch_size, *shape, generator=generator, device=device)
        return lo + (hi - lo) * u

    changes = {}
    if aug.rotate:
        changes["angle"] = uniform(0.0, 2 * math.pi)
    if aug.flip:
        flips = uniform(0.0, 1.0, 2) < 0.5
        changes["flip_h"], changes["flip_v"] = flips[:, 0], flips[:, 1]
    if aug.scale:
        changes["zoom"] = uniform(1 - aug.scale, 1 + aug.scale)
        changes["zoom_bound"] = zoom_bound(aug)
    if aug.translate:
        changes["shift"] = uniform(-aug.translate, aug.translate, 2)
    if aug.jitter:
        j = uniform(1 - aug.jitter, 1 + aug.jitter, 3)
        changes["brightness"], changes["contrast"], changes["saturation"] = j.unbind(1)
    return p.replace(**changes)


def affine_theta(params: AugParams, crop: float = 1.0) -> torch.Tensor:
    """(B, 2, 3) float32 ``affine_grid`` matrices: output coords -> input coords.

    Coordinates are normalised to [-1, 1] with y pointing down (as ``affine_grid``). The
    output shows the central ``crop`` fraction of the input, magnified by ``zoom``, rotated
    counter-clockwise by ``angle`` as displayed, flipped, and shifted by ``shift``.
    """
    a = params.angle.float()
    cos, sin = torch.cos(a), torch.sin(a)
    half = crop / params.zoom.float()  # half-side of the sampled region, normalised units
    fx = torch.where(params.flip_h, -1.0, 1.0) * half
    fy = torch.where(params.flip_v, -1.0, 1.0) * half
    # Content rotated counter-clockwise on screen (y down) samples the input at R(-angle)^-1:
    # input = [[cos, -sin], [sin, cos]] @ diag(fx, fy) @ output + shift.
    theta = torch.stack(
        [
            torch.stack([cos * fx, -sin * fy, 2 * params.shift[:, 0].float()], dim=1),
            torch.stack([sin * fx, cos * fy, 2 * params.shift[:, 1].float()], dim=1),
        ],
        dim=1,
    )
    return theta


def affine_grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 2, 3) matrices -> (B, size, size, 2) sampling grid, as ``F.affine_grid``
    (``align_corners=False``).

    One broadcast multiply-add over the pixel-centre axes; ``F.affine_grid``'s batched 3x2
    matmul is several times slower on CPU for these shapes.
    """
    b = theta.shape[0]
    axis = (torch.arange(size, device=theta.device, dtype=theta.dtype) * 2 + 1) / size - 1
    # grid[b, i, j] = theta[b, :, 0] * x_j + theta[b, :, 1] * y_i + theta[b, :, 2]
    row = torch.addcmul(
        theta[:, :, 2].view(b, 1, 1, 2), theta[:, :, 1].view(b, 1, 1, 2), axis.view(1, size, 1, 1)
    )  # (B, S, 1, 2): the y term, small
    return torch.addcmul(row, theta[:, :, 0].view(b, 1, 1, 2), axis.view(1, 1, size, 1))


def zoom_bound(aug: Augment | None) -> float:
    """The largest zoom ``aug`` can draw: :attr:`AugParams.zoom_bound` of its batches."""
    return 1 + aug.scale if aug is not None and aug.scale else 1.0


def presize_shape(pre: Preprocess, h: int, w: int, zoom_bound: float = 1.0) -> tuple[int, int]:
    """(h', w') the whole frame is first resized to, so that the crop region is ~S px.

    Bilinear grid sampling takes 4 taps per output pixel, so a big downscale (256 -> 64)
    aliases. :func:`apply_params` therefore resizes the whole frame with an antialiasing filter
    first; the affine sample then resamples at ~1:1 (``zoom_bound`` leaves room for zooming in).
    The whole frame, not just the crop, is kept so rotated corners still see real pixels. Never
    upsamples.
    """
    side = round(pre.input_size * zoom_bound / pre.crop)
    return min(h, side), min(w, side)


def _antialias_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, H, W) uint8 or float -> (B, 3, *size), the same dtype: the presize filter.

    On the CPU it is called on uint8: that vectorised antialias kernel (torchvision's Resize
    uses it) is ~8x faster than the float one, and rounding to uint8 costs < 1/255.
    """
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def presize(images: torch.Tensor, pre: Preprocess, zoom_bound: float = 1.0) -> torch.Tensor:
    """(N, H, W, 3) uint8 on the CPU -> (N, h', w', 3) uint8: :func:`apply_params`' first step.

    The resize depends on each image alone, so doing it once when a split is loaded gives the
    very bytes every batch would get (:func:`apply_params` then finds the images already at
    (h', w') and skips it), at a fraction of the memory: 256 px frames for a 32 px input are
    held at 35 px. ``zoom_bound`` must be that of the batches the images will feed
    (:func:`zoom_bound` of the augmentation; 1 for evaluation). Returns ``images`` itself when
    nothing shrinks.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.device.type != "cpu":
        raise ValueError(
            f"presize takes (N, H, W, 3) uint8 on the CPU, got {images.dtype} "
            f"{tuple(images.shape)} on {images.device}"
        )
    h, w = images.shape[1:3]
    size = presize_shape(pre, h, w, zoom_bound)
    if size == (h, w):
        return images
    x = _antialias_resize(images.permute(0, 3, 1, 2), size)
    return x.permute(0, 2, 3, 1).contiguous()


def apply_params(
    images: torch.Tensor,
    pre: Preprocess,
    params: AugParams,
    channels_last: bool = True,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, S, S) ``dtype``, normalised, with the given parameters."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images must be uint8 (B, H, W, 3), got {images.dtype} {tuple(images.shape)}"
        )
    b, h, w, _ = images.shape
    s = pre.input_size
    x = images.permute(0, 3, 1, 2)  # (B, 3, H, W) view; the storage stays NHWC (channels_last)
    pre_h, pre_w = presize_shape(pre, h, w, params.zoom_bound)
    resize = (pre_h, pre_w) != (h, w)
    if resize and x.device.type == "cpu":
        x = _antialias_resize(x, (pre_h, pre_w))  # uint8 on the CPU
        resize = False
    # Pixel values stay 0..255 in float (one batch only, never the whole set): sampling is
    # linear, so the /255 folds into the colour/normalise coefficients for free. NCHW because
    # grid_sample would otherwise make its own contiguous copy: one pass converts both.
    x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
    if resize:
        x = _antialias_resize(x, (pre_h, pre_w))  # float on other devices
    grid = affine_grid(affine_theta(params, pre.crop).to(x.device), s)
    # Reflection keeps the sky's level and noise texture in the corners a rotation exposes
    # (they reach at most ~21% of the side past the edge, where Galaxy10 frames hold only sky).
    # Black corners, or a flat median fill without noise, are artefacts a network can learn.
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    _colour_normalise_(x, params, pre)
    # The colour maths runs in place on NCHW (mixed-layout elementwise ops are ~2x slower on
    # CPU); one final copy gives the requested layout and dtype.
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.to(dtype=dtype, memory_format=fmt)


def _colour_normalise_(x: torch.Tensor, p: AugParams, pre: Preprocess) -> None:
    """x (B, 3, S, S) float in 0..255 := normalise(jitter(x / 255)), in place, in few passes.

    torchvision's ColorJitter steps (brightness b, then contrast c pivoting on the image's mean
    grey m, then saturation s pivoting on each pixel's grey g) are linear, so together with the
    /255 and (v - mean) / std they fold into per-sample, per-channel coefficients:
    ``out = alpha * x + beta * g + gamma``, clamped to the normalised image of [0, 1] (one clamp
    instead of torchvision's three; identical while no intermediate value leaves [0, 1]).
    """
    dev = x.device
    inv_std = 1.0 / torch.tensor(pre.std, device=dev).view(1, 3, 1, 1)
    mean = torch.tensor(pre.mean, device=dev).view(1, 3, 1, 1)
    if p.brightness is None:  # eval path: only scale and shift
        torch.addcmul(-mean * inv_std, x, inv_std / 255.0, out=x)
        return
    bright, con, sat = (
        v.view(-1, 1, 1, 1).float() for v in (p.brightness, p.contrast, p.saturation)
    )
    # (B, 1, S, S) = 0.299 R + 0.587 G + 0.114 B; plain multiply-adds (a 1x1 conv is slower)
    grey = x[:, 0:1] * _LUMA[0]
    grey.add_(x[:, 1:2], alpha=_LUMA[1]).add_(x[:, 2:3], alpha=_LUMA[2])
    grey_mean = grey.mean((2, 3), keepdim=True)  # (B, 1, 1, 1)
    k = bright * con * inv_std / 255.0  # (B, 3, 1, 1)
    alpha, beta = k * sat, k * (1 - sat)
    gamma = (bright * (1 - con) * grey_mean / 255.0 - mean) * inv_std
    torch.addcmul(gamma, alpha, x, out=x)
    x.addcmul_(beta, grey)
    x.clamp_(-mean * inv_std, (1 - mean) * inv_std)


def prepare_batch(
    images: torch.Tensor,
    pre: Preprocess,
    aug: Augment | None = None,
    generator: torch.Generator | None = None,
    channels_last: bool = True,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """images (B, H, W, 3) uint8 on the target device -> (B, 3, S, S) normalised ``dtype``.

    ``aug=None`` (evaluation): deterministic centre crop + resize + normalise. With ``aug``,
    per-sample random geometry and colour drawn from ``generator`` (which must live on the
    images' device; ``None`` uses torch's global generator). ``channels_last`` returns an
    NHWC-strided tensor, the fast layout for convolutions on CUDA with bf16.
    """
    b = images.shape[0]
    if aug is None:
        params = AugParams.identity(b, images.device)
    else:
        if generator is not None and generator.device.type != images.device.type:
            raise ValueError(
                f"generator is on {generator.device} but images are on "
                f"{images.device}; create it with torch.Generator(device=...)"
            )
        params = sample_params(aug, b, generator, images.device)
    return apply_params(images, pre, params, channels_last, dtype)


def augmentation_preview(
    image: np.ndarray, pre: Preprocess, aug: Augment, seed: int = 0
) -> list[tuple[str, np.ndarray]]:
    """Panels (title, (S, S, 3) uint8) showing each enabled augmentation of one image.

    ``image`` (H, W, 3) uint8. Panels: original (eval preprocessing), then rotation, flip,
    jitter, zoom/shift when enabled in ``aug``, and all combined, de-normalised for plotting.
    A flip panel always flips horizontally so it shows something whatever the seed.
    """
    x = torch.from_numpy(np.ascontiguousarray(image)).unsqueeze(0)
    drawn = sample_params(aug, 1, torch.Generator().manual_seed(seed))
    ident = AugParams.identity(1)
    panels = [("original", ident)]
    if aug.rotate:
        panels.append(
            (
                f"rotation {math.degrees(drawn.angle.item()):.0f} deg",
                ident.replace(angle=drawn.angle),
            )
        )
    if aug.flip:
        panels.append(("flip", ident.replace(flip_h=torch.tensor([True]))))
    if aug.jitter:
        panels.append(
            (
                f"colour jitter {aug.jitter:g}",
                ident.replace(
                    brightness=drawn.brightness,
                    contrast=drawn.contrast,
                    saturation=drawn.saturation,
                ),
            )
        )
    if aug.scale or aug.translate:
        panels.append(
            (
                "zoom/shift",
                ident.replace(zoom=drawn.zoom, shift=drawn.shift, zoom_bound=drawn.zoom_bound),
            )
        )
    panels.append(("all combined", drawn))
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    out = []
    for title, params in panels:
        y = apply_params(x, pre, params, channels_last=False)[0] * std + mean
        out.append((title, (y.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()))
    return out
