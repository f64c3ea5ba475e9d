"""Model registry: every variant is a :class:`Net` with ``features`` (penultimate embedding) and
``head`` (a 10-way linear layer), built by name with :func:`build_model`.

Inputs are float tensors (B, 3, S, S) as made by :func:`deepgal.transforms.prepare_batch`;
outputs are logits (B, num_classes) float. ``Net.features(x)`` is (B, ``feature_dim``) and is
what the ``evaluate`` stage writes out for UMAP/t-SNE/PCA.

Pretrained weights (``pretrained=``):

- ``"none"``: random initialisation;
- ``"imagenet"``: torchvision's ImageNet weights, read from torch.hub's cache
  (``$TORCH_HOME/hub/checkpoints/<file>``) and downloaded there only if reachable;
- anything else: a path to a local ``.pth``/``.pt`` file (a torchvision state dict, or a deepgal
  checkpoint dict holding ``"model"``).

Every file is read with ``torch.load(..., weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import logging
import pickle
import socket
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .errors import DeepgalError

log = logging.getLogger(__name__)


class PretrainedWeightsError(DeepgalError, RuntimeError):
    """Weights that cannot be found, read or matched; the message names the file and the fix."""


class Net(nn.Module):
    """``body`` maps (B, 3, S, S) float -> (B, feature_dim) float; ``head`` maps that to logits.

    Keeping the embedding and the classifier as two attributes lets the ``evaluate`` stage
    (embeddings) and fine-tuning (new head, same body) use every variant the same way.
    """

    def __init__(self, name: str, body: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.name = name
        self.feature_dim = feature_dim
        self.body = body
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float -> (B, feature_dim) penultimate embedding."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float -> (B, num_classes) logits."""
        return self.head(self.features(x))


def _smallnet(input_size: int) -> tuple[nn.Module, int]:
    # The report's baseline: two conv layers on a 32x32 centre crop.
    side = input_size // 4
    if side < 1:
        raise ValueError(f"smallnet needs input_size >= 4 (two 2x poolings), got {input_size}")
    body = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    return body, 64 * side * side


