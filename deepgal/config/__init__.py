"""Typed, validated parameters: ``params.yaml`` sections become frozen dataclasses.

``params.yaml`` is the only place a pipeline default lives; the dataclasses here hold none.
One loader (:func:`load_section` / :func:`from_dict`) checks every key: an unknown or missing
key, a wrong type or an impossible value raises :class:`ConfigError` naming the dotted key
(``train.lr``), the value and what is allowed, before any work starts. A variant's effective
settings come from :func:`resolve_variant` (:class:`RunCfg`).

- :mod:`.loader`: the generic machinery (types, missing/unknown keys, YAML).
- :mod:`.sections`: one dataclass per section, with its bounds.
- :mod:`.variants`: variant overrides, safe names, :class:`RunCfg`.
- :mod:`.finetune`: the ``finetune`` section (adapting a checkpoint to a user's labels).
"""

from __future__ import annotations

from pathlib import Path

from .cv import CvCfg, check_cv_variants
from .finetune import FREEZE_MODES, FinetuneCfg, check_finetune_variants
from .loader import ConfigError, apply_overrides, from_dict, load_params, to_flat_dict
from .sections import (
    OVERRIDABLE,
    REDUCE_METHODS,
    SECTIONS,
    AugmentCfg,
    BaseCfg,
    DataCfg,
    EvaluateCfg,
    MethodsCfg,
    PcaCfg,
    ReduceCfg,
    SelectCfg,
    SplitCfg,
    SyntheticCfg,
    TrainCfg,
    TsneCfg,
    UmapCfg,
)
from .variants import RunCfg, VariantCfg, check_variant_name, load_variant, resolve_variant

# The finetune section lives in its own module (it reuses AugmentCfg from .sections).
SECTIONS["finetune"] = FinetuneCfg

__all__ = [
    "ConfigError",
    "apply_overrides",
    "from_dict",
    "load_params",
    "to_flat_dict",
    "load_section",
    "validate_all",
    "load_variant",
    "resolve_variant",
    "check_variant_name",
    "RunCfg",
    "VariantCfg",
    "SECTIONS",
    "OVERRIDABLE",
    "REDUCE_METHODS",
    "BaseCfg",
    "DataCfg",
    "SyntheticCfg",
    "SplitCfg",
    "AugmentCfg",
    "TrainCfg",
    "SelectCfg",
    "EvaluateCfg",
    "ReduceCfg",
    "MethodsCfg",
    "UmapCfg",
    "TsneCfg",
    "PcaCfg",
    "CvCfg",
    "FinetuneCfg",
    "FREEZE_MODES",
]


def load_section(name: str, params: dict | None = None, path: str | Path = "params.yaml"):
    """The validated dataclass of section ``name`` (e.g. ``load_section("train")``)."""
    if name not in SECTIONS:
        raise ConfigError(
            f"{name}: unknown section; valid sections are {', '.join(SECTIONS)}", name
        )
    params = load_params(path) if params is None else params
    return from_dict(SECTIONS[name], params.get(name), name)


def validate_all(params: dict) -> None:
    """Validate every section and every variant (resolved) at once: nothing runs on a typo."""
    known = set(SECTIONS) | {"variants"}
    for key in params:
        if key not in known:
            raise ConfigError(
                f"{key}: unknown section; valid sections are {', '.join(sorted(known))}", str(key)
            )
    for name in SECTIONS:
        load_section(name, params)
    for name in params.get("variants") or {}:
        resolve_variant(params, name)
    check_cv_variants(load_section("cv", params), params)
    check_finetune_variants(load_section("finetune", params), params)
