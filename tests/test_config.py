"""Params validation: one source for defaults, errors naming the full dotted key, variants."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import typing
from typing import Literal

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deepgal import config
from deepgal.config import ConfigError

from .conftest import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def patched(params: dict, dotted: str, value=None, delete: bool = False) -> dict:
    """A deep copy of ``params`` with ``dotted`` (``train.augment.jitter``) set or deleted."""
    params = copy.deepcopy(params)
    *path, last = dotted.split(".")
    node = params
    for k in path:
        if node.get(k) is None:
            node[k] = {}
        node = node[k]
        if not isinstance(node, dict):
            raise AssertionError(f"{dotted}: {k} is not a mapping in params")
    if delete:
        del node[last]
    else:
        node[last] = value
    return params


def leaves(cls, prefix: str) -> dict[str, typing.Any]:
    """{dotted key: annotation} of every scalar key under dataclass ``cls``."""
    out = {}
    for name, tp in typing.get_type_hints(cls).items():
        inner = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        if dataclasses.is_dataclass(inner[0]):
            out.update(leaves(inner[0], f"{prefix}.{name}"))
        else:
            out[f"{prefix}.{name}"] = tp
    return out


LEAVES = {k: tp for s, cls in config.SECTIONS.items() for k, tp in leaves(cls, s).items()}
SPLIT_FRACTIONS = {"split.train", "split.val", "split.test"}  # valid only together

# Valid values per key, written from params.yaml's comments, independently of the code.
f = st.floats
i = st.integers
VALID = {
    "base.seed": i(0, 2**32 - 1),
    "base.deterministic": st.booleans(),
    "base.device": st.sampled_from(["auto", "cpu", "cuda"]),
    "data.source": st.sampled_from(["synthetic", "galaxy10_decals", "labelled"]),
    "data.path": st.text("ab/._~", min_size=1).filter(str.strip),
    "data.path_sha256": st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
    "data.image_size": st.none() | i(8, 4096),
    "data.url": st.text("abc./:-_0123", min_size=1).map(lambda s: "https://" + s),
    "data.sha256": st.text("0123456789abcdefABCDEF", min_size=64, max_size=64),
    "data.timeout_s": f(1e-3, 1e4),
    "data.retries": i(0, 100),
    "data.local_path": st.none() | st.text("ab/._~", min_size=1).filter(str.strip),
    "data.synthetic.image_size": i(16, 1024),
    "data.synthetic.per_class": i(1, 10**5),
    "data.synthetic.balance": st.sampled_from(["equal", "real"]),
    "split.group_arcsec": f(0, 3600),
    "train.input_size": i(8, 1024),
    "train.crop": f(1e-3, 1),
    "train.pretrained": st.sampled_from(["none", "imagenet", "weights/r50.pth"]),
    "train.optimizer": st.sampled_from(["sgd", "adamw"]),
    "train.lr": f(1e-7, 9.99),
    "train.momentum": f(0, 0.999),
    "train.weight_decay": f(0, 10),
    "train.schedule": st.sampled_from(["cosine", "constant", "step"]),
    "train.warmup_epochs": i(0, 100),
    "train.epochs": i(1, 1000),
    "train.batch_size": i(1, 8192),
    "train.label_smoothing": f(0, 0.999),
    "train.checkpoint_every": i(1, 100),
    "train.compile": st.booleans(),
    "train.ema": f(0, 0.9999),
    "train.mixup": f(0, 10),
    "train.cutmix": f(0, 10),
    "train.precision": st.sampled_from(["auto", "fp32", "bf16"]),
    "train.channels_last": st.booleans(),
    "train.nproc": i(1, 1024),
    "train.stream": st.sampled_from(["auto", "always", "never"]),
    "train.stream_buffer_mb": i(16, 10**6),
    "train.epoch_images": st.none() | i(1, 10**6),
    "train.augment.rotate": st.booleans(),
    "train.augment.flip": st.booleans(),
    "train.augment.jitter": f(0, 1),
    "train.augment.scale": f(0, 0.999),
    "train.augment.translate": f(0, 0.499),
    "select.max_gap": f(0, 1),
    "select.max_val_loss_rise": f(0, 100),
    "select.register": st.booleans(),
    "select.log_model": st.sampled_from(["learned", "always"]),
    "evaluate.batch_size": i(1, 8192),
    "evaluate.tta": st.booleans(),
    "evaluate.map_train": st.none() | i(1, 10**6),
    "evaluate.outlier_k": i(1, 10**6),
    "evaluate.outlier_ref": st.none() | i(1, 10**6),
    "reduce.pca_dims": st.none() | i(2, 4096),
    "reduce.exact_max": st.none() | i(0, 10**7),
    "reduce.fit_max": st.none() | i(5, 10**7),
    "reduce.methods.tsne.perplexity": f(1, 100),
    "reduce.methods.umap.n_neighbors": i(2, 200),
    "reduce.methods.umap.min_dist": f(0, 1),
    "reduce.methods.umap.metric": st.sampled_from(["euclidean", "cosine", "manhattan"]),
    "cv.folds": st.just(0) | i(2, 100),
    "cv.seed": i(0, 2**32 - 1),
    "cv.tta": st.booleans(),
    "cv.variants": st.none()
    | st.lists(st.sampled_from(sorted(PARAMS["variants"])), min_size=1, max_size=3),
    "finetune.data": st.text("ab/._~", min_size=1).filter(str.strip),
    "finetune.variants": st.none() | st.sampled_from([["smallnet"], ["smallnet", "customnet"]]),
    "finetune.folds": i(2, 50),
    "finetune.epochs": i(1, 10000),
    "finetune.lr": f(1e-7, 9.99),
    "finetune.optimizer": st.sampled_from(["sgd", "adamw"]),
    "finetune.weight_decay": f(0, 10),
    "finetune.batch_size": i(1, 8192),
    "finetune.warmup_epochs": i(0, 9),
    "finetune.label_smoothing": f(0, 0.999),
    "finetune.freeze": st.sampled_from(["none", "backbone", "all_but_last"]),
    "finetune.unfreeze_after": st.just(0),  # > 0 needs a freeze mode: test_finetune checks it
    "finetune.unfreeze_lr_scale": f(1e-7, 10),
    "finetune.ema": f(0, 0.9999),
    "finetune.mixup": f(0, 10),
    "finetune.augment.rotate": st.booleans(),
    "finetune.augment.flip": st.booleans(),
    "finetune.augment.jitter": f(0, 1),
    "finetune.augment.scale": f(0, 0.999),
    "finetune.augment.translate": f(0, 0.499),
}
# Values of the right type that the bounds forbid.
neg, inf = f(max_value=-1e-9), st.just(math.inf)
INVALID = {
    "data.url": st.text("abc.:/", max_size=10),
    "data.sha256": st.text("0123456789abcdefgz"),
    "data.timeout_s": f(max_value=0),
    "data.retries": i(max_value=-1),
    "data.local_path": st.sampled_from(["", "  "]),
    "data.path": st.sampled_from(["", "  "]),
    "data.path_sha256": st.text("0123456789g", max_size=63),
    "data.image_size": i(max_value=7),
    "data.synthetic.image_size": i(max_value=15),
    "data.synthetic.per_class": i(max_value=0),
    "split.group_arcsec": neg | f(3600.001, 1e9) | inf,
    "train.input_size": i(max_value=7) | i(min_value=1025),
    "train.crop": f(max_value=0) | f(min_value=1.0001),
    "train.pretrained": st.sampled_from(["", " "]),
    "train.lr": f(max_value=0) | f(min_value=10),
    "train.momentum": neg | f(min_value=1),
    "train.weight_decay": neg,
    "train.warmup_epochs": i(max_value=-1),
    "train.epochs": i(max_value=0),
    "train.batch_size": i(max_value=0),
    "train.label_smoothing": neg | f(min_value=1),
    "train.checkpoint_every": i(max_value=0),
    "train.ema": neg | f(min_value=1),
    "train.mixup": neg | f(min_value=10.001),
    "train.cutmix": neg | f(min_value=10.001),
    "train.nproc": i(max_value=0) | i(min_value=1025),
    "train.stream_buffer_mb": i(max_value=15),
    "train.epoch_images": i(max_value=0),
    "train.augment.jitter": neg | f(min_value=1.0001),
    "train.augment.scale": neg | f(min_value=1),
    "train.augment.translate": neg | f(min_value=0.5),
    "select.max_gap": neg | f(min_value=1.0001),
    "select.max_val_loss_rise": neg,
    "evaluate.batch_size": i(max_value=0),
    "evaluate.map_train": i(max_value=0),
    "cv.folds": i(max_value=-1) | st.just(1),
    "cv.variants": st.just([])
    | st.lists(st.text("abz_", min_size=1), min_size=1).filter(
        lambda names: not set(names) <= set(PARAMS["variants"])
    ),  # empty, or not a variant
    "evaluate.outlier_k": i(max_value=0),
    "evaluate.outlier_ref": i(max_value=0),
    "reduce.pca_dims": i(max_value=1),
    "reduce.exact_max": i(max_value=-1),
    "reduce.fit_max": i(max_value=4),
    "reduce.methods.tsne.perplexity": f(max_value=0.999) | f(min_value=100.001),
    "reduce.methods.umap.n_neighbors": i(max_value=1) | i(min_value=201),
    "reduce.methods.umap.min_dist": neg | f(min_value=1.0001),
    "finetune.data": st.sampled_from(["", "  "]),
    "finetune.variants": st.just([]) | st.just(["nope"]),
    "finetune.folds": i(max_value=1) | i(min_value=51),
    "finetune.epochs": i(max_value=0),
    "finetune.lr": f(max_value=0) | f(min_value=10),
    "finetune.weight_decay": neg,
    "finetune.batch_size": i(max_value=0),
    "finetune.warmup_epochs": i(max_value=-1) | i(min_value=10001),  # >= any valid epochs
    "finetune.label_smoothing": neg | f(min_value=1),
    "finetune.unfreeze_after": i(max_value=-1) | i(min_value=60),  # params' epochs: 60
    "finetune.unfreeze_lr_scale": neg | st.just(0.0) | f(min_value=10.001),
    "finetune.ema": neg | f(min_value=1),
    "finetune.mixup": neg | f(min_value=10.001),
    "finetune.augment.jitter": neg | f(min_value=1.0001),
    "finetune.augment.scale": neg | f(min_value=1),
    "finetune.augment.translate": neg | f(min_value=0.5),
}


def type_ok(value, tp) -> bool:
    """Whether YAML ``value`` has the type ``tp`` asks for (bool is not a number)."""
    if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType):
        return any(type_ok(value, a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is Literal:
        return any(type(value) is type(c) and value == c for c in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return isinstance(value, list) and all(type_ok(v, typing.get_args(tp)[0]) for v in value)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if tp is str:
        return isinstance(value, str)
    raise AssertionError(f"no oracle for {tp}")


def test_repo_params_are_valid():
    config.validate_all(PARAMS)
    assert config.load_section("train", PARAMS).augment.rotate is True
    assert config.load_variant(PARAMS, "smallnet").model == "smallnet"


def test_tables_cover_every_key():
    """A new key must get valid values here (and invalid ones when it has bounds)."""
    assert set(VALID) | SPLIT_FRACTIONS == set(LEAVES)
    assert set(INVALID) <= set(LEAVES)


def test_no_pipeline_defaults_in_dataclasses():
    """Only None ("inherit" / "not listed") may be a dataclass default."""
    for cls in [
        *config.SECTIONS.values(),
        config.AugmentCfg,
        config.SyntheticCfg,
        config.VariantCfg,
        config.RunCfg,
        *config.REDUCE_METHODS.values(),
    ]:
        for fld in dataclasses.fields(cls):
            assert fld.default in (dataclasses.MISSING, None), (cls.__name__, fld.name)
            assert fld.default_factory is dataclasses.MISSING, (cls.__name__, fld.name)


@pytest.mark.parametrize("key", sorted(LEAVES) + ["reduce.methods", "train.augment"])
def test_missing_key_is_named(key):
    # Keys that may be null (data.local_path, reduce.pca_dims) are still required: null is
    # how params.yaml says "none", so the file shows every knob.
    with pytest.raises(
        ConfigError, match="^" + re.escape(f"{key}: missing; add it to params.yaml")
    ):
        config.validate_all(patched(PARAMS, key, delete=True))


@pytest.mark.parametrize(
    "section, patch, match",
    [
        ("train", {"lrr": 0.1}, r"^train\.lrr: unknown key; valid keys are input_size, crop"),
        ("train", {"lr": "fast"}, r"^train\.lr: expected float, got str 'fast'"),
        ("train", {"lr": -1}, r"^train\.lr: -1.0 must be in \(0, 10\)"),
        ("train", {"epochs": 2.5}, r"^train\.epochs: expected int, got float"),
        ("train", {"epochs": True}, r"^train\.epochs: expected int, got bool"),
        ("train", {"optimizer": "lbfgs"}, r"^train\.optimizer: 'lbfgs' is not one of sgd, adamw"),
        ("train", {"augment.jitter": 3}, r"^train\.augment\.jitter: 3.0 must be in \[0, 1\]"),
        ("train", {"augment.scale": 1.0}, r"^train\.augment\.scale: 1.0 must be in \[0, 1\)"),
        ("train", {"augment.spin": 1}, r"^train\.augment\.spin: unknown key"),
        ("split", {"train": 0.5}, r"^split\.train: 0.5 train \+ val \+ test must sum to 1"),
        (
            "data",
            {"source": "sdss"},
            r"^data\.source: 'sdss' is not one of synthetic, galaxy10_decals",
        ),
        ("data", {"sha256": "abc"}, r"^data\.sha256: 'abc' must be 64 hex characters"),
        ("data", {"synthetic.image_size": 4}, r"^data\.synthetic\.image_size: 4 must be >= 16"),
        (
            "reduce",
            {"methods.isomap": {}},
            r"^reduce\.methods\.isomap: unknown key; valid keys are "
            r"pca, tsne, umap",
        ),
        ("reduce", {"methods.umap.spread": 1}, r"^reduce\.methods\.umap\.spread: unknown key"),
        (
            "reduce",
            {"methods.tsne.perplexity": "high"},
            r"^reduce\.methods\.tsne\.perplexity: expected float",
        ),
        ("reduce", {"methods": {}}, r"^reduce\.methods: .* list at least one of pca, tsne, umap"),
        ("cv", {"fold": 5}, r"^cv\.fold: unknown key; valid keys are folds, seed, tta, variants"),
        ("cv", {"folds": 1}, r"^cv\.folds: 1 must be 0 \(off\) or >= 2 folds"),
        (
            "cv",
            {"variants": ["resnet18"]},
            r"^cv\.variants: 'resnet18' is not a variant; the "
            r"variants are smallnet, customnet",
        ),
        ("cv", {"variants": "smallnet"}, r"^cv\.variants: expected a list, got str"),
    ],
)
def test_errors_name_the_key(section, patch, match):
    ((key, value),) = patch.items()
    with pytest.raises(ConfigError, match=match):
        config.validate_all(patched(PARAMS, f"{section}.{key}", value))


def test_unknown_section_and_variant():
    with pytest.raises(ConfigError, match=r"^trian: unknown section"):
        config.validate_all({**PARAMS, "trian": {}})
    with pytest.raises(ConfigError, match=r"^variants.vgg: no such variant; defined: smallnet"):
        config.load_variant(PARAMS, "vgg")
    bad = patched(PARAMS, "variants.smallnet.crop", 0)
    with pytest.raises(ConfigError, match=r"^variants\.smallnet\.crop: 0.0 must be a fraction"):
        config.validate_all(bad)


def test_reduce_methods_are_typed_and_a_mapping():
    methods = config.load_section("reduce", PARAMS).methods
    assert isinstance(methods.umap, config.UmapCfg) and methods.umap.metric == "euclidean"
    assert dict(methods) == {
        "pca": {},
        "tsne": {"perplexity": 30.0},
        "umap": {"n_neighbors": 15, "min_dist": 0.1, "metric": "euclidean"},
    }
    only_pca = patched(PARAMS, "reduce.methods", {"pca": {}})
    methods = config.load_section("reduce", only_pca).methods
    assert list(methods) == ["pca"] and methods.umap is None and "umap" not in methods


def test_flatten_for_tracking():
    flat = config.to_flat_dict({"train": config.load_section("train", PARAMS)})
    assert flat["train.augment.jitter"] == PARAMS["train"]["augment"]["jitter"]


def test_bad_yaml_names_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="params.yaml: invalid YAML"):
        config.load_params(p)


# -- property-based: valid values pass, invalid values fail naming the FULL dotted key ---------

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def loaded(params: dict, key: str):
    """The value ``key`` has after loading ``params`` through the config classes."""
    section, *path = key.split(".")
    obj = config.load_section(section, params)
    for k in path:
        obj = getattr(obj, k)
    return obj


@settings(max_examples=300, deadline=None)
@given(data=st.data(), key=st.sampled_from(sorted(VALID)))
def test_valid_values_pass(data, key):
    value = data.draw(VALID[key], label=key)
    params = patched(PARAMS, key, value)
    config.validate_all(params)  # must not raise
    assert loaded(params, key) == value


@settings(max_examples=300, deadline=None)
@given(data=st.data(), key=st.sampled_from(sorted(INVALID)))
def test_out_of_bounds_values_fail_naming_the_key(data, key):
    value = data.draw(INVALID[key], label=key)
    with pytest.raises(ConfigError) as e:
        config.validate_all(patched(PARAMS, key, value))
    assert str(e.value).startswith(f"{key}: "), str(e.value)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(sorted(LEAVES)), value=junk)
def test_wrong_types_fail_naming_the_key(key, value):
    assume(not type_ok(value, LEAVES[key]))
    with pytest.raises(ConfigError) as e:
        config.validate_all(patched(PARAMS, key, value))
    assert str(e.value).startswith(f"{key}: "), str(e.value)


@settings(max_examples=100, deadline=None)
@given(train=st.floats(0.01, 0.98), val_share=st.floats(0.01, 1.0))
def test_split_fractions_summing_to_one_pass(train, val_share):
    val = (1 - train) * val_share
    params = patched(
        patched(patched(PARAMS, "split.train", train), "split.val", val),
        "split.test",
        1 - train - val,
    )
    if val > 0:
        assert config.load_section("split", params).train == train


@settings(max_examples=100, deadline=None)
@given(
    section=st.sampled_from(sorted(config.SECTIONS)),
    key=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True),
)
def test_random_unknown_keys_are_named(section, key):
    assume(key not in config.SECTIONS[section].__dataclass_fields__)
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: unknown key"):
        config.validate_all(patched(PARAMS, f"{section}.{key}", 1))


# -- variants: safe names, overrides, the resolved run config -----------------------------------

CONTRACT_FIELDS = (
    "variant model input_size crop pretrained epochs batch_size lr seed deterministic device "
    "optimizer momentum weight_decay schedule warmup_epochs label_smoothing checkpoint_every "
    "compile augment ema mixup cutmix precision channels_last nproc epoch_images stream "
    "stream_buffer_mb"
).split()


@pytest.mark.parametrize(
    "name", ["../evil", "x/y", "a b", "", ".", "..", "-rf", ".hidden", "x\\y", "ü", 7]
)
def test_unsafe_variant_names_are_refused(name):
    params = copy.deepcopy(PARAMS)
    params["variants"] = {name: {"model": "smallnet"}}
    with pytest.raises(
        ConfigError,
        match=r"^variants\..*: invalid variant name; .* letters, "
        r"digits",
    ):
        config.validate_all(params)
    with pytest.raises(ConfigError, match="invalid variant name"):
        config.resolve_variant(params, name)


@pytest.mark.parametrize("name", ["resnet50", "r50_bf16", "v1.2", "A-b"])
def test_safe_variant_names_pass(name):
    params = copy.deepcopy(PARAMS)
    params["variants"] = {name: {"model": "smallnet"}}
    config.validate_all(params)
    assert config.resolve_variant(params, name).variant == name


def test_resolve_variant_applies_overrides_and_inherits():
    params = patched(
        PARAMS,
        "variants.resnet50",
        {
            "input_size": 48,
            "epochs": 3,
            "lr_scale": 0.5,
            "optimizer": "adamw",
            "ema": 0.999,
            "mixup": 0.2,
            "cutmix": 1.0,
            "nproc": 2,
            "weight_decay": 0.05,
            "label_smoothing": 0.1,
            "batch_size": 32,
        },
    )
    run = config.resolve_variant(params, "resnet50")
    assert sorted(f.name for f in dataclasses.fields(run)) == sorted(CONTRACT_FIELDS)
    t = PARAMS["train"]
    assert (
        run.epochs,
        run.batch_size,
        run.lr,
        run.optimizer,
        run.ema,
        run.mixup,
        run.cutmix,
        run.nproc,
        run.weight_decay,
        run.label_smoothing,
    ) == (3, 32, t["lr"] * 0.5, "adamw", 0.999, 0.2, 1.0, 2, 0.05, 0.1)
    assert (run.crop, run.pretrained, run.momentum, run.precision) == (
        t["crop"],
        t["pretrained"],
        t["momentum"],
        t["precision"],
    )
    assert (run.seed, run.device, run.model) == (PARAMS["base"]["seed"], "auto", "resnet50")
    small = config.resolve_variant(params, "smallnet")  # sets nothing but size and crop
    assert (small.epochs, small.lr, small.input_size, small.crop) == (t["epochs"], t["lr"], 32, 0.5)
    flat = run.flat()
    assert flat["epochs"] == 3 and flat["lr"] == t["lr"] * 0.5
    assert flat["augment.jitter"] == t["augment"]["jitter"] and "augment" not in flat
    assert set(flat) == {k for k in CONTRACT_FIELDS if k != "augment"} | {
        f"augment.{k}" for k in t["augment"]
    }


def test_null_override_inherits_and_model_renames():
    params = patched(PARAMS, "variants.big", {"model": "resnet50", "epochs": None})
    run = config.resolve_variant(params, "big")
    assert run.model == "resnet50" and run.epochs == PARAMS["train"]["epochs"]


OVERRIDES = sorted(set(config.OVERRIDABLE))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), key=st.sampled_from(OVERRIDES))
def test_variant_overrides_use_train_bounds(data, key):
    good = data.draw(VALID[f"train.{key}"], label="valid")
    run = config.resolve_variant(patched(PARAMS, f"variants.smallnet.{key}", good), "smallnet")
    assert getattr(run, key) == good
    if f"train.{key}" in INVALID:
        bad = data.draw(INVALID[f"train.{key}"], label="invalid")
        with pytest.raises(ConfigError) as e:
            config.validate_all(patched(PARAMS, f"variants.smallnet.{key}", bad))
        assert str(e.value).startswith(f"variants.smallnet.{key}: "), str(e.value)


def test_variant_unknown_key_and_bad_lr_scale():
    with pytest.raises(ConfigError, match=r"^variants\.smallnet\.momentum: unknown key"):
        config.validate_all(patched(PARAMS, "variants.smallnet.momentum", 0.5))
    with pytest.raises(ConfigError, match=r"^variants\.smallnet\.lr_scale: 0.0 must be"):
        config.validate_all(patched(PARAMS, "variants.smallnet.lr_scale", 0))
    with pytest.raises(
        ConfigError,
        match=r"^variants\.smallnet\.lr_scale: train\.lr .* = "
        r".* outside \(0, 10\)",
    ):
        config.validate_all(
            patched(patched(PARAMS, "train.lr", 0.5), "variants.smallnet.lr_scale", 100)
        )
    with pytest.raises(ConfigError, match=r"^variants: expected a mapping"):
        config.validate_all({**PARAMS, "variants": ["smallnet"]})


def test_apply_overrides_reads_values_as_dvc_does():
    out = config.apply_overrides(
        PARAMS,
        [
            "data.source=galaxy10_decals",
            "train.epochs=3",
            "data.local_path=~/g.h5",
            "reduce.pca_dims=null",
        ],
    )
    assert PARAMS["data"]["source"] == "synthetic"  # the input is not modified
    assert (
        out["data"]["source"],
        out["train"]["epochs"],
        out["data"]["local_path"],
        out["reduce"]["pca_dims"],
    ) == ("galaxy10_decals", 3, "~/g.h5", None)
    config.validate_all(out)
    for bad in ["data.source", "=1", "data..source=1"]:
        with pytest.raises(ConfigError, match="expected KEY=VALUE"):
            config.apply_overrides(PARAMS, [bad])
