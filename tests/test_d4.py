"""resnet18_d4: the dihedral symmetry the model promises, checked against torch's own flips and
quarter turns of the input (not the module's `act`), on trained-looking weights."""

import pytest
import torch

from deepgal.d4 import ORDER, D4ResNet18, GroupConv, LiftConv
from deepgal.models import build_model

# The 8 maps of the square onto itself, written with torch only: the oracle.
POSES = [
    lambda x, r=r, m=m: torch.rot90(torch.flip(x, (-1,)) if m else x, r, (-2, -1))
    for m in (0, 1)
    for r in range(4)
]


def _warmed(model: torch.nn.Module, size: int) -> torch.nn.Module:
    # Batch-norm statistics and scales away from their init, so a per-channel (not per-field)
    # statistic or scale would show up as broken symmetry.
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, size, size) * 2 + 0.3)
    return model.eval()


@pytest.mark.parametrize("size", [33, 65])
def test_logits_are_invariant_under_the_eight_dihedral_maps(size):
    torch.manual_seed(0)
    net = _warmed(build_model("resnet18_d4", input_size=size), size)
    x = torch.randn(3, 3, size, size)
    x[:, :, : size // 3] += 1.0  # no symmetry of its own
    with torch.no_grad():
        ref = net(x)
        for k, pose in enumerate(POSES):
            torch.testing.assert_close(net(pose(x)), ref, atol=1e-4, rtol=1e-4, msg=f"pose {k}")
        # ...and not because it ignores its input: other galaxies, other logits
        assert (net(torch.randn(3, 3, size, size)) - ref).abs().max() > 1e-2


def test_group_convolution_is_equivariant_field_by_field():
    # Turning the input turns each output channel's map and permutes the 8 channels of every
    # field among themselves, the same way for every field: so the per-field set of maps, each
    # turned back, is what the unturned input gives.
    torch.manual_seed(0)
    lift, conv = LiftConv(3, 2, 5, padding=2), GroupConv(2, 3, 3, padding=1)
    x = torch.randn(1, 3, 17, 17)
    with torch.no_grad():
        ref = conv(torch.relu(lift(x))).view(3, ORDER, 17, 17)
        for k, pose in enumerate(POSES):
            out = conv(torch.relu(lift(pose(x)))).view(3, ORDER, 17, 17)
            # undo the spatial map: find the inverse pose with the oracle list itself
            inv = next(q for q in range(ORDER) if torch.equal(POSES[q](pose(x)), x))
            unturned = POSES[inv](out)
            # the 8 channels of each field are a permutation of the reference's, the same for all
            perm = [
                next(
                    h for h in range(ORDER) if torch.allclose(unturned[0, g], ref[0, h], atol=1e-5)
                )
                for g in range(ORDER)
            ]
            assert sorted(perm) == list(range(ORDER)), f"pose {k}: not a permutation"
            torch.testing.assert_close(unturned, ref[:, perm], atol=1e-5, rtol=1e-5)


def test_batch_norm_is_shared_across_the_poses_of_a_field():
    net = D4ResNet18(width=2)
    assert net.bn1.num_features == 2  # one statistic per field, not per channel (16)


@pytest.mark.parametrize("size, nearest", [(64, 65), (96, 97), (49, 65), (40, 33)])
def test_sizes_that_break_the_symmetry_are_refused_with_the_nearest_good_one(size, nearest):
    with pytest.raises(ValueError, match=rf"input_size = 32k \+ 1.*got {size}: use {nearest}\b"):
        build_model("resnet18_d4", input_size=size)
