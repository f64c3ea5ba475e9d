"""A sweep on DVC's own queue: a grid queued with `dvc exp run --queue -S a=x,y`, run by
`dvc queue start -j 2`, logging to one SQLite store.

With ``MLFLOW_TRACKING_URI`` unset, each queued run (in a copy under ``.dvc/tmp/exps``) must
find the repository's own ``mlflow.db``; the two processes then write to it concurrently, and
neither may fail with "database is locked" (or race creating the store). Each experiment's runs
are found in MLflow by its DVC name (a parent run of that name, the variants nested under it),
and the copies check the data file out as a link to the cache, never as a copy of it
(``cache.type`` in ``.dvc/config``; docs/scaling.md).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest
import yaml

from tests.pipeline_repo import REPO, env_for, make_repo, run

from .conftest import wait_for

pytestmark = pytest.mark.slow

GRID = "train.lr=0.005,0.03"  # DVC expands a comma list into one queued experiment per value
LRS = {0.005, 0.03}
EXPS = ("lr-1", "lr-2")  # `-n lr` + a grid: DVC names them lr-1, lr-2, ...
VARIANTS = ("smallnet", "customnet")  # the tiny config's two variants, 3 epochs each
EPOCHS = 3
DATA = "data/galaxy10.h5"


def queue_states(repo, env) -> dict[str, str] | None:
    out = run([sys.executable, "-m", "dvc", "queue", "status"], repo, env, timeout=120).stdout
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] in EXPS:
            states[parts[1]] = parts[-1]
    return states


def exp_records(shown: list) -> dict[str, dict]:
    """`dvc exp show --json` -> {experiment name: its data}, whatever the nesting."""
    found = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("name"):
                    found[rev["name"]] = rev["data"]
            if exp.get("name") and exp.get("revs"):
                found.setdefault(exp["name"], exp["revs"][0]["data"])
    return found


def cache_file(repo: Path, out: str) -> Path:
    """The cache object of a file output, from dvc.lock."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    [md5] = [
        o["md5"] for s in lock["stages"].values() for o in s.get("outs", []) if o["path"] == out
    ]
    return repo / ".dvc/cache/files/md5" / md5[:2] / md5[2:]


class LinkWatch(threading.Thread):
    """Records how ``data/galaxy10.h5`` appears in each queued experiment's temporary copy.

    ``seen`` maps the copy's folder to ``"link"`` (a hard link to, or symlink into, the cache
    object) or ``"copy"`` (a file of its own: the 3.5 GB copy this test forbids).
    """

    def __init__(self, repo: Path, cached: Path):
        super().__init__(daemon=True)
        self.repo, self.cached = repo, cached
        self.ino = cached.stat().st_ino
        self.seen: dict[str, str] = {}
        self.done = threading.Event()

    def run(self) -> None:
        root = self.repo / ".dvc/tmp/exps"
        while not self.done.wait(0.05):
            for f in list(root.glob(f"*/{DATA}")) + list(root.glob(f"*/*/{DATA}")):
                try:
                    linked = (
                        Path(os.path.realpath(f)) == self.cached
                        if f.is_symlink()
                        else f.stat().st_ino == self.ino
                    )
                except FileNotFoundError:  # the copy went away between glob and stat
                    continue
                key = str(f.parents[1].relative_to(root))
                if self.seen.get(key) != "copy":
                    self.seen[key] = "link" if linked else "copy"


