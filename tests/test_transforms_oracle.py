"""deepgal.transforms against independent oracles: torchvision.transforms.v2.functional for
the eval path's centre crop and per-channel normalisation, numpy's rot90/flip for the flips a
flip-only augmentation may draw."""

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF2

from deepgal.transforms import Augment, Preprocess, prepare_batch

# Per-channel statistics that differ in every channel, so a swapped channel order shows.
MEAN, STD = (0.2, 0.5, 0.7), (0.1, 0.3, 0.05)


def images(n=3, side=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, side, side, 3), dtype=torch.uint8, generator=g)


def torchvision_eval(x: torch.Tensor, crop_px: int) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, crop_px, crop_px): centre crop, /255, (v - mean) / std."""
    chw = TF2.center_crop(x.permute(0, 3, 1, 2), [crop_px, crop_px])
    return TF2.normalize(TF2.to_dtype(chw, torch.float32, scale=True), list(MEAN), list(STD))


@pytest.mark.parametrize(
    "side, size, crop", [(32, 32, 1.0), (64, 32, 0.5), (64, 48, 0.75), (40, 10, 0.25)]
)
def test_eval_is_torchvision_centre_crop_and_normalise(side, size, crop):
    # The crop keeps ``crop`` of the side around the centre; with size == crop * side there is
    # no resampling, so the result is torchvision's crop + normalise to float rounding.
    assert size == round(crop * side)
    x = images(3, side)
    y = prepare_batch(x, Preprocess(size, crop=crop, mean=MEAN, std=STD), channels_last=False)
    torch.testing.assert_close(y, torchvision_eval(x, size), atol=2e-5, rtol=0)


def test_normalisation_per_channel_by_hand():
    # One flat colour per image: the output is (v / 255 - mean_c) / std_c in each channel c.
    colours = np.array([[0, 128, 255], [10, 200, 37]], np.uint8)
    x = torch.from_numpy(np.broadcast_to(colours[:, None, None], (2, 8, 8, 3)).copy())
    y = prepare_batch(x, Preprocess(8, mean=MEAN, std=STD), channels_last=False)
    expect = (colours / 255 - np.array(MEAN)) / np.array(STD)  # (2, 3)
    np.testing.assert_allclose(
        y.numpy(), np.broadcast_to(expect[:, :, None, None], y.shape), atol=1e-5, rtol=0
    )


def test_eval_path_draws_no_random_numbers():
    x = images(4, 48)
    pre = Preprocess(24, crop=0.8, mean=MEAN, std=STD)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = prepare_batch(x, pre)
    g = torch.Generator().manual_seed(5)
    g_state = g.get_state()
    b = prepare_batch(x, pre, None, g)  # a generator without augmentation is not drawn from
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(g.get_state(), g_state)


def test_flip_only_augmentation_gives_exact_flips_of_the_eval_image():
    # Flips are exact pixel permutations: every sample must be one of the four flips (numpy's
    # fliplr/flipud; both = rot90 twice) of the torchvision eval image, and over 32 samples
    # all four appear.
    x = images(1, 32).expand(32, -1, -1, -1).contiguous()
    flip_only = Augment(rotate=False, flip=True, jitter=0.0, scale=0.0, translate=0.0)
    y = prepare_batch(
        x,
        Preprocess(32, mean=MEAN, std=STD),
        flip_only,
        torch.Generator().manual_seed(0),
        channels_last=False,
    ).numpy()
    ref = torchvision_eval(x[:1], 32)[0].numpy()  # (3, S, S)
    views = [ref, ref[:, :, ::-1], ref[:, ::-1, :], np.rot90(ref, 2, axes=(1, 2))]
    seen = set()
    for sample in y:
        match = [k for k, v in enumerate(views) if np.abs(sample - v).max() < 1e-5]
        assert match, "a sample is not an exact flip of the eval image"
        seen.add(match[0])
    assert seen == {0, 1, 2, 3}
