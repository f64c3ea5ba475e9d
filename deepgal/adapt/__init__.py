"""Adapting a selected checkpoint to a user's own labelled galaxies (stage ``finetune@<v>``).

- :func:`is_off`: whether ``finetune.data`` says "no labels" (a folder holding only README.md);
  imports nothing heavy, so the stage costs a Python start-up when fine-tuning is off.
- :mod:`.freeze`: what may train (none / backbone / all_but_last).
- :mod:`.run`: k-fold cross-validation of the fine-tuning on the set (every image scored by a
  model that never trained on it), the temperature fitted on those out-of-fold logits, then the
  fine-tuning on every image, written as a calibrated checkpoint.
"""

from __future__ import annotations

from pathlib import Path

OFF_MARKER = "README.md"


def is_off(path: str | Path) -> bool:
    """True when ``path`` is a folder whose only visible entry is ``README.md`` (the
    repository's ``finetune/`` placeholder): fine-tuning is off. Anything else is a labelled
    set to read (and a missing or empty one an error, from the reader)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        return False
    return [p.name for p in path.iterdir() if not p.name.startswith(".")] == [OFF_MARKER]


def write_off(
    selected: str | Path, dest: str | Path, data: str | Path, why: str | None = None
) -> dict:
    """Fine-tuning off: ``dest`` becomes ``selected`` unchanged (a hard link where the file
    system allows, else a copy; atomically), so every reader of ``dest`` works either way.
    Returns the report ``finetune.json`` holds; ``why`` its note (default: ``data`` holds
    only the README)."""
    import os
    import shutil
    import tempfile

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(selected, tmp)
        except OSError:  # another file system, or links not allowed: a copy
            shutil.copyfile(selected, tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {
        "checkpoint": str(dest),
        "enabled": False,
        "selected": str(selected),
        "data": str(data),
        "note": why
        or f"fine-tuning is off: {data} holds only {OFF_MARKER}; the checkpoint is the "
        "selected one, unchanged. Set finetune.data to a labelled set to turn it on",
    }