def _customnet(input_size: int) -> tuple[nn.Module, int]:
    side = input_size // 16  # four 2x poolings (floor, as MaxPool2d does)
    if side < 1:
        raise ValueError(f"customnet needs input_size >= 16 (four 2x poolings), got {input_size}")
    layers: list[nn.Module] = []
    channels = 3
    for out in (64, 128, 256, 512):
        layers += [
            nn.Conv2d(channels, out, 3, padding=1, bias=False),  # BN makes a bias redundant
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        channels = out
    # The FC input follows from input_size (512*8*8 at 128 px, 512*4*4 at 64 px). Dropout sits
    # inside the embedding so that forward = head(features(x)) keeps VGG's dropout before the
    # classifier; in eval mode it is the identity and features are the plain 4096-d activation.
    layers += [
        nn.Flatten(),
        nn.Linear(channels * side * side, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
    ]
    return nn.Sequential(*layers), 4096


# torchvision is imported only where a torchvision architecture is built: its import pulls in
# torch._dynamo (~2.5 s a process), which smallnet/customnet stages never need.
def _torchvision_resnet(arch: str) -> Callable[[int], tuple[nn.Module, int]]:
    def make(input_size: int) -> tuple[nn.Module, int]:
        import torchvision

        model = getattr(torchvision.models, arch)(weights=None)
        dim = model.fc.in_features
        model.fc = nn.Identity()  # body ends at the global pool: (B, 2048) for resnet50/152
        return model, dim

    return make


def _resnet18_s2d(input_size: int) -> tuple[nn.Module, int]:
    # resnet18 for twice the pixels at nearly the same cost: the stem first folds each 2x2
    # block of pixels into channels (space-to-depth, as TResNet's stem; torch's PixelUnshuffle),
    # so a 128 px input reaches layer1 on the same 16x16 grid as a 64 px one, but the stem's
    # learned filters see the full-resolution pixels instead of a bilinear resize's average.
    import torchvision

    if input_size % 2:
        raise ValueError(
            f"resnet18_s2d needs an even input_size (2x2 space-to-depth), got {input_size}"
        )
    model = torchvision.models.resnet18(weights=None)
    model.conv1 = nn.Sequential(
        nn.PixelUnshuffle(2), nn.Conv2d(12, 64, 7, stride=2, padding=3, bias=False)
    )
    dim = model.fc.in_features
    model.fc = nn.Identity()
    return model, dim


def _resnet18_d4(input_size: int) -> tuple[nn.Module, int]:
    # ResNet-18 with D4 group convolutions (deepgal.d4): turning or mirroring the galaxy leaves
    # the features unchanged, exactly, if every stride-2 step sees an odd side. Width 6 fields of
    # 8 channels costs what resnet18 at 64 px does at 65 px (measured; 8 would match resnet18's
    # channels at ~1.6x the time).
    from .d4 import D4ResNet18

    if input_size % 32 != 1:
        near = 32 * max(1, round((input_size - 1) / 32)) + 1
        raise ValueError(
            f"resnet18_d4 needs input_size = 32k + 1 (33, 65, 97, ...) so that its five stride-2 "
            f"steps all see an odd side and its features stay invariant; got {input_size}: "
            f"use {near}"
        )
    body = D4ResNet18(width=6)
    return body, body.feature_dim


def _convnext_tiny(input_size: int) -> tuple[nn.Module, int]:
    import torchvision

    model = torchvision.models.convnext_tiny(weights=None)
    dim = model.classifier[2].in_features
    model.classifier[2] = nn.Identity()  # keep the pool + LayerNorm2d + flatten: (B, 768)
    return model, dim


# name -> (constructor(input_size) -> (body, feature_dim), torchvision weights enum member
# named as in ``torchvision.models``, torchvision head prefix). The head prefix is the part of
# a torchvision state dict that the 10-way head replaces, so ImageNet state dicts load into
# ``body`` once it is dropped.
_REGISTRY: dict[str, tuple[Callable[[int], tuple[nn.Module, int]], str | None, str | None]] = {
    "smallnet": (_smallnet, None, None),
    "customnet": (_customnet, None, None),
    "resnet18": (_torchvision_resnet("resnet18"), "ResNet18_Weights.IMAGENET1K_V1", "fc."),
    "resnet18_s2d": (_resnet18_s2d, None, None),
    "resnet18_d4": (_resnet18_d4, None, None),
    "resnet50": (_torchvision_resnet("resnet50"), "ResNet50_Weights.IMAGENET1K_V2", "fc."),
    "resnet152": (_torchvision_resnet("resnet152"), "ResNet152_Weights.IMAGENET1K_V2", "fc."),
    "convnext_tiny": (_convnext_tiny, "ConvNeXt_Tiny_Weights.IMAGENET1K_V1", "classifier.2."),
}
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)
# Seconds a connect/read may stall while fetching ImageNet weights: offline, fail at once.
FETCH_TIMEOUT_S = 10.0


def build_model(
    name: str, num_classes: int = 10, input_size: int = 64, pretrained: str | Path = "none"
) -> Net:
    """The variant ``name`` for (B, 3, input_size, input_size) float input, ``num_classes`` logits.

    ``input_size`` sizes the fully connected layers of smallnet/customnet; the torchvision
    variants pool globally and accept any size >= 32. ``pretrained`` is ``"none"``,
    ``"imagenet"`` or a path to a local weights file (see the module docstring). Raises
    ``ValueError`` for an unknown name or option and :class:`PretrainedWeightsError` for weights
    that cannot be fetched, read or matched.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    if not isinstance(pretrained, (str, Path)):
        raise ValueError(
            f"pretrained must be 'none', 'imagenet' or a weights file path, got {pretrained!r}"
        )
    make, weights, head_prefix = _REGISTRY[name]
    body, dim = make(input_size)
    net = Net(name, body, dim, num_classes)
    if pretrained == "none":
        return net
    if pretrained == "imagenet":
        if weights is None:
            raise ValueError(
                f"{name} has no ImageNet weights (it is trained from scratch); "
                f"use pretrained: none, or one of "
                f"{', '.join(n for n, r in _REGISTRY.items() if r[1] is not None)}"
            )
        path = _fetch_imagenet(name, _weights_enum(weights))
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise PretrainedWeightsError(
                f"pretrained: {pretrained!r} is neither 'none', 'imagenet' nor an existing "
                f"weights file (looked for {path.resolve()})"
            )
    _load_weights(net, path, head_prefix)
    return net


def _weights_enum(qualname: str):
    """``"ResNet50_Weights.IMAGENET1K_V2"`` -> torchvision's enum member (its url and name)."""
    import torchvision

    enum, member = qualname.split(".")
    return getattr(getattr(torchvision.models, enum), member)


def _fetch_imagenet(name: str, weights) -> Path:
    """The cached ImageNet weights file for ``weights``, downloading it only if reachable."""
    file_name = weights.url.rsplit("/", 1)[-1]
    target = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if target.is_file():
        return target
    previous = socket.getdefaulttimeout()
    # torch.hub's urlopen has no timeout of its own: bound it so an offline machine fails now
    # rather than after the OS's TCP timeout. download_url_to_file writes a temporary file and
    # renames it, so an interrupted download never leaves a truncated file under the final name.
    socket.setdefaulttimeout(FETCH_TIMEOUT_S)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights.url, str(target), progress=False)
    except OSError as e:  # URLError, timeouts, DNS, refused connections, disk: all OSError
        raise PretrainedWeightsError(
            f"ImageNet weights for {name} are not cached and could not be downloaded ({e}).\n"
            f"Expected file: {target}\n"
            f"On a connected machine run\n"
            f'  python -c "import torchvision; torchvision.models.{name}(weights='
            f"'{weights.name}')\"\n"
            f"then copy $TORCH_HOME/hub/checkpoints/{file_name} (default ~/.cache/torch) to "
            f"{target.parent}/ here; or set pretrained: to a local weights file path, "
            f"or to none."
        ) from e
    finally:
        socket.setdefaulttimeout(previous)
    return target


