"""Small shared helpers: seeding, devices, atomic writes, secret redaction."""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it: stages that only read CSVs or write
# JSON (reduce, plot) import this module too, and should not pay torch's start-up.


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` also force deterministic kernels."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this set before its first use to be reproducible.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        set_kernels = getattr(torch._C, "_set_deterministic_algorithms", None)
        if set_kernels is None:  # a torch without the private setter: the public call
            torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
        else:
            # What torch.use_deterministic_algorithms does, minus setting Inductor's flag,
            # whose import (torch._inductor -> torch._dynamo) costs ~1.8 s in every train
            # process; training.recipe.maybe_compile sets that flag when it compiles.
            set_kernels(True, warn_only=torch.cuda.is_available())
        torch.backends.cudnn.benchmark = False


def machine(device: torch.device | str | None = None) -> dict[str, str]:
    """The machine a run's numbers belong to: the CPU's model and the vector unit PyTorch's CPU
    kernels use (a deterministic CPU run repeats bit for bit only where both are the same:
    oneDNN and ATen pick AVX2 or AVX-512 code at run time, and those round differently); and,
    for a run on a CUDA ``device``, the GPU and the CUDA and cuDNN versions, whose kernels
    decide its numbers instead."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu
            )
    except OSError:  # not Linux
        pass
    out = {
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }
    if device is not None and torch.device(device).type == "cuda":
        out.update(
            gpu=torch.cuda.get_device_name(torch.device(device)),
            cuda=str(torch.version.cuda),
            cudnn=str(torch.backends.cudnn.version()),
        )
    return out


def machine_label(m: dict[str, str]) -> str:
    """:func:`machine` in one line (the MLflow tag), e.g. ``AMD EPYC, AVX512, torch 2.14.1`` or
    ``NVIDIA H200, CUDA 13.0, AMD EPYC, AVX512, torch 2.11.0`` for a run on a GPU."""
    gpu = f"{m['gpu']}, CUDA {m['cuda']}, " if "gpu" in m else ""
    return f"{gpu}{m['cpu']}, {m['cpu_capability']}, torch {m['torch']}"


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "base.device is 'cuda' but no CUDA device is available; set base.device to auto or cpu"
        )
    return torch.device(name)


@contextmanager
def _atomic_target(path: str | Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed onto ``path`` (readable by all)
    when the block ends, removed when it raises, so ``path`` is either the old file or the
    complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` (flushed to disk) so that ``path`` is either the old file or the new one."""
    with _atomic_target(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=float) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary name in the same folder, then rename."""
    import torch

    with _atomic_target(path) as tmp:
        torch.save(obj, tmp)


_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s]*):(?P<pw>[^/@\s]*)@"
)


def redact(uri: str) -> str:
    """Hide a password in a URI: ``http://u:secret@host`` -> ``http://u:***@host``."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(uri))
