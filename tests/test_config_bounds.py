"""Params bounds at their edges, and the exact error a user reads.

Every bound below is written by hand from params.yaml's comments and the documented ranges
([a, b] closed, (a, b) open), independently of deepgal/config: the edge value itself must load,
the nearest value past it must fail with ``<dotted key>: <value> <why>`` and nothing else.
Deterministic (no Hypothesis draws), so an off-by-one at an edge is always seen.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from deepgal import config
from deepgal.config import ConfigError

from .conftest import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
HEX64 = "0123456789abcdef" * 4
MIXED64 = ("0123456789abcdefABCDEF" * 3)[:64]  # every hex digit in both cases

# key: (values that must load, values that must fail, the reason the error gives)
BOUNDS = {
    "data.synthetic.image_size": ([16], [15], "must be >= 16 px"),
    "data.synthetic.per_class": ([1], [0], "must be >= 1"),
    "data.url": (
        ["http://h/f.h5", "https://h/f.h5"],
        ["ftp://h/f.h5", "h/f.h5"],
        "must be an http(s) URL",
    ),
    "data.sha256": (
        [HEX64, HEX64.upper(), MIXED64],
        [HEX64[:63], HEX64 + "0", "g" + HEX64[1:]],
        "must be 64 hex characters",
    ),
    "data.timeout_s": ([1e-9], [0.0, -1.0], "must be > 0 seconds"),
    "data.retries": ([0], [-1], "must be >= 0"),
    "data.local_path": ([None, "g.h5"], ["", " "], "must be a file path or null"),
    "data.path": (["labelled"], ["", "  "], "must be a file or folder path"),
    "data.path_sha256": (
        [None, HEX64, MIXED64],
        [HEX64[:63], HEX64 + "a", "z" * 64],
        "must be 64 hex characters or null",
    ),
    "data.image_size": ([None, 8], [7], "must be >= 8 px or null"),
    "split.group_arcsec": (
        [0.0, 3600.0],
        [-1e-9, 3600.001],
        "must be in [0, 3600] arcseconds (0 groups only identical coordinates)",
    ),
    "train.input_size": ([8, 1024], [7, 1025], "must be in [8, 1024] px"),
    "train.crop": ([1e-9, 1.0], [0.0, 1.0001], "must be a fraction in (0, 1]"),
    "train.pretrained": (
        ["none", "w.pth"],
        ["", " "],
        "must be none, imagenet or a weights file path",
    ),
    "train.lr": ([1e-9, 9.999], [0.0, 10.0], "must be in (0, 10)"),
    "train.momentum": ([0.0, 0.999], [-1e-9, 1.0], "must be in [0, 1)"),
    "train.weight_decay": ([0.0], [-1e-9], "must be >= 0"),
    "train.warmup_epochs": ([0], [-1], "must be >= 0"),
    "train.epochs": ([1], [0], "must be >= 1"),
    "train.batch_size": ([1], [0], "must be >= 1"),
    "train.epoch_images": ([None, 1], [0], "must be null (the whole train split) or >= 1 images"),
    "train.label_smoothing": ([0.0, 0.999], [-1e-9, 1.0], "must be in [0, 1)"),
    "train.checkpoint_every": ([1], [0], "must be >= 1"),
    "train.ema": ([0.0, 0.9999], [-1e-9, 1.0], "must be in [0, 1) (0 = off; 0.999 is typical)"),
    "train.mixup": ([0.0, 10.0], [-1e-9, 10.001], "must be in [0, 10] (0 = off; 0.2 is light)"),
    "train.cutmix": ([0.0, 10.0], [-1e-9, 10.001], "must be in [0, 10] (0 = off; 1.0 is usual)"),
    "train.nproc": ([1, 1024], [0, 1025], "must be in [1, 1024]"),
    "train.augment.jitter": ([0.0, 1.0], [-1e-9, 1.0001], "must be in [0, 1]"),
    "train.augment.scale": ([0.0, 0.999], [-1e-9, 1.0], "must be in [0, 1)"),
    "train.augment.translate": ([0.0, 0.499], [-1e-9, 0.5], "must be in [0, 0.5)"),
    "select.max_gap": ([0.0, 1.0], [-1e-9, 1.0001], "must be in [0, 1]"),
    "select.max_val_loss_rise": ([0.0], [-1e-9], "must be >= 0"),
    "evaluate.batch_size": ([1], [0], "must be >= 1"),
    "evaluate.map_train": ([None, 1], [0], "must be null (every train image) or >= 1 images"),
    "reduce.pca_dims": ([None, 2], [1], "must be >= 2 or null"),
    "reduce.exact_max": (
        [None, 0],
        [-1],
        "must be null (always exact) or >= 0 points (0: always approximate)",
    ),
    "reduce.fit_max": ([None, 5], [4], "must be null or >= 5 points"),
    "reduce.methods.tsne.perplexity": ([1.0, 100.0], [0.999, 100.001], "must be in [1, 100]"),
    "reduce.methods.umap.n_neighbors": ([2, 200], [1, 201], "must be in [2, 200]"),
    "reduce.methods.umap.min_dist": ([0.0, 1.0], [-1e-9, 1.0001], "must be in [0, 1]"),
    "variants.smallnet.lr_scale": ([1e-9, 100.0], [0.0, 100.001], "must be in (0, 100]"),
    "variants.smallnet.model": (["resnet50"], ["", " "], "must be a model name"),
}
CASES = [(k, v, True) for k, (ok, _, _) in BOUNDS.items() for v in ok] + [
    (k, v, False) for k, (_, bad, _) in BOUNDS.items() for v in bad
]


def patched(params: dict, **dotted) -> dict:
    """A deep copy of ``params`` with each ``a__b__c=value`` set at ``a.b.c``."""
    params = copy.deepcopy(params)
    for key, value in dotted.items():
        *path, last = key.split("__")
        node = params
        for k in path:
            node = node.setdefault(k, {})
        node[last] = value
    return params


def loaded(params: dict, key: str):
    section, *path = key.split(".")
    if section == "variants":
        obj = config.load_variant(params, path[0])
        path = path[1:]
    else:
        obj = config.load_section(section, params)
    for k in path:
        obj = getattr(obj, k)
    return obj


@pytest.mark.parametrize("key, value, ok", CASES, ids=[f"{k}={v!r}" for k, v, _ in CASES])
def test_bound_edges(key, value, ok):
    params = patched(PARAMS, **{key.replace(".", "__"): value})
    if ok:
        config.validate_all(params)
        assert loaded(params, key) == value
        return
    with pytest.raises(ConfigError) as e:
        config.validate_all(params)
    assert str(e.value) == f"{key}: {value!r} {BOUNDS[key][2]}"
    assert e.value.key == key


@pytest.mark.parametrize(
    "fractions, ok",
    [
        ((0.9, 0.1, 0.0), True),
        ((1e-9, 1 - 2e-9, 1e-9), True),
        ((0.8, 0.1, 0.1 + 5e-7), True),
        ((0.8, 0.1, 0.1 + 1e-3), False),
        ((0.8, 0.1, 0.099), False),
    ],
)
def test_split_fractions_must_sum_to_one(fractions, ok):
    t, v, s = fractions
    params = patched(PARAMS, split__train=t, split__val=v, split__test=s)
    if ok:
        assert config.load_section("split", params).test == s
        return
    with pytest.raises(ConfigError) as e:
        config.load_section("split", params)
    assert (
        str(e.value) == f"split.train: {t!r} train + val + test must sum to 1 (got {t + v + s:g})"
    )


@pytest.mark.parametrize(
    "fractions, key, why",
    [
        ((0.0, 0.5, 0.5), "train", "must be > 0: nothing to train on"),
        ((0.9, 0.0, 0.1), "val", "must be > 0: checkpoint selection needs a validation split"),
        ((1.0001, 0.1, -0.1001), "train", "must be a fraction in [0, 1]"),
        ((0.9, 0.2, -0.1), "test", "must be a fraction in [0, 1]"),
        ((0.5, 1.5, -1.0), "val", "must be a fraction in [0, 1]"),
        ((1.0, 0.0, 0.0), "val", "must be > 0: checkpoint selection needs a validation split"),
    ],
)
def test_split_fraction_bounds(fractions, key, why):
    t, v, s = fractions
    with pytest.raises(ConfigError) as e:
        config.load_section("split", patched(PARAMS, split__train=t, split__val=v, split__test=s))
    assert str(e.value) == f"split.{key}: {dict(train=t, val=v, test=s)[key]!r} {why}"


@pytest.mark.parametrize(
    "train_lr, scale, ok",
    [
        (0.099, 100.0, True),
        (0.1, 100.0, False),
        (0.5, 20.0, False),
        (0.5, 19.9, True),
        (1e-200, 1e-200, False),
    ],
)  # underflows to 0
def test_scaled_lr_must_stay_below_ten(train_lr, scale, ok):
    params = patched(PARAMS, train__lr=train_lr, variants__smallnet__lr_scale=scale)
    if ok:
        assert config.resolve_variant(params, "smallnet").lr == pytest.approx(train_lr * scale)
        return
    with pytest.raises(ConfigError) as e:
        config.validate_all(params)
    lr = train_lr * scale
    assert str(e.value) == (
        f"variants.smallnet.lr_scale: train.lr {train_lr:g} x {scale:g} = {lr:g} is outside (0, 10)"
    )
    assert e.value.key == "variants.smallnet.lr_scale"
