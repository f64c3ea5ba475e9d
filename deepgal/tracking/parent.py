"""One parent run per pipeline run; every variant's training run is nested under it.

The parent is named by :func:`~deepgal.tracking.env.pipeline_run_name` (the DVC experiment, or
``workspace@<short commit>``) and found or created under a lock, so the train stages of one
``dvc repro`` (in parallel or not) and of one queued experiment all agree on it. Processes on
other machines cannot share that lock: if two parents of one name appear, everyone picks the
oldest and a creator that lost deletes its own, so the store keeps one.

The parent has no work of its own; its status follows its children: RUNNING while one trains,
then FINISHED, or FAILED / KILLED when a child ended so.
"""

from __future__ import annotations

from .env import quote_filter_value
from .store import Store, uri_lock

PIPELINE_TAG = "deepgal.pipeline_run"
KIND_TAG = "deepgal.kind"
PARENT_TAG = "mlflow.parentRunId"
# Tags of a training run that describe the whole pipeline run, copied onto the parent.
SHARED_TAGS = ("dvc.exp_name", "git.commit", "data.source", "data.sha256")


def _search(store: Store, experiment_id: str, filter_string: str) -> list:
    return store.call(
        store.client.search_runs, [experiment_id], filter_string=filter_string, max_results=1000
    )


def _parents(store: Store, experiment_id: str, name: str) -> list:
    runs = _search(
        store,
        experiment_id,
        f"tags.`{PIPELINE_TAG}` = {quote_filter_value(name)} and tags.`{KIND_TAG}` = 'pipeline'",
    )
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))


def find_or_create(store: Store, experiment_id: str, name: str, tags: dict[str, str]) -> str:
    """The run id of the parent run called ``name``, created if there is none yet."""
    with uri_lock(store.uri, "parent"):
        found = _parents(store, experiment_id, name)
        if found:
            return found[0].info.run_id
        shared = {k: str(v) for k, v in tags.items() if k in SHARED_TAGS}
        mine = store.call(
            store.client.create_run,
            experiment_id,
            run_name=name,
            tags={
                **shared,
                PIPELINE_TAG: name,
                KIND_TAG: "pipeline",
                "mlflow.note.content": f"deepgal pipeline run `{name}`: one nested run per "
                "model variant (expand this row).",
            },
        ).info.run_id
        oldest = _parents(store, experiment_id, name)[0].info.run_id
        if oldest != mine:  # another machine created one first
            store.call(store.client.delete_run, mine)
        return oldest


def child_started(store: Store, parent_id: str) -> None:
    with uri_lock(store.uri, "parent"):
        store.call(store.client.update_run, parent_id, status="RUNNING")


def child_ended(store: Store, experiment_id: str, parent_id: str) -> None:
    """Close the parent when none of its children is still running."""
    with uri_lock(store.uri, "parent"):
        children = _search(
            store, experiment_id, f"tags.`{PARENT_TAG}` = {quote_filter_value(parent_id)}"
        )
        statuses = {r.info.status for r in children}
        if "RUNNING" in statuses or "SCHEDULED" in statuses:
            return
        status = next((s for s in ("FAILED", "KILLED") if s in statuses), "FINISHED")
        store.call(store.client.set_terminated, parent_id, status)
