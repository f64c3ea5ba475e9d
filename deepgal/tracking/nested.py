"""A finished piece of work logged as a run nested under a variant's training run.

The ``finetune@<v>`` stage adapts the variant's selected checkpoint: its record (settings as
params, the per-fold CV accuracies as a curve with step = fold, the summary figures, the
labelled set as a dataset input, the report file) is a child of the variant's run, found
through ``models/<v>/mlflow_run.json`` as the other stages find it. Best effort like every
stage after training: an unreachable tracker is one warning, never a failed stage.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from .parent import KIND_TAG, PARENT_TAG
from .runlog import RunLogger, open_run


def _child(parent: RunLogger, name: str, kind: str) -> RunLogger | None:
    """A new run under ``parent`` (same experiment), or None when the tracker is away."""
    def create(store) -> str:
        experiment = store.call(store.client.get_run, parent.run_id).info.experiment_id
        tags = {PARENT_TAG: parent.run_id, KIND_TAG: kind, "mlflow.source.type": "LOCAL",
                "mlflow.source.name": Path(sys.argv[0]).name}
        return store.call(store.client.create_run, experiment, run_name=name,
                          tags=tags).info.run_id
    run_id = parent._do(f"the {kind} run", create)
    if run_id is None:
        return None
    return RunLogger(parent.uri, run_id, store=parent.store, best_effort=True)


def log_nested_run(run_file: str | Path, name: str, kind: str, params: dict[str, Any],
                   curve: dict[str, list[float]], metrics: dict[str, float],
                   dataset: dict | None = None, artifact: str | Path | None = None
                   ) -> str | None:
    """Log one finished run named ``name`` under the run of ``run_file``; returns its id, or
    None (MLflow off, no run, tracker away). ``curve``: {key: values}, value i at step i;
    ``dataset``: a source dict for :func:`~deepgal.tracking.dataset.dataset_inputs`, logged
    with context ``kind``."""
    parent = open_run(run_file)
    if parent is None:
        return None
    child = _child(parent, name, kind)
    if child is None:
        return None
    from mlflow.entities import Metric, Param

    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    child._do("params", lambda s: s.call(s.client.log_batch, child.run_id, params=items))
    now = int(time.time() * 1000)
    points = [Metric(k, float(v), now, step) for k, values in curve.items()
              for step, v in enumerate(values)]
    child._do("the curve", lambda s: s.call(s.client.log_batch, child.run_id, metrics=points))
    child.log_metrics(metrics)
    if dataset is not None:
        from .dataset import dataset_inputs

        inputs = dataset_inputs(dataset, {kind: int(dataset["n_images"])})
        child._do("the dataset", lambda s: s.call(s.client.log_inputs, child.run_id,
                                                  datasets=inputs))
    if artifact is not None:
        child.log_artifact(artifact)
    child._do("the end", lambda s: s.call(s.client.set_terminated, child.run_id, "FINISHED"))
    return child.run_id
