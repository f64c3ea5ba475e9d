"""Logging into one existing MLflow run: numbers, tags, files.

Stages after training (select, evaluate, plot) write their local outputs first and then report
to the variant's run through :func:`attach`. They must not fail, nor wait long, because the
tracker is away: an attached logger is *best effort*, so the first failure is one warning and
every later call is skipped (DVC already has every number).

Chart order: MLflow's chart view groups metrics into sections named by the key up to its last
``/``, sorts the sections alphabetically and puts keys without ``/`` after them. The per-epoch
curves people compare (``train/*``, ``val/*``) keep their sections; one-off numbers logged here
(``eval/val/accuracy``, ``select/epoch``) are sent with ``.`` for ``/`` (``eval.val.accuracy``)
so that they come after the curves instead of before them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..handoff import MlflowRun
from ..utils import redact
from .env import TrackingError, default_tracking_uri, mlflow_enabled
from .store import Store

log = logging.getLogger(__name__)


def summary_key(key: str) -> str:
    """The MLflow name of a one-off metric: ``eval/val/accuracy`` -> ``eval.val.accuracy``."""
    return key.replace("/", ".")


class RunLogger:
    """Logs into run ``run_id`` of the store at ``uri``; never changes the run's status."""

    def __init__(
        self, uri: str, run_id: str, store: Store | None = None, best_effort: bool = False
    ):
        self.uri, self.run_id, self.best_effort = uri, run_id, best_effort
        self._store, self._dead = store, False

    @property
    def store(self) -> Store:
        if self._store is None:  # attached loggers connect on first use, not at start-up
            self._store = Store(self.uri, retries=1 if self.best_effort else 3)
        return self._store

    @property
    def client(self):
        return self.store.client

    def _do(self, what: str, fn: Callable[[Store], Any]) -> Any:
        """Run ``fn(store)``; in best-effort mode a failure is one warning and then silence."""
        if self._dead:
            return None
        try:
            return fn(self.store)
        except TrackingError as e:
            if not self.best_effort:
                raise
            self._dead = True
            log.warning(
                "MLflow at %s unreachable (%s): %s and later MLflow logging skipped; "
                "the local outputs are complete",
                redact(self.uri),
                e,
                what,
            )
            return None

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(summary_key(k), float(v), now, step) for k, v in metrics.items()]
        self._do("metrics", lambda s: s.call(s.client.log_batch, self.run_id, metrics=batch))

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self._do("tags", lambda s: s.call(s.client.log_batch, self.run_id, tags=batch))

    def parent_id(self) -> str | None:
        """The run this one is nested under (a variant's pipeline run), or None."""
        from .parent import PARENT_TAG

        run = self._do("the pipeline run", lambda s: s.call(s.client.get_run, self.run_id))
        return run.data.tags.get(PARENT_TAG) if run is not None else None

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._do(
            f"artifact {Path(path).name}",
            lambda s: s.call(s.client.log_artifact, self.run_id, str(path), artifact_path),
        )

    def log_dict(self, obj: dict, artifact_file: str) -> None:
        self._do(
            artifact_file,
            lambda s: s.call(
                s.client.log_dict,
                self.run_id,
                json.loads(json.dumps(obj, default=float)),
                artifact_file,
            ),
        )


def attach(run_id: str | None) -> RunLogger | None:
    """A best-effort logger into an existing run; None when MLflow is off or there is no run."""
    if not run_id or not mlflow_enabled():
        return None
    return RunLogger(default_tracking_uri(), run_id, best_effort=True)


def open_run(run_file: str | Path) -> RunLogger | None:
    """Re-open the run of a trained variant (``mlflow_run.json``) for later stages."""
    run = MlflowRun.read_if_present(run_file)
    return attach(run.run_id) if run else None