def _load_weights(net: Net, path: Path, head_prefix: str | None) -> None:
    """Load ``path`` into ``net``: a deepgal checkpoint/state dict or a torchvision state dict."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise PretrainedWeightsError(
            f"{path}: refused to load: it holds Python objects other than tensors and plain "
            f"containers, and weights_only=True forbids running them ({e}). Save weights with "
            f"torch.save(model.state_dict(), path)."
        ) from e
    # Garbage bytes reach torch's legacy loader, which fails in many ways; all mean "unreadable".
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        LookupError,
        TypeError,
        AttributeError,
    ) as e:
        raise PretrainedWeightsError(
            f"{path}: not a readable torch weights file ({e}); delete it and fetch or save it again"
        ) from e
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a deepgal checkpoint: weights plus optimizer, epoch, config, ...
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedWeightsError(
            f"{path}: expected a state dict (name -> tensor) or a dict "
            f"with a 'model' state dict, got {type(obj).__name__}"
        )
    if any(k.startswith("body.") for k in obj):
        head = {k[5:]: v for k, v in obj.items() if k.startswith("head.")}
        body = {k[5:]: v for k, v in obj.items() if k.startswith("body.")}
        extra = sorted(k for k in obj if not k.startswith(("body.", "head.")))
        if extra:
            raise PretrainedWeightsError(f"{path}: unexpected keys for {net.name}: {extra[:5]}")
        _load_strict(net.body, body, path, net.name, prefix="body.")
        # A head for another number of classes is dropped: the body is what transfers.
        own = net.head.state_dict()
        if head and all(k in head and head[k].shape == v.shape for k, v in own.items()):
            net.head.load_state_dict(head)
        elif head:
            log.warning(
                "%s: head %s does not fit %s's head %s; keeping a new head",
                path,
                tuple(head["weight"].shape),
                net.name,
                tuple(net.head.weight.shape),
            )
        return
    if head_prefix is None:
        raise PretrainedWeightsError(
            f"{path}: keys {sorted(obj)[:3]} are not a deepgal {net.name} state dict "
            f"(keys starting 'body.'/'head.'), the only kind {net.name} can load"
        )
    # A torchvision state dict: its 1000-class ImageNet head is replaced by ours.
    _load_strict(
        net.body, {k: v for k, v in obj.items() if not k.startswith(head_prefix)}, path, net.name
    )


def _load_strict(
    module: nn.Module, state: dict[str, torch.Tensor], path: Path, name: str, prefix: str = ""
) -> None:
    """``module.load_state_dict(state)``, or an error listing keys as the file spells them."""
    own = module.state_dict()
    missing = [prefix + k for k in own if k not in state]
    unexpected = [prefix + k for k in state if k not in own]
    wrong = [
        f"{prefix}{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        raise PretrainedWeightsError(
            f"{path}: does not match {name}: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}, {len(wrong)} shape "
            f"mismatches {wrong[:3]}; was it saved from another variant or input_size?"
        )
    module.load_state_dict(state)
