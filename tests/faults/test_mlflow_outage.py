"""The MLflow tracking server dies during training and comes back; or is not there at all.

Training must never die of it, and once the server is back every epoch reaches it: the ones
that failed were buffered and are re-sent, none twice. ``history.csv`` is complete whatever
happens. A tracker that cannot be reached at all is reported before training starts.
"""

from __future__ import annotations

import json
import shlex
import signal
import sys

import pytest

from tests.pipeline_repo import dvc, env_for, make_repo
from tests.ports import refused_port

from .conftest import (
    TRAIN_CMD,
    exact_history,
    no_traceback,
    one_variant_params,
    sqlite_steps,
    wait_for,
)

pytestmark = pytest.mark.slow

EPOCHS = 8
PARAMS = one_variant_params(EPOCHS, checkpoint_every=4)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = make_repo(tmp_path_factory.mktemp("outage") / "repo", PARAMS)
    dvc(["repro", "split"], root)
    return root


def stage_cmd(variant: str = "smallnet", out: str | None = None) -> list[str]:
    cmd = TRAIN_CMD.format(v=variant).replace("python", sys.executable)
    if out:
        cmd = cmd.replace(f"models/{variant}", f"models/{out}").replace(
            f"results/{variant}", f"results/{out}"
        )
    return shlex.split(cmd)


def test_server_killed_and_restarted_during_training(repo, tmp_path, procs, mlflow_server):
    server = mlflow_server(tmp_path / "mlflow.db")
    env = env_for(repo, MLFLOW_TRACKING_URI=server.uri)
    stage = procs(stage_cmd(), repo, env, tmp_path / "stage.log")

    def first_epoch_delivered():
        runs = [r for r in server.runs() if r["info"]["run_name"] == "smallnet"]
        return runs and 1 in server.steps(runs[0]["info"]["run_id"]) and runs[0]["info"]

    run = wait_for(first_epoch_delivered, 600, "epoch 1 on the server", every=0.3, proc=stage)
    server.kill()  # during epoch 2 (or soon after: epochs last seconds)
    assert not server.healthy()
    delivered = sqlite_steps(tmp_path / "mlflow.db", run["run_id"])
    assert 1 <= len(delivered) < EPOCHS, f"training was over before the tracker died: {delivered}"
    # Down until the training has felt it (at least one epoch failed to arrive), then back.
    wait_for(lambda: "MLflow unreachable" in stage.output(), 600, "a failed delivery", proc=stage)
    # Paused while the server restarts, so the server is surely back before training ends
    # (otherwise a fast machine could finish all epochs first, and the test could not tell
    # "re-sent" from "dropped").
    stage.signal_group(signal.SIGSTOP)
    try:
        assert stage.poll() is None, stage.tail()
        server.start()  # same port, same store
    finally:
        stage.signal_group(signal.SIGCONT)
    assert stage.wait(timeout=900) == 0, stage.tail()
    log = stage.output()
    assert no_traceback(log), log[-3000:]

    results = repo / "results/smallnet"
    assert [r["epoch"] for r in exact_history(results)] == list(range(1, EPOCHS + 1))
    metrics = json.loads((results / "train.json").read_text())
    assert metrics["epochs"] == EPOCHS

    runs = [r for r in server.runs() if r["info"]["run_name"] == "smallnet"]
    assert [r["info"]["run_id"] for r in runs] == [run["run_id"]]
    steps = server.steps(run["run_id"])
    assert steps == list(range(1, EPOCHS + 1)), f"epochs missing or sent twice: {steps}"
    assert metrics["tracking/undelivered_epochs"] == 0, metrics
    tags = {t["key"]: t["value"] for t in runs[0]["data"].get("tags", [])}
    assert "deepgal.undelivered_epochs" not in tags
    assert runs[0]["info"]["status"] == "FINISHED"
    for key in ("train/loss", "val/loss", "lr"):  # whole epochs arrive, never half of one
        assert server.steps(run["run_id"], key) == steps, key


def test_unreachable_tracker_fails_before_training(repo, tmp_path, procs):
    """Nothing listens at the tracker's port (held bound, not listening, by the test for the
    whole run): one error naming it, before any epoch; the wait is bounded, not timed."""
    with refused_port() as port:
        uri = f"http://127.0.0.1:{port}"
        stage = procs(
            stage_cmd(out="unreachable"),
            repo,
            env_for(repo, MLFLOW_TRACKING_URI=uri),
            tmp_path / "stage.log",
        )
        code = stage.wait(timeout=300)
    out = stage.output()
    assert code == 1, out[-3000:]
    assert no_traceback(out), out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and uri in errors[0], out[-3000:]
    assert "DEEPGAL_MLFLOW=off" in errors[0]
    assert "epoch 1/" not in out
    assert not list((repo / "models/unreachable").glob("**/*.pt"))
    assert not (repo / "results/unreachable/history.csv").exists()
