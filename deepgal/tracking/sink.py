"""The MLflow sink of the training loop: one nested run per variant, survives the tracker.

Construct it before training: it fails fast (:class:`TrackingError`) if the store cannot be
used. Afterwards it never fails the training: an epoch that cannot be delivered is buffered
and re-sent; what never arrives is returned by :meth:`MlflowSink.finish` and tagged on the run.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from ..utils import redact
from . import parent
from .buffer import EpochBuffer
from .env import TrackingError, experiment_name, pipeline_run_name
from .runlog import RunLogger
from .store import Store
from .system import SystemMetrics

log = logging.getLogger(__name__)


class MlflowSink(RunLogger):
    """The training run of one variant, nested under its pipeline run.

    ``run_id``: resume that run (after an interruption) when it is in this experiment.
    ``tags``/``params``: set on the run (``params`` = the resolved config, flat dotted keys).
    """

    def __init__(
        self,
        uri: str,
        run_name: str,
        tags: dict[str, str],
        params: dict[str, Any],
        run_id: str | None = None,
        experiment: str | None = None,
        retries: int = 3,
        system_metrics: bool = True,
    ):
        try:
            store = Store(uri, retries)
            self.experiment_id = store.experiment_id(experiment or experiment_name())
            self.parent_id = parent.find_or_create(
                store, self.experiment_id, pipeline_run_name(), tags
            )
            run_id = store.call(self._start_run, store, run_id, run_name, tags)
            super().__init__(uri, run_id, store=store)
            parent.child_started(store, self.parent_id)
            self._log_params(params)
            delivered = store.call(self._steps_logged)
        except TrackingError as e:
            raise TrackingError(
                f"MLflow tracking at {redact(uri)} cannot be used ({e}). Start the server, fix "
                "MLFLOW_TRACKING_URI, or run without MLflow: DEEPGAL_MLFLOW=off"
            ) from None
        self.buffer = EpochBuffer(self._send_epoch, delivered)
        self._system = SystemMetrics(self.run_id, uri) if system_metrics else None
        log.info(
            "MLflow run %s (in pipeline run %s) at %s",
            self.run_id,
            pipeline_run_name(),
            redact(uri),
        )

    def _start_run(
        self, store: Store, run_id: str | None, run_name: str, tags: dict[str, str]
    ) -> str:
        from mlflow.exceptions import MlflowException

        client = store.client
        nest = {parent.PARENT_TAG: self.parent_id}
        # The run list's "Source" column: the stage script and the commit it ran at.
        source = {
            "mlflow.source.type": "LOCAL",
            "mlflow.source.name": Path(sys.argv[0]).name,
            "mlflow.source.git.commit": tags.get("git.commit", ""),
        }
        if run_id:
            try:
                run = client.get_run(run_id)
            except MlflowException:
                run = None
                log.info("MLflow run %s not found; starting a new one", run_id)
            if run is not None and run.info.experiment_id == self.experiment_id:
                client.update_run(run_id, status="RUNNING")
                # The pipeline run resuming it owns it now (e.g. `dvc repro` after a Ctrl-C'd
                # `dvc exp run`), so the run list shows it where it was finished.
                for k, v in {**nest, "deepgal.resumed": "true"}.items():
                    client.set_tag(run_id, k, v)
                return run_id
        return client.create_run(
            self.experiment_id, run_name=run_name, tags={**source, **tags, **nest}
        ).info.run_id

    def _log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.store.call(self.client.get_run, self.run_id).data.params
        items = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.store.call(self.client.log_batch, self.run_id, params=items[i : i + 100])

    def _steps_logged(self) -> set[int]:
        return {m.step for m in self.client.get_metric_history(self.run_id, "val/accuracy")}

    def _send_epoch(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(metrics["epoch"])
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if k != "epoch"]
        self.store.call(self.client.log_batch, self.run_id, metrics=batch)

    # -- the sink
    def log_epoch(self, metrics: dict[str, float]) -> None:
        """Send one epoch (``step`` = epoch); buffer it if the tracker is unreachable."""
        self.buffer.add(metrics)

    def flush(self) -> bool:
        return self.buffer.flush()

    @property
    def pending(self) -> list[dict]:
        return self.buffer.pending

    def log_dataset(self, source, split_sizes: dict[str, int]) -> None:
        """The data as dataset inputs of the run, one per split (see :mod:`.dataset`)."""
        from .dataset import dataset_inputs

        inputs = dataset_inputs(source, split_sizes)
        self.store.call(self.client.log_inputs, self.run_id, datasets=inputs)

    def finish(self, status: str = "FINISHED") -> list[int]:
        """End the run; returns the epochs that never reached the tracker."""
        if self._system is not None:
            self._system.stop()
        for _ in range(3):
            if self.flush():
                break
            time.sleep(2)
        missing = self.buffer.undelivered()
        try:
            if missing:
                self.store.call(
                    self.client.set_tag,
                    self.run_id,
                    "deepgal.undelivered_epochs",
                    ",".join(map(str, missing)),
                )
            self.store.call(self.client.set_terminated, self.run_id, status)
            parent.child_ended(self.store, self.experiment_id, self.parent_id)
        except TrackingError as e:
            log.warning("could not close MLflow run %s (%s)", self.run_id, e)
        return missing
