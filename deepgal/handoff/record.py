"""The machinery every JSON hand-off shares: typed fields, a layout version, named errors.

A record is a frozen, keyword-only dataclass whose fields are the file's keys (in the order
they are written). A field without a default is required: readers downstream rely on it. A
field defaulting to None is optional: absent from a file it reads as None, and it is left out
when written only if named in ``OMIT_NONE`` (otherwise written as ``null``). Every key that
is present is checked against its field's type, so a renamed or mistyped key fails where the
file is read, naming the file and the key, not several stages later.

``version`` is the layout's number. Files written before layouts were numbered carry none and
read as version 1 (the same keys). A file of another version, or one missing a required key
(what a file from an older layout looks like), is a :class:`HandoffError` that says which
stage to re-run.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

from ..errors import DeepgalError
from ..utils import write_json

LAYOUT_VERSION = 1


class HandoffError(DeepgalError, ValueError):
    """A file between stages is missing, unreadable, of another layout, or has a bad key."""


class MissingHandoff(HandoffError, FileNotFoundError):
    """A file between stages does not exist (also a FileNotFoundError, for callers that wait
    for or skip a file that is not there yet)."""


def missing(path: Path, what: str, stage: str) -> MissingHandoff:
    """The error for a file ``path`` that stage ``stage`` writes and nobody has written yet."""
    return MissingHandoff(
        f"{path}: missing ({what}, written by the {stage} stage); run `dvc repro {stage}`"
    )


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", str(t).replace("typing.", ""))


def _matches(value: Any, t: Any) -> bool:
    """Whether ``value`` (parsed JSON) fits annotation ``t`` (int, float, str, bool, dict,
    list, tuple, or a union of them with None). Containers are checked one level deep only."""
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        return any(_matches(value, a) for a in typing.get_args(t))
    if t is type(None):
        return value is None
    origin = typing.get_origin(t) or t
    if origin is float:  # JSON writes 1.0 as 1.0 but hand-written files say 1
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, list)
    if origin is typing.Any:
        return True
    return isinstance(value, origin)


def check_version(data: dict, path: Path, what: str, stage: str) -> None:
    """Raise the re-run message when ``data`` (a parsed file) is of another layout."""
    version = data.get("version", LAYOUT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise HandoffError(
            f"{path}: 'version' must be an integer layout number, got "
            f"{version!r}; re-run `dvc repro {stage}` to rewrite the {what}"
        )
    if version < LAYOUT_VERSION:
        raise HandoffError(
            f"{path}: a {what} of layout version {version}, from an older deepgal "
            f"(this one reads version {LAYOUT_VERSION}); re-run "
            f"`dvc repro {stage}` to rewrite it"
        )
    if version > LAYOUT_VERSION:
        raise HandoffError(
            f"{path}: a {what} of layout version {version}, written by a newer "
            f"deepgal (this one reads up to {LAYOUT_VERSION}); update deepgal "
            f"or re-run `dvc repro {stage}` with this one"
        )


def load_json(path: str | Path, what: str, stage: str) -> Any:
    """Parsed JSON of ``path``; a missing or unparsable file is a HandoffError saying which
    stage writes it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise missing(path, what, stage) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HandoffError(
            f"{path}: not readable JSON ({e}); re-run `dvc repro {stage}` to rewrite the {what}"
        ) from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    """Base of the JSON hand-offs. Subclasses set ``WHAT`` (what the file is, in words),
    ``STAGE`` (the DVC stage that writes it), and may set ``OMIT_NONE`` (optional keys left
    out when None), ``KEYS`` (field name -> JSON key where they differ) and ``STORE_VERSION``
    (False for DVC metrics files, whose every key is a column of `dvc exp show`)."""

    WHAT: ClassVar[str] = "file"
    STAGE: ClassVar[str] = ""
    OMIT_NONE: ClassVar[tuple[str, ...]] = ()
    KEYS: ClassVar[dict[str, str]] = {}
    STORE_VERSION: ClassVar[bool] = True

    version: int = LAYOUT_VERSION

    @classmethod
    def _fields(cls) -> list[tuple[dataclasses.Field, str, Any]]:
        hints = typing.get_type_hints(cls)
        return [
            (f, cls.KEYS.get(f.name, f.name), hints[f.name])
            for f in dataclasses.fields(cls)
            if f.name != "version"
        ]

    @classmethod
    def from_dict(cls, data: Any, path: str | Path = "<dict>"):
        """The record of parsed JSON ``data``; HandoffError naming ``path`` and the key."""
        path = Path(path)
        if not isinstance(data, dict):
            raise HandoffError(
                f"{path}: a {cls.WHAT} must be a JSON object, got "
                f"{type(data).__name__}; re-run `dvc repro {cls.STAGE}`"
            )
        check_version(data, path, cls.WHAT, cls.STAGE)
        values = {}
        for f, key, t in cls._fields():
            if key not in data:
                if f.default is f.default_factory is dataclasses.MISSING:
                    raise HandoffError(
                        f"{path}: no key '{key}' ({_type_name(t)}) in this {cls.WHAT}: a file "
                        f"from an older layout or written by hand; re-run `dvc repro "
                        f"{cls.STAGE}` to rewrite it"
                    )
                continue
            if not _matches(data[key], t):
                raise HandoffError(
                    f"{path}: key '{key}' must be {_type_name(t)}, got "
                    f"{type(data[key]).__name__} {data[key]!r:.80}; re-run "
                    f"`dvc repro {cls.STAGE}` to rewrite the {cls.WHAT}"
                )
            values[f.name] = data[key]
        record = cls(**values)
        problem = record.problem()
        if problem:
            raise HandoffError(
                f"{path}: {problem}; re-run `dvc repro {cls.STAGE}` to rewrite the {cls.WHAT}"
            )
        return record

    @classmethod
    def coerce(cls, value: Any, path: str | Path = "<dict>"):
        """``value`` itself when it is a record of this kind, else :meth:`from_dict` of it (a
        caller holding a parsed file)."""
        return value if isinstance(value, cls) else cls.from_dict(value, path)

    def problem(self) -> str | None:
        """What is wrong inside a well-typed record (a subclass's own rule), or None."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """The file's content: keys in field order, ``version`` last where it is stored."""
        out = {}
        for f, key, _ in self._fields():
            value = getattr(self, f.name)
            if value is None and f.name in self.OMIT_NONE:
                continue
            out[key] = list(value) if isinstance(value, tuple) else value
        if self.STORE_VERSION:
            out["version"] = self.version
        return out

    @classmethod
    def read(cls, path: str | Path):
        """Read and check ``path``; HandoffError naming the file and key when it is wrong."""
        return cls.from_dict(load_json(path, cls.WHAT, cls.STAGE), path)

    def write(self, path: str | Path) -> Path:
        """Write the record as indented JSON, atomically (the old file or the whole new one)."""
        write_json(path, self.to_dict())
        return Path(path)
