"""The generic loader: a mapping from ``params.yaml`` becomes a frozen, checked dataclass.

Rules every section follows:

- A field with no dataclass default is required: ``params.yaml`` is the one place its default
  lives, so a missing key is a :class:`ConfigError` that names it and says to add it there.
  The only dataclass defaults are ``None`` meaning "inherit" or "not used" (a variant's
  overrides, a reduction method that is not listed), never a pipeline value.
- An unknown key, a wrong type (``bool`` is not a number) or an impossible value raises
  :class:`ConfigError` whose message starts with the dotted key (``train.augment.jitter``).
- Bounds live in each class's ``check()``, which runs on every construction (``__post_init__``),
  so an object built directly in code is held to the same bounds as one loaded from YAML.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import DeepgalError


class ConfigError(DeepgalError, ValueError):
    """A bad parameter; the message starts with its dotted key, also kept in ``.key``."""

    def __init__(self, message: str, key: str = ""):
        super().__init__(message)
        self.key = key


class Checked:
    """Mixin for config dataclasses: ``check()`` yields ``(field, ok, why)``; any false ``ok``
    raises ``ConfigError("<Class>.<field>: <value> <why>")`` (re-prefixed with the dotted key
    when loaded through :func:`from_dict`)."""

    def check(self) -> Iterator[tuple[str, bool, str]]:
        return iter(())

    def __post_init__(self):
        for name, ok, why in self.check():
            if not ok:
                raise ConfigError(
                    f"{type(self).__name__}.{name}: {getattr(self, name)!r} {why}", key=name
                )


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float, ...)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own error is the informative one
            return _convert(value, options[0], key)
        for arg in options:
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is not a valid {_type_name(tp)}", key)
    if origin is Literal:
        choices = typing.get_args(tp)
        # `value in choices` would accept True for 1 and 1.0 for 1; YAML types are exact.
        if not any(type(value) is type(c) and value == c for c in choices):
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}", key)
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}", key)
        (itp,) = typing.get_args(tp)
        return [_convert(v, itp, key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(
                f"{key}: expected a mapping, got {type(value).__name__} {value!r}", key
            )
        _, vtp = typing.get_args(tp)
        return {str(k): _convert(v, vtp, f"{key}.{k}") for k, v in value.items()}
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
            raise ConfigError(f"{key}: NaN is not a valid number", key)
    elif tp is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"{key}: unsupported annotation {tp}")
    if not ok:
        raise ConfigError(
            f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}", key
        )
    return value


@functools.cache
def _hints(cls) -> dict:
    # get_type_hints evaluates the string annotations (PEP 563) anew on every call: cache it.
    return typing.get_type_hints(cls)


def required(cls) -> list[str]:
    """Names of ``cls``'s fields that params must give (those without a dataclass default)."""
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


def from_dict(cls, data: Any, prefix: str):
    """Build dataclass ``cls`` from a mapping; every error names ``prefix.key``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{prefix}: expected a mapping of keys, got {type(data).__name__} {data!r}", prefix
        )
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for k in data:
        if k not in names:
            raise ConfigError(
                f"{prefix}.{k}: unknown key; valid keys are {', '.join(names)}", f"{prefix}.{k}"
            )
    for k in required(cls):
        if k not in data:
            raise ConfigError(
                f"{prefix}.{k}: missing; add it to params.yaml (the one place "
                f"every pipeline default lives)",
                f"{prefix}.{k}",
            )
    values = {k: _convert(v, hints[k], f"{prefix}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except ConfigError as e:  # raised by Checked.__post_init__ with the bare field name
        msg = str(e).split(": ", 1)[1]
        raise ConfigError(f"{prefix}.{e.key}: {msg}", f"{prefix}.{e.key}") from None


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


def apply_overrides(params: dict, overrides: list[str]) -> dict:
    """A copy of ``params`` with ``key.sub=value`` strings applied, as ``dvc exp run -S`` does
    (the value is read as YAML: ``1`` is an int, ``null`` None). A malformed one is an error."""
    import copy

    params = copy.deepcopy(params)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not k for k in key.split(".")):
            raise ConfigError(
                f"{item!r}: expected KEY=VALUE with a dotted key, e.g. data.source=galaxy10_decals"
            )
        *path, last = key.split(".")
        node = params
        for k in path:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        try:
            node[last] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"{key}: cannot read value {raw!r}: {e}", key) from None
    return params


def to_flat_dict(obj, prefix: str = "") -> dict[str, Any]:
    """Flatten a (nested) dataclass to ``{"train.augment.jitter": 0.1, ...}`` for tracking."""
    out: dict[str, Any] = {}
    items = dataclasses.asdict(obj).items() if dataclasses.is_dataclass(obj) else obj.items()
    for k, v in items:
        key = f"{prefix}{k}"
        if dataclasses.is_dataclass(v):
            v = dataclasses.asdict(v)
        if isinstance(v, dict) and v:
            out.update(to_flat_dict(v, key + "."))
        else:
            out[key] = v
    return out


def check_variant_names(key: str, names: list[str] | None, params: dict) -> None:
    """Every name in the list at ``key`` (e.g. ``cv.variants``) is a variant of ``params``; a
    typo would otherwise silently select nothing. ``None`` (every variant) passes."""
    known = list(params.get("variants") or {})
    for name in names or ():
        if name not in known:
            raise ConfigError(
                f"{key}: {name!r} is not a variant; the variants are {', '.join(known)}", key
            )
