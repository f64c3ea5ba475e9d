"""Self-describing checkpoints: weights, optimiser/scheduler/RNG state, config and metrics.

Layout of a training output folder's ``checkpoints/``:

- ``epoch_003.pt`` ... kept every ``checkpoint_every`` epochs and at the end, for selection;
- ``last.pt``: the newest resumable state (end of the last epoch, or where Ctrl-C stopped it).

Every file is written atomically and loaded with ``weights_only=True``: a checkpoint is data,
never code. Integrity: ``torch.save`` writes a zip whose every record carries a CRC-32, but
``torch.load`` does not check them (a flipped byte in a weight tensor loads silently as a
wrong weight). :func:`load` checks every CRC first, so a file whose bytes changed after it was
written is refused like a truncated one, named, and resume/selection fall back past it. The
CRCs live inside the file, so a checkpoint stays one atomically renamed file (a digest beside
it could disagree with it after a crash between the two writes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import DeepgalError
from .utils import atomic_torch_save

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")


class CheckpointError(DeepgalError, RuntimeError):
    """A checkpoint that cannot be used; the message names the file."""


def fingerprint(config: dict) -> str:
    """Stable short hash of everything that must match for a resume to be valid."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def epoch_path(ckpt_dir: Path, epoch: int) -> Path:
    return Path(ckpt_dir) / f"epoch_{epoch:03d}.pt"


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plain Python containers and tensors only) atomically."""
    # Without CRCs every record would read as damaged on load (they would all be 0).
    if not torch.serialization.get_crc32_options():
        raise RuntimeError(
            "torch.serialization.set_crc32_options(False) is in effect; deepgal "
            "checkpoints need CRC-32s to detect damage"
        )
    atomic_torch_save({"format_version": FORMAT_VERSION, **state}, path)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; corrupt, truncated or code-carrying files raise CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    _check_crcs(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
        LookupError,
        TypeError,
        AttributeError,
    ) as e:
        # weights_only refuses pickles that would run code: that lands here too, by design.
        # Garbage that is not a zip goes to the legacy unpickler, which fails on random bytes
        # with IndexError/KeyError too (seen by fuzzing).
        if isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in str(e):
            # torch's own text goes on to suggest weights_only=False: not for a refused file.
            found = re.search(r"GLOBAL ([\w.]+)", str(e))  # "unsupported GLOBAL posix.system"
            what = f"the Python object {found[1]}" if found else "Python objects"
            raise CheckpointError(
                f"{path}: unreadable or unsafe checkpoint: it holds {what}, which loading "
                "with weights_only=True refuses since unpickling it could run code; deepgal "
                "checkpoints hold only tensors and plain data. Do not load it by other means "
                "unless you made it yourself"
            ) from e
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{path}: unreadable or unsafe checkpoint ({type(e).__name__}: {first})"
        ) from e
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a deepgal checkpoint (no 'model' weights inside)")
    return ckpt


def _check_crcs(path: Path) -> None:
    """Raise CheckpointError unless ``path`` is a whole zip whose records match their CRC-32s."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()  # reads every record and compares its CRC-32
            names = z.namelist()
    # Truncated or random bytes fail in the zip directory parser in many ways (seen by fuzzing).
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        ValueError,
        NotImplementedError,
        RuntimeError,
        struct.error,
        LookupError,
        UnicodeDecodeError,
    ) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{path}: unreadable or unsafe checkpoint: not a complete torch "
            f"zip file ({type(e).__name__}: {first})"
        ) from e
    if bad is not None:
        # torch names the zip's top folder after the file it wrote, here the temporary name
        # of the atomic save (".epoch_004.pt.x1y2"): the record's own name is what follows.
        raise CheckpointError(
            f"{path}: unreadable or unsafe checkpoint: damaged, record "
            f"{bad.split('/', 1)[-1]!r} fails its CRC-32 (its bytes changed "
            f"after it was written); restore the file (`dvc checkout` for a "
            f"pipeline output) or use another checkpoint"
        )
    if not any(n.endswith("/data.pkl") for n in names):  # torch.save's archive layout
        raise CheckpointError(
            f"{path}: a zip file but not a PyTorch checkpoint (a NumPy .npz "
            f"or other archive?); give a .pt file that deepgal's train stage "
            f"wrote (models/<variant>/checkpoints/)"
        )


# What a checkpoint needs to predict and to say what it is; the rest (optimizer, scheduler,
# RNG states, the raw weights under an EMA) only serves resuming the training.
_INFERENCE_KEYS = (
    "model",
    "model_name",
    "preprocess",
    "class_names",
    "variant",
    "epoch",
    "metrics",
    "fingerprint",
    "config",
    "mlflow_run_id",
    "calibration",
)


def save_for_inference(
    src: str | Path, dest: str | Path, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write to ``dest`` the part of checkpoint ``src`` that inference uses (about half the
    bytes with SGD momentum or Adam's moments), with ``extra`` entries added (the select
    stage's ``calibration``); returns what was written. Loads with :func:`load` like any
    checkpoint."""
    ckpt = load(src)
    slim = {k: ckpt[k] for k in _INFERENCE_KEYS if k in ckpt} | (extra or {})
    save(dest, slim)
    return slim


def list_epochs(ckpt_dir: str | Path) -> list[tuple[int, Path]]:
    """Kept epoch checkpoints as [(epoch, path)], oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        m = _EPOCH_FILE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def find_resumable(ckpt_dir: str | Path, want_fingerprint: str) -> dict[str, Any] | None:
    """The newest loadable checkpoint made with the same config, else None.

    Tries ``last.pt`` first, then the kept epochs newest first, so a corrupt ``last.pt`` falls
    back to the previous good file. A checkpoint of a different config is never resumed.
    """
    ckpt_dir = Path(ckpt_dir)
    candidates = [ckpt_dir / "last.pt"] + [p for _, p in reversed(list_epochs(ckpt_dir))]
    for path in candidates:
        if not path.exists():
            continue
        try:
            ckpt = load(path)
        except CheckpointError as e:
            log.warning("skipping %s; trying the previous checkpoint", e)
            continue
        if ckpt.get("fingerprint") != want_fingerprint:
            log.info("%s was made with a different config: starting over", path)
            return None
        return ckpt
    return None


def remove_partial_writes(ckpt_dir: str | Path) -> None:
    """Delete temporary files of saves that a SIGKILL cut short (``.<name>.pt.*.tmp``)."""
    ckpt_dir = Path(ckpt_dir)
    if ckpt_dir.is_dir():
        for p in ckpt_dir.glob(".*.tmp"):
            p.unlink()


def clear(ckpt_dir: str | Path) -> None:
    """Remove every checkpoint of a previous config before training from scratch."""
    ckpt_dir = Path(ckpt_dir)
    if ckpt_dir.is_dir():
        for p in ckpt_dir.glob("*.pt"):
            p.unlink()
