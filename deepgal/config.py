"""Typed, validated parameters: ``params.yaml`` sections become frozen dataclasses.

One loader (:func:`load_section` / :func:`from_dict`) checks every key against the dataclass:
an unknown key, a wrong type or an impossible value raises :class:`ConfigError` naming the
dotted key (``train.lr``), the value and what is allowed, before any work starts.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A bad parameter; the message starts with its dotted key."""


# ---- sections -------------------------------------------------------------------------------

@dataclass(frozen=True)
class BaseCfg:
    seed: int = 42
    deterministic: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass(frozen=True)
class SyntheticCfg:
    image_size: int = 64
    per_class: int = 100
    balance: Literal["equal", "real"] = "equal"

    def check(self):
        yield "image_size", self.image_size >= 16, "must be >= 16 px"
        yield "per_class", self.per_class >= 1, "must be >= 1"


@dataclass(frozen=True)
class DataCfg:
    source: Literal["synthetic", "galaxy10_decals"] = "synthetic"
    url: str = "https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5"
    sha256: str = "19aefc477c41bb7f77ff07599a6b82a038dc042f889a111b0d4d98bb755c1571"
    timeout_s: float = 20.0
    retries: int = 5
    synthetic: SyntheticCfg = field(default_factory=SyntheticCfg)

    def check(self):
        yield "url", self.url.startswith(("http://", "https://")), "must be an http(s) URL"
        yield "sha256", (len(self.sha256) == 64
                         and all(c in "0123456789abcdefABCDEF" for c in self.sha256)), \
            "must be 64 hex characters"
        yield "timeout_s", self.timeout_s > 0, "must be > 0 seconds"
        yield "retries", self.retries >= 0, "must be >= 0"


@dataclass(frozen=True)
class SplitCfg:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1

    def check(self):
        for name in ("train", "val", "test"):
            v = getattr(self, name)
            yield name, 0.0 <= v <= 1.0, "must be a fraction in [0, 1]"
        yield "train", self.train > 0, "must be > 0: nothing to train on"
        yield "val", self.val > 0, "must be > 0: checkpoint selection needs a validation split"
        total = self.train + self.val + self.test
        yield "train", abs(total - 1.0) < 1e-6, \
            f"train + val + test must sum to 1 (got {total:g})"


@dataclass(frozen=True)
class AugmentCfg:
    rotate: bool = True
    flip: bool = True
    jitter: float = 0.1
    scale: float = 0.0
    translate: float = 0.0

    def check(self):
        yield "jitter", 0.0 <= self.jitter <= 1.0, "must be in [0, 1]"
        yield "scale", 0.0 <= self.scale < 1.0, "must be in [0, 1)"
        yield "translate", 0.0 <= self.translate < 0.5, "must be in [0, 0.5)"


@dataclass(frozen=True)
class TrainCfg:
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "constant", "step"] = "cosine"
    warmup_epochs: int = 1
    epochs: int = 10
    batch_size: int = 64
    label_smoothing: float = 0.0
    checkpoint_every: int = 2
    compile: bool = False
    augment: AugmentCfg = field(default_factory=AugmentCfg)

    def check(self):
        yield "lr", 0 < self.lr < 10, "must be in (0, 10)"
        yield "momentum", 0 <= self.momentum < 1, "must be in [0, 1)"
        yield "weight_decay", self.weight_decay >= 0, "must be >= 0"
        yield "warmup_epochs", self.warmup_epochs >= 0, "must be >= 0"
        yield "epochs", self.epochs >= 1, "must be >= 1"
        yield "batch_size", self.batch_size >= 1, "must be >= 1"
        yield "label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)"
        yield "checkpoint_every", self.checkpoint_every >= 1, "must be >= 1"


@dataclass(frozen=True)
class VariantCfg:
    """Per-variant settings; ``epochs``/``batch_size``/``lr`` of None inherit from ``train``."""
    model: str = ""
    input_size: int = 64
    crop: float = 1.0
    pretrained: str = "none"
    epochs: int | None = None
    batch_size: int | None = None
    lr_scale: float = 1.0

    def check(self):
        yield "input_size", 8 <= self.input_size <= 1024, "must be in [8, 1024] px"
        yield "crop", 0 < self.crop <= 1, "must be a fraction in (0, 1]"
        yield "epochs", self.epochs is None or self.epochs >= 1, "must be >= 1 or null"
        yield "batch_size", self.batch_size is None or self.batch_size >= 1, "must be >= 1 or null"
        yield "lr_scale", self.lr_scale > 0, "must be > 0"


