"""The cv@<variant> stage on real tiny Galaxy10 files: cv.json's figures against scikit-learn
recomputed from the per-fold predictions it records, a planted learnable set against a
label-shuffled one, identical images kept in one fold, cv off changing nothing, and the MLflow
fold-set run nested under the variant's run in a real SQLite store."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from deepgal.crossval import FoldResult, summarise
from deepgal.crossval_file import CVFileError, read_cv, with_cv
from deepgal.crossval_stage import cross_validate
from deepgal.data.galaxy10 import CLASS_NAMES, write_galaxy10
from tests.pipeline_repo import REPO, tiny_params

PER_CLASS, CLASSES, DUPES = 12, 3, (0, 5)  # rows 0 and 5 are copied to the end


def planted(path, learnable: bool, seed: int = 0):
    """Images (N, 16, 16, 3) on a noisy grey sky, each with a bright square in one colour
    channel (its pattern). learnable: the pattern is the class (but for one row in six);
    else every class holds each
    pattern equally often, so nothing in the pixels tells the class. Rows DUPES repeat at
    the end (the same galaxy twice, same label). Returns the labels (N,)."""
    rng = np.random.default_rng(seed)
    n = PER_CLASS * CLASSES
    pattern = np.arange(n) % CLASSES
    # learnable: one row in six carries a wrong label, so the best possible is 5/6 and folds
    # differ (figures with spread and s.e. above zero to check)
    noisy = np.where(np.arange(n) % 6 == 5, (pattern + 1) % CLASSES, pattern)
    labels = noisy if learnable else (np.arange(n) // CLASSES) % CLASSES
    images = rng.integers(60, 120, (n, 16, 16, 3), dtype=np.uint8)
    for k in range(n):
        images[k, 4:12, 4:12, pattern[k]] = 250
    images = np.concatenate([images, images[list(DUPES)]])
    labels = np.concatenate([labels, labels[list(DUPES)]]).astype(np.uint8)
    write_galaxy10(path, images, labels)
    return labels.astype(np.int64)


def params(folds: int, tta: bool = True, **cv) -> dict:
    return tiny_params(
        {
            "variants": {"smallnet": {"input_size": 16, "crop": 1.0, "epochs": 12}},
            "train": {"batch_size": 8, "warmup_epochs": 0, "checkpoint_every": 4, "lr": 0.05},
            "cv": {"folds": folds, "seed": 3, "tta": tta, "variants": None, **cv},
        }
    )


def _run(tmp_path_factory, learnable: bool):
    d = tmp_path_factory.mktemp("cv_learnable" if learnable else "cv_shuffled")
    labels = planted(d / "g.h5", learnable=learnable)
    done = cross_validate("smallnet", d / "g.h5", d / "cv.json", None, params(3))
    assert read_cv(d / "cv.json") == done  # the file reads back as what was written
    return labels, done, json.loads((d / "cv.json").read_text())


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    return _run(tmp_path_factory, True)


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    return _run(tmp_path_factory, False)


def _onehot(pred: list[int], c: int = 10) -> np.ndarray:
    return np.eye(c, dtype=np.float32)[pred]


@pytest.mark.parametrize("which", ["learnable", "shuffled"])
def test_figures_equal_sklearn_from_the_recorded_predictions(which, request):
    labels, done, raw = request.getfixturevalue(which)
    assert raw["folds"] == 3 and raw["seed"] == 3 and raw["n"] == len(labels)
    assert set(raw["views"]) == {"plain", "tta"} and raw["headline_view"] == "tta"
    for view, s in raw["views"].items():
        folds = raw["fold_records"]
        accs = [accuracy_score(labels[f["held"]], f["pred"][view]) for f in folds]
        truth = np.concatenate([labels[f["held"]] for f in folds])
        pred = np.concatenate([f["pred"][view] for f in folds])
        present = sorted(set(truth))
        assert s["fold_acc"] == pytest.approx(accs)
        assert s["acc"] == pytest.approx(np.mean(accs))
        assert s["spread"] == pytest.approx(np.std(accs))
        pooled = accuracy_score(truth, pred)
        assert s["se"] == pytest.approx(math.sqrt(pooled * (1 - pooled) / len(truth)))
        assert s["macro_f1"] == pytest.approx(
            f1_score(truth, pred, labels=present, average="macro")
        )
        rec = recall_score(truth, pred, labels=present, average=None)
        assert s["recall"] == pytest.approx(
            {CLASS_NAMES[c]: r for c, r in zip(present, rec, strict=True)}
        )
        # and the library's own summary, recomputed from the file alone, says the same
        again = summarise(
            labels,
            [
                FoldResult(f["fold"], np.array(f["held"]), {view: _onehot(f["pred"][view])}, 0.0)
                for f in folds
            ],
            view,
            3,
        )
        assert again.to_dict() == s


def test_every_image_scored_once_and_identical_images_share_a_fold(learnable):
    labels, _, raw = learnable
    held = [f["held"] for f in raw["fold_records"]]
    assert sorted(np.concatenate(held).tolist()) == list(range(len(labels)))
    n = PER_CLASS * CLASSES
    for k, row in enumerate(DUPES):
        fold_of = {r: i for i, rows in enumerate(held) for r in rows}
        assert fold_of[row] == fold_of[n + k]


def test_planted_set_is_learned(learnable):
    _, done, _ = learnable
    # the best possible is 5/6 (one label in six is wrong): the model found the squares
    assert 0.7 <= done.views["plain"]["acc"] <= 5 / 6 + 0.05, done.views["plain"]


def test_shuffled_labels_stay_near_chance(shuffled):
    _, done, _ = shuffled
    for view in ("plain", "tta"):
        assert done.views[view]["acc"] <= 0.6, done.views[view]  # chance is 1/3


def test_headline_figures_come_from_the_headline_view(shuffled, tmp_path):
    _, done, raw = shuffled  # here TTA and plain differ
    assert raw["views"]["tta"]["acc"] != raw["views"]["plain"]["acc"]
    s = raw["views"]["tta"]
    assert done.headline() == {
        "cv_acc": round(s["acc"], 4),
        "cv_se": round(s["se"], 4),
        "cv_f1": round(s["macro_f1"], 4),
        "cv_spread": round(s["spread"], 4),
    }
    (tmp_path / "smallnet").mkdir()
    done.write(tmp_path / "smallnet" / "cv.json")
    head = {"smallnet": {"val_acc": 0.5, "epoch": 3}, "customnet": {"val_acc": 0.1, "epoch": 1}}
    got = with_cv(head, tmp_path)
    assert got["smallnet"] == {"val_acc": 0.5, "epoch": 3, **done.headline()}
    assert got["customnet"] == head["customnet"]  # no cv.json: its figures as they were


def test_cv_off_writes_a_constant_file_and_leaves_metrics_byte_identical(tmp_path):
    """Off, every variant's cv.json is the same few bytes and the committed baseline
    metrics.json comes out of the plot stage's headline unchanged, byte for byte."""
    baseline = (REPO / "metrics.json").read_text()
    head = json.loads(baseline)
    p = params(0)
    p["variants"] = {v: {"model": "smallnet"} for v in head}
    for v in head:
        cross_validate(v, tmp_path / "absent.h5", tmp_path / v / "cv.json", None, p)
        assert json.loads((tmp_path / v / "cv.json").read_text()) == {
            "version": 1,
            "variant": v,
            "folds": 0,
        }
    again = with_cv(head, tmp_path)
    assert json.dumps(again, indent=2) + "\n" == baseline


