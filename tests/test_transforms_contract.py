"""deepgal.transforms, the parts a wrong implementation could get past the image oracles:
the distributions augmentation draws from (Kolmogorov-Smirnov against the documented uniform
laws), the presize step (torchvision's antialiased uint8 resize, and the very bytes the batch
path would make), shift/zoom/crop geometry as exact pixel slices, colour jitter under a
non-trivial normalisation (torchvision's adjust_* + normalize), and the preview panels."""

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF2
from scipy import stats

from deepgal.transforms import (
    Augment,
    AugParams,
    Preprocess,
    affine_grid,
    affine_theta,
    apply_params,
    augmentation_preview,
    presize,
    presize_shape,
    sample_params,
    zoom_bound,
)

PLAIN = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
# Per-channel statistics that differ in every channel and are far from (0, 1).
MEAN, STD = (0.2, 0.5, 0.7), (0.1, 0.3, 0.05)
OFF = dict(rotate=False, flip=False, jitter=0.0, scale=0.0, translate=0.0)


def images(n=2, h=32, w=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w or h, 3), dtype=torch.uint8, generator=g)


def chw01(x):
    return x.permute(0, 3, 1, 2).float() / 255


# -- what sample_params draws --------------------------------------------------------------


def test_drawn_parameters_follow_the_documented_laws():
    # Augment's documentation: angle ~ U[0, 2 pi); zoom ~ U[1 - scale, 1 + scale]; shift per
    # axis ~ U[-translate, translate]; each colour factor ~ U[1 - jitter, 1 + jitter]; flips
    # Bernoulli(0.5) each, independently. 4000 seeded draws; KS / binomial tests at 1e-3.
    n, a = 4000, Augment(rotate=True, flip=True, jitter=0.3, scale=0.2, translate=0.1)
    p = sample_params(a, n, torch.Generator().manual_seed(0))
    assert p.shift.shape == (n, 2)
    for v in (p.angle, p.flip_h, p.flip_v, p.zoom, p.brightness, p.contrast, p.saturation):
        assert v.shape == (n,)
    laws = {
        "angle": (p.angle, 0.0, 2 * math.pi),
        "zoom": (p.zoom, 0.8, 0.4),
        "shift x": (p.shift[:, 0], -0.1, 0.2),
        "shift y": (p.shift[:, 1], -0.1, 0.2),
        "brightness": (p.brightness, 0.7, 0.6),
        "contrast": (p.contrast, 0.7, 0.6),
        "saturation": (p.saturation, 0.7, 0.6),
    }
    for name, (v, lo, width) in laws.items():
        res = stats.kstest(v.double().numpy(), "uniform", args=(lo, width))
        assert res.pvalue > 1e-3, (name, res)
    for k, flip in enumerate((p.flip_h, p.flip_v, p.flip_h & p.flip_v)):
        prob = 0.25 if k == 2 else 0.5
        assert stats.binomtest(int(flip.sum()), n, prob).pvalue > 1e-3, k
    # Independent axes and factors, not one draw reused.
    r = np.corrcoef(
        torch.stack([p.shift[:, 0], p.shift[:, 1], p.brightness, p.contrast, p.saturation]).numpy()
    )
    assert np.abs(r - np.eye(5)).max() < 0.1
    assert p.zoom_bound == pytest.approx(1.2) and p.zoom_bound >= p.zoom.max().item()


def test_disabled_augmentations_draw_nothing_and_stay_identity():
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    p = sample_params(Augment(**OFF), 5, g)
    assert torch.equal(g.get_state(), state)
    assert torch.equal(p.angle, torch.zeros(5)) and torch.equal(p.zoom, torch.ones(5))
    assert not p.flip_h.any() and not p.flip_v.any()
    assert torch.equal(p.shift, torch.zeros(5, 2)) and p.brightness is None
    assert p.zoom_bound == 1.0


