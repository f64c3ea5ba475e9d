"""Params validation: unknown keys, wrong types and impossible values name the dotted key."""
from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from deepgal import config
from deepgal.config import ConfigError

from .conftest import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def test_repo_params_are_valid():
    config.validate_all(PARAMS)
    train = config.load_section("train", PARAMS)
    assert train.augment.rotate is True
    assert config.load_variant("smallnet", PARAMS).model == "smallnet"


@pytest.mark.parametrize("section, patch, match", [
    ("train", {"lrr": 0.1}, r"^train\.lrr: unknown key; valid keys are optimizer, lr"),
    ("train", {"lr": "fast"}, r"^train\.lr: expected float, got str 'fast'"),
    ("train", {"lr": -1}, r"^train\.lr: -1.0 must be in \(0, 10\)"),
    ("train", {"epochs": 2.5}, r"^train\.epochs: expected int, got float"),
    ("train", {"epochs": True}, r"^train\.epochs: expected int, got bool"),
    ("train", {"optimizer": "lbfgs"}, r"^train\.optimizer: 'lbfgs' is not one of sgd, adamw"),
    ("train", {"augment": {"jitter": 3}}, r"^train\.augment\.jitter: 3.0 must be in \[0, 1\]"),
    ("train", {"augment": {"spin": 1}}, r"^train\.augment\.spin: unknown key"),
    ("split", {"train": 0.5}, r"^split\.train: 0.5 train \+ val \+ test must sum to 1"),
    ("data", {"source": "sdss"}, r"^data\.source: 'sdss' is not one of synthetic, galaxy10_decals"),
    ("data", {"sha256": "abc"}, r"^data\.sha256: 'abc' must be 64 hex characters"),
    ("data", {"synthetic": {"image_size": 4}}, r"^data\.synthetic\.image_size: 4 must be >= 16"),
    ("reduce", {"methods": {"isomap": {}}}, r"^reduce\.methods: .* must be among umap, tsne, pca"),
])
def test_errors_name_the_key(section, patch, match):
    params = copy.deepcopy(PARAMS)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(params[section].get(k), dict):
            params[section][k] = {**params[section][k], **v}
        else:
            params[section][k] = v
    with pytest.raises(ConfigError, match=match):
        config.validate_all(params)


def test_unknown_section_and_variant():
    with pytest.raises(ConfigError, match=r"^trian: unknown section"):
        config.validate_all({**PARAMS, "trian": {}})
    with pytest.raises(ConfigError, match=r"^variants.vgg: no such variant; defined: smallnet"):
        config.load_variant("vgg", PARAMS)
    bad = copy.deepcopy(PARAMS)
    bad["variants"]["smallnet"]["crop"] = 0
    with pytest.raises(ConfigError, match=r"^variants\.smallnet\.crop: 0.0 must be a fraction"):
        config.validate_all(bad)


def test_flatten_for_tracking():
    flat = config.to_flat_dict({"train": config.load_section("train", PARAMS)})
    assert flat["train.augment.jitter"] == PARAMS["train"]["augment"]["jitter"]


def test_bad_yaml_names_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="params.yaml: invalid YAML"):
        config.load_params(p)


# -- property-based: any wrong input is a ConfigError naming a key, never a deep traceback ----

junk = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4),
                                                                      st.integers(), max_size=2))
SECTION_KEYS = [(s, k) for s in config.SECTIONS for k in
                config.SECTIONS[s].__dataclass_fields__]


@settings(max_examples=300, deadline=None)
@given(target=st.sampled_from(SECTION_KEYS), value=junk)
def test_random_values_fail_cleanly_or_pass(target, value):
    section, key = target
    params = copy.deepcopy(PARAMS)
    params[section] = {**(params.get(section) or {}), key: value}
    try:
        config.validate_all(params)
    except ConfigError as e:
        assert str(e).startswith(f"{section}.{key}") or str(e).startswith(f"{section}."), str(e)


@settings(max_examples=100, deadline=None)
@given(section=st.sampled_from(sorted(config.SECTIONS)),
       key=st.text(min_size=1, max_size=12).filter(lambda k: k.isidentifier()))
def test_random_unknown_keys_are_named(section, key):
    if key in config.SECTIONS[section].__dataclass_fields__:
        return
    params = copy.deepcopy(PARAMS)
    params[section] = {**(params.get(section) or {}), key: 1}
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: unknown key"):
        config.validate_all(params)
