"""A team tracking server: the whole tiny pipeline against `mlflow server` on PostgreSQL.

Real processes only: Debian's PostgreSQL on 127.0.0.1 with a throw-away cluster, `mlflow
server --backend-store-uri postgresql://... --artifacts-destination ...`, and a real `dvc
repro` whose stages reach the server through MLFLOW_TRACKING_URI=http://127.0.0.1:PORT. The
database password reaches the server through PGPASSFILE only and must appear nowhere else.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.mlflow_server import Rest, mlflow_server
from tests.pipeline_repo import dvc, make_repo
from tests.postgres_server import postgres_server

pytestmark = pytest.mark.slow
VARIANTS = ("smallnet", "customnet")
EPOCHS = 3  # tests.pipeline_repo.TINY


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """(Rest client, Postgres, artifact folder, logs, repo) after a `dvc repro` against it."""
    tmp = tmp_path_factory.mktemp("team")
    artifacts, server_log = tmp / "artifacts", tmp / "mlflow-server.log"
    with (
        postgres_server() as pg,
        mlflow_server(pg.uri, artifacts, env=pg.client_env(), log=server_log) as (base, _),
    ):
        # Tiny runs are near chance: log and register every selected checkpoint regardless.
        repo = make_repo(tmp / "repo", {"select": {"register": True, "log_model": "always"}})
        out = dvc(["repro"], repo, MLFLOW_TRACKING_URI=base)
        yield Rest(base), pg, artifacts, out.stdout + out.stderr + server_log.read_text(), repo


def tags_of(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_pipeline_runs_nest_and_curves_are_complete_in_postgres(team):
    rest, pg, _, _, _ = team
    runs = rest.runs()
    parents = [r for r in runs if tags_of(r).get("deepgal.kind") == "pipeline"]
    assert [p["info"]["run_name"][:10] for p in parents] == ["workspace@"], runs
    children = {
        r["info"]["run_name"]: r
        for r in runs
        if tags_of(r).get("mlflow.parentRunId") == parents[0]["info"]["run_id"]
    }
    assert set(children) == set(VARIANTS)
    for run in children.values():
        run_id = run["info"]["run_id"]
        assert run["info"]["status"] == "FINISHED"
        for key in ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr"):
            assert [m["step"] for m in rest.history(run_id, key)] == list(range(1, EPOCHS + 1))
        contexts = {t["value"] for i in run["inputs"]["dataset_inputs"] for t in i["tags"]}
        assert contexts == {"train", "val", "test"}
    assert parents[0]["info"]["status"] == "FINISHED"
    # The numbers are in PostgreSQL itself, not in some other store the server fell back to.
    ((n_runs,),) = pg.query("select count(*) from runs where lifecycle_stage = 'active'")
    assert n_runs == len(runs) == 1 + len(VARIANTS)
    ((n_points,),) = pg.query("select count(*) from metrics where key = 'val/accuracy'")
    assert n_points == EPOCHS * len(VARIANTS)


def test_artifacts_and_models_reach_the_artifact_store(team):
    rest, _, artifacts, _, _ = team
    for run in rest.runs():
        if tags_of(run).get("deepgal.kind") == "pipeline":
            continue
        run_id, v = run["info"]["run_id"], run["info"]["run_name"]
        files = rest.artifacts(run_id)
        assert {
            "history.csv",
            "config.json",
            "selected/selection.json",
            "evaluate/eval.json",
        } <= set(files), files
        model = rest.get("registered-models/alias", name=f"deepgal-{v}", alias="best")
        assert model["model_version"]["run_id"] == run_id
    on_disk = {p.name for p in artifacts.rglob("*") if p.is_file()}
    assert {"history.csv", "MLmodel", "mlflow_model_code.py"} <= on_disk, sorted(on_disk)[:20]
    assert not [n for n in on_disk if n.endswith(".pkl")]  # the model is stored as code


def test_the_database_password_is_in_no_log_param_or_output(team):
    rest, pg, _, logs, repo = team
    assert pg.password not in logs
    assert pg.password not in json.dumps(rest.runs())
    for path in Path(repo).rglob("*"):
        if path.is_file() and ".git" not in path.parts and path.stat().st_size < 5_000_000:
            assert pg.password.encode() not in path.read_bytes(), path