def test_identity_params_by_hand():
    p = AugParams.identity(3)
    assert torch.equal(p.angle, torch.zeros(3)) and torch.equal(p.zoom, torch.ones(3))
    assert p.flip_h.dtype == torch.bool and not p.flip_h.any() and not p.flip_v.any()
    assert torch.equal(p.shift, torch.zeros(3, 2))
    assert (p.brightness, p.contrast, p.saturation, p.zoom_bound) == (None, None, None, 1.0)


@pytest.mark.parametrize("scale, expect", [(None, 1.0), (0.0, 1.0), (0.25, 1.25), (0.5, 1.5)])
def test_zoom_bound_is_the_largest_zoom(scale, expect):
    a = None if scale is None else Augment(**{**OFF, "scale": scale})
    assert zoom_bound(a) == expect


# -- geometry as exact pixel slices --------------------------------------------------------


def test_identity_theta_by_hand():
    theta = affine_theta(AugParams.identity(2))
    assert torch.equal(theta, torch.tensor([[[1.0, 0, 0], [0, 1, 0]]] * 2))
    half = affine_theta(AugParams.identity(1), crop=0.5)
    assert torch.equal(half, torch.tensor([[[0.5, 0, 0], [0, 0.5, 0]]]))


def test_affine_grid_in_double_matches_torch():
    # A side whose pixel centres are not exact in float32 (1/24): the grid keeps theta's dtype.
    theta = torch.tensor([[[0.7, -0.2, 0.1], [0.3, 0.9, -0.05]]], dtype=torch.float64)
    ref = torch.nn.functional.affine_grid(theta, [1, 3, 24, 24], align_corners=False)
    got = affine_grid(theta, 24)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("crop, zoom", [(0.5, 1.0), (1.0, 2.0)])
def test_quarter_turn_of_a_crop_or_zoom_is_rot90_of_the_centre(crop, zoom):
    # 64 px -> the central 32 px (by crop 0.5 or by zoom 2), turned 90 degrees: exact pixels.
    x = images(2, 64)
    p = AugParams.identity(2).replace(
        angle=torch.full((2,), math.pi / 2), zoom=torch.full((2,), zoom), zoom_bound=zoom
    )
    y = apply_params(x, Preprocess(32, crop=crop, **PLAIN), p)
    ref = torch.rot90(chw01(x)[:, :, 16:48, 16:48], 1, dims=(2, 3))
    torch.testing.assert_close(y, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "shift, dx, dy", [((0.25, 0.0), 8, 0), ((0.0, 0.125), 0, 4), ((-0.125, 0.25), -4, 8)]
)
def test_shift_moves_content_by_that_fraction_of_the_side(shift, dx, dy):
    # affine_theta maps output p to input p + shift * side (pixels): output[y, x] shows
    # input[y + dy, x + dx]. Compared where both lie inside the 32 px frame.
    x = images(1, 32)
    p = AugParams.identity(1).replace(shift=torch.tensor([shift]))
    y = apply_params(x, Preprocess(32, **PLAIN), p, channels_last=False)[0]
    src = chw01(x)[0]
    ys, xs = slice(max(0, -dy), 32 - max(0, dy)), slice(max(0, -dx), 32 - max(0, dx))
    ys_in = slice(ys.start + dy, ys.stop + dy)
    xs_in = slice(xs.start + dx, xs.stop + dx)
    torch.testing.assert_close(y[:, ys, xs], src[:, ys_in, xs_in], atol=1e-5, rtol=0)


