"""Device-side preprocessing/augmentation: geometry, colour, randomness, normalisation."""

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from deepgal import config
from deepgal.config import ConfigError
from deepgal.training.mix import mix_batch
from deepgal.transforms import (
    Augment,
    AugParams,
    Preprocess,
    affine_grid,
    affine_theta,
    apply_params,
    augmentation_preview,
    prepare_batch,
    sample_params,
)

from .pipeline_repo import tiny_params

# mean 0 / std 1 makes the output the plain [0, 1] image, so geometry is easy to compare.
PLAIN = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def aug(**changes) -> Augment:
    """Augment has no defaults (params.yaml holds them); these tests start from these values."""
    return Augment(
        **{"rotate": True, "flip": True, "jitter": 0.1, "scale": 0.0, "translate": 0.0, **changes}
    )


def random_images(n=4, side=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, side, side, 3), dtype=torch.uint8, generator=g)


def smooth_images(n=2, side=128):
    """Low-frequency patterns, where crop-then-resize and resize-then-crop agree closely."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    chans = [torch.sin(3 * xx + k) * torch.cos(2 * yy - k) for k in range(3 * n)]
    img = (torch.stack(chans).view(n, 3, side, side) * 100 + 128).round().byte()
    return img.permute(0, 2, 3, 1).contiguous()


def chw01(images):
    return images.permute(0, 3, 1, 2).float() / 255


def test_shapes_dtypes_and_layout():
    x = random_images(3, 64)
    pre = Preprocess(48)
    y = prepare_batch(x, pre, aug(scale=0.1, translate=0.05), torch.Generator())
    assert y.shape == (3, 3, 48, 48) and y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last)
    y = prepare_batch(x, pre, channels_last=False, dtype=torch.bfloat16)
    assert y.dtype == torch.bfloat16 and y.is_contiguous()


def test_rejects_non_uint8_nhwc():
    with pytest.raises(ValueError, match=r"uint8 \(B, H, W, 3\)"):
        prepare_batch(torch.zeros(2, 3, 8, 8), Preprocess(8))


def test_eval_centre_crop_is_exact_pixels():
    # 64 px, crop 0.5 -> 32 px: sample points land on pixel centres, so it is plain slicing.
    x = random_images(2, 64)
    y = prepare_batch(x, Preprocess(32, crop=0.5, **PLAIN))
    torch.testing.assert_close(y, chw01(x)[:, :, 16:48, 16:48], atol=1e-6, rtol=0)


def test_eval_matches_antialiased_resize_reference():
    x = random_images(2, 256)
    y = prepare_batch(x, Preprocess(64, **PLAIN))
    ref = F.interpolate(chw01(x), size=(64, 64), mode="bilinear", antialias=True)
    # The CPU path resizes in uint8 (as torchvision's Resize): within one grey level.
    assert (y - ref).abs().max() <= 1.0 / 255 + 1e-6
    assert not torch.equal(
        y, prepare_batch(x, Preprocess(64, **PLAIN), aug(), torch.Generator().manual_seed(0))
    )


def test_eval_crop_and_downscale_matches_crop_then_resize():
    x = smooth_images(2, 128)
    y = prepare_batch(x, Preprocess(32, crop=0.5, **PLAIN))
    ref = F.interpolate(
        chw01(x)[:, :, 32:96, 32:96], size=(32, 32), mode="bilinear", antialias=True
    )
    assert (y - ref).abs().max() < 0.02


def test_eval_is_deterministic():
    x = random_images(4, 96)
    pre = Preprocess(40, crop=0.8)
    assert torch.equal(prepare_batch(x, pre), prepare_batch(x, pre))


def test_affine_grid_matches_torch():
    p = sample_params(aug(scale=0.2, translate=0.1), 5, torch.Generator().manual_seed(1))
    theta = affine_theta(p, crop=0.7)
    ref = F.affine_grid(theta, [5, 3, 24, 24], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, 24), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("degrees", [90, 45, -30])
def test_rotation_moves_dot_counter_clockwise(degrees):
    x = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    x[0, 31:33, 49:51] = 255  # a 2x2 dot 18 px right of the centre (31.5, 31.5)
    a = math.radians(degrees)
    p = AugParams.identity(1).replace(angle=torch.tensor([a]))
    y = apply_params(x, Preprocess(64, **PLAIN), p)[0, 0]
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    cy, cx = (y * ys).sum() / y.sum(), (y * xs).sum() / y.sum()
    # Counter-clockwise on screen (y down): (dx, dy) = (18, 0) goes to (18 cos a, -18 sin a).
    assert abs(cx - (31.5 + 18 * math.cos(a))) < 0.5
    assert abs(cy - (31.5 - 18 * math.sin(a))) < 0.5


def test_rotation_by_90_equals_rot90():
    x = random_images(2, 32)
    p = AugParams.identity(2).replace(angle=torch.full((2,), math.pi / 2))
    y = apply_params(x, Preprocess(32, **PLAIN), p)
    torch.testing.assert_close(y, torch.rot90(chw01(x), 1, dims=(2, 3)), atol=1e-4, rtol=0)


def test_flips_and_zoom():
    x = random_images(2, 32)
    pre = Preprocess(32, **PLAIN)
    ident = AugParams.identity(2)
    h = apply_params(x, pre, ident.replace(flip_h=torch.tensor([True, False])))
    v = apply_params(x, pre, ident.replace(flip_v=torch.tensor([True, True])))
    torch.testing.assert_close(h[0], chw01(x)[0].flip(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(h[1], chw01(x)[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(v, chw01(x).flip(-2), atol=1e-6, rtol=0)
    # Zooming in 2x shows what a 0.5 crop shows.
    zoom2 = ident.replace(zoom=torch.full((2,), 2.0), zoom_bound=2.0)
    zoomed = apply_params(x, Preprocess(16, **PLAIN), zoom2)
    torch.testing.assert_close(
        zoomed, prepare_batch(x, Preprocess(16, crop=0.5, **PLAIN)), atol=1e-5, rtol=0
    )


def test_jitter_matches_torchvision_sequence():
    # Mid-range pixels and mild factors: torchvision's intermediate clamps never bite, so the
    # folded one-clamp formula must agree with adjust_brightness/contrast/saturation.
    g = torch.Generator().manual_seed(3)
    x = torch.randint(90, 170, (3, 16, 16, 3), dtype=torch.uint8, generator=g)
    b, c, s = (
        torch.tensor([0.9, 1.1, 1.0]),
        torch.tensor([1.1, 0.9, 1.0]),
        torch.tensor([0.95, 1.05, 1.1]),
    )
    p = AugParams.identity(3).replace(brightness=b, contrast=c, saturation=s)
    y = apply_params(x, Preprocess(16, **PLAIN), p, channels_last=False)
    for i in range(3):
        ref = TF.adjust_brightness(chw01(x)[i], b[i].item())
        ref = TF.adjust_contrast(ref, c[i].item())
        ref = TF.adjust_saturation(ref, s[i].item())
        torch.testing.assert_close(y[i], ref, atol=1e-5, rtol=0)


def test_seeded_generator_reproduces_and_differs():
    x = random_images(4, 64)
    pre, a8 = Preprocess(32), aug(scale=0.1, translate=0.05)
    a = prepare_batch(x, pre, a8, torch.Generator().manual_seed(7))
    b = prepare_batch(x, pre, a8, torch.Generator().manual_seed(7))
    c = prepare_batch(x, pre, a8, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_randomness_is_per_sample():
    x = random_images(1, 64).expand(6, -1, -1, -1).contiguous()  # six copies of one image
    y = prepare_batch(x, Preprocess(32), aug(), torch.Generator().manual_seed(0))
    for i in range(6):
        for j in range(i + 1, 6):
            assert not torch.allclose(y[i], y[j]), (i, j)
    p = sample_params(aug(), 1000, torch.Generator().manual_seed(0))
    assert 0.4 < p.flip_h.float().mean() < 0.6 and 0.4 < p.flip_v.float().mean() < 0.6
    assert p.angle.min() >= 0 and p.angle.max() < 2 * math.pi and p.angle.std() > 1.5
    assert 0.9 <= p.brightness.min() and p.brightness.max() <= 1.1


def test_generator_must_match_device():
    class FakeCuda:
        device = torch.device("cuda")

    with pytest.raises(ValueError, match="generator is on cuda"):
        prepare_batch(random_images(1, 8), Preprocess(8), aug(), FakeCuda())


def test_normalisation_gives_zero_mean_unit_std():
    mean, std = (0.3, 0.5, 0.6), (0.1, 0.15, 0.05)
    g = torch.Generator().manual_seed(0)
    pix = torch.randn(16, 32, 32, 3, generator=g) * torch.tensor(std) + torch.tensor(mean)
    x = (pix * 255).round().clamp(0, 255).byte()
    y = prepare_batch(x, Preprocess(32, mean=mean, std=std))
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(3), atol=0.02, rtol=0)
    torch.testing.assert_close(y.std((0, 2, 3)), torch.ones(3), atol=0.02, rtol=0)


def test_preprocess_round_trip_and_validation():
    pre = Preprocess(32, crop=0.5, mean=(0.1, 0.2, 0.3), std=(0.2, 0.25, 0.3))
    d = pre.to_dict()
    assert d == {"input_size": 32, "crop": 0.5, "mean": [0.1, 0.2, 0.3], "std": [0.2, 0.25, 0.3]}
    assert Preprocess.from_dict(d) == pre
    with pytest.raises(ValueError, match="unknown Preprocess keys.*'size'"):
        Preprocess.from_dict({**d, "size": 3})
    with pytest.raises(ValueError, match="crop"):
        Preprocess(32, crop=1.5)
    with pytest.raises(ValueError, match="std"):
        Preprocess(32, std=(0.1, 0.0, 0.1))
    with pytest.raises(ValueError, match="jitter"):
        aug(jitter=1.5)
    with pytest.raises(ValueError, match="scale"):
        aug(scale=1.0)


def test_augmentation_preview_panels():
    img = smooth_images(1, 64)[0].numpy()
    pre = Preprocess(48, crop=0.75)
    panels = augmentation_preview(img, pre, aug(scale=0.1), seed=1)
    names = [n for n, _ in panels]
    assert names[0] == "original" and names[-1] == "all combined"
    assert any(n.startswith("rotation") for n in names) and "flip" in names
    assert "zoom/shift" in names and any(n.startswith("colour jitter") for n in names)
    for _, p in panels:
        assert p.shape == (48, 48, 3) and p.dtype == np.uint8
    eval_img = prepare_batch(torch.from_numpy(img)[None], Preprocess(48, crop=0.75, **PLAIN))
    expect = (eval_img[0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert np.abs(panels[0][1].astype(int) - expect).max() <= 1
    flip = dict(panels)["flip"]
    assert np.abs(flip.astype(int) - expect[:, ::-1]).max() <= 1
    # Disabled augmentations get no panel.
    names = [n for n, _ in augmentation_preview(img, pre, aug(rotate=False, jitter=0.0))]
    assert names == ["original", "flip", "all combined"]


# -- the transform takes its settings from the config: what validates, runs --------------------


def test_augment_is_the_config_class():
    assert Augment is config.AugmentCfg
    params = tiny_params()
    cfg = config.load_section("train", params).augment
    assert asdict(cfg) == params["train"]["augment"]  # the values as written, none dropped
    pre = Preprocess(16)
    y = prepare_batch(random_images(2, 32), pre, cfg, torch.Generator().manual_seed(0))
    assert y.shape == (2, 3, 16, 16)
    assert_in_unit_range(y, pre)
    # Everything off is the eval path, value for value.
    off = Augment(rotate=False, flip=False, jitter=0.0, scale=0.0, translate=0.0)
    x = random_images(2, 32)
    assert torch.equal(prepare_batch(x, pre, off, torch.Generator()), prepare_batch(x, pre))


def assert_in_unit_range(y, pre):
    """De-normalised pixels lie in [0, 1]: sampling, jitter and its clamp keep the image range
    (the bound is reached: random pixels contain 0 and 255)."""
    img = y * torch.tensor(pre.std).view(1, 3, 1, 1) + torch.tensor(pre.mean).view(1, 3, 1, 1)
    assert img.min() >= -1e-5 and img.max() <= 1 + 1e-5, (img.min(), img.max())


def extreme(**values):
    params = tiny_params()
    params["train"]["augment"].update(values)
    return config.load_section("train", params).augment


@pytest.mark.parametrize(
    "values",
    [
        {"jitter": 1.0},
        {"jitter": 0.0},
        {"scale": 0.999},
        {"translate": 0.499},
        {"jitter": 1.0, "scale": 0.9},
    ],
)
def test_bounds_that_validate_run_end_to_end(values):
    cfg = extreme(**values)
    for seed in range(3):
        y = prepare_batch(
            random_images(8, 32), Preprocess(16), cfg, torch.Generator().manual_seed(seed)
        )
        assert torch.isfinite(y).all()
        assert_in_unit_range(y, Preprocess(16))


@pytest.mark.parametrize(
    "key, value", [("jitter", 1.01), ("scale", 1.0), ("translate", 0.5), ("scale", -0.1)]
)
def test_bounds_that_do_not_run_fail_validation_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"^train\.augment\.{key}: "):
        extreme(**{key: value})


@settings(max_examples=40, deadline=None)
@given(
    jitter=st.floats(0, 1),
    scale=st.floats(0, 0.999),
    translate=st.floats(0, 0.499),
    rotate=st.booleans(),
    flip=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_any_valid_augment_gives_finite_batches(jitter, scale, translate, rotate, flip, seed):
    cfg = extreme(jitter=jitter, scale=scale, translate=translate, rotate=rotate, flip=flip)
    y = prepare_batch(
        random_images(4, 24, seed % 1000), Preprocess(12), cfg, torch.Generator().manual_seed(seed)
    )
    assert torch.isfinite(y).all()
    assert_in_unit_range(y, Preprocess(12))


# -- mixup / cutmix ----------------------------------------------------------------------------


def batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_mix_off_is_identity_with_one_hot_targets():
    x, y = batch()
    out, t = mix_batch(x, y, 10, 0.0, 0.0, torch.Generator())
    assert out is x
    torch.testing.assert_close(t, F.one_hot(y, 10).float())


@pytest.mark.parametrize("mixup, cutmix", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mix_is_seeded_and_targets_are_distributions(mixup, cutmix):
    x, y = batch()
    a = mix_batch(x, y, 10, mixup, cutmix, torch.Generator().manual_seed(3))
    b = mix_batch(x, y, 10, mixup, cutmix, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    outs = [
        mix_batch(x, y, 10, mixup, cutmix, torch.Generator().manual_seed(s))[0] for s in range(4)
    ]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    out, t = a
    assert out.shape == x.shape and t.shape == (8, 10) and t.dtype == torch.float32
    torch.testing.assert_close(t.sum(1), torch.ones(8))
    assert (t >= 0).all()
    assert (t[torch.arange(8), y] > 0).all()  # every sample keeps a share of its own label


def lam_and_partner(t: torch.Tensor, n: int) -> tuple[float, torch.Tensor]:
    """From the soft targets of a batch whose labels are 0..n-1: the batch's lam (the own
    share of a sample paired with another) and each row's partner (itself if paired with
    itself)."""
    own = t.diagonal()[:n]
    lam = own[own < 1 - 1e-6].min().item()
    partner = t[:, :n].clone().fill_diagonal_(0).argmax(1)
    return lam, torch.where(own > 1 - 1e-6, torch.arange(n), partner)


def test_mixup_blends_pixels_and_labels_with_the_same_weight():
    x, y = batch(6, 1)
    y = torch.arange(6)  # distinct labels: each row's targets show lam and 1 - lam exactly
    out, t = mix_batch(x, y, 10, 0.4, 0.0, torch.Generator().manual_seed(5))
    lam, partner = lam_and_partner(t, 6)
    assert 0 < lam < 1
    torch.testing.assert_close(out, lam * x + (1 - lam) * x[partner])


def test_cutmix_pastes_one_box_and_lam_is_its_area():
    x, y = batch(6, 2)
    y = torch.arange(6)
    out, t = mix_batch(x, y, 10, 0.0, 1.0, torch.Generator().manual_seed(11))
    lam, partner = lam_and_partner(t, 6)
    changed = (out != x).any(1)  # (B, H, W): pixels taken from the partner
    box = changed.any(0)
    rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
    area = (rows.numel() and (rows.max() - rows.min() + 1)) * (
        cols.numel() and (cols.max() - cols.min() + 1)
    )
    assert area > 0 and abs((1 - lam) - area / (16 * 16)) < 1e-6
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[r0:r1, c0:c1] = True
    torch.testing.assert_close(out[..., inside], x[partner][..., inside], rtol=0, atol=0)
    torch.testing.assert_close(out[..., ~inside], x[..., ~inside], rtol=0, atol=0)


def test_mix_rejects_negative_alpha():
    x, y = batch()
    with pytest.raises(ValueError, match="mixup and cutmix must be >= 0"):
        mix_batch(x, y, 10, -0.1, 0.0, torch.Generator())
