"""A ResNet-18 whose features are unchanged when a galaxy is turned by 90° or mirrored.

A galaxy's class does not depend on how it lies on the sky, and the pipeline already teaches
that by augmentation (any-angle rotation, flips) and tests it by averaging the 8 dihedral
views (``evaluate.tta``). A group-equivariant CNN (Cohen & Welling 2016, "Group Equivariant
Convolutional Networks": the p4m layers) builds the same fact into the weights instead: every
filter is used in its 8 orientations of the dihedral group D4, so the network need not learn
each orientation from the few hundred images a user brings. D4 acts exactly on the pixel grid
(no interpolation), so the layers are plain ``conv2d`` calls on filters expanded by a fixed
index: no extra dependency, and ONNX sees ordinary convolutions and a gather.

Why by hand: the maintained libraries for this (``escnn``, ``e2cnn``) do not import here:
``escnn`` needs ``lie_learn`` (NumPy < 2) and ``py3nj`` (a Fortran build); ``e2cnn`` 0.2.3 calls
``ndarray.tostring``, removed in NumPy 2. The layers below are the textbook p4m construction.

Feature maps are (B, C * 8, H, W): C fields, each 8 channels (one per group element, the
element index fastest). Exact invariance of :class:`D4ResNet18`'s output holds when every
stride-2 step sees an odd side (input 65, 33, ...); at even sides a stride-2 grid is not
mapped onto itself by a quarter turn, and the invariance is approximate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ORDER = 8  # |D4|: 4 rotations, each with and without a mirror


def act(g: int, x: torch.Tensor) -> torch.Tensor:
    """Element ``g`` of D4 (``g // 4`` mirrors, ``g % 4`` quarter turns) on the last two dims."""
    if g // 4:
        x = torch.flip(x, (-1,))
    return torch.rot90(x, g % 4, (-2, -1))


def _cayley() -> tuple[list[list[int]], list[int]]:
    # Read the group's multiplication off the action itself, so that the table and `act`
    # cannot disagree: g·h is the k with act(g, act(h, x)) == act(k, x) for a generic x.
    x = torch.arange(9.0).view(3, 3)
    views = [act(k, x) for k in range(ORDER)]
    table = [
        [
            next(k for k in range(ORDER) if torch.equal(act(g, act(h, x)), views[k]))
            for h in range(ORDER)
        ]
        for g in range(ORDER)
    ]
    inverse = [next(k for k in range(ORDER) if table[g][k] == 0) for g in range(ORDER)]
    return table, inverse


TABLE, INVERSE = _cayley()


def _lift_index(k: int) -> torch.Tensor:
    """(ORDER, k*k): entry [g] lists, for each tap of the turned filter, the tap it copies."""
    taps = torch.arange(k * k).view(k, k)
    return torch.stack([act(g, taps).reshape(-1) for g in range(ORDER)])


def _group_index(k: int) -> torch.Tensor:
    """(ORDER, ORDER*k*k): for output element g, the filter over (input element h, tap) is the
    original's at (g⁻¹·h, tap turned by g)."""
    taps = torch.arange(ORDER * k * k).view(ORDER, k, k)
    rows = []
    for g in range(ORDER):
        permuted = taps[[TABLE[INVERSE[g]][h] for h in range(ORDER)]]
        rows.append(act(g, permuted).reshape(-1))
    return torch.stack(rows)


class _PosedConv(nn.Module):
    """A conv2d whose filter is built from ``weight`` by ``index`` (ORDER, row length): one
    weight row per (output field, input channel or field), turned and permuted into the 8
    poses' filters. The subclasses differ only in the index."""

    def __init__(self, c_in: int, out_fields: int, k: int, stride: int, padding: int, index):
        super().__init__()
        self.stride, self.padding, self.k = stride, padding, k
        self.weight = nn.Parameter(torch.empty(out_fields, c_in, index.shape[1]))
        # He init of the expanded conv (fan-out, as torchvision's ResNets)
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / (out_fields * ORDER * k * k)))
        self.register_buffer("index", index, persistent=False)

    def expanded(self) -> torch.Tensor:
        """The plain conv2d filter: (out_fields * 8, input channels, k, k); the input channels
        are c_in for the lift, in_fields * 8 (field-major, pose fastest) for a group conv."""
        w = self.weight[:, :, self.index]  # (o, c, ORDER, row length)
        return w.permute(0, 2, 1, 3).reshape(self.weight.shape[0] * ORDER, -1, self.k, self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.expanded(), stride=self.stride, padding=self.padding)


class LiftConv(_PosedConv):
    """Image (B, c_in, H, W) -> fields (B, out_fields * 8, H', W'): each filter in 8 poses."""

    def __init__(self, c_in: int, out_fields: int, k: int, stride: int = 1, padding: int = 0):
        super().__init__(c_in, out_fields, k, stride, padding, _lift_index(k))


class GroupConv(_PosedConv):
    """Fields (B, in_fields * 8, H, W) -> (B, out_fields * 8, H', W'), D4-equivariant: each
    input field's 8 channels are permuted by the pose as well as turned."""

    def __init__(self, in_fields: int, out_fields: int, k: int, stride: int = 1, padding: int = 0):
        super().__init__(in_fields, out_fields, k, stride, padding, _group_index(k))


class FieldBatchNorm(nn.BatchNorm3d):
    """Batch norm with one mean, variance, scale and shift per field, shared by its 8
    channels: per-channel statistics would treat the poses differently and break equivariance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return super().forward(x.view(b, c // ORDER, ORDER, h, w)).view(b, c, h, w)


class Block(nn.Module):
    """torchvision's BasicBlock with group convolutions."""

    def __init__(self, f_in: int, f_out: int, stride: int):
        super().__init__()
        self.conv1 = GroupConv(f_in, f_out, 3, stride, 1)
        self.bn1 = FieldBatchNorm(f_out)
        self.conv2 = GroupConv(f_out, f_out, 3, 1, 1)
        self.bn2 = FieldBatchNorm(f_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(GroupConv(f_in, f_out, 1, stride), FieldBatchNorm(f_out))
            if stride != 1 or f_in != f_out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class D4ResNet18(nn.Module):
    """ResNet-18's layout (7x7/2 stem, 3x3/2 max pool, four stages of two blocks) with
    ``width``, 2·width, 4·width, 8·width fields of 8 channels: at width 8 every convolution has
    resnet18's channel count, so the same multiply-adds, with 1/8 of the free parameters.
    Output: (B, 8·width) features, the mean over positions and the 8 poses (so invariant)."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.conv1 = LiftConv(3, width, 7, stride=2, padding=3)
        self.bn1 = FieldBatchNorm(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)  # per channel: equivariant
        fields = [width, 2 * width, 4 * width, 8 * width]
        f_in = width
        for i, f in enumerate(fields, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(Block(f_in, f, stride), Block(f, f, 1)))
            f_in = f
        self.feature_dim = f_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        b, c, h, w = x.shape
        return x.view(b, c // ORDER, ORDER * h * w).mean(-1)