def test_queued_grid_runs_two_workers_on_one_store(tmp_path, procs):
    repo = make_repo(tmp_path / "repo")
    # The project's cache link types (make_repo's `dvc init` writes DVC's defaults).
    shutil.copy(REPO / ".dvc/config", repo / ".dvc/config")
    env = env_for(repo)
    del env["MLFLOW_TRACKING_URI"]  # the default store of the repository root, found from a copy
    dvc = [sys.executable, "-m", "dvc"]
    run(dvc + ["repro", "split"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "data and split"], repo, env)
    cached = cache_file(repo, DATA)
    assert (repo / DATA).stat().st_ino == cached.stat().st_ino, "workspace data is a copy"
    queued = run(dvc + ["exp", "run", "--queue", "-n", "lr", "-S", GRID, "train"], repo, env).stdout
    for name in EXPS:
        assert f"Queued experiment '{name}'" in queued, queued

    # `queue start` returns only when its workers exit (they inherit its output): background.
    watch = LinkWatch(repo, cached)
    watch.start()
    workers = procs(dvc + ["queue", "start", "-j", "2"], repo, env, tmp_path / "queue.log")
    try:
        states = wait_for(
            lambda: (
                (s := queue_states(repo, env))
                and len(s) == len(EXPS)
                and all(v in ("Success", "Failed") for v in s.values())
                and s
            ),
            900,
            "both experiments to end",
            every=5,
        )
    finally:
        watch.done.set()
        watch.join(timeout=10)
    logs = {
        name: run(dvc + ["queue", "logs", name], repo, env, timeout=120).stdout for name in EXPS
    }
    for log in logs.values():
        assert "database is locked" not in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        # The system-metrics thread looked for the run in the same store (not MLflow's default,
        # which is relative to the temporary copy).
        assert "Failed to get mlflow run" not in log, log[-3000:]
    assert states == {name: "Success" for name in EXPS}, {n: lg[-2000:] for n, lg in logs.items()}
    workers.wait(timeout=300)

    # Both experiments' copies were watched, and each held the data as a link to the cache.
    assert len(watch.seen) == len(EXPS), watch.seen
    assert set(watch.seen.values()) == {"link"}, watch.seen

    # DVC: each experiment's params, lock and metrics.
    shown = json.loads(run(dvc + ["exp", "show", "--json"], repo, env, timeout=300).stdout)
    records = exp_records(shown)
    lr_of = {name: records[name]["params"]["params.yaml"]["data"]["train"]["lr"] for name in EXPS}
    assert set(lr_of.values()) == LRS, lr_of
    for name in EXPS:  # train.json is a detail file, not a DVC metric: its epochs are
        for v in VARIANTS:  # checked in MLflow below, every step of every run
            assert records[name]["outs"][f"models/{v}/checkpoints"]["hash"]

    # MLflow: every run landed in the repository's store; none in the temporary copies.
    db = repo / "mlflow.db"
    assert db.exists()
    assert not list((repo / ".dvc/tmp").rglob("mlflow.db")), "a run wrote to a temporary copy"
    spans = {name: check_mlflow_runs(f"sqlite:///{db}", name, lr_of[name]) for name in EXPS}
    # The two experiments really ran at the same time (else this proves nothing about locking).
    (a0, a1), (b0, b1) = spans.values()
    assert a0 < b1 and b0 < a1, f"the experiments did not overlap: {spans}"


def check_mlflow_runs(uri: str, exp_name: str, lr: float) -> tuple[int, int]:
    """Find an experiment's runs as a user does: the parent run named after the DVC experiment,
    its nested runs one per variant. Returns the (start, end) ms of the variant runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name("deepgal").experiment_id
    parents = client.search_runs([exp_id], f"attributes.run_name = '{exp_name}'")
    assert len(parents) == 1, f"want one parent run named {exp_name!r}, found {parents}"
    parent = parents[0]
    assert parent.info.status == "FINISHED", parent.info
    children = client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.info.run_name for r in children) == sorted(VARIANTS), children
    by_tag = client.search_runs([exp_id], f"tags.`dvc.exp_name` = '{exp_name}'")
    assert {r.info.run_id for r in children} <= {r.info.run_id for r in by_tag}
    for r in children:
        assert r.info.status == "FINISHED", r.info
        assert float(r.data.params["lr"]) == lr, r.data.params
        for key in ("val/accuracy", "train/loss", "lr"):
            steps = [m.step for m in client.get_metric_history(r.info.run_id, key)]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (exp_name, r.info.run_name, key)
    return (min(r.info.start_time for r in children), max(r.info.end_time for r in children))
