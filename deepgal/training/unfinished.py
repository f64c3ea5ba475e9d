"""An unfinished run's checkpoints, kept where ``dvc exp run`` cannot overwrite them.

Before an experiment runs, DVC checks out every output as ``dvc.lock`` records it (its
executor calls ``checkout(force=True)``). ``models/<v>/checkpoints`` is such an output, so
after Ctrl-C or a kill under ``dvc exp run`` the next ``dvc exp run`` found the committed run's
checkpoints where the interrupted run's had been, and started over; ``dvc repro`` does no such
checkout and resumed. So while a run is unfinished its folder is mirrored into a sibling that
DVC does not track, ``.checkpoints.unfinished`` (gitignored), by hard links: no bytes are
copied, and since checkpoint files are only ever replaced by a rename, never written in place,
a link keeps the content it was made with. A run that finds there the state of its own config,
and none in its folder, takes it back; a finished run removes the mirror. One mirror per
variant: the newest unfinished run's.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .. import checkpoint as ckpt_io

log = logging.getLogger(__name__)
PATTERNS = ("*.pt", "run.json")  # run.json: the MLflow run a resume reopens


def stash_dir(ckpt_dir: str | Path) -> Path:
    ckpt_dir = Path(ckpt_dir)
    return ckpt_dir.parent / f".{ckpt_dir.name}.unfinished"


def _files(folder: Path) -> dict[str, Path]:
    return {p.name: p for pattern in PATTERNS for p in folder.glob(pattern)}


def _place(src: Path, dest: Path) -> None:
    """``dest`` becomes ``src``'s content: a hard link, or a copy where links are refused;
    through a temporary name, so ``dest`` is never half there."""
    tmp = dest.with_name(f".{dest.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(src, tmp)
    os.replace(tmp, dest)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _sync(src: Path, dest: Path) -> None:
    """Make folder ``dest`` hold what ``src`` holds (the files of :data:`PATTERNS`)."""
    dest.mkdir(parents=True, exist_ok=True)
    want = _files(src)
    for name, path in _files(dest).items():
        if name not in want:
            path.unlink()
    for name, path in want.items():
        if not _same(path, dest / name):
            _place(path, dest / name)


def mirror(ckpt_dir: str | Path) -> None:
    """Make the mirror hold what ``ckpt_dir`` holds now (call after each save)."""
    _sync(Path(ckpt_dir), stash_dir(ckpt_dir))


def _fingerprint(folder: Path) -> str | None:
    last = folder / "last.pt"
    if not last.exists():
        return None
    try:
        return ckpt_io.load(last).get("fingerprint")
    except ckpt_io.CheckpointError:
        return None


def restore(ckpt_dir: str | Path, fingerprint: str) -> bool:
    """Put the mirrored run back into ``ckpt_dir`` when it is of config ``fingerprint`` and
    ``ckpt_dir`` holds no state of that config; returns whether it did."""
    ckpt_dir = Path(ckpt_dir)
    dest = stash_dir(ckpt_dir)
    if not dest.is_dir() or _fingerprint(ckpt_dir) == fingerprint:
        return False
    if _fingerprint(dest) != fingerprint:
        return False  # another config's: the run starts over and its mirror replaces it
    _sync(dest, ckpt_dir)
    log.info("%s: the unfinished run of this config, kept in %s, is back", ckpt_dir, dest)
    return True


def discard(ckpt_dir: str | Path) -> None:
    """The run finished: its checkpoints are the output now, the mirror goes."""
    shutil.rmtree(stash_dir(ckpt_dir), ignore_errors=True)
