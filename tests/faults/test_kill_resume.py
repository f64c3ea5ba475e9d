"""SIGKILL of `dvc repro` in the middle of an epoch, then `dvc repro` again.

Nothing may be lost or doubled: the second run resumes from the last checkpoint (not epoch 1),
ends with exactly the metrics of an uninterrupted deterministic run in another repository, and
the MLflow run (one per variant) holds exactly one point per epoch.

The kill is deterministic, not a timer: ``DEEPGAL_FAULT`` makes the training process SIGKILL
its whole process group (dvc, the stage shell and itself) at the start of epoch 2's step 3.
"""

from __future__ import annotations

import re
import signal
import sys

import pytest
import yaml

from tests.pipeline_repo import dvc, env_for, make_repo

from .conftest import ckpt_epoch, exact_history, exact_metrics, one_variant_params

pytestmark = pytest.mark.slow

EPOCHS = 5
PARAMS = one_variant_params(EPOCHS)
DVC_REPRO = [sys.executable, "-m", "dvc", "repro", "train@smallnet"]


def test_sigkill_mid_epoch_then_repro_resumes_with_nothing_lost(tmp_path, procs, mlflow_server):
    ref = make_repo(tmp_path / "reference", PARAMS)
    repo = make_repo(tmp_path / "killed", PARAMS)
    assert yaml.safe_load((repo / "params.yaml").read_text())["base"]["deterministic"] is True
    # The uninterrupted reference runs alongside (two cores): it only has to finish.
    reference = procs(DVC_REPRO, ref, env_for(ref), tmp_path / "reference.log")
    fault = "signal=SIGKILL,epoch=2,step=3,target=group"
    victim = procs(DVC_REPRO, repo, env_for(repo, DEEPGAL_FAULT=fault), tmp_path / "killed.log")
    # dvc, the stage shell and python all die at once: no clean-up at all.
    assert victim.wait(timeout=900) == -signal.SIGKILL, victim.tail()
    fired = re.search(
        r"sending SIGKILL to the process group at epoch 2 step 3/(\d+)", victim.output()
    )
    assert fired, victim.tail()
    assert 3 < int(fired[1]), "step 3 must be inside the epoch, not its end"
    last = repo / "models/smallnet/checkpoints/last.pt"
    killed_at = ckpt_epoch(last)
    assert killed_at == 1  # epoch 2 was under way, 3 steps into it
    assert not (repo / "results/smallnet/train.json").exists()

    again = dvc(["repro", "train@smallnet"], repo)
    log = again.stdout + again.stderr
    assert "resuming from" in log and f"at epoch {killed_at + 1} " in log, log[-3000:]
    assert "epoch 1/" not in log, "the resumed run trained epoch 1 again"
    for e in range(killed_at + 1, EPOCHS + 1):
        assert f"epoch {e}/{EPOCHS}" in log, log[-3000:]

    assert reference.wait(timeout=900) == 0, reference.tail()
    got, want = repo / "results/smallnet", ref / "results/smallnet"
    assert exact_history(got) == exact_history(want)
    assert [r["epoch"] for r in exact_history(got)] == list(range(1, EPOCHS + 1))
    assert exact_metrics(got) == exact_metrics(want)

    # MLflow, through the REST API of a real server on the repository's store.
    server = mlflow_server(repo / "mlflow.db")
    runs = [r for r in server.runs() if r["info"]["run_name"] == "smallnet"]
    assert len(runs) == 1, [r["info"] for r in runs]
    run = runs[0]["info"]
    assert run["status"] == "FINISHED"
    for key in ("val/accuracy", "train/loss", "val/loss", "lr"):
        assert server.steps(run["run_id"], key) == list(range(1, EPOCHS + 1)), key
    # The values the tracker holds are the ones in history.csv.
    hist = server.get("metrics/get-history", run_id=run["run_id"], metric_key="val/accuracy")
    tracked = {int(m["step"]): m["value"] for m in hist["metrics"]}
    assert tracked == {r["epoch"]: pytest.approx(r["val/accuracy"]) for r in exact_history(got)}
