"""One MLflow store: a client, calls retried under a cross-process lock, the experiment.

SQLite allows one writer and MLflow's SQLAlchemy store answers a busy database with "database
is locked" instead of waiting, so writers of one SQLite file queue on an ``flock`` beside it.
Other stores (an HTTP server, PostgreSQL) take concurrent writers and need no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..utils import redact
from .env import TrackingError, quiet_http_client


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if absent) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise writers of one SQLite store across processes; a no-op for other stores."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    with file_lock(db.with_name(db.name + ".lock")):
        yield


def uri_lock(uri: str, purpose: str) -> contextlib.AbstractContextManager:
    """A lock every process on this machine that uses ``uri`` shares (for find-or-create)."""
    # Not the store lock itself: calls made while holding this one take that one (flock is per
    # open file, so the same file twice in one process would wait for itself).
    db = sqlite_path(uri)
    if db is not None:  # beside the store ("mlflow.db-*" is git-ignored)
        return file_lock(db.with_name(f"{db.name}-{purpose}.lock"))
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return file_lock(Path(tempfile.gettempdir()) / f"deepgal-mlflow-{purpose}-{key}.lock")


def first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return redact(lines[0][:200]) if lines else ""


class Store:
    """``call(fn, ...)`` runs one MLflow operation under the store lock, retrying transient
    failures with back-off; what still fails becomes :class:`TrackingError`."""

    def __init__(self, uri: str, retries: int = 3):
        quiet_http_client(uri)
        from mlflow.tracking import MlflowClient

        self.uri, self.retries = uri, retries
        # Opening a new SQLite store creates its tables: under the lock, or parallel runs race
        # ("table ... already exists").
        self.client = self.call(MlflowClient, uri)

    def call(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        from mlflow.exceptions import MlflowException
        from requests.exceptions import RequestException
        from sqlalchemy.exc import OperationalError

        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                with store_lock(self.uri):
                    return fn(*args, **kwargs)
            except (MlflowException, RequestException, OperationalError, OSError) as e:
                last = e
                if attempt < self.retries:
                    time.sleep(min(0.5 * 2**attempt, 4.0))
        raise TrackingError(f"{type(last).__name__}: {first_line(last)}" if last else "failed")

    def experiment_id(self, name: str) -> str:
        """The experiment's id, created on first use with MLflow's "model training" kind."""
        return self.call(self._get_or_create_experiment, name)

    def _get_or_create_experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        db = sqlite_path(self.uri)
        location = (db.parent / "mlartifacts").as_uri() if db else None
        return self.client.create_experiment(
            name,
            artifact_location=location,
            tags={"mlflow.experimentKind": "custom_model_development"},
        )
