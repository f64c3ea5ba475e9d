"""Grad-CAM of deepgal.explore.cam on a hand-built smallnet whose decision depends on one known
patch: class 1 counts red pixels, class 2 green ones, so in an image with one red and one green
patch the map of class 1 must peak on the red patch and that of class 2 on the green one."""
import numpy as np
import pytest
import torch

from deepgal.explore.cam import MIN_SIDE, TARGET_LAYERS, grad_cam, output_sides, target_layer
from deepgal.models import MODEL_NAMES, build_model
from deepgal.transforms import Preprocess

pytest.importorskip("captum")
PRE = Preprocess(32, crop=1.0, mean=(0, 0, 0), std=(1, 1, 1))
RED = (slice(4, 11), slice(20, 28))  # rows, cols: off-centre and not symmetric, so a
GREEN = (slice(20, 28), slice(4, 11))  # transposed or flipped map lands on the other patch


def toy_smallnet() -> torch.nn.Module:
    """smallnet whose channel 0 passes red (minus green and blue) and channel 1 green (minus
    red and blue) through both convolutions unchanged; logit 1 sums channel 0 over the image,
    logit 2 channel 1, and class 0 has a bias, so a dark image is class 0."""
    net = build_model("smallnet", 10, 32)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        conv1, conv2 = net.body[0], net.body[3]
        conv1.weight[0, :, 1, 1] = torch.tensor([1.0, -1.0, -1.0])
        conv1.weight[1, :, 1, 1] = torch.tensor([-1.0, 1.0, -1.0])
        conv2.weight[0, 0, 1, 1] = conv2.weight[1, 1, 1, 1] = 1.0
        per_channel = 8 * 8  # smallnet's features: 64 channels of 8x8, flattened
        net.head.weight[1, :per_channel] = 1.0
        net.head.weight[2, per_channel:2 * per_channel] = 1.0
        net.head.bias[0] = 0.5
    return net.eval()


def two_patches(red_level=220, green_level=120) -> np.ndarray:
    img = np.full((32, 32, 3), 10, np.uint8)
    img[RED] = (red_level, 0, 0)
    img[GREEN] = (0, green_level, 0)
    img[24:30, 24:30] = 200  # a grey square that neither class looks at
    return img


def mask(patch) -> np.ndarray:
    m = np.zeros((32, 32), bool)
    m[patch] = True
    return m


@pytest.mark.parametrize("target,patch", [(1, RED), (2, GREEN)])
def test_the_map_peaks_on_the_patch_the_class_depends_on(target, patch):
    maps, logits, views, layer = grad_cam(toy_smallnet(), two_patches()[None], PRE,
                                          torch.device("cpu"), targets=np.array([target]))
    assert layer == "body.4"  # the last rectified convolution, 16x16 at 32 px
    m = maps[0]
    assert mask(patch)[np.unravel_index(m.argmax(), m.shape)]
    assert m.max() == pytest.approx(1.0)
    inside, outside = m[mask(patch)].mean(), m[~mask(patch)].mean()
    assert inside > 5 * outside, (inside, outside)
    np.testing.assert_array_equal(views[0], two_patches())  # identity preprocessing


def test_the_default_target_is_the_predicted_class():
    img = two_patches(red_level=250, green_level=60)  # more red: predicted class 1
    maps, logits, _, _ = grad_cam(toy_smallnet(), img[None], PRE, torch.device("cpu"))
    assert logits[0].argmax() == 1
    m = maps[0]
    assert mask(RED)[np.unravel_index(m.argmax(), m.shape)]


def test_the_callers_model_keeps_its_in_place_relus():
    model = build_model("smallnet", 10, 32)
    before = [m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    grad_cam(model, two_patches()[None], PRE, torch.device("cpu"))
    assert [m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU)] == before


def test_nothing_speaking_for_a_class_gives_an_all_zero_map():
    dark = np.full((1, 32, 32, 3), 10, np.uint8)
    maps, *_ = grad_cam(toy_smallnet(), dark, PRE, torch.device("cpu"), targets=np.array([1]))
    assert np.all(maps == 0) and np.isfinite(maps).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_variant_has_a_target_layer_with_a_grid_to_localise(name):
    model = build_model(name, 10, 32)
    layer = target_layer(model, 32)
    names = TARGET_LAYERS[name]
    sides = output_sides(model, names, 32)
    assert sides[layer] >= MIN_SIDE
    # the deepest such layer: every deeper candidate is coarser than MIN_SIDE
    assert all(sides[n] < MIN_SIDE for n in names[:names.index(layer)])
