"""Params profiles (profiles/*.yaml): each validates on params.yaml, its printed -S arguments
round-trip, a broken one fails naming file and key, and the real-GPU recipe's ConvNeXt-Tiny and
ResNet-50 run one real training step on the CPU from a local weights file."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch
import torchvision
import yaml

from deepgal import config, profiles
from deepgal.models import build_model
from deepgal.training import RunSpec, Split, fit
from deepgal.transforms import Preprocess
from deepgal.utils import seed_everything
from tests.conftest import make_h5

REPO = Path(__file__).resolve().parents[1]
NAMES = profiles.available(REPO)


def overlay_onto(params: dict, overlay: dict) -> dict:
    """Recursive merge, written independently of the -S path it checks."""
    out = dict(params)
    for k, v in overlay.items():
        out[k] = overlay_onto(out.get(k) or {}, v) if isinstance(v, dict) and v else v
    return out


def test_the_documented_profiles_exist():
    assert {"real-gpu", "rehearsal"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_profile_validates_and_round_trips(name):
    args = profiles.dvc_args(name, REPO / "params.yaml", REPO)
    assert args[::2] == ["-S"] * (len(args) // 2)
    assert all(a.startswith("++") and " " not in a for a in args[1::2])
    base = config.load_params(REPO / "params.yaml")
    via_s = config.apply_overrides(base, [a[2:] for a in args[1::2]])
    overlay = yaml.safe_load((REPO / "profiles" / f"{name}.yaml").read_text())
    assert via_s == overlay_onto(base, overlay)
    config.validate_all(via_s)


def test_real_gpu_profile_is_the_recipe():
    params = profiles.check("real-gpu", REPO / "params.yaml", REPO)
    assert params["data"]["source"] == "galaxy10_decals" and params["evaluate"]["tta"] is True
    cnx = config.resolve_variant(params, "convnext_tiny")
    assert (cnx.optimizer, cnx.pretrained, cnx.precision, cnx.channels_last) == (
        "adamw",
        "imagenet",
        "bf16",
        True,
    )
    assert 224 <= cnx.input_size <= 256 and 1e-4 <= cnx.lr <= 5e-4
    assert cnx.ema > 0 and cnx.mixup > 0 and cnx.cutmix > 0 and cnx.label_smoothing == 0.1
    assert config.resolve_variant(params, "smallnet").input_size == 32
    assert config.resolve_variant(params, "customnet").input_size == 128
    for v in ("resnet50", "resnet152"):
        r = config.resolve_variant(params, v)
        assert (r.input_size, r.pretrained) == (224, "imagenet")


@pytest.mark.parametrize(
    "body,key",
    [
        ("train:\n  lrr: 0.1\n", "train.lrr"),  # unknown key
        ("train:\n  precision: fp16\n", "train.precision"),  # bad value
        ("variants:\n  resnet50:\n    epochs: 0\n", "variants.resnet50.epochs"),
        ("variants:\n  resnet_50:\n    epochs: 3\n", "variants.resnet_50"),  # typo'd variant
        ("variants:\n  extra:\n    model: resnet5\n", "variants.extra.model"),
        ("data:\n  source: 'a b'\n", "data.source"),  # breaks shell splitting
    ],
)
def test_broken_profile_names_file_and_key(tmp_path, body, key):
    bad = tmp_path / "bad.yaml"
    bad.write_text(body)
    with pytest.raises(profiles.ProfileError) as e:
        profiles.dvc_args(str(bad), REPO / "params.yaml", REPO)
    assert str(bad) in str(e.value) and key in str(e.value), str(e.value)


def test_cli_prints_args_and_fails_cleanly(tmp_path):
    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "deepgal.cli", "profile", *a],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = run("rehearsal")
    assert ok.returncode == 0, ok.stderr
    assert "-S ++data.synthetic.image_size=256" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: -1\n")
    r = run(str(bad))
    assert r.returncode == 1 and f"{bad}: train.epochs" in r.stderr and not r.stdout


@pytest.mark.parametrize(
    "variant,arch",
    [
        ("resnet50", "resnet50"),  # ~13 s alone on 2 cores
        # ~25 s alone, 70 s on the shared 2 cores: ConvNeXt's bf16 LayerNorms are slow on CPU
        pytest.param("convnext_tiny", "convnext_tiny", marks=pytest.mark.slow),
    ],
)
def test_real_recipe_trains_one_step_on_cpu_from_local_weights(tmp_path, variant, arch):
    """The profile's settings (optimizer, lr, EMA, mixup/cutmix, bf16, channels_last) run
    through the library's fit() on a real HDF5 file; only size, batch and epochs shrink, and
    ImageNet weights are replaced by a locally written torchvision state dict."""
    torch.manual_seed(0)
    weights = tmp_path / f"{arch}.pth"
    ref = getattr(torchvision.models, arch)(weights=None).state_dict()
    torch.save(ref, weights)
    params = profiles.check("real-gpu", REPO / "params.yaml", REPO)
    run = config.resolve_variant(params, variant)
    # compile off: Inductor on CPU takes minutes (tests/test_gpu_path.py covers it, slow tier)
    run = dataclasses.replace(
        run,
        input_size=32,
        batch_size=4,
        epochs=1,
        compile=False,
        pretrained=str(weights),
        checkpoint_every=1,
    )
    with h5py.File(make_h5(tmp_path / "g.h5", n_per_class=1, size=40), "r") as f:
        images, labels = (
            torch.from_numpy(f["images"][:]),
            torch.from_numpy(f["ans"][:].astype("int64")),
        )
    seed_everything(0, deterministic=True)
    model = build_model(run.model, 10, run.input_size, run.pretrained)
    first = next(iter(model.body.state_dict().items()))
    assert torch.equal(first[1], ref[first[0]])  # the local weights were loaded
    dtypes = []
    conv = next(m for m in model.body.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype) if m.training else None)
    spec = RunSpec(
        cfg=run,
        preprocess=Preprocess(input_size=32, crop=run.crop),
        ckpt_dir=tmp_path / "ckpt",
        fingerprint="p",
        meta={"variant": variant},
    )
    history = fit(
        model,
        Split(images[:8], labels[:8]),
        Split(images[8:], labels[8:]),
        spec,
        torch.device("cpu"),
    )
    assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]["train/loss"]))
    assert dtypes == [torch.bfloat16] * 2  # two steps of 4, first conv under bf16 autocast
    saved = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert ("train_model" in saved) == (run.ema > 0)  # EMA weights kept apart when on
