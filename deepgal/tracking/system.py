"""MLflow's system metrics (CPU, memory, GPU) for a training run, when psutil is installed."""

from __future__ import annotations

import contextlib
import logging

log = logging.getLogger(__name__)


class SystemMetrics:
    def __init__(self, run_id: str, uri: str, interval_s: float = 10):
        self._monitor = None
        try:
            import psutil  # noqa: F401  (MLflow's monitor needs it)
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        except ImportError:
            log.info("psutil not installed: no system metrics")
            return
        # Our URI, not MLflow's default: that is relative to the working directory, which in a
        # queued `dvc exp` is a temporary copy of the repository.
        self._monitor = SystemMetricsMonitor(
            run_id, sampling_interval=interval_s, samples_before_logging=1, tracking_uri=uri
        )
        self._monitor.start()

    def stop(self) -> None:
        if self._monitor is not None:
            # A monitor thread that fails while stopping must not fail the training it watched.
            with contextlib.suppress(Exception):
                self._monitor.finish()
            self._monitor = None