def test_rotated_flat_sky_stays_flat_in_the_corners():
    # A 45 degree turn exposes corners past the frame; reflection fills them with the image's
    # own pixels, so a flat image stays flat (zero padding would make black corners).
    x = torch.empty(1, 32, 32, 3, dtype=torch.uint8)
    x[...] = torch.tensor([40, 120, 200], dtype=torch.uint8)
    p = AugParams.identity(1).replace(angle=torch.tensor([math.pi / 4]))
    y = apply_params(x, Preprocess(32, mean=MEAN, std=STD), p, channels_last=False)[0]
    expect = (torch.tensor([40, 120, 200]) / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(y, expect.view(3, 1, 1).expand(3, 32, 32), atol=1e-4, rtol=0)


# -- presize -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, crop, zb, h, w, expect",
    [
        (32, 0.5, 1.0, 256, 256, (64, 64)),  # crop region 128 px -> 32: whole frame 64
        (32, 1.0, 1.1, 256, 256, (35, 35)),  # room for zooming in: round(35.2)
        (32, 1.0, 1.0, 100, 20, (32, 20)),  # never upsamples an axis
        (16, 0.25, 1.0, 40, 80, (40, 64)),
    ],
)
def test_presize_shape_by_hand(size, crop, zb, h, w, expect):
    assert presize_shape(Preprocess(size, crop=crop), h, w, zb) == expect
    if zb == 1.0:
        assert presize_shape(Preprocess(size, crop=crop), h, w) == expect


def test_presize_is_torchvision_antialiased_uint8_resize():
    x = images(2, 100, 80)
    y = presize(x, Preprocess(32, crop=0.5))
    assert y.dtype == torch.uint8 and y.shape == (2, 64, 64, 3) and y.is_contiguous()
    ref = TF2.resize(x.permute(0, 3, 1, 2), [64, 64], antialias=True).permute(0, 2, 3, 1)
    assert torch.equal(y, ref)
    small = images(1, 16)
    assert presize(small, Preprocess(32)) is small  # nothing shrinks: the same tensor


@pytest.mark.parametrize(
    "aug", [None, Augment(rotate=True, flip=True, jitter=0.2, scale=0.3, translate=0.1)]
)
def test_presized_images_give_the_same_batch_bytes(aug):
    # The split is presized once when loaded; each batch must then equal what the batch path
    # makes from the full frames (its own uint8 antialiased resize), bit for bit.
    x = images(3, 96)
    pre = Preprocess(24, crop=0.75, mean=MEAN, std=STD)
    zb = zoom_bound(aug)
    small = presize(x, pre, zb)
    assert small.shape[1] < 96
    params = (
        AugParams.identity(3)
        if aug is None
        else sample_params(aug, 3, torch.Generator().manual_seed(1))
    )
    assert torch.equal(apply_params(small, pre, params), apply_params(x, pre, params))


@pytest.mark.parametrize("bad", [torch.zeros(2, 8, 8, 3), torch.zeros(8, 8, 3, dtype=torch.uint8)])
def test_presize_rejects_what_it_cannot_take(bad):
    with pytest.raises(ValueError, match=r"presize takes \(N, H, W, 3\) uint8"):
        presize(bad, Preprocess(4))


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(2, 8, 8, 3),
        torch.zeros(8, 8, 3, dtype=torch.uint8),
        torch.zeros(2, 8, 8, 4, dtype=torch.uint8),
    ],
)
def test_apply_params_rejects_non_uint8_nhwc(bad):
    with pytest.raises(ValueError, match=r"images must be uint8 \(B, H, W, 3\)"):
        apply_params(bad, Preprocess(8), AugParams.identity(bad.shape[0]))


def test_apply_params_default_layout_is_channels_last():
    y = apply_params(images(2, 16), Preprocess(16), AugParams.identity(2))
    assert y.is_contiguous(memory_format=torch.channels_last) and y.dtype == torch.float32


# -- colour jitter under a real normalisation -----------------------------------------------


