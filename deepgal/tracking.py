"""Tracking sinks. The training loop makes one metrics dict per epoch; sinks deliver it.

- :class:`FileSink` writes ``history.csv`` (DVC plots) and ``metrics.json`` (DVC metrics).
- :class:`MlflowSink` sends the same dict to MLflow, and survives the tracker going away:
  an epoch that cannot be delivered is kept and re-sent later; what never arrives is reported.

No other module calls ``mlflow``.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

from .utils import atomic_write_text, redact, write_json

log = logging.getLogger(__name__)
EXPERIMENT_DEFAULT = "deepgal"
HISTORY_COLUMNS = ("epoch", "train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr",
                   "images_per_s", "seconds")


class TrackingError(RuntimeError):
    """The tracking server or store cannot be used; the message says which and what to do."""


# ---- where things live ----------------------------------------------------------------------

def project_root(cwd: str | Path | None = None) -> Path:
    """The repository root, also from inside a queued DVC experiment.

    ``dvc exp run --queue`` runs stages in a copy under ``<repo>/.dvc/tmp/exps/...``; their
    MLflow runs must land in the user's store, not in a temporary copy that is deleted.
    """
    cwd = Path(cwd or os.getcwd()).resolve()
    parts = cwd.parts
    for i in range(len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def default_tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else an absolute SQLite store in the repository root."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(root or project_root()) / 'mlflow.db'}"


def mlflow_enabled() -> bool:
    return os.environ.get("DEEPGAL_MLFLOW", "on").lower() not in ("0", "off", "false", "no")


def git_commit(cwd: str | Path = ".") -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


# ---- files (DVC) -----------------------------------------------------------------------------

class FileSink:
    """``history.csv`` rewritten atomically every epoch, so it is complete whatever happens."""

    def __init__(self, history_csv: str | Path, metrics_json: str | Path):
        self.history_csv, self.metrics_json = Path(history_csv), Path(metrics_json)
        self.rows: list[dict] = []

    def log_epoch(self, metrics: dict[str, float]) -> None:
        self.rows = [r for r in self.rows if r["epoch"] < metrics["epoch"]] + [metrics]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.history_csv, buf.getvalue())

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.metrics_json, metrics)


# ---- MLflow ---------------------------------------------------------------------------------

def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise writers of one SQLite store across processes (parallel `dvc exp` runs).

    SQLite allows one writer; MLflow's SQLAlchemy store answers a busy database with
    "database is locked" rather than waiting, so we queue on an flock beside the file.
    """
    db = _sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class MlflowSink:
    """One MLflow run per variant. Construct it before training: it fails fast if unreachable."""

    def __init__(self, uri: str, run_name: str, tags: dict[str, str], params: dict[str, Any],
                 run_id: str | None = None, experiment: str | None = None,
                 retries: int = 3, system_metrics: bool = True, attach: bool = False):
        # MLflow's HTTP client retries for minutes by default; we buffer instead.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        if redact(uri) != uri:  # MLflow prints run links with the URI as given, password and all
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        from mlflow.tracking import MlflowClient

        self.uri, self.retries = uri, retries
        self.pending: list[dict] = []
        self._monitor = None
        name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT_DEFAULT)
        try:
            # Opening a new SQLite store creates its tables: under the lock, or parallel runs
            # race ("table ... already exists").
            self.client = self._call(MlflowClient, uri)
            self.experiment_id = self._call(self._get_or_create_experiment, name)
            self.run_id = (run_id if attach
                           else self._call(self._start_run, run_id, run_name, tags))
            self._call(self._log_params, params)
        except TrackingError as e:
            raise TrackingError(
                f"MLflow tracking at {redact(uri)} cannot be used ({e}). Start the server, fix "
                "MLFLOW_TRACKING_URI, or run without MLflow: DEEPGAL_MLFLOW=off") from None
        self.logged_steps = self._call(self._steps_logged)
        if system_metrics:
            self._start_system_metrics()
        log.info("MLflow run %s in %s", self.run_id, redact(uri))

    # -- plumbing
    def _call(self, fn, *args):
        """Run one MLflow operation under the store lock, retrying transient failures."""
        from mlflow.exceptions import MlflowException
        from requests.exceptions import RequestException
        from sqlalchemy.exc import OperationalError

        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                with store_lock(self.uri):
                    return fn(*args)
            except (MlflowException, RequestException, OperationalError, OSError) as e:
                last = e
                if attempt < self.retries:
                    time.sleep(min(0.5 * 2**attempt, 4.0))
        first = str(last).strip().splitlines()[0][:200] if last else ""
        raise TrackingError(f"{type(last).__name__}: {redact(first)}")

    def _get_or_create_experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        db = _sqlite_path(self.uri)
        location = (db.parent / "mlartifacts").as_uri() if db else None
        return self.client.create_experiment(
            name, artifact_location=location,
            tags={"mlflow.experimentKind": "custom_model_development"})

    def _start_run(self, run_id: str | None, run_name: str, tags: dict[str, str]) -> str:
        if run_id:
            from mlflow.exceptions import MlflowException
            try:
                run = self.client.get_run(run_id)
                if run.info.experiment_id == self.experiment_id:
                    self.client.update_run(run_id, status="RUNNING")
                    self.client.set_tag(run_id, "deepgal.resumed", "true")
                    return run_id
            except MlflowException:
                log.info("MLflow run %s not found; starting a new one", run_id)
        return self.client.create_run(self.experiment_id, run_name=run_name,
                                      tags=tags).info.run_id

    def _log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        existing = self.client.get_run(self.run_id).data.params
        items = [p for p in items if p.key not in existing]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def _steps_logged(self) -> set[int]:
        return {m.step for m in self.client.get_metric_history(self.run_id, "val/accuracy")}

    def _start_system_metrics(self) -> None:
        try:
            import psutil  # noqa: F401  (system metrics need it)
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        except ImportError:
            return
        # Our URI, not MLflow's default: that is relative to the working directory, which in a
        # queued `dvc exp` is a temporary copy of the repository.
        self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=10,
                                             samples_before_logging=1, tracking_uri=self.uri)
        self._monitor.start()

    # -- the sink
    def log_epoch(self, metrics: dict[str, float]) -> None:
        """Send one epoch (``step`` = epoch); buffer it if the tracker is unreachable."""
        if int(metrics["epoch"]) in self.logged_steps:
            return  # already delivered before an interruption: no duplicate points
        self.pending.append(metrics)
        self.flush()

    def flush(self) -> bool:
        from mlflow.entities import Metric
        while self.pending:
            m = self.pending[0]
            step = int(m["epoch"])
            now = int(time.time() * 1000)
            batch = [Metric(k, float(v), now, step) for k, v in m.items() if k != "epoch"]
            try:
                self._call(lambda: self.client.log_batch(self.run_id, metrics=batch))
            except TrackingError as e:
                log.warning("MLflow unreachable (%s); %d epoch(s) buffered, will retry",
                            e, len(self.pending))
                return False
            self.logged_steps.add(step)
            self.pending.pop(0)
        return True

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self._call(lambda: self.client.log_batch(self.run_id, metrics=batch))

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self._call(self.client.set_tag, self.run_id, k, str(v))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._call(self.client.log_artifact, self.run_id, str(path), artifact_path)

    def log_dict(self, obj: dict, artifact_file: str) -> None:
        self._call(self.client.log_dict, self.run_id, obj, artifact_file)

    def register_checkpoint(self, path: str | Path, name: str, alias: str = "best") -> dict:
        """Log ``path`` under ``selected/`` and register it as a model version with ``alias``."""
        self.log_artifact(path, "selected")

        def register():
            from mlflow.exceptions import MlflowException
            try:
                self.client.create_registered_model(name)
            except MlflowException:
                pass  # already registered by an earlier run
            artifact_uri = self.client.get_run(self.run_id).info.artifact_uri
            mv = self.client.create_model_version(
                name, f"{artifact_uri}/selected/{Path(path).name}", run_id=self.run_id)
            self.client.set_registered_model_alias(name, alias, mv.version)
            return {"name": name, "version": int(mv.version), "alias": alias}

        return self._call(register)

    def finish(self, status: str = "FINISHED") -> list[int]:
        """End the run; returns the epochs that never reached the tracker (the gap)."""
        if self._monitor is not None:
            with contextlib.suppress(Exception):  # a monitor thread must not fail the run
                self._monitor.finish()
        for _ in range(3):
            if self.flush():
                break
            time.sleep(2)
        gap = [int(m["epoch"]) for m in self.pending]
        try:
            if gap:
                self._call(self.client.set_tag, self.run_id, "deepgal.undelivered_epochs",
                           ",".join(map(str, gap)))
            self._call(self.client.set_terminated, self.run_id, status)
        except TrackingError as e:
            log.warning("could not close MLflow run %s (%s)", self.run_id, e)
        return gap


def open_run(run_file: str | Path) -> MlflowSink | None:
    """Re-open the run of a trained variant (``mlflow_run.json``) for later stages."""
    path = Path(run_file)
    if not path.exists():
        return None
    return attach(json.loads(path.read_text()).get("run_id"))


def attach(run_id: str | None) -> MlflowSink | None:
    """A sink logging into an existing run without touching its status; None when off."""
    if not run_id or not mlflow_enabled():
        return None
    return MlflowSink(default_tracking_uri(), "", {}, {}, run_id=run_id, system_metrics=False,
                      attach=True)
