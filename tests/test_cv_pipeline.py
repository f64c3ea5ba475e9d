"""k-fold CV as a pipeline stage in a real git + DVC repository (real `dvc` processes, a real
MLflow SQLite store): the default run leaves cv off and metrics.json without cv figures;
`dvc exp run -S cv.folds=2` re-runs only the cv stages and what reads them, and the figures
reach `dvc exp show --json` and MLflow (a fold-set run under each variant's run)."""

from __future__ import annotations

import json
import re

import pytest

from tests.pipeline_repo import dvc, make_repo, run

pytestmark = pytest.mark.slow
VARIANTS = ("smallnet", "customnet")
CV_KEYS = {"cv_acc", "cv_se", "cv_f1", "cv_spread"}


def _ran(proc) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr))


def _exp_metrics(shown: list, name: str) -> dict:
    """metrics.json of experiment ``name`` in `dvc exp show --json`."""
    for base in shown:
        for exp in base.get("experiments") or []:
            for rev in exp.get("revs", []):
                if rev.get("name") == name:
                    return rev["data"]["metrics"]["metrics.json"]["data"]
    raise AssertionError(f"experiment {name} not in dvc exp show: {json.dumps(shown)[:2000]}")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    # PCA maps only: the test is about cv, and UMAP / t-SNE cost minutes on a busy machine
    root = make_repo(
        tmp_path_factory.mktemp("cvpipe") / "repo",
        overrides={"reduce": {"pca_dims": None, "methods": {"pca": {}}}},
    )
    first = dvc(["repro"], root)
    assert {f"cv@{v}" for v in VARIANTS} <= _ran(first)
    default = json.loads((root / "metrics.json").read_text())
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline"], root)
    exp = dvc(["exp", "run", "-n", "cv2", "-S", "cv.folds=2"], root)
    shown = json.loads(dvc(["exp", "show", "--json"], root).stdout)
    return root, default, exp, shown


def test_default_run_has_no_cv_figures(repo):
    root, default, _, _ = repo
    for v in VARIANTS:
        assert not CV_KEYS & set(default[v]), default[v]
        assert json.loads(run(["git", "show", f"HEAD:results/{v}/cv.json"], root).stdout) == {
            "version": 1,
            "variant": v,
            "folds": 0,
        }


def test_cv_folds_reruns_only_cv_and_what_reads_it(repo):
    _, _, exp, _ = repo
    ran = _ran(exp)
    assert {f"cv@{v}" for v in VARIANTS} | {"plot"} <= ran
    # params is the check every params.yaml edit runs; its output is constant
    assert ran <= {f"cv@{v}" for v in VARIANTS} | {"plot", "params"}, ran


def test_cv_figures_in_exp_show_match_cv_json(repo):
    root, default, _, shown = repo
    metrics = _exp_metrics(shown, "cv2")
    for v in VARIANTS:
        cv = json.loads((root / "results" / v / "cv.json").read_text())
        s = cv["views"][cv["headline_view"]]
        assert cv["folds"] == 2 and cv["n"] == 80 and len(cv["fold_records"]) == 2
        assert metrics[v]["cv_acc"] == round(s["acc"], 4)
        assert metrics[v]["cv_se"] == round(s["se"], 4)
        assert metrics[v]["cv_f1"] == round(s["macro_f1"], 4)
        assert metrics[v]["cv_spread"] == round(s["spread"], 4)
        # the rest of the variant's figures are the default run's (nothing else re-ran)
        assert {k: x for k, x in metrics[v].items() if k not in CV_KEYS} == default[v]


def test_mlflow_fold_sets_nest_under_the_variant_runs(repo):
    from mlflow.tracking import MlflowClient

    root = repo[0]
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("deepgal").experiment_id
    runs = client.search_runs([exp], max_results=1000)
    for v in VARIANTS:
        variant_run = json.loads((root / "models" / v / "mlflow_run.json").read_text())["run_id"]
        (fold_set,) = [
            r
            for r in runs
            if r.data.tags.get("mlflow.parentRunId") == variant_run
            and r.data.tags.get("deepgal.kind") == "cv"
        ]
        folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == fold_set.info.run_id]
        assert len(folds) == 2 and fold_set.info.status == "FINISHED"
        assert sum(f.data.metrics["cv.fold.n"] for f in folds) == 80
