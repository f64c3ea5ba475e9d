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
        self._do(
            "the run's end", lambda s: s.call(s.client.set_terminated, self.run_id, status, end_ms)
        )


def start_nested(
    parent: RunLogger,
    name: str,
    tags: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    start_ms: int | None = None,
) -> NestedRun | None:
    """A new run called ``name`` in ``parent``'s experiment, nested under it (MLflow's
    ``mlflow.parentRunId`` tag), started at ``start_ms`` (ms since the epoch; None: now).
    None when the tracker cannot be reached (one warning, from ``parent``)."""
    from mlflow.entities import Param

    def create(store) -> str:
        exp = store.call(store.client.get_run, parent.run_id).info.experiment_id
        run = store.call(
            store.client.create_run,
            exp,
            start_time=start_ms,
            run_name=name,
            tags={**{k: str(v) for k, v in (tags or {}).items()}, PARENT_TAG: parent.run_id},
        )
        if params:
            store.call(
                store.client.log_batch,
                run.info.run_id,
                params=[Param(k, str(v)) for k, v in params.items()],
            )
        return run.info.run_id

    run_id = parent._do(f"run {name}", create)
    if run_id is None:
        return None
    return NestedRun(parent.uri, run_id, store=parent.store, best_effort=True)


def log_nested_run(
    run_file,
    name: str,
    kind: str,
    params: dict[str, Any],
    curve: dict[str, list[float]],
    metrics: dict[str, float],
    dataset: dict | None = None,
    artifact=None,
) -> str | None:
    """Log one finished piece of work (fine-tuning) as run ``name`` under the run of
    ``run_file`` (``models/<v>/mlflow_run.json``), tagged ``deepgal.kind = kind``; returns its
    id, or None (MLflow off, no run, tracker away). ``curve``: {key: values}, value i at
    step i; ``dataset``: a source dict for :func:`~deepgal.tracking.dataset.dataset_inputs`,
    logged with context ``kind``; ``artifact``: a file to attach."""
    import time

    from mlflow.entities import Metric

    from .parent import KIND_TAG
    from .runlog import open_run

    parent = open_run(run_file)
    child = start_nested(parent, name, {KIND_TAG: kind}, params) if parent else None
    if child is None:
        return None
    now = int(time.time() * 1000)
    points = [
        Metric(k, float(v), now, step)
        for k, values in curve.items()
        for step, v in enumerate(values)
    ]
    child._do("the curve", lambda s: s.call(s.client.log_batch, child.run_id, metrics=points))
    child.log_metrics(metrics)
    if dataset is not None:
        from .dataset import dataset_inputs

        inputs = dataset_inputs(dataset, {kind: int(dataset["n_images"])})
        child._do(
            "the dataset", lambda s: s.call(s.client.log_inputs, child.run_id, datasets=inputs)
        )
    if artifact is not None:
        child.log_artifact(artifact)
    child.end()
    return child.run_id
