"""Model registry: shapes for every variant, errors, and each way of loading weights."""

import contextlib
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision

from deepgal.models import MODEL_NAMES, Net, PretrainedWeightsError, build_model
from tests.malicious import OpensMarker

# (variant, input size, feature_dim): each model's typical size; customnet also at 128 to show
# its FC is sized from input_size. The big torchvision nets are the slow part of this file.
SIZES = [
    ("smallnet", 32, 64 * 8 * 8),
    ("customnet", 64, 4096),
    ("customnet", 128, 4096),
    ("resnet18", 64, 512),
    ("resnet18_s2d", 128, 512),
    ("resnet18_d4", 65, 48),
    ("resnet50", 64, 2048),
    pytest.param("resnet152", 64, 2048, marks=pytest.mark.slow),
    ("convnext_tiny", 64, 768),
]


def test_sizes_cover_the_registry():
    covered = {p.values[0] if hasattr(p, "values") else p[0] for p in SIZES}
    assert covered == set(MODEL_NAMES)


@pytest.mark.parametrize("name,size,dim", SIZES)
def test_output_and_feature_shapes(name, size, dim):
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, input_size=size).eval()
    assert isinstance(model, Net) and model.name == name and model.feature_dim == dim
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
    assert logits.shape == (2, 10) and logits.dtype == torch.float32
    assert feats.shape == (2, dim)
    assert model.head.in_features == dim and model.head.out_features == 10
    torch.testing.assert_close(model.head(feats), logits)
    if name == "customnet":  # four 2x poolings of 512 channels: 512*4*4 at 64, 512*8*8 at 128
        assert model.body[-3].in_features == 512 * (size // 16) ** 2


def _layer1_side(model, size: int) -> int:
    sides = []
    hook = model.body.layer1.register_forward_hook(lambda _m, _i, out: sides.append(out.shape[-1]))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    hook.remove()
    return sides[0]


def test_space_to_depth_stem_sees_every_pixel_on_resnet18s_grid():
    # The point of resnet18_s2d: twice the input side reaches layer1 on the grid resnet18 has
    # at half that side, and no input pixel is dropped on the way (each 2x2 block becomes 4
    # channels; a stride or pool first would ignore or average some).
    s2d = build_model("resnet18_s2d", input_size=128)
    assert _layer1_side(s2d, 128) == _layer1_side(build_model("resnet18", input_size=64), 64)
    stem = s2d.body.conv1
    x = torch.zeros(1, 3, 128, 128)
    for y0, x0 in [(0, 0), (0, 1), (1, 0), (1, 1), (63, 64)]:
        poke = x.clone()
        poke[0, 1, y0, x0] = 1.0
        with torch.no_grad():
            assert stem(poke).abs().sum() > 0, f"pixel ({y0}, {x0}) never reaches the stem"
    with pytest.raises(ValueError, match="even input_size"):
        build_model("resnet18_s2d", input_size=127)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet51'.*smallnet.*resnet50"):
        build_model("resnet51")


def test_too_small_input_is_refused():
    with pytest.raises(ValueError, match="customnet needs input_size >= 16"):
        build_model("customnet", input_size=8)


def test_local_state_dict_round_trip(tmp_path):
    src = build_model("smallnet", input_size=32)
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    dst = build_model("smallnet", input_size=32, pretrained=str(path))
    # Keys, shapes, dtypes and bits: a zip over the values would hide a missing key.
    torch.testing.assert_close(dst.state_dict(), src.state_dict(), rtol=0, atol=0)


def test_deepgal_checkpoint_loads_head_only_when_shapes_match(tmp_path):
    src = build_model("customnet", num_classes=10, input_size=32)
    path = tmp_path / "epoch_003.pt"
    torch.save({"model": src.state_dict(), "epoch": 3, "preprocess": {"input_size": 32}}, path)
    same = build_model("customnet", num_classes=10, input_size=32, pretrained=str(path))
    for k, v in src.state_dict().items():
        assert torch.equal(v, same.state_dict()[k]), k
    # A 5-class model takes the body and keeps its own freshly initialised head.
    other = build_model("customnet", num_classes=5, input_size=32, pretrained=str(path))
    assert torch.equal(other.body[0].weight, src.body[0].weight)
    assert other.head.out_features == 5


def test_torchvision_state_dict_drops_imagenet_head(tmp_path):
    tv = torchvision.models.resnet18(weights=None)
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    net = build_model("resnet18", pretrained=str(path))
    assert torch.equal(net.body.conv1.weight, tv.conv1.weight)
    assert net.head.out_features == 10


def test_mismatched_weights_name_file_and_keys(tmp_path):
    path = tmp_path / "small.pth"
    torch.save(build_model("smallnet", input_size=32).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match=r"small\.pth.*missing keys.*body\.") as e:
        build_model("resnet18", pretrained=str(path))
    assert "resnet18" in str(e.value)
    # customnet's FC belongs to the body, so weights for another input size cannot fit.
    path = tmp_path / "custom32.pth"
    torch.save(build_model("customnet", input_size=32).state_dict(), path)
    with pytest.raises(
        PretrainedWeightsError,
        match=r"custom32\.pth.*shape mismatches.*"
        r"body\.17\.weight \(4096, 2048\)",
    ):
        build_model("customnet", input_size=64, pretrained=str(path))


def test_missing_file_or_typo(tmp_path):
    with pytest.raises(PretrainedWeightsError, match=r"'imagnet'.*neither 'none', 'imagenet'"):
        build_model("resnet18", pretrained="imagnet")
    with pytest.raises(PretrainedWeightsError, match="nope.pth"):
        build_model("smallnet", pretrained=str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="got None"):
        build_model("smallnet", pretrained=None)


def test_imagenet_for_scratch_variant_is_refused():
    with pytest.raises(ValueError, match="customnet has no ImageNet weights"):
        build_model("customnet", pretrained="imagenet")


def test_imagenet_from_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    tv = torchvision.models.resnet50(weights=None)
    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url
    cached = tmp_path / "hub" / "checkpoints" / Path(url).name
    cached.parent.mkdir(parents=True)
    torch.save(tv.state_dict(), cached)
    net = build_model("resnet50", pretrained="imagenet")
    assert torch.equal(net.body.layer4[2].conv3.weight, tv.layer4[2].conv3.weight)


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A 127.0.0.1 port the OS assigned, held bound but not listening for the whole block:
    nothing else can take it, and a connection to it is refused at once (RST)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_refused_port_refuses():
    """The control for the test below: connecting to the held port is refused, not timed out."""
    with refused_port() as port, socket.socket() as c:
        c.settimeout(10)
        with pytest.raises(ConnectionRefusedError):
            c.connect(("127.0.0.1", port))


def test_imagenet_offline_fails_with_instructions(tmp_path, monkeypatch):
    """Offline, simulated for real: every HTTP(S) request goes through a proxy on a refused
    127.0.0.1 port, so the test never reaches the weights host (even on a connected runner)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    # urllib builds its global opener (and reads the proxy variables) at the first urlopen and
    # keeps it: without this, every later urlopen in the session would go to the refused proxy.
    monkeypatch.setattr(urllib.request, "_opener", None)
    with refused_port() as port:
        for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
            monkeypatch.setenv(var, f"http://127.0.0.1:{port}")
        with pytest.raises(PretrainedWeightsError) as e:
            build_model("convnext_tiny", pretrained="imagenet")
    msg = str(e.value)
    expected = tmp_path / "hub" / "checkpoints" / "convnext_tiny-983f1562.pth"
    assert str(expected) in msg
    assert "torchvision.models.convnext_tiny(weights='IMAGENET1K_V1')" in msg
    assert "pretrained:" in msg
    # It was our refused proxy that answered: urllib's error wraps the refused connection.
    cause = e.value.__cause__
    assert isinstance(cause, urllib.error.URLError), repr(cause)
    assert isinstance(cause.reason, ConnectionRefusedError), repr(cause.reason)
    assert not expected.exists()


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": OpensMarker(marker)}, path)
    with pytest.raises(PretrainedWeightsError, match=r"evil\.pth.*refused"):
        build_model("smallnet", input_size=32, pretrained=str(path))
    assert not marker.exists()


def test_corrupt_file_is_reported(tmp_path):
    path = tmp_path / "trunc.pth"
    torch.save(build_model("smallnet", input_size=32).state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(PretrainedWeightsError, match=r"trunc\.pth.*not a readable"):
        build_model("smallnet", input_size=32, pretrained=str(path))
