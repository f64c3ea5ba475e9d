"""Grad-CAM maps: where in the image the evidence for a class lies, for every CNN variant.

Grad-CAM (Selvaraju et al. 2017) weights each channel of a convolutional layer's rectified
output by the mean gradient of the class logit over it, sums the channels and keeps the positive
part: an (h, w) map of the layer's grid, upsampled bilinearly to the model's input.

Computed with Captum (``captum.attr.LayerGradCam``; optional extra ``explore``) rather than the
``grad-cam`` package: Captum is PyTorch's own attribution library, maintained with it, pure
Python on top of the torch/numpy/matplotlib deepgal already has, whereas ``grad-cam`` pulls in
OpenCV (a ~60 MB binary with GUI libraries) and ttach. Captum also offers other attributions
(Integrated Gradients, Occlusion) behind the same calls.

The target layer per variant (:data:`TARGET_LAYERS`, one entry per name of
:data:`deepgal.models.MODEL_NAMES`) is the deepest rectified convolutional stage whose grid is
at least :data:`MIN_SIDE` cells across at the checkpoint's input size: the deepest layer carries
the most class-specific evidence, but a ResNet's last stage at 32 px is a 1x1 grid, which
localises nothing, so a shallower stage is taken there.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..errors import DeepgalError
from ..models import Net
from ..transforms import Preprocess, prepare_batch

MIN_SIDE = 4


class MissingExtraError(DeepgalError, ImportError):
    """Captum is not installed; the message says how to install it."""


# Deepest first. smallnet/customnet: the ReLU after each convolution (the rectified maps
# Grad-CAM is defined on); torchvision's ResNets: the residual stages (each ends in a ReLU);
# ConvNeXt: its four stages.
TARGET_LAYERS: dict[str, tuple[str, ...]] = {
    "smallnet": ("body.4", "body.1"),
    "customnet": ("body.14", "body.10", "body.6", "body.2"),
    **{
        name: ("body.layer4", "body.layer3", "body.layer2", "body.layer1")
        for name in ("resnet18", "resnet18_s2d", "resnet18_d4", "resnet50", "resnet152")
    },
    "convnext_tiny": ("body.features.7", "body.features.5", "body.features.3", "body.features.1"),
}


def output_sides(model: nn.Module, names: tuple[str, ...], input_size: int) -> dict[str, int]:
    """The spatial side of each named module's output for one (1, 3, S, S) input (run in eval
    mode, so batch-norm statistics stay as they are; the model's mode is restored)."""
    sides: dict[str, int] = {}
    modules = dict(model.named_modules())
    hooks = [
        modules[n].register_forward_hook(
            lambda _m, _i, out, n=n: sides.__setitem__(n, int(out.shape[-1]))
        )
        for n in names
    ]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(
                torch.zeros(1, 3, input_size, input_size, device=next(model.parameters()).device)
            )
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return sides


def unsupported(model: nn.Module) -> str | None:
    """Why Grad-CAM cannot serve ``model``, or None: it attributes to a rectified convolutional
    layer, and :data:`TARGET_LAYERS` names one only for the architectures that have one."""
    name = getattr(model, "name", type(model).__name__)
    if name in TARGET_LAYERS:
        return None
    return (
        f"no Grad-CAM target layer for model {name!r} (Grad-CAM needs a convolutional layer; "
        f"deepgal.explore.cam.TARGET_LAYERS names one for {', '.join(TARGET_LAYERS)})"
    )


def target_layer(model: Net, input_size: int) -> str:
    """The name of the module of ``model`` Grad-CAM attributes to (see the module docstring)."""
    if reason := unsupported(model):
        raise ValueError(reason)
    names = TARGET_LAYERS[model.name]
    sides = output_sides(model, names, input_size)
    return next((n for n in names if sides[n] >= MIN_SIDE), names[-1])


def grad_cam(
    model: Net,
    images: np.ndarray,
    pre: Preprocess,
    device: torch.device,
    targets: np.ndarray | None = None,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Grad-CAM of ``images`` (N, H, W, 3) uint8 for classes ``targets`` (N,) int (default:
    each image's predicted class).

    Returns ``maps`` (N, S, S) float32 in [0, 1] (each divided by its maximum; all zero where
    nothing speaks for the class), ``logits`` (N, C) float32, ``views`` (N, S, S, 3) uint8 (the
    model's input after its preprocessing: what the maps align with) and the layer's name.
    ``model`` is not changed (the maps are computed on a copy without in-place ReLUs, whose
    overwriting would corrupt the gradients Captum reads at the layer).
    """
    try:
        from captum.attr import LayerAttribution, LayerGradCam
    except ImportError as e:
        raise MissingExtraError(
            "Grad-CAM maps need Captum: pip install 'deepgal[explore]' (or pip install captum)"
        ) from e

    net = copy.deepcopy(model).to(device).eval().float()
    for m in net.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    s = pre.input_size
    layer = target_layer(net, s)
    cam = LayerGradCam(net, dict(net.named_modules())[layer])
    maps, logits, views = [], [], []
    for start in range(0, len(images), batch_size):
        xb = torch.as_tensor(np.ascontiguousarray(images[start : start + batch_size]))
        x = prepare_batch(xb.to(device), pre, channels_last=False)  # (B, 3, S, S)
        with torch.no_grad():
            out = net(x).float()
        t = (
            out.argmax(1)
            if targets is None
            # a copy: targets may be a read-only array (a column of a DataFrame, an npz)
            else torch.tensor(targets[start : start + len(x)], device=device, dtype=torch.int64)
        )
        a = cam.attribute(x, target=t, relu_attributions=True)  # (B, 1, h, w)
        a = LayerAttribution.interpolate(a, (s, s), interpolate_mode="bilinear")[:, 0]
        peak = a.flatten(1).amax(1).clamp_min(torch.finfo(a.dtype).tiny)[:, None, None]
        maps.append((a / peak).clamp(0, 1).detach().cpu())
        logits.append(out.cpu())
        views.append(_unnormalise(x, pre).cpu())
    return (
        torch.cat(maps).numpy().astype(np.float32),
        torch.cat(logits).numpy(),
        torch.cat(views).numpy(),
        layer,
    )


def _unnormalise(x: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """(B, 3, S, S) normalised float -> (B, S, S, 3) uint8, the pixels the model saw."""
    mean = torch.tensor(pre.mean, device=x.device)[:, None, None]
    std = torch.tensor(pre.std, device=x.device)[:, None, None]
    px = ((x * std + mean) * 255).round().clamp(0, 255)
    return px.to(torch.uint8).permute(0, 2, 3, 1)
