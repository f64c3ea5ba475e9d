"""Runs nested under an existing run, made after the work they describe (best effort).

A k-fold cross-validation is logged as one run per fold set, nested under the variant's
training run, with one child run per fold under it. The stage has written its local outputs
first; the runs are then created with the times the work really took, so a tracker that is
away costs one warning and no result.
"""
from __future__ import annotations

from typing import Any

from .parent import PARENT_TAG
from .runlog import RunLogger


class NestedRun(RunLogger):
    """A best-effort logger of a run created under ``parent`` (see :func:`start_nested`)."""

    def end(self, end_ms: int | None = None, status: str = "FINISHED") -> None:
        self._do("the run's end", lambda s: s.call(s.client.set_terminated, self.run_id,
                                                   status, end_ms))


def start_nested(parent: RunLogger, name: str, tags: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None,
                 start_ms: int | None = None) -> NestedRun | None:
    """A new run called ``name`` in ``parent``'s experiment, nested under it (MLflow's
    ``mlflow.parentRunId`` tag), started at ``start_ms`` (ms since the epoch; None: now).
    None when the tracker cannot be reached (one warning, from ``parent``)."""
    from mlflow.entities import Param

    def create(store) -> str:
        exp = store.call(store.client.get_run, parent.run_id).info.experiment_id
        run = store.call(store.client.create_run, exp, start_time=start_ms, run_name=name,
                         tags={**{k: str(v) for k, v in (tags or {}).items()},
                               PARENT_TAG: parent.run_id})
        if params:
            store.call(store.client.log_batch, run.info.run_id,
                       params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    run_id = parent._do(f"run {name}", create)
    if run_id is None:
        return None
    return NestedRun(parent.uri, run_id, store=parent.store, best_effort=True)
