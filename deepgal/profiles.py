"""Params profiles: ``profiles/<name>.yaml`` overlays ``params.yaml`` for one kind of run.

A profile has the shape of ``params.yaml`` and holds only the keys it changes. ``deepgal
profile NAME`` validates ``params.yaml`` with the profile applied (every section, every variant,
as the stages will read them) and prints the overlay as ``dvc exp run`` arguments::

    args=$(deepgal profile real-gpu) && dvc exp run --temp -n real-gpu $args

Each leaf becomes ``-S ++dotted.key=value``. ``++`` is Hydra's add-or-override, which DVC 3's
``-S`` parses: a plain ``key=value`` fails for a key absent from ``params.yaml`` (e.g. a variant
override the default leaves unset). Values are YAML scalars as DVC reads them (``1e-4`` a
float, ``null`` None, ``true`` a bool); lists print as YAML flow without spaces, ``[1,2]``.
Output goes through the shell's word splitting (``$(...)``), so a value holding whitespace,
quotes or shell metacharacters is refused rather than printed broken.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, apply_overrides, load_params, validate_all
from .errors import DeepgalError

PROFILE_DIR = Path("profiles")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.,:/+@%\-\[\]{}~]*$")  # no space, quote, $, ;, *, ...


class ProfileError(DeepgalError):
    """A profile that cannot be read, printed or validated; the message names file and key."""


def profile_path(name: str, root: str | Path = ".") -> Path:
    """``profiles/<name>.yaml`` under ``root``; ``name`` may also be a path to a .yaml file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        return p
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ProfileError(
            f"{name!r}: a profile name is letters, digits, _ . - (a file profiles/<name>.yaml)"
        )
    return Path(root) / PROFILE_DIR / f"{name}.yaml"


def available(root: str | Path = ".") -> list[str]:
    return sorted(p.stem for p in (Path(root) / PROFILE_DIR).glob("*.yaml"))


def load_overlay(path: Path) -> dict:
    """The profile's mapping; a missing file or bad YAML names the file."""
    if not path.is_file():
        have = ", ".join(available(path.parent.parent)) or "none"
        raise ProfileError(f"{path}: no such profile (available: {have})")
    try:
        overlay = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(overlay, dict) or not overlay:
        raise ProfileError(f"{path}: expected a non-empty mapping of params.yaml sections")
    return overlay


def _render(value: Any, key: str, path: Path) -> str:
    """One value as DVC's -S (Hydra) and YAML both read it back to ``value``."""
    if isinstance(value, list):
        text = "[" + ",".join(_render(v, key, path) for v in value) + "]"
    elif isinstance(value, dict):
        if value:  # non-empty mappings are flattened by leaves(); here only inside lists
            raise ProfileError(
                f"{path}: {key}: a mapping inside a list cannot be printed as "
                f"one -S argument; use a mapping of keys instead"
            )
        text = "{}"
    else:
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30)
        text = text.removesuffix("\n").removesuffix("\n...").strip()
    if not _SAFE_VALUE.fullmatch(text) or yaml.safe_load(text) != value:
        raise ProfileError(
            f"{path}: {key}: value {value!r} cannot be passed through the shell "
            f"as one -S word (whitespace, quotes or special characters)"
        )
    return text


def leaves(overlay: dict, path: Path, prefix: str = "") -> list[tuple[str, str]]:
    """``[(dotted key, rendered value), ...]`` of every leaf (an empty mapping is a leaf)."""
    out: list[tuple[str, str]] = []
    for k, v in overlay.items():
        if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]*", k):
            raise ProfileError(f"{path}: {prefix}{k}: keys are letters, digits, _ and -")
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += leaves(v, path, key + ".")
        else:
            out.append((key, _render(v, key, path)))
    return out


def overrides(name: str, root: str | Path = ".") -> list[str]:
    """``["train.lr=0.0003", ...]``: the profile as ``key=value`` strings (no ``++``)."""
    path = profile_path(name, root)
    return [f"{k}={v}" for k, v in leaves(load_overlay(path), path)]


def check(name: str, params_path: str | Path = "params.yaml", root: str | Path = ".") -> dict:
    """``params.yaml`` with the profile applied, validated; errors name the profile and key."""
    path = profile_path(name, root)
    overlay = load_overlay(path)
    base = load_params(params_path)
    params = apply_overrides(base, overrides(name, root))
    # A variant params.yaml does not define must name its model: a typo in a variant's name
    # would otherwise add a variant that builds an unknown model after DVC started.
    for v, body in (overlay.get("variants") or {}).items():
        if v not in (base.get("variants") or {}) and not (
            isinstance(body, dict) and body.get("model")
        ):
            raise ProfileError(
                f"{path}: variants.{v}: not a variant of {params_path} "
                f"({', '.join(base.get('variants') or {})}); a new variant "
                f"must set variants.{v}.model"
            )
    try:
        validate_all(params)
        from .models import MODEL_NAMES  # torchvision: only once the config is sound

        for v, body in params.get("variants", {}).items():
            model = (body or {}).get("model") or v
            if model not in MODEL_NAMES:
                raise ConfigError(
                    f"variants.{v}.model: unknown model {model!r}; known: {', '.join(MODEL_NAMES)}",
                    f"variants.{v}.model",
                )
    except ConfigError as e:
        raise ProfileError(f"{path}: {e}") from None
    return params


def dvc_args(
    name: str, params_path: str | Path = "params.yaml", root: str | Path = "."
) -> list[str]:
    """Validate, then ``["-S", "++train.lr=0.0003", ...]`` for ``dvc exp run``."""
    check(name, params_path, root)
    return [w for o in overrides(name, root) for w in ("-S", f"++{o}")]
