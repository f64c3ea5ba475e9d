"""The whole workflow as a user lives it: a real `dvc repro` of a tiny configuration in a
temporary git + DVC repository, a no-op re-run, then `dvc exp run -S train.lr=...`.

Each fixture runs one user step once per module and keeps what it printed; tests only read
those records, so they pass or fail the same in any order or alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from deepgal.data.galaxy10 import CLASS_NAMES
from deepgal.handoff import Features
from deepgal.utils import machine, machine_label

from .deps import import_closure, stage_library_deps
from .mlflow_server import Rest, mlflow_server
from .pipeline_repo import dvc, make_repo, run

pytestmark = pytest.mark.first  # its two fixtures run `dvc repro` and `dvc exp run`: ~3 min

VARIANTS = ("smallnet", "customnet")


@dataclass
class Built:
    root: Path
    log: str
    rerun: str  # what a second `dvc repro` printed
    status: str


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    # Every selected checkpoint logged as an MLflow model, learned or not (3 tiny epochs), so
    # the README's way of loading one has a model to load.
    root = make_repo(
        tmp_path_factory.mktemp("pipeline") / "repo", overrides={"select": {"log_model": "always"}}
    )
    out = dvc(["repro"], root)
    again = dvc(["repro"], root)
    status = dvc(["status", "--json"], root)
    return Built(root, out.stdout + out.stderr, again.stdout, status.stdout)


@dataclass
class Exp:
    log: str  # what `dvc exp run` printed
    lr: float  # train.lr in the workspace's params.yaml after it
    back: dict  # after the README's way back to the committed baseline: its records


@pytest.fixture(scope="module")
def exp(built) -> Exp:
    """`dvc exp run` after the plain run (the `built` fixture has recorded its checks), as the
    README goes: the first run committed as the baseline, the experiment applied to the
    workspace, then back to the baseline with `git checkout -- . && dvc checkout`."""
    root = built.root
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline"], root)
    outs = sorted(p for p in (root / "models").rglob("*") if p.is_file())
    baseline = {p: p.read_bytes() for p in outs + [root / "metrics.json"]}
    log = dvc(["exp", "run", "-n", "lr-small", "-S", "train.lr=0.001"], root).stdout
    lr = yaml.safe_load((root / "params.yaml").read_text())["train"]["lr"]
    changed = {p for p, b in baseline.items() if not p.exists() or p.read_bytes() != b}
    run(["git", "checkout", "--", "."], root)
    checkout = dvc(["checkout"], root)
    back = {
        "changed_by_exp": changed,
        "differ_after": {p for p, b in baseline.items() if p.read_bytes() != b},
        "checkout": checkout.stdout + checkout.stderr,
        "dvc_status": dvc(["status", "--json"], root).stdout,
        "git_status": run(["git", "status", "--porcelain"], root).stdout,
    }
    return Exp(log, lr, back)


def documented_choice(hist: pd.DataFrame, kept: list[int], max_gap: float, max_rise: float) -> int:
    """The selection rule as deepgal/selection.py's docstring states it, restated here: a kept
    epoch passes when train - val accuracy <= max_gap and its val loss <= (1 + max_rise) x the
    lowest val loss up to it; the passing one with the highest val accuracy (ties: earlier),
    else the lowest val loss (ties: earlier)."""
    rows = []
    for e in kept:
        r = hist[hist.epoch == e].iloc[0]
        best = hist.loc[hist.epoch <= e, "val/loss"].min()
        ok = (
            r["train/accuracy"] - r["val/accuracy"] <= max_gap
            and r["val/loss"] <= (1 + max_rise) * best
        )
        rows.append((ok, r["val/accuracy"], r["val/loss"], e))
    passing = [r for r in rows if r[0]]
    if passing:
        return min(passing, key=lambda r: (-r[1], r[3]))[3]
    return min(rows, key=lambda r: (r[2], r[3]))[3]


def test_repro_produces_every_output(built):
    root = built.root
    for v in VARIANTS:
        train = json.loads((root / f"results/{v}/train.json").read_text())
        assert train["epochs"] == 3 and 0 <= train["val/accuracy"] <= 1
        hist = pd.read_csv(root / f"results/{v}/history.csv")
        assert list(hist["epoch"]) == [1, 2, 3]
        sel = json.loads((root / f"results/{v}/selection.json").read_text())
        kept = sorted(
            int(p.stem.split("_")[1]) for p in (root / f"models/{v}/checkpoints").glob("epoch_*.pt")
        )
        assert kept == [1, 2, 3]  # checkpoint_every: 1
        select = yaml.safe_load((root / "params.yaml").read_text())["select"]
        assert sel["epoch"] == documented_choice(
            hist, kept, select["max_gap"], select["max_val_loss_rise"]
        )
        assert (root / sel["checkpoint"]).exists()
        assert sel["val_accuracy"] == pytest.approx(
            hist.loc[hist.epoch == sel["epoch"], "val/accuracy"].item()
        )
        ev = json.loads((root / f"reports/{v}/eval.json").read_text())
        assert set(ev["val"]["per_class"]) == set(CLASS_NAMES)
        assert np.array(ev["val"]["confusion"]).sum() == ev["val"]["n"] == 10  # 1 per class
        head = json.loads((root / f"results/{v}/metrics.json").read_text())
        assert head["val"]["accuracy"] == pytest.approx(ev["val"]["accuracy"])
        assert head["epoch"] == sel["epoch"]
    report = (root / "reports/report.md").read_text()
    assert len(report) > 500
    # The best variant's Grad-CAM gallery: evaluate stored every variant's maps, plot drew the
    # best one's and linked it.
    best = re.search(r"\| 1 \| \*\*(\w+)\*\* \(best\)", report)
    best = best[1] if best else re.search(r"\| – \| (\w+) \(not learned\)", report)[1]
    assert f"## What {best} looked at (Grad-CAM)" in report
    assert f"![{best}: Grad-CAM gallery](plots/{best}_gradcam.png)" in report
    assert (root / f"reports/plots/{best}_gradcam.png").stat().st_size > 5000
    for v in VARIANTS:
        with np.load(root / f"results/{v}/gradcam.npz") as cams:
            assert str(cams["skipped"]) == "" and len(cams["rows"]) > 0
    # Chatter that says nothing to the user stays out of the stage logs.
    for noise in ("negative gradient method", "system metrics monitoring"):
        assert noise not in built.log, noise


def test_reductions_keep_rows_and_ids(built):
    root = built.root
    feats = Features.read(root / "models/smallnet/features.h5").arrays()
    emb = pd.read_csv(root / "results/smallnet/embeddings.csv")
    for split in ("train", "val", "test"):
        expected = np.load(root / f"data/split/{split}.npy")
        rows = feats["split"] == split
        np.testing.assert_array_equal(feats["index"][rows], expected)
        for method in ("pca", "tsne", "umap"):
            part = emb[(emb.method == method) & (emb.split == split)]
            np.testing.assert_array_equal(part["index"].to_numpy(), expected)
            np.testing.assert_array_equal(part["label"].to_numpy(), feats["label"][rows])
            assert np.isfinite(part[["x", "y"]].to_numpy()).all()


def test_rerun_is_noop_and_status_clean(built):
    assert "Running stage" not in built.rerun, built.rerun
    assert json.loads(built.status or "{}") == {}, built.status


def test_bytecode_caches_do_not_stale_folder_deps(built):
    """A normal Python writes __pycache__ beside the library whenever a stage runs: folder
    dependencies (deepgal/config, deepgal/training...) must not change because of it."""
    caches = [built.root / "deepgal" / d / "__pycache__" for d in ("config", "training", "")]
    made = [c for c in caches if not c.exists()]
    try:
        for c in caches:
            c.mkdir(exist_ok=True)
            (c / "probe.cpython-311.pyc").write_bytes(b"not the library")
        assert json.loads(dvc(["status", "--json"], built.root).stdout or "{}") == {}
    finally:
        for c in caches:
            (c / "probe.cpython-311.pyc").unlink()
        for c in made:
            c.rmdir()


# One file per kind of library module; the slow tier touches every file.
SAMPLE = (
    "deepgal/utils.py",
    "deepgal/config/loader.py",
    "deepgal/errors.py",
    "deepgal/data/galaxy10.py",
)


def _stale_after_touching(root: Path, lib: str) -> set[str]:
    path = root / lib
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# touched by the dependency test\n")
        out = dvc(["status", "--json"], root).stdout
    finally:
        path.write_bytes(original)
    return set(json.loads(out or "{}"))


def _closures(root: Path, names: list[str]) -> dict[str, set[str]]:
    """Each stage of ``names`` -> the library files its script can execute (its import closure).

    Computed once per check: touching a library file appends a comment, which changes no
    import, and a stage script's closure parses every file it reaches (per library file
    touched, the slow tier's 110 files x 35 stages took ~15 s each on a 2-core AVX2 CPU)."""
    scripts = {
        name: script for name, (script, _) in stage_library_deps(root / "dvc.yaml", root).items()
    }
    by_script = {s: import_closure(root / s, root) for s in set(scripts.values())}
    return {n: by_script[scripts[n.split("@")[0]]] for n in names}


