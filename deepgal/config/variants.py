"""Variants: per-variant overrides of ``train`` and the one resolved config a variant runs with.

``variants.<name>`` may set ``model`` (the registry name; absent = the variant's own name),
``lr_scale`` (``lr = train.lr * lr_scale``; absent = train.lr unchanged) and any key of
:data:`~.sections.OVERRIDABLE`; an absent or null key inherits ``train``'s value. Bounds are
``TrainCfg``'s, checked on the merged values, and an error names the key where the bad value
was written (``variants.resnet50.epochs`` or ``train.epochs``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, fields
from typing import Any, Literal

from .loader import Checked, ConfigError, from_dict, to_flat_dict
from .sections import OVERRIDABLE, AugmentCfg, BaseCfg, TrainCfg

# One path component: variant names become models/<name>/ and results/<name>/ folders and
# DVC stage names (train@<name>), so no separators, spaces, leading dots or dashes.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_variant_name(name: Any) -> str:
    """Return ``name`` if it is safe as one path component, else raise ConfigError."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or name in (".", ".."):
        raise ConfigError(
            f"variants.{name!r}: invalid variant name; a name becomes a folder "
            f"(models/<name>/) and a DVC stage, so use letters, digits, '_', '.' and '-' only, "
            f"starting with a letter or digit (e.g. resnet50_bf16)",
            f"variants.{name}",
        )
    return name


@dataclass(frozen=True)
class VariantCfg(Checked):
    """What ``variants.<name>`` sets; ``None`` = inherit from ``train`` (see module doc)."""

    model: str | None = None
    lr_scale: float | None = None
    input_size: int | None = None
    crop: float | None = None
    pretrained: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: Literal["sgd", "adamw"] | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    ema: float | None = None
    mixup: float | None = None
    cutmix: float | None = None
    nproc: int | None = None
    epoch_images: int | None = None

    def check(self):
        yield "model", self.model is None or self.model.strip() != "", "must be a model name"
        yield "lr_scale", self.lr_scale is None or 0 < self.lr_scale <= 100, "must be in (0, 100]"


assert {f.name for f in fields(VariantCfg)} == {"model", "lr_scale", *OVERRIDABLE}


@dataclass(frozen=True)
class RunCfg(Checked):
    """Everything one variant really runs with: recorded by MLflow, the checkpoint and
    ``train.json``. Build it with :func:`resolve_variant`, never by hand."""

    variant: str
    model: str
    input_size: int
    crop: float
    pretrained: str
    epochs: int
    batch_size: int
    lr: float  # train.lr * lr_scale
    seed: int
    deterministic: bool
    device: Literal["auto", "cpu", "cuda"]
    optimizer: Literal["sgd", "adamw"]
    momentum: float
    weight_decay: float
    schedule: Literal["cosine", "constant", "step"]
    warmup_epochs: int
    label_smoothing: float
    epoch_images: int | None
    checkpoint_every: int
    compile: bool
    ema: float
    mixup: float
    cutmix: float
    precision: Literal["auto", "fp32", "bf16"]
    channels_last: bool
    nproc: int
    stream: Literal["auto", "always", "never"]
    stream_buffer_mb: int
    augment: AugmentCfg

    def flat(self) -> dict[str, Any]:
        """Dotted keys for tracking: ``{"variant": ..., "epochs": 3, "augment.jitter": 0.1}``."""
        return to_flat_dict(self)


def _variants(params: dict) -> dict:
    variants = params.get("variants")
    if variants is None:
        return {}
    if not isinstance(variants, dict):
        raise ConfigError(
            f"variants: expected a mapping of name -> settings, got {type(variants).__name__}",
            "variants",
        )
    return variants


def _merged_train(name: str, v: VariantCfg, params: dict) -> TrainCfg:
    """``train`` with the variant's overrides applied, checked with TrainCfg's bounds."""
    train = from_dict(TrainCfg, params.get("train"), "train")
    overrides = {k: getattr(v, k) for k in OVERRIDABLE if getattr(v, k) is not None}
    try:
        return dataclasses.replace(train, **overrides)
    except ConfigError as e:  # e.key is the bare field name; it was the variant's value
        msg = str(e).split(": ", 1)[1]
        raise ConfigError(f"variants.{name}.{e.key}: {msg}", f"variants.{name}.{e.key}") from None


def load_variant(params: dict, name: str) -> VariantCfg:
    """The validated settings of variant ``name`` under ``params``' ``variants:``, every field
    filled in: inherited keys take ``train``'s values, ``model`` the name, ``lr_scale`` 1 when
    absent. Overrides are checked with ``train``'s bounds. :func:`resolve_variant` (same
    argument order) gives the full run."""
    variants = _variants(params)
    check_variant_name(name)
    if name not in variants:
        raise ConfigError(
            f"variants.{name}: no such variant; defined: {', '.join(map(str, variants))}",
            f"variants.{name}",
        )
    cfg = from_dict(VariantCfg, variants[name], f"variants.{name}")
    train = _merged_train(name, cfg, params)
    return dataclasses.replace(
        cfg,
        model=cfg.model or name,
        lr_scale=1.0 if cfg.lr_scale is None else cfg.lr_scale,
        **{k: getattr(train, k) for k in OVERRIDABLE},
    )


def resolve_variant(params: dict, name: str) -> RunCfg:
    """The effective settings of variant ``name``: ``base`` + ``train`` + its overrides."""
    v = load_variant(params, name)
    base = from_dict(BaseCfg, params.get("base"), "base")
    train = _merged_train(name, v, params)
    scale = v.lr_scale
    lr = train.lr * scale
    if not 0 < lr < 10:
        raise ConfigError(
            f"variants.{name}.lr_scale: train.lr {train.lr:g} x {scale:g} = "
            f"{lr:g} is outside (0, 10)",
            f"variants.{name}.lr_scale",
        )
    shared = {
        f.name: getattr(train, f.name)
        for f in fields(TrainCfg)
        if f.name in {g.name for g in fields(RunCfg)}
    }
    return RunCfg(
        variant=name,
        model=v.model,
        seed=base.seed,
        deterministic=base.deterministic,
        device=base.device,
        **{**shared, "lr": lr},
    )
