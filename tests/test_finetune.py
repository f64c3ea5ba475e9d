"""The finetune@<variant> stage: a real selected checkpoint (the tiny training helpers), a real
labelled HDF5 file, the real stage process against a real SQLite MLflow store.

Oracles: the folds from scikit-learn's StratifiedGroupKFold with groups found by hand, the
binomial s.e. and the mean of folds by hand, calibrated probabilities as torch's softmax of the
model's own logits over the stored temperature, the trainable parameter names written out per
architecture, the dataset digest from hashlib.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from deepgal import checkpoint as ckpt_io
from deepgal import config, tracking
from deepgal.adapt import is_off
from deepgal.adapt import run as adapt_run
from deepgal.data.galaxy10 import CLASS_NAMES, write_galaxy10
from deepgal.inference import load_model, run_model
from tests import helpers
from tests.pipeline_repo import REPO, tiny_params

CLASSES = (0, 2, 5)
FOLDS = 3
FINETUNE = {"folds": FOLDS, "epochs": 3, "batch_size": 8, "lr": 0.02, "warmup_epochs": 0}


def labelled_h5(path: Path, per_class: int = 6, duplicate: bool = False) -> Path:
    """Classes 0, 2, 5 as a red, green or blue square on noise, 24 px; with ``duplicate``
    the last image of class 0 is a byte copy of its first."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.array(CLASSES, np.uint8), per_class)
    images = rng.integers(0, 60, (len(labels), 24, 24, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        images[i, 6:18, 6:18, CLASSES.index(c)] = 240
    if duplicate:
        images[per_class - 1] = images[0]
    write_galaxy10(path, images, labels)
    return path


@pytest.fixture(scope="module")
def selected(tmp_path_factory) -> Path:
    """A real trained smallnet (16 px), saved as the select stage saves its choice."""
    root = tmp_path_factory.mktemp("selected")
    helpers.train(root / "ckpt")
    ckpt_io.save_for_inference(root / "ckpt" / "last.pt", root / "selected.pt")
    return root / "selected.pt"


def finetune_cfg(**over) -> config.FinetuneCfg:
    params = tiny_params()
    params["finetune"].update({**FINETUNE, **over})
    return config.load_section("finetune", params)


def run_stage(root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "stages/finetune.py"),
            "--variant",
            "smallnet",
            "--selected",
            "selected.pt",
            "--run",
            "run.json",
            "--out",
            "models/finetuned.pt",
            "--report",
            "results/finetune.json",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def stage_dir(root: Path, selected: Path, data: str) -> tuple[Path, dict]:
    root.mkdir(parents=True, exist_ok=True)
    params = tiny_params()
    params["finetune"].update({**FINETUNE, "data": data})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "selected.pt").write_bytes(selected.read_bytes())
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DEEPGAL_MLFLOW": "on",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }
    return root, env


@pytest.fixture(scope="module")
def staged(tmp_path_factory, selected):
    """The stage run once on an 18-image set, under a real variant run in a real store."""
    root, env = stage_dir(tmp_path_factory.mktemp("stage"), selected, "set.h5")
    labelled_h5(root / "set.h5")
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    try:
        sink = tracking.MlflowSink(
            env["MLFLOW_TRACKING_URI"], "smallnet", {}, {}, system_metrics=False
        )
        sink.finish()
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    (root / "run.json").write_text(json.dumps({"run_id": sink.run_id}))
    proc = run_stage(root, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((root / "results/finetune.json").read_text())
    return root, report, sink


def test_stage_reports_the_cv_of_the_set(staged):
    root, report, _ = staged
    cv = report["cv"]["plain"]
    assert report["checkpoint"] == "models/finetuned.pt" and report["enabled"] is True
    assert report["data"]["n_images"] == 18 and cv["n"] == 18 and cv["folds"] == FOLDS
    assert report["classes"] == [CLASS_NAMES[c] for c in CLASSES]
    assert sorted(cv["recall"]) == sorted(CLASS_NAMES[c] for c in CLASSES)
    assert len(cv["fold_acc"]) == FOLDS
    assert cv["acc"] == pytest.approx(sum(cv["fold_acc"]) / FOLDS)
    p = cv["pooled_acc"]
    assert cv["se"] == pytest.approx(math.sqrt(p * (1 - p) / 18))
    # every fold holds 6 of 18 images: the pooled accuracy is the mean of the folds here
    assert p == pytest.approx(cv["acc"])
    assert report["settings"]["epochs"] == 3 and report["settings"]["freeze"] == "none"
    assert report["data"]["sha256"] == hashlib.sha256((root / "set.h5").read_bytes()).hexdigest()


def test_stage_logs_a_nested_run_with_the_fold_curve_and_the_set(staged):
    root, report, sink = staged
    client = sink.client
    runs = client.search_runs([sink.experiment_id], f"tags.`mlflow.parentRunId` = '{sink.run_id}'")
    assert len(runs) == 1
    child = runs[0]
    assert child.data.tags["deepgal.kind"] == "finetune" and child.info.status == "FINISHED"
    curve = client.get_metric_history(child.info.run_id, "finetune/fold_accuracy")
    assert [m.value for m in sorted(curve, key=lambda m: m.step)] == pytest.approx(
        report["cv"]["plain"]["fold_acc"]
    )
    assert child.data.metrics["finetune.cv_accuracy"] == pytest.approx(report["cv_accuracy"])
    (ds,) = child.inputs.dataset_inputs
    digest = hashlib.sha256((root / "set.h5").read_bytes()).hexdigest()
    assert ds.dataset.digest == digest[:12]
    assert json.loads(ds.dataset.profile)["num_rows"] == 18
    assert child.data.params["freeze"] == "none"


def test_adapted_checkpoint_loads_weights_only_and_predicts_calibrated(staged, selected):
    root, report, _ = staged
    path = root / "models/finetuned.pt"
    raw = torch.load(path, map_location="cpu", weights_only=True)
    sel = torch.load(selected, map_location="cpu", weights_only=True)
    assert set(sel) | {"calibration", "finetune"} == set(raw)
    assert raw["preprocess"] == sel["preprocess"]  # the checkpoint's own preprocessing
    assert any(not torch.equal(raw["model"][k], sel["model"][k]) for k in sel["model"])
    t = raw["calibration"]["temperature"]
    assert t == pytest.approx(report["temperature"]) and t != 1.0
    oof = report["oof_calibration"]  # the fitted temperature lowers the out-of-fold NLL
    assert oof["n"] == 18 and oof["nll_after"] <= oof["nll_before"] + 1e-9
    from deepgal.cli import main as cli

    assert (
        cli(
            [
                "predict",
                "--checkpoint",
                str(path),
                "--data",
                str(root / "set.h5"),
                "--out",
                str(root / "pred.csv"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    probs = pd.read_csv(root / "pred.csv")[[f"p_{c}" for c in CLASS_NAMES]].to_numpy()
    model, pre, _ = load_model(path, torch.device("cpu"))
    import h5py

    with h5py.File(root / "set.h5") as f:
        images = f["images"][:]
    logits = torch.from_numpy(run_model(model, images, pre, torch.device("cpu"), output="logits"))
    np.testing.assert_allclose(probs, torch.softmax(logits.double() / t, 1).numpy(), atol=2e-6)


def test_nested_run_holds_the_adapted_model_for_pyfunc(staged, monkeypatch):
    """mlflow.pyfunc loads the adapted model from the nested run and returns the calibrated
    probability: softmax(logits / T) of the checkpoint's own forward pass."""
    import h5py
    import mlflow

    root, report, sink = staged
    (child,) = sink.client.search_runs(
        [sink.experiment_id], f"tags.`mlflow.parentRunId` = '{sink.run_id}'"
    )
    (output,) = child.outputs.model_outputs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sink.uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{output.model_id}")
    with h5py.File(root / "set.h5") as f:
        images = f["images"][:]
    got = loaded.predict(images)
    model, pre, _ = load_model(root / "models/finetuned.pt", torch.device("cpu"))
    logits = torch.from_numpy(
        run_model(model, images, pre, torch.device("cpu"), output="logits")
    ).double()
    probs = torch.softmax(logits / report["temperature"], 1)
    np.testing.assert_array_equal(got["class"].to_numpy(), probs.argmax(1).numpy())
    np.testing.assert_allclose(
        got["probability"].to_numpy(), probs.max(1).values.numpy(), atol=2e-6
    )


def _groups_by_hand(images: np.ndarray) -> np.ndarray:
    """Group ids numbered by first row (scikit-learn's shuffled deal depends on the ids)."""
    ids: dict[bytes, int] = {}
    return np.array([ids.setdefault(im.tobytes(), len(ids)) for im in images])


def test_cv_never_trains_on_its_held_rows(tmp_path, selected, monkeypatch):
    """Every fold's training images are exactly the set minus that fold's held-out images
    (folds from scikit-learn, the duplicate pair kept in one fold), then one fit on all."""
    from sklearn.model_selection import StratifiedGroupKFold

    path = labelled_h5(tmp_path / "set.h5", duplicate=True)
    data = adapt_run.load_set(path, FOLDS)
    images, labels = data.images.numpy(), data.labels.numpy()
    seen: list[np.ndarray] = []
    real = adapt_run.adapt

    def recording(*args, **kw):
        seen.append(args[5].numpy().copy())  # the images it trains on
        return real(*args, **kw)

    monkeypatch.setattr(adapt_run, "adapt", recording)
    run = config.resolve_variant(tiny_params(), "smallnet")
    adapt_run.finetune_checkpoint(
        selected, data, finetune_cfg(epochs=1), run, tmp_path / "ft.pt", torch.device("cpu")
    )
    groups = _groups_by_hand(images)
    assert groups[0] == groups[5]  # the duplicate pair
    folds = list(
        StratifiedGroupKFold(FOLDS, shuffle=True, random_state=run.seed).split(
            images, labels, groups
        )
    )
    assert len(seen) == FOLDS + 1
    for trained, (tr, te) in zip(seen[:FOLDS], folds, strict=True):
        assert sorted(map(bytes, trained)) == sorted(map(bytes, images[tr]))
        assert not set(map(bytes, trained)) & set(map(bytes, images[te]))
    assert sorted(map(bytes, seen[-1])) == sorted(map(bytes, images))


# Trainable parameters per mode, written out from the architectures in deepgal/models.py.
TRAINABLE = {
    ("smallnet", "backbone"): {"head.weight", "head.bias"},
    ("smallnet", "all_but_last"): {"body.3.weight", "body.3.bias", "head.weight", "head.bias"},
    ("customnet", "backbone"): {"head.weight", "head.bias"},
    ("customnet", "all_but_last"): {"body.17.weight", "body.17.bias", "head.weight", "head.bias"},
}


@pytest.mark.parametrize("name,mode", [("smallnet", "none"), *TRAINABLE])
def test_freeze_modes_train_only_what_they_say(tmp_path, name, mode):
    from deepgal.adapt.freeze import freeze
    from deepgal.models import build_model
    from deepgal.transforms import Preprocess

    torch.manual_seed(0)
    init = build_model(name, 10, 16).state_dict()
    probe = build_model(name, 10, 16)
    freeze(probe, mode)
    names = {n for n, _ in probe.named_parameters()}
    want = names if mode == "none" else TRAINABLE[(name, mode)]
    assert {n for n, p in probe.named_parameters() if p.requires_grad} == want
    d = helpers.data(24)
    run = dataclasses.replace(helpers.run_cfg(), epochs=2, lr=0.05, ema=0.0, mixup=0.0)
    model = adapt_run.adapt(
        name, init, Preprocess(16), run, mode, d.images, d.labels, tmp_path, torch.device("cpu")
    )
    after = model.state_dict()
    for key, before in init.items():
        param = key in names
        changed = not torch.equal(before, after[key])
        if param:
            assert changed == (key in want), key
        elif key.endswith(("running_mean", "running_var")):
            # a frozen BatchNorm keeps its statistics; one inside the trained part updates them
            owner = key.rsplit(".", 2)[0] + ".weight"
            assert changed == (owner in want), key


def test_freeze_then_unfreeze_trains_the_head_first_then_everything_slower(tmp_path):
    from deepgal import checkpoint as ckpt_io
    from deepgal.adapt.freeze import FreezePlan
    from deepgal.models import build_model
    from deepgal.transforms import Preprocess

    torch.manual_seed(0)
    init = build_model("smallnet", 10, 16).state_dict()
    d = helpers.data(24)
    run = dataclasses.replace(
        helpers.run_cfg(), epochs=3, lr=0.05, warmup_epochs=0, ema=0.0, mixup=0.0
    )
    plan = FreezePlan("backbone", unfreeze_after=1, unfreeze_lr_scale=0.5)
    model = adapt_run.adapt(
        "smallnet",
        init,
        Preprocess(16),
        run,
        plan,
        d.images,
        d.labels,
        tmp_path,
        torch.device("cpu"),
    )
    frozen = ckpt_io.load(tmp_path / "frozen" / "last.pt")
    unfrozen = ckpt_io.load(tmp_path / "unfrozen" / "last.pt")
    head = {"head.weight", "head.bias"}
    # phase 1: one epoch at lr 0.05, the body exactly as it came, the head moved
    assert [h["epoch"] for h in frozen["history"]] == [1]
    assert frozen["scheduler"]["base_lrs"] == pytest.approx([0.05, 0.05])  # (decay, no decay)
    for key, before in init.items():
        assert torch.equal(before, frozen["model"][key]) == (key not in head), key
    # phase 2: the other two epochs, every weight trains, starting at 0.05 * 0.5
    assert [h["epoch"] for h in unfrozen["history"]] == [1, 2]
    assert unfrozen["scheduler"]["base_lrs"] == pytest.approx([0.025, 0.025])
    after = model.state_dict()
    for key, before in frozen["model"].items():
        assert not torch.equal(before, after[key]), key
    assert all(p.requires_grad for p in model.parameters())


def test_bad_sets_fail_naming_the_path_before_training(tmp_path):
    from deepgal.data.labelled import LabelledError

    empty = tmp_path / "empty"
    empty.mkdir()
    odd = tmp_path / "odd" / "spirals"
    odd.mkdir(parents=True)
    broken = tmp_path / "broken" / "2_round_smooth"
    broken.mkdir(parents=True)
    (broken / "a.jpg").write_text("not a picture")
    import h5py

    with h5py.File(tmp_path / "noans.h5", "w") as f:
        f["images"] = np.zeros((4, 16, 16, 3), np.uint8)
    few = labelled_h5(tmp_path / "few.h5", per_class=2)
    cases = {
        tmp_path / "missing.h5": "no such file or folder",
        empty: "empty folder",
        odd.parent: "maps to no Galaxy10 class",
        broken.parent: "not a readable",
        tmp_path / "noans.h5": "no 'ans' dataset",
        few: "fewer than finetune.folds = 3",
    }
    for path, words in cases.items():
        with pytest.raises(LabelledError) as e:
            adapt_run.load_set(path, FOLDS)
        assert words in str(e.value) and str(path.name) in str(e.value), str(e.value)


def test_stage_bad_set_is_one_error_line_and_writes_nothing(tmp_path, selected):
    root, env = stage_dir(tmp_path / "w", selected, "nowhere/labels.h5")
    proc = run_stage(root, env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: nowhere/labels.h5: no such"), lines
    assert not (root / "models").exists() and not (root / "results").exists()


def test_stage_off_links_selected_and_imports_no_torch(tmp_path, selected):
    off = tmp_path / "w" / "finetune"
    off.mkdir(parents=True)
    (off / "README.md").write_text("placeholder")
    root, env = stage_dir(tmp_path / "w", selected, "finetune")
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            str(REPO / "stages/finetune.py"),
            "--variant",
            "smallnet",
            "--selected",
            "selected.pt",
            "--run",
            "run.json",
            "--out",
            "m/ft.pt",
            "--report",
            "r/finetune.json",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {
        line.split("|")[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "yaml" in imported and "torch" not in imported  # the control, and the claim
    assert (root / "m/ft.pt").read_bytes() == (root / "selected.pt").read_bytes()
    report = json.loads((root / "r/finetune.json").read_text())
    assert report["enabled"] is False and report["checkpoint"] == "m/ft.pt"


def test_a_variant_outside_finetune_variants_keeps_its_selected_checkpoint(tmp_path, selected):
    from deepgal.adapt.stage import FinetunePaths, finetune_variant

    data = labelled_h5(tmp_path / "set.h5")
    paths = FinetunePaths(selected, tmp_path / "run.json", tmp_path / "ft.pt", tmp_path / "r.json")
    run = config.resolve_variant(tiny_params(), "smallnet")
    base = config.load_section("base", tiny_params())
    report = finetune_variant(
        "smallnet", paths, finetune_cfg(data=str(data), variants=["customnet"]), run, base
    )
    assert report["enabled"] is False and "finetune.variants" in report["note"]
    assert paths.out.read_bytes() == selected.read_bytes()
    assert json.loads(paths.report.read_text()) == report
    # the set is real and on: the listed variant's stage would train (`staged` shows it does)
    assert not is_off(data)


def test_finetune_variants_must_name_variants():
    params = tiny_params()
    params["finetune"] = {**params["finetune"], "variants": ["smallnet", "resnet99"]}
    with pytest.raises(config.ConfigError, match=r"^finetune.variants: 'resnet99' is not a var"):
        config.validate_all(params)
    params["finetune"]["variants"] = ["smallnet"]
    config.validate_all(params)  # the control: a listed variant passes


def test_off_is_a_folder_holding_only_its_readme(tmp_path):
    (tmp_path / "README.md").write_text("x")
    assert is_off(tmp_path)
    (tmp_path / ".hidden").write_text("x")
    assert is_off(tmp_path)
    (tmp_path / "0_disturbed").mkdir()
    assert not is_off(tmp_path)
    assert not is_off(tmp_path / "missing") and not is_off(tmp_path / "README.md")
    assert is_off(REPO / "finetune")  # the repository's default


@pytest.mark.parametrize(
    "key,value,words",
    [
        ("freeze", "head", "finetune.freeze: 'head' is not one of none, backbone, all_but_last"),
        ("folds", 1, "finetune.folds"),
        ("warmup_epochs", 5, "finetune.warmup_epochs"),
        ("lr", 0, "finetune.lr"),
        ("ema", 1.0, "finetune.ema"),
        ("unfreeze_after", 5, "finetune.unfreeze_after: 5 must be >= 0 and below"),
        ("unfreeze_after", 2, "finetune.unfreeze_after: 2 needs finetune.freeze"),
        ("unfreeze_lr_scale", 0, "finetune.unfreeze_lr_scale"),
        ("data", None, "finetune.data"),
        ("epoch", 3, "finetune.epoch"),
        (
            "augment",
            {"rotate": True, "flip": True, "jitter": 2.0, "scale": 0.1, "translate": 0.0},
            "finetune.augment.jitter",
        ),
    ],
)
def test_finetune_params_are_checked_naming_the_key(key, value, words):
    params = tiny_params()
    params["finetune"] = {**params["finetune"], "epochs": 5, key: value}
    with pytest.raises(config.ConfigError) as e:
        config.validate_all(params)
    assert str(e.value).startswith(words.split(":")[0]) and words in str(e.value), str(e.value)


def test_repository_params_have_a_valid_finetune_section():
    ft = config.load_section("finetune")
    assert ft.data == "finetune" and ft.folds >= 2
