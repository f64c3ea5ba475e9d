"""Where tracking goes: the store's URI, whether MLflow is on, and what names a pipeline run.

Nothing here imports MLflow or torch: every stage reads these at start-up.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from ..errors import DeepgalError

EXPERIMENT_DEFAULT = "deepgal"


class TrackingError(DeepgalError, RuntimeError):
    """The tracking server or store cannot be used; the message says which and what to do."""


def project_root(cwd: str | Path | None = None) -> Path:
    """The repository root, also from inside a queued DVC experiment.

    ``dvc exp run --queue`` runs stages in a copy under ``<repo>/.dvc/tmp/exps/...``; their
    MLflow runs must land in the user's store, not in a temporary copy that is deleted.
    """
    cwd = Path(cwd or os.getcwd()).resolve()
    parts = cwd.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def default_tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else an absolute SQLite store in the repository root."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(root or project_root()) / 'mlflow.db'}"


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT_DEFAULT)


def mlflow_enabled() -> bool:
    return os.environ.get("DEEPGAL_MLFLOW", "on").lower() not in ("0", "off", "false", "no")


def git_commit(cwd: str | Path = ".") -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def pipeline_run_name(cwd: str | Path = ".") -> str:
    """The name every stage of one pipeline run agrees on: the DVC experiment's name under
    ``dvc exp run`` (DVC sets ``DVC_EXP_NAME``), else ``workspace@<short commit>``."""
    exp = os.environ.get("DVC_EXP_NAME", "").strip()
    if exp:
        return exp
    return f"workspace@{git_commit(cwd)[:7]}"


def quote_filter_value(value: str) -> str:
    """A value for an MLflow search filter (single-quoted; quotes cannot be escaped there)."""
    if not re.fullmatch(r"[^'\\]*", value):
        raise TrackingError(
            f"cannot search MLflow for {value!r}: it contains a quote or "
            "backslash; rename the DVC experiment"
        )
    return f"'{value}'"


def quiet_http_client(uri: str) -> None:
    """MLflow's HTTP client retries for minutes by default; deepgal buffers and retries itself,
    so one request should fail fast. A password in the URI must not be printed with run links."""
    from ..utils import redact

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if redact(uri) != uri:
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