def _check_touch(built: Built, libs) -> None:
    wrong = {}
    # Listed once: touching a library file changes no stage's name (one dvc process per file
    # fewer: the slow tier touches every file).
    names = dvc(["stage", "list", "--name-only"], built.root).stdout.split()
    closures = _closures(built.root, names)
    for lib in libs:
        stale = _stale_after_touching(built.root, lib)
        expect = {n for n, files in closures.items() if lib in files}
        if stale != expect:
            wrong[lib] = {
                "stale but does not import it": sorted(stale - expect),
                "imports it but stays up to date": sorted(expect - stale),
            }
    assert not wrong, json.dumps(wrong, indent=1)


def test_editing_a_library_file_stales_exactly_its_importers(built):
    _check_touch(built, SAMPLE)


@pytest.mark.slow
def test_editing_any_library_file_stales_exactly_its_importers(built):
    _check_touch(
        built,
        sorted(str(p.relative_to(built.root)) for p in (built.root / "deepgal").rglob("*.py")),
    )


def test_mlflow_nests_variant_runs_under_the_pipeline_run(built):
    """What a user sees in the MLflow UI, read through the REST API of a real server."""
    with mlflow_server(built.root / "mlflow.db") as (base, _):
        rest = Rest(base)
        runs = rest.runs()
        parents = [r for r in runs if r["info"]["run_name"].startswith("workspace@")]
        assert len(parents) == 1, [r["info"]["run_name"] for r in runs]
        parent_id = parents[0]["info"]["run_id"]
        children = {
            r["info"]["run_name"]: r
            for r in runs
            if {t["key"]: t["value"] for t in r["data"]["tags"]}.get("mlflow.parentRunId")
            == parent_id
        }
        assert set(children) == set(VARIANTS)
        for v, run in children.items():
            assert run["info"]["status"] == "FINISHED"
            tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
            assert tags["data.source"] == "synthetic" and len(tags["data.sha256"]) == 64
            assert tags["deepgal.machine"] == machine_label(machine())
            params = {p["key"]: p["value"] for p in run["data"]["params"]}
            assert params["epochs"] == "3" and params["model"] == v  # the resolved config
            for key in (
                "train/loss",
                "train/accuracy",
                "val/loss",
                "val/accuracy",
                "lr",
                "images_per_s",
            ):
                assert [m["step"] for m in rest.history(run["info"]["run_id"], key)] == [1, 2, 3]
            metrics = {m["key"] for m in run["data"]["metrics"]}
            assert {"eval.val.accuracy", "eval.test.macro_f1", "select.epoch"} <= metrics
        # The pipeline run carries every variant's headline numbers (DVC's metrics.json), so
        # the collapsed run list and its chart view compare variants without expanding.
        headline = json.loads((built.root / "metrics.json").read_text())
        want = {f"{v}.{k}": x for v, m in headline.items() for k, x in m.items()}
        got = {m["key"]: m["value"] for m in parents[0]["data"].get("metrics", [])}
        assert got == pytest.approx(want), (got, want)


