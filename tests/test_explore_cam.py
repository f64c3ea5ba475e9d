"""Grad-CAM of deepgal.explore.cam on a hand-built smallnet whose decision depends on one known
patch: class 1 counts red pixels, class 2 green ones, so in an image with one red and one green
patch the map of class 1 must peak on the red patch and that of class 2 on the green one."""

import numpy as np
import pytest
import torch

from deepgal.explore.cam import MIN_SIDE, TARGET_LAYERS, grad_cam, output_sides, target_layer
from deepgal.models import MODEL_NAMES, build_model
from tests.helpers import GREEN, RED, TOY_PRE, toy_smallnet, two_patches

pytest.importorskip("captum")


def mask(patch) -> np.ndarray:
    m = np.zeros((32, 32), bool)
    m[patch] = True
    return m


@pytest.mark.parametrize("target,patch", [(1, RED), (2, GREEN)])
def test_the_map_peaks_on_the_patch_the_class_depends_on(target, patch):
    maps, logits, views, layer = grad_cam(
        toy_smallnet(),
        two_patches()[None],
        TOY_PRE,
        torch.device("cpu"),
        targets=np.array([target]),
    )
    assert layer == "body.4"  # the last rectified convolution, 16x16 at 32 px
    m = maps[0]
    assert mask(patch)[np.unravel_index(m.argmax(), m.shape)]
    assert m.max() == pytest.approx(1.0)
    inside, outside = m[mask(patch)].mean(), m[~mask(patch)].mean()
    assert inside > 5 * outside, (inside, outside)
    np.testing.assert_array_equal(views[0], two_patches())  # identity preprocessing


def test_the_default_target_is_the_predicted_class():
    img = two_patches(red_level=250, green_level=60)  # more red: predicted class 1
    maps, logits, _, _ = grad_cam(toy_smallnet(), img[None], TOY_PRE, torch.device("cpu"))
    assert logits[0].argmax() == 1
    m = maps[0]
    assert mask(RED)[np.unravel_index(m.argmax(), m.shape)]


def test_the_callers_model_keeps_its_in_place_relus():
    model = build_model("smallnet", 10, 32)
    before = [m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    grad_cam(model, two_patches()[None], TOY_PRE, torch.device("cpu"))
    assert [m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU)] == before


def test_nothing_speaking_for_a_class_gives_an_all_zero_map():
    dark = np.full((1, 32, 32, 3), 10, np.uint8)
    maps, *_ = grad_cam(toy_smallnet(), dark, TOY_PRE, torch.device("cpu"), targets=np.array([1]))
    assert np.all(maps == 0) and np.isfinite(maps).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_variant_has_a_target_layer_with_a_grid_to_localise(name):
    size = 33 if name == "resnet18_d4" else 32  # the D4 net takes 32k + 1 only
    model = build_model(name, 10, size)
    layer = target_layer(model, size)
    names = TARGET_LAYERS[name]
    sides = output_sides(model, names, size)
    assert sides[layer] >= MIN_SIDE
    # the deepest such layer: every deeper candidate is coarser than MIN_SIDE
    assert all(sides[n] < MIN_SIDE for n in names[: names.index(layer)])