@dataclass(frozen=True)
class SelectCfg:
    max_gap: float = 0.15
    max_val_loss_rise: float = 0.10
    register: bool = False

    def check(self):
        yield "max_gap", 0 <= self.max_gap <= 1, "must be in [0, 1]"
        yield "max_val_loss_rise", self.max_val_loss_rise >= 0, "must be >= 0"


@dataclass(frozen=True)
class FeaturesCfg:
    batch_size: int = 256

    def check(self):
        yield "batch_size", self.batch_size >= 1, "must be >= 1"


@dataclass(frozen=True)
class ReduceCfg:
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    pca_dims: int | None = 50

    def check(self):
        yield "methods", set(self.methods) <= {"umap", "tsne", "pca"}, \
            "methods must be among umap, tsne, pca"
        yield "pca_dims", self.pca_dims is None or self.pca_dims >= 2, "must be >= 2 or null"


SECTIONS: dict[str, type] = {
    "base": BaseCfg, "data": DataCfg, "split": SplitCfg, "train": TrainCfg,
    "select": SelectCfg, "features": FeaturesCfg, "reduce": ReduceCfg,
}


# ---- loader ---------------------------------------------------------------------------------

def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float, ...)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        _, vtp = typing.get_args(tp)
        return {str(k): _convert(v, vtp, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (itp,) = typing.get_args(tp)
        return [_convert(v, itp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    # bool is an int in Python; a YAML `true` where a number belongs is a mistake, not 1.
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        if ok and value != value:  # NaN
            raise ConfigError(f"{key}: NaN is not a valid number")
    elif tp is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"{key}: unsupported annotation {tp}")
    if not ok:
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls, data: Any, prefix: str):
    """Build dataclass ``cls`` from a mapping; errors name ``prefix.key``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: expected a mapping of keys, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for k in data:
        if k not in names:
            raise ConfigError(f"{prefix}.{k}: unknown key; valid keys are {', '.join(names)}")
    obj = cls(**{k: _convert(v, hints[k], f"{prefix}.{k}") for k, v in data.items()})
    for name, ok, why in getattr(obj, "check", lambda: ())():
        if not ok:
            raise ConfigError(f"{prefix}.{name}: {getattr(obj, name)!r} {why}")
    return obj


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read ``params.yaml``; a YAML syntax error names the file and line."""
    path = Path(path)
    try:
        with open(path) as f:
            params = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run from the repository root") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return params


def load_section(name: str, params: dict | None = None, path: str | Path = "params.yaml"):
    """The validated dataclass of section ``name`` (e.g. ``load_section("train")``)."""
    if name not in SECTIONS:
        raise ConfigError(f"{name}: unknown section; valid sections are {', '.join(SECTIONS)}")
    params = load_params(path) if params is None else params
    return from_dict(SECTIONS[name], params.get(name), name)


def load_variant(name: str, params: dict | None = None,
                 path: str | Path = "params.yaml") -> VariantCfg:
    """The validated settings of variant ``name`` under ``variants:``."""
    params = load_params(path) if params is None else params
    variants = params.get("variants") or {}
    if name not in variants:
        raise ConfigError(f"variants.{name}: no such variant; defined: {', '.join(variants)}")
    cfg = from_dict(VariantCfg, variants[name], f"variants.{name}")
    return dataclasses.replace(cfg, model=cfg.model or name)


def validate_all(params: dict) -> None:
    """Validate every known section and variant at once (used by tests and `deepgal check`)."""
    known = set(SECTIONS) | {"variants"}
    for key in params:
        if key not in known:
            raise ConfigError(f"{key}: unknown section; valid sections are {', '.join(sorted(known))}")
    for name in SECTIONS:
        load_section(name, params)
    for name in params.get("variants") or {}:
        load_variant(name, params)


def to_flat_dict(obj, prefix: str = "") -> dict[str, Any]:
    """Flatten a (nested) dataclass to ``{"train.augment.jitter": 0.1, ...}`` for tracking."""
    out: dict[str, Any] = {}
    items = dataclasses.asdict(obj).items() if dataclasses.is_dataclass(obj) else obj.items()
    for k, v in items:
        key = f"{prefix}{k}"
        if dataclasses.is_dataclass(v):
            v = dataclasses.asdict(v)
        if isinstance(v, dict):
            out.update(to_flat_dict(v, key + "."))
        else:
            out[key] = v
    return out
