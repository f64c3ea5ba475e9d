"""Two queued DVC experiments run at once (`dvc queue start -j 2`), logging to one SQLite store.

With ``MLFLOW_TRACKING_URI`` unset, each queued run (in a copy under ``.dvc/tmp/exps``) must
find the repository's own ``mlflow.db``; the two processes then write to it concurrently, and
neither may fail with "database is locked" (or race creating the store).
"""
from __future__ import annotations

import json
import sys

import pytest

from tests.pipeline_repo import env_for, make_repo, run

from .conftest import sqlite_runs, sqlite_steps, sqlite_tags, wait_for

pytestmark = pytest.mark.slow

EXPS = {"lr-low": 0.005, "lr-high": 0.03}
VARIANTS = ("smallnet", "customnet")  # the tiny config's two variants, 3 epochs each
EPOCHS = 3


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


def test_queued_experiments_in_parallel_share_the_repo_store(tmp_path, procs):
    repo = make_repo(tmp_path / "repo")
    env = env_for(repo)
    del env["MLFLOW_TRACKING_URI"]  # the default store of the repository root, found from a copy
    dvc = [sys.executable, "-m", "dvc"]
    run(dvc + ["repro", "split"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "data and split"], repo, env)
    for name, lr in EXPS.items():
        run(dvc + ["exp", "run", "--queue", "-n", name, "-S", f"train.lr={lr}", "train"], repo,
            env)

    # `queue start` returns only when its workers exit (they inherit its output): background.
    workers = procs(dvc + ["queue", "start", "-j", "2"], repo, env, tmp_path / "queue.log")
    states = wait_for(lambda: (s := queue_states(repo, env)) and len(s) == len(EXPS) and all(
        v in ("Success", "Failed") for v in s.values()) and s, 900, "both experiments to end",
        every=5)
    logs = {name: run(dvc + ["queue", "logs", name], repo, env, timeout=120).stdout
            for name in EXPS}
    for name, log in logs.items():
        assert "database is locked" not in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        # The system-metrics thread looked for the run in the same store (not MLflow's default,
        # which is relative to the temporary copy).
        assert "Failed to get mlflow run" not in log, log[-3000:]
    assert states == {name: "Success" for name in EXPS}, {n: lg[-2000:] for n, lg in logs.items()}
    workers.wait(timeout=300)

    # Every run landed in the repository's store; none in the temporary copies.
    db = repo / "mlflow.db"
    assert db.exists()
    assert not list((repo / ".dvc/tmp").rglob("mlflow.db")), "a run wrote to a temporary copy"
    runs = sqlite_runs(db)
    by_exp: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        tags = sqlite_tags(db, r["run_id"])
        by_exp.setdefault((tags.get("dvc.exp_name"), r["name"]), []).append(r)
    assert set(by_exp) == {(e, v) for e in EXPS for v in VARIANTS}, sorted(by_exp)
    for (exp, variant), found in by_exp.items():
        assert len(found) == 1, (exp, variant, found)
        r = found[0]
        assert r["status"] == "FINISHED", (exp, variant, r)
        for key in ("val/accuracy", "train/loss", "lr"):
            assert sqlite_steps(db, r["run_id"], key) == list(range(1, EPOCHS + 1))
        assert float(_param(db, r["run_id"], "train.lr")) == EXPS[exp]
    # The two experiments really ran at the same time (else this proves nothing about locking).
    spans = {e: _span(db, [rr["run_id"] for (ee, _), f in by_exp.items() if ee == e
                           for rr in f]) for e in EXPS}
    (a0, a1), (b0, b1) = spans.values()
    assert a0 < b1 and b0 < a1, f"the experiments did not overlap: {spans}"

    # DVC sees each experiment's lock and metrics.
    shown = json.loads(run(dvc + ["exp", "show", "--json"], repo, env, timeout=300).stdout)
    records = exp_records(shown)
    for name, lr in EXPS.items():
        data = records[name]
        assert data["params"]["params.yaml"]["data"]["train"]["lr"] == lr
        for v in VARIANTS:
            m = data["metrics"][f"results/{v}/train.json"]["data"]
            assert m["epochs"] == EPOCHS and m["tracking/undelivered_epochs"] == 0
            # Its dvc.lock: the checkpoints it produced are recorded with a hash.
            assert data["outs"][f"models/{v}/checkpoints"]["hash"], data["outs"]


def _param(db, run_id: str, key: str) -> str:
    import sqlite3
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("select value from params where run_uuid = ? and key = ?",
                           (run_id, key)).fetchone()[0]
    finally:
        con.close()


def _span(db, run_ids: list[str]) -> tuple[int, int]:
    import sqlite3
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = [con.execute("select start_time, end_time from runs where run_uuid = ?",
                            (r,)).fetchone() for r in run_ids]
    finally:
        con.close()
    return min(r[0] for r in rows), max(r[1] for r in rows)
