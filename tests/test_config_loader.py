"""The generic config loader on small dataclasses written here, plus the params-file, override
and flattening helpers: expected values written by hand in each test."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Literal

import pytest
import yaml

from deepgal import config
from deepgal.config import ConfigError
from deepgal.config.loader import Checked, from_dict, required
from deepgal.errors import DeepgalError

from .conftest import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def error_of(call, *args, **kwargs) -> ConfigError:
    """The ConfigError ``call(*args, **kwargs)`` raises (the test fails if it raises none)."""
    with pytest.raises(ConfigError) as e:
        call(*args, **kwargs)
    return e.value


@dataclasses.dataclass(frozen=True)
class Inner(Checked):
    n: int

    def check(self):
        yield "n", self.n != 13, "must not be 13"


@dataclasses.dataclass(frozen=True)
class Demo(Checked):
    either: int | str
    level: Literal[1, "one"]
    counts: dict[str, int]
    anything: Any
    inner: Inner
    ratio: float
    mode: dict[str, Any] | int
    maybe: float | None = None


GOOD = {
    "either": 3,
    "level": 1,
    "counts": {"a": 1, 2: 5},
    "anything": [1, "x"],
    "inner": {"n": 4},
    "ratio": 2,
    "mode": 7,
}


def test_demo_loads_with_conversions():
    d = from_dict(Demo, GOOD, "demo")
    assert d == Demo(3, 1, {"a": 1, "2": 5}, [1, "x"], Inner(4), 2.0, 7, None)
    assert type(d.ratio) is float and list(d.counts) == ["a", "2"]  # YAML int -> float, str keys
    d = from_dict(Demo, {**GOOD, "either": "x", "level": "one", "mode": {1: [2]}}, "demo")
    assert (d.either, d.level, d.mode) == ("x", "one", {"1": [2]})
    assert required(Demo) == ["either", "level", "counts", "anything", "inner", "ratio", "mode"]


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"either": 2.5}, "demo.either: 2.5 is not a valid int | str"),
        ({"level": True}, "demo.level: True is not one of 1, one"),
        ({"level": 1.0}, "demo.level: 1.0 is not one of 1, one"),
        ({"counts": [1]}, "demo.counts: expected a mapping, got list [1]"),
        ({"counts": {"a": "x"}}, "demo.counts.a: expected int, got str 'x'"),
        ({"inner": {"n": 13}}, "demo.inner.n: 13 must not be 13"),
        ({"inner": {"m": 1}}, "demo.inner.m: unknown key; valid keys are n"),
        ({"inner": 5}, "demo.inner: expected a mapping of keys, got int 5"),
        ({"ratio": float("nan")}, "demo.ratio: NaN is not a valid number"),
        ({"ratio": True}, "demo.ratio: expected float, got bool True"),
        ({"maybe": "x"}, "demo.maybe: expected float, got str 'x'"),
        ({"mode": "c"}, "demo.mode: 'c' is not a valid dict[str, Any] | int"),
    ],
)
def test_demo_errors_name_the_dotted_key(patch, message):
    e = error_of(from_dict, Demo, {**GOOD, **patch}, "demo")
    assert str(e) == message
    assert e.key == message.split(": ", 1)[0]


def test_missing_and_non_mapping_sections():
    e = error_of(from_dict, Demo, None, "demo")  # null section: every required key is missing
    assert str(e).startswith("demo.either: missing; add it to params.yaml")
    assert e.key == "demo.either"
    with pytest.raises(ConfigError, match=r"^demo: expected a mapping of keys, got list \[1\]$"):
        from_dict(Demo, [1], "demo")


def test_unsupported_annotation_is_a_programming_error():
    @dataclasses.dataclass(frozen=True)
    class Odd(Checked):
        b: bytes

    with pytest.raises(TypeError, match="odd.b: unsupported annotation"):
        from_dict(Odd, {"b": b"x"}, "odd")


def test_direct_construction_is_checked_with_the_class_name():
    e = error_of(config.AugmentCfg, rotate=True, flip=True, jitter=2.0, scale=0.0, translate=0.0)
    assert str(e) == "AugmentCfg.jitter: 2.0 must be in [0, 1]" and e.key == "jitter"
    assert isinstance(e, ValueError) and isinstance(e, DeepgalError)


def test_load_params_errors(tmp_path, monkeypatch):
    e = error_of(config.load_params, tmp_path / "nope.yaml")
    assert str(e) == f"{tmp_path / 'nope.yaml'}: not found; run from the repository root"
    assert e.key == ""  # about the file, not one key
    p = tmp_path / "params.yaml"
    p.write_text("- a\n- b\n")
    e = error_of(config.load_params, p)
    assert str(e) == f"{p}: expected a mapping of sections at the top level" and e.key == ""
    p.write_text("")
    assert config.load_params(p) == {}
    p.write_text(yaml.safe_dump(PARAMS))
    assert config.load_params(p) == PARAMS
    monkeypatch.chdir(tmp_path)  # the default is params.yaml in the working directory
    assert config.load_params() == PARAMS
    assert config.load_section("split").val == PARAMS["split"]["val"]
    assert config.load_variant(config.load_params(), "customnet").epochs == 8
    assert config.load_section("split", path=p).train == PARAMS["split"]["train"]
    assert config.load_variant(config.load_params(p), "smallnet").input_size == 32


def test_load_section_refuses_an_unknown_section():
    e = error_of(config.load_section, "trian", PARAMS)
    assert str(e) == (
        "trian: unknown section; valid sections are base, data, split, "
        "train, select, evaluate, reduce, cv, finetune"
    )
    assert e.key == "trian"


def test_validate_all_lists_the_known_sections_and_checks_every_variant():
    e = error_of(config.validate_all, {**PARAMS, "trian": {}})
    assert str(e) == (
        "trian: unknown section; valid sections are base, cv, data, evaluate, "
        "finetune, reduce, select, split, train, variants"
    )
    assert e.key == "trian"
    bad = copy.deepcopy(PARAMS)
    bad["variants"]["convnext_tiny"]["epochs"] = 0  # the last variant, not only the first
    with pytest.raises(ConfigError, match=r"^variants\.convnext_tiny\.epochs: 0 must be >= 1$"):
        config.validate_all(bad)
    config.validate_all({k: v for k, v in PARAMS.items() if k != "variants"})  # none is fine


def test_load_variant_fills_every_field():
    v = config.load_variant(PARAMS, "resnet50")
    t = PARAMS["train"]
    assert (v.model, v.lr_scale, v.epochs, v.input_size) == ("resnet50", 1.0, 1, 32)
    assert (v.batch_size, v.optimizer, v.crop, v.epoch_images) == (
        t["batch_size"],
        t["optimizer"],
        t["crop"],
        t["epoch_images"],
    )
    params = copy.deepcopy(PARAMS)
    params["variants"]["resnet50"].update(model="resnet152", lr_scale=0.25)
    v = config.load_variant(params, "resnet50")
    assert (v.model, v.lr_scale) == ("resnet152", 0.25)
    run = config.resolve_variant(params, "resnet50")
    assert run.lr == pytest.approx(t["lr"] * 0.25) and run.model == "resnet152"
    assert (run.seed, run.deterministic, run.device) == (42, True, "auto")
    assert (run.schedule, run.warmup_epochs, run.checkpoint_every) == (
        t["schedule"],
        t["warmup_epochs"],
        t["checkpoint_every"],
    )


def test_variants_section_shapes():
    e = error_of(config.load_variant, {**PARAMS, "variants": ["smallnet"]}, "smallnet")
    assert str(e) == "variants: expected a mapping of name -> settings, got list"
    assert e.key == "variants"
    e = error_of(config.load_variant, {**PARAMS, "variants": None}, "smallnet")
    assert str(e) == "variants.smallnet: no such variant; defined: "
    e = error_of(config.load_variant, PARAMS, "vgg")
    assert str(e) == (
        "variants.vgg: no such variant; defined: smallnet, customnet, "
        "resnet50, resnet152, convnext_tiny"
    )
    assert e.key == "variants.vgg"


def test_resolving_a_variant_names_bad_train_and_base_keys():
    # Stages resolve one variant without validate_all first: the error still names the key.
    bad_train = {**PARAMS, "train": {**PARAMS["train"], "lr": 0.0}}
    assert str(error_of(config.resolve_variant, bad_train, "smallnet")) == (
        "train.lr: 0.0 must be in (0, 10)"
    )
    bad_base = {**PARAMS, "base": {**PARAMS["base"], "seed": "x"}}
    assert str(error_of(config.resolve_variant, bad_base, "smallnet")) == (
        "base.seed: expected int, got str 'x'"
    )


def test_variant_override_error_names_the_variant_key():
    params = copy.deepcopy(PARAMS)
    params["variants"]["smallnet"]["batch_size"] = 0
    e = error_of(config.resolve_variant, params, "smallnet")
    assert str(e) == "variants.smallnet.batch_size: 0 must be >= 1"
    assert e.key == "variants.smallnet.batch_size"
    e = error_of(config.check_variant_name, "a/b")
    assert e.key == "variants.a/b" and "invalid variant name" in str(e)


def test_apply_overrides_builds_missing_levels_and_refuses_bad_values():
    out = config.apply_overrides({"a": 1, "b": {"c": 2}}, ["a.x.y=3", "b.d=[1, 2]", "new.k=on"])
    assert out == {"a": {"x": {"y": 3}}, "b": {"c": 2, "d": [1, 2]}, "new": {"k": True}}
    assert config.apply_overrides({}, ["k=a=b"]) == {"k": "a=b"}  # split at the first '='
    e = error_of(config.apply_overrides, {}, ["train.lr=[1"])
    assert str(e).startswith("train.lr: cannot read value '[1': ")
    assert e.key == "train.lr"
    for bad in ["x.=1", ".x=1"]:
        assert str(error_of(config.apply_overrides, {}, [bad])) == (
            f"{bad!r}: expected KEY=VALUE with a dotted key, e.g. data.source=galaxy10_decals"
        )


def test_to_flat_dict_by_hand():
    reduce = config.load_section("reduce", PARAMS)
    assert config.to_flat_dict(reduce) == {
        "methods.pca": {},
        "methods.tsne.perplexity": 30.0,
        "methods.umap.n_neighbors": 15,
        "methods.umap.min_dist": 0.1,
        "methods.umap.metric": "euclidean",
        "pca_dims": 50,
        "exact_max": 32000,
        "fit_max": 50000,
    }
    assert config.to_flat_dict({"a": {"b": {"c": 1}, "d": []}, "e": {}}, "p.") == {
        "p.a.b.c": 1,
        "p.a.d": [],
        "p.e": {},
    }


def test_methods_mapping_by_hand():
    m = config.MethodsCfg(tsne=config.TsneCfg(5.0))
    assert (len(m), list(m), m["tsne"], "pca" in m) == (1, ["tsne"], {"perplexity": 5.0}, False)
    with pytest.raises(KeyError) as e:
        m["pca"]
    assert e.value.args == ("pca",)
    e = error_of(
        config.ReduceCfg, methods=config.MethodsCfg(), pca_dims=None, exact_max=None, fit_max=None
    )
    assert str(e) == (
        "ReduceCfg.methods: MethodsCfg(pca=None, tsne=None, umap=None) "
        "list at least one of pca, tsne, umap"
    )