def test_cv_off_for_a_variant_not_listed(tmp_path):
    p = params(3, variants=["smallnet"])
    p["variants"]["customnet"] = {"model": "smallnet"}
    done = cross_validate("customnet", tmp_path / "absent.h5", tmp_path / "cv.json", None, p)
    assert not done.on and done.headline() == {}


def test_cv_off_loads_no_torch(tmp_path):
    """The default pipeline pays a Python start-up per variant, not a torch import."""
    code = (
        "import sys, yaml; from pathlib import Path; "
        "from deepgal.crossval_stage import cross_validate; "
        f"p = yaml.safe_load(open({str(REPO / 'params.yaml')!r})); "
        f"cross_validate('smallnet', Path('nothing.h5'), Path({str(tmp_path)!r}) / 'cv.json',"
        " Path('nothing.json'), p); print(sorted(m for m in ('torch', 'mlflow', 'sklearn') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_too_few_galaxies_per_class_fails_before_training(tmp_path):
    planted(tmp_path / "g.h5", learnable=True)
    with pytest.raises(Exception, match="g.h5") as e:
        cross_validate("smallnet", tmp_path / "g.h5", tmp_path / "cv.json", None, params(13))
    assert "fold" in str(e.value)
    assert not (tmp_path / "cv.json").exists()


def test_read_cv_names_the_file(tmp_path):
    with pytest.raises(CVFileError, match="cv.json: missing"):
        read_cv(tmp_path / "cv.json")
    (tmp_path / "cv.json").write_text('{"version": 99}')
    with pytest.raises(CVFileError, match="cv.json: version 99"):
        read_cv(tmp_path / "cv.json")


def test_mlflow_fold_set_run_nests_under_the_variant_run(learnable, tmp_path, monkeypatch):
    """A real SQLite store: the variant's training run gets one fold-set run under it holding
    the summary and cv.json, and that one a child run per fold with its accuracy and n."""
    from mlflow.tracking import MlflowClient

    from deepgal.crossval_track import log_cv

    _, done, raw = learnable
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DEEPGAL_MLFLOW", raising=False)
    client = MlflowClient(uri)
    exp = client.create_experiment("deepgal", artifact_location=(tmp_path / "art").as_uri())
    variant_run = client.create_run(exp, run_name="smallnet").info.run_id
    (tmp_path / "mlflow_run.json").write_text(json.dumps({"run_id": variant_run}))
    done.write(tmp_path / "cv.json")
    times = [(1_000_000 + 10 * k, 1_000_000 + 10 * k + 9) for k in range(3)]
    log_cv(tmp_path / "mlflow_run.json", done, tmp_path / "cv.json", times)

    runs = client.search_runs([exp])

    def under(rid):
        return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == rid]

    (fold_set,) = under(variant_run)
    assert fold_set.info.run_name == "smallnet cv 3-fold"
    assert fold_set.info.status == "FINISHED"
    tta, plain = raw["views"]["tta"], raw["views"]["plain"]
    m = fold_set.data.metrics
    assert m["cv.acc"] == pytest.approx(tta["acc"]) and m["cv.se"] == pytest.approx(tta["se"])
    assert m["cv.f1"] == pytest.approx(tta["macro_f1"])
    assert m["cv.spread"] == pytest.approx(tta["spread"])
    assert m["cv.plain.acc"] == pytest.approx(plain["acc"]) and m["cv.n"] == raw["n"]
    assert fold_set.data.params["cv.folds"] == "3"
    assert [a.path for a in client.list_artifacts(fold_set.info.run_id, "cv")] == ["cv/cv.json"]
    children = sorted(under(fold_set.info.run_id), key=lambda r: r.info.start_time)
    assert [c.info.run_name for c in children] == [f"smallnet fold {k}" for k in range(3)]
    for k, c in enumerate(children):
        held = raw["fold_records"][k]["held"]
        assert c.data.metrics["cv.fold.n"] == len(held)
        assert c.data.metrics["cv.fold.accuracy"] == pytest.approx(tta["fold_acc"][k])
        assert (c.info.start_time, c.info.end_time) == times[k]
        assert c.info.status == "FINISHED"


def test_real700_cv_profile_cross_validates_the_real700_recipe():
    """The budget profile runs cv on the recipe variant alone, trained exactly as the real700
    profile trains it, and leaves the other variants' training as it is."""
    from deepgal import config, profiles

    cv = profiles.check("real700-cv", REPO / "params.yaml", REPO)
    recipe = profiles.check("real700", REPO / "params.yaml", REPO)
    assert cv["cv"]["folds"] >= 2 and cv["cv"]["variants"] == ["resnet18_d4"]
    assert cv["data"] == recipe["data"]
    for v in recipe["variants"]:
        assert config.resolve_variant(cv, v) == config.resolve_variant(recipe, v)
    assert config.load_section("cv", recipe).folds == 0  # the recipe profile itself: cv off