def test_the_readme_loads_the_logged_model(built):
    """The README's Python snippet, run as written from the repository root of a real run."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "runs:/" in b)
    code = snippet + "\nout = model.predict(images)\nprint(list(out.columns), len(out))\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # as a user
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=built.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "['class', 'class_name', 'probability', 'probabilities'] 8" in proc.stdout, proc.stdout


def test_a_bad_value_stops_at_the_first_stage_and_loses_nothing(built):
    """DVC removes a stage's outputs just before it runs the stage, and train.json and
    history.csv are not in its cache: a bad `-S` value must stop the run in the `params`
    stage, before any of them is touched."""
    root = built.root
    params = root / "params.yaml"
    before = params.read_bytes()
    kept = [
        root / f"results/{v}/{name}"
        for v in VARIANTS
        for name in ("train.json", "history.csv", "selection.json")
    ] + [root / "data/split/train.npy"]
    files = {p: p.read_bytes() for p in kept}
    try:
        out = dvc(["exp", "run", "-S", "train.lr=-1"], root, check=False)
        log = out.stdout + out.stderr
        assert out.returncode != 0 and "error: train.lr: -1.0 must be in (0, 10)" in log, log
        assert "touch params.yaml && git checkout -- params.yaml" in log, log  # what to do
        assert "Running stage 'params'" in log and "Running stage 'train@" not in log, log
        assert {p: p.read_bytes() if p.exists() else None for p in kept} == files
    finally:
        params.write_bytes(before)
        params.touch()  # a rewrite of the same size within the same second can look unchanged
    assert json.loads(dvc(["status", "--json"], root).stdout or "{}") == {}


def test_exp_run_changes_lr_only_downstream(built, exp):
    assert "Running stage 'download'" not in exp.log and "Running stage 'split'" not in exp.log
    for v in VARIANTS:
        assert f"Running stage 'train@{v}'" in exp.log
    shown = json.loads(dvc(["exp", "show", "--json"], built.root).stdout)
    names = {
        e.get("name")
        for b in shown
        for e in [b] + [x for x in (b.get("experiments") or []) for x in x.get("revs", [])]
    }
    assert "lr-small" in names
    metrics = json.loads(dvc(["metrics", "show", "--json"], built.root).stdout)
    files = {f for rev in metrics.values() for f in rev.get("data", {})}
    assert files == {"metrics.json"}  # the headline numbers only, one file for every variant
    assert exp.lr == 0.001


def test_back_to_the_committed_baseline_without_retraining(exp):
    """The experiment changed the checkpoints and metrics; git restores the small files and
    the lock, and `dvc checkout` the baseline's cached outputs, so nothing re-runs."""
    back = exp.back
    assert any("checkpoints" in str(p) for p in back["changed_by_exp"]), back
    assert not back["differ_after"], back["differ_after"]
    assert "ERROR" not in back["checkout"], back["checkout"]
    assert json.loads(back["dvc_status"] or "{}") == {}
    assert back["git_status"] == ""