@pytest.mark.parametrize(
    "b, c, s, lo", [(0.9, 1.1, 0.8, 80), (1.6, 1.0, 1.0, 0), (1.0, 1.8, 1.0, 0)]
)
def test_jitter_then_normalise_is_torchvision(b, c, s, lo):
    # (0.9, 1.1, 0.8) on mid-range pixels: no clamp bites anywhere. (1.6, 1, 1): the brightness
    # clamp at white bites; (1, 1.8, 1): contrast pushes dark pixels below black. With one
    # factor != 1, torchvision's clamp after it is the only one that acts, so adjust_* then
    # normalize is an exact oracle, clamps included.
    g = torch.Generator().manual_seed(4)
    x = torch.randint(lo, 256 - lo, (1, 16, 16, 3), dtype=torch.uint8, generator=g)
    p = AugParams.identity(1).replace(
        brightness=torch.tensor([b]), contrast=torch.tensor([c]), saturation=torch.tensor([s])
    )
    y = apply_params(x, Preprocess(16, mean=MEAN, std=STD), p, channels_last=False)[0]
    img = TF2.to_dtype(x[0].permute(2, 0, 1), torch.float32, scale=True)
    ref = TF2.adjust_saturation(TF2.adjust_contrast(TF2.adjust_brightness(img, b), c), s)
    ref = TF2.normalize(ref, list(MEAN), list(STD))
    # torchvision's grey weighs red 0.2989 (ours 0.299): the contrast pivot differs by < 1e-4
    # of the pixel range, under 1e-3 after dividing by std 0.05.
    torch.testing.assert_close(y, ref, atol=1e-3, rtol=0)


# -- preview panels ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "enabled, panel",
    [
        ({"rotate": True}, "rotation"),
        ({"jitter": 0.4}, "colour jitter"),
        ({"scale": 0.4, "translate": 0.2}, "zoom/shift"),
    ],
)
def test_preview_panel_of_the_only_enabled_augmentation_is_the_combined_one(enabled, panel):
    # With one augmentation enabled, its panel shows every parameter drawn: it must equal the
    # "all combined" panel, and differ from the original.
    img = images(1, 128, seed=2)[0].numpy()
    panels = augmentation_preview(
        img, Preprocess(32, mean=MEAN, std=STD), Augment(**{**OFF, **enabled}), seed=3
    )
    names = [n for n, _ in panels]
    assert len(names) == 3 and names[1].startswith(panel), names
    d = dict(panels)
    assert np.array_equal(panels[1][1], d["all combined"])
    assert np.abs(panels[1][1].astype(int) - d["original"]).max() > 10


def test_preview_original_is_the_exact_crop_and_seeding_is_its_own():
    img = images(1, 64, seed=5)[0].numpy()
    a = Augment(rotate=True, flip=True, jitter=0.3, scale=0.2, translate=0.1)
    torch.manual_seed(1)
    first = augmentation_preview(img, Preprocess(32, crop=0.5, mean=MEAN, std=STD), a)
    torch.manual_seed(2)  # the global generator must not matter
    again = augmentation_preview(img, Preprocess(32, crop=0.5, mean=MEAN, std=STD), a, seed=0)
    assert [n for n, _ in first] == [n for n, _ in again]
    for (_, p), (_, q) in zip(first, again, strict=True):
        assert np.array_equal(p, q)
    # 64 px, crop 0.5, 32 px: the original panel is the centre 32 px, byte for byte.
    assert np.array_equal(first[0][1], img[16:48, 16:48])


# -- Preprocess bounds, at the boundary ----------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_size=0), "input_size must be a positive integer"),
        (dict(input_size=-4), "input_size must be a positive integer"),
        (dict(input_size=2.5), "input_size must be a positive integer"),
        (dict(input_size=8, crop=0.0), "crop must be in"),
        (dict(input_size=8, crop=1.0001), "crop must be in"),
        (dict(input_size=8, mean=(0.5, 0.5)), "mean/std need 3 values"),
        (dict(input_size=8, std=(0.2, 0.2, 0.2, 0.2)), "mean/std need 3 values"),
        (dict(input_size=8, std=(0.2, 0.0, 0.2)), "std must be > 0"),
    ],
)
def test_preprocess_refuses_out_of_bounds(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Preprocess(**kwargs)


def test_preprocess_accepts_its_boundaries():
    # input_size 1 is a positive integer; crop 1.0 keeps the whole frame; tiny std is > 0.
    assert Preprocess(1).input_size == 1
    assert Preprocess(8, crop=1.0, std=(1e-6, 1e-6, 1e-6)).crop == 1.0
    assert Preprocess(8, mean=[0.1, 0.2, 0.3]).mean == (0.1, 0.2, 0.3)  # lists become tuples
