"""Tracking sinks. The training loop makes one metrics dict per epoch; sinks deliver it.

- :class:`FileSink` (``files``) writes ``history.csv`` (DVC plots).
- :class:`MlflowSink` (``sink``) sends the same dict to the variant's MLflow run, nested under
  one parent run per pipeline run (``parent``), buffering epochs while the tracker is away
  (``buffer``), with the data as dataset inputs (``dataset``) and system metrics (``system``).
- :func:`attach` / :func:`open_run` (``runlog``) let later stages log into that run, best
  effort; :func:`start_nested` (``nested``) adds runs under it afterwards (k-fold CV), :func:`log_nested_run` a finished one
  (fine-tuning). ``env`` says where the store is; ``store`` retries calls under a lock.
- :mod:`deepgal.mlflow_model` (beside this package) logs a checkpoint as an MLflow model.

No other module calls ``mlflow``, and importing this package loads neither MLflow nor torch.
"""

from ..utils import redact
from .env import (
    EXPERIMENT_DEFAULT,
    TrackingError,
    default_tracking_uri,
    git_commit,
    mlflow_enabled,
    pipeline_run_name,
    project_root,
)
from .files import HISTORY_COLUMNS, FileSink
from .nested import NestedRun, log_nested_run, start_nested
from .runlog import RunLogger, attach, open_run, summary_key
from .sink import MlflowSink
from .store import store_lock

__all__ = [
    "EXPERIMENT_DEFAULT",
    "HISTORY_COLUMNS",
    "FileSink",
    "MlflowSink",
    "NestedRun",
    "RunLogger",
    "TrackingError",
    "attach",
    "default_tracking_uri",
    "git_commit",
    "log_nested_run",
    "mlflow_enabled",
    "open_run",
    "pipeline_run_name",
    "project_root",
    "redact",
    "start_nested",
    "store_lock",
    "summary_key",
]
