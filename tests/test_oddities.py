"""The outlier score the evaluate stage writes into predictions.csv and the report's gallery of
the most unusual test galaxies. Oracles: a pure-noise image planted among smooth galaxies, the
score recomputed by brute force in NumPy from run_model's embedding (cosine distance to every
train image, the k smallest averaged), and a sort of the CSV's scores done here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal import config
from deepgal.config import ConfigError, EvaluateCfg
from deepgal.data.galaxy10 import write_galaxy10
from deepgal.data.split import sample_rows, stratified_split, write_split
from deepgal.evaluation import evaluate_variant
from deepgal.handoff import Features, HandoffError, Predictions
from deepgal.inference import run_model
from deepgal.models import build_model
from deepgal.pipeline_report import oddities
from deepgal.transforms import Preprocess
from tests.helpers import evaluate_paths, smooth_galaxies
from tests.pipeline_repo import tiny_params

PRE = Preprocess(32, crop=0.5)
K = 5


def brute_force_scores(queries: np.ndarray, train: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k smallest ``1 - cos`` between each query and every train row."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    t = train / np.linalg.norm(train, axis=1, keepdims=True)
    return np.sort(1.0 - q.astype(np.float64) @ t.T.astype(np.float64), axis=1)[:, :k].mean(1)


def evaluate_tiny(
    tmp: Path, images: np.ndarray, labels: np.ndarray, splits: dict, cfg: EvaluateCfg
):
    """Write a data file, split, random smallnet checkpoint and select's files under ``tmp``,
    run the evaluate library call; returns (model, paths)."""
    write_galaxy10(tmp / "g.h5", images, labels)
    write_split(tmp / "split", splits, labels, [0.5] * 3, [0.25] * 3, {"source": "t"})
    torch.manual_seed(0)
    model = build_model("smallnet", 10, PRE.input_size).eval()
    ckpt_io.save(
        tmp / "m.pt",
        {
            "model": model.state_dict(),
            "model_name": "smallnet",
            "preprocess": PRE.to_dict(),
            "epoch": 2,
        },
    )
    (tmp / "selection.json").write_text(json.dumps({"checkpoint": "m.pt", "epoch": 2}))
    (tmp / "history.csv").write_text("epoch,seconds\n1,30.0\n2,60.0\n")
    out = tmp / "out"
    paths = evaluate_paths(tmp, out)
    evaluate_variant("smallnet", paths, cfg, config.load_section("base", tiny_params()))
    return model, paths


def test_planted_noise_is_the_top_outlier_against_every_train_image(tmp_path):
    images = smooth_galaxies(60, seed=11)
    labels = np.repeat(np.arange(10), 6)
    splits = stratified_split(labels, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)
    noise_row = int(splits["test"][3])
    images[noise_row] = np.random.default_rng(7).integers(0, 256, images[0].shape, np.uint8)
    # map_train 8: the maps get a sample of train, the score's reference is still all of it.
    cfg = EvaluateCfg(batch_size=16, tta=False, map_train=8, outlier_k=K, outlier_ref=None)
    model, paths = evaluate_tiny(tmp_path, images, labels, splits, cfg)

    preds = pd.read_csv(paths.predictions)
    assert list(preds.columns) == ["split", "index", "label", "pred", "confidence", "outlier"]
    top = preds.loc[preds["outlier"].idxmax()]
    assert (top["split"], top["index"]) == ("test", noise_row)
    feats = {
        s: run_model(model, images[idx], PRE, torch.device("cpu"), output="features")
        for s, idx in splits.items()
    }
    for s in ("val", "test"):
        part = preds[preds["split"] == s]
        assert part["index"].tolist() == splits[s].tolist()
        want = brute_force_scores(feats[s], feats["train"], K)
        np.testing.assert_allclose(part["outlier"], want, atol=2e-5)
    assert (Features.read(paths.features).split == "train").sum() == 8
    # The headline file keeps its keys: the score lives in predictions.csv alone.
    assert set(json.loads(paths.metrics.read_text())) == {"val", "test", "epoch", "train_min"}


def test_outlier_reference_is_the_seeded_sample_of_outlier_ref_train_images(tmp_path):
    """With evaluate.outlier_ref below the train split, a val/test image's score is against
    that seeded sample alone (and not every train image, nor the map's sample)."""
    images = smooth_galaxies(60, seed=12)
    labels = np.repeat(np.arange(10), 6)
    splits = stratified_split(labels, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)
    cfg = EvaluateCfg(batch_size=16, tta=False, map_train=30, outlier_k=K, outlier_ref=12)
    model, paths = evaluate_tiny(tmp_path, images, labels, splits, cfg)
    seed = config.load_section("base", tiny_params()).seed
    reference = sample_rows(splits["train"], 12, seed)
    assert len(reference) == 12 and not np.array_equal(
        reference, sample_rows(splits["train"], 30, seed)[:12]
    )
    ref = run_model(model, images[reference], PRE, torch.device("cpu"), output="features")
    everyone = run_model(
        model, images[splits["train"]], PRE, torch.device("cpu"), output="features"
    )
    preds = pd.read_csv(paths.predictions)
    for s in ("val", "test"):
        part = preds[preds["split"] == s]
        q = run_model(model, images[splits[s]], PRE, torch.device("cpu"), output="features")
        want = brute_force_scores(q, ref, K)
        np.testing.assert_allclose(part["outlier"], want, atol=2e-5)
        # the sample changes the score: against every train image it would differ
        assert np.abs(want - brute_force_scores(q, everyone, K)).max() > 1e-3
    # Only the map's 30 train images are in the features file (the reference-only ones are
    # not), each split's rows in its own order with its own image's features.
    written = Features.read(paths.features)
    mapped = {**splits, "train": sample_rows(splits["train"], 30, seed)}
    for s, idx in mapped.items():
        rows = written.split == s
        np.testing.assert_array_equal(written.index[rows], idx)
        want = run_model(model, images[idx], PRE, torch.device("cpu"), output="features")
        np.testing.assert_allclose(written.features[rows], want, rtol=1e-5, atol=1e-6)


def test_outlier_k_beyond_the_train_split_is_one_error_before_any_output(tmp_path):
    labels = np.repeat(np.arange(10), 3)
    splits = stratified_split(labels, {"train": 0.34, "val": 0.33, "test": 0.33}, seed=0)
    n_train = len(splits["train"])
    cfg = EvaluateCfg(
        batch_size=16, tta=False, map_train=None, outlier_k=n_train + 1, outlier_ref=None
    )
    with pytest.raises(
        ConfigError,
        match=rf"evaluate.outlier_k = {n_train + 1} needs at least "
        rf"{n_train + 1} train images as the outlier reference; there are {n_train}",
    ):
        evaluate_tiny(tmp_path, smooth_galaxies(30), labels, splits, cfg)
    assert not (tmp_path / "out").exists()


def test_predictions_without_the_outlier_column_still_read(tmp_path):
    old = tmp_path / "predictions.csv"
    old.write_text("split,index,label,pred,confidence\nval,4,1,1,0.9\ntest,7,2,3,0.4\n")
    preds = Predictions.read(old)
    assert not preds.has_outliers()
    assert preds.confusion_matrix("test")[2, 3] == 1
    with pytest.raises(HandoffError, match=r"no 'outlier' column .* `dvc repro evaluate`"):
        preds.most_unusual("test", 16)


def test_an_empty_outlier_cell_names_its_line(tmp_path):
    bad = tmp_path / "predictions.csv"
    bad.write_text(
        "split,index,label,pred,confidence,outlier\nval,4,1,1,0.9,0.1\ntest,7,2,3,0.4,\n"
    )
    with pytest.raises(HandoffError, match=r"line 3 has no 'outlier' score"):
        Predictions.read(bad)


def scored_predictions(path: Path, n_test: int, seed: int) -> pd.DataFrame:
    """predictions.csv with random outlier scores (some tied) for ``n_test`` test rows 0.. and
    five val rows after them; returns what it wrote as pandas reads it back."""
    rng = np.random.default_rng(seed)
    n = n_test + 5
    labels = rng.integers(0, 10, n)
    probs = np.eye(10)[np.where(rng.random(n) < 0.7, labels, (labels + 1) % 10)] * 0.6 + 0.04
    score = np.round(rng.uniform(0.05, 0.6, n), 2)  # 2 decimals: ties happen
    score[n_test:] = 0.99  # the most unusual of all are val rows: the gallery must skip them
    idx = np.arange(n)
    Predictions.from_parts(
        {
            "test": (idx[:n_test], labels[:n_test], probs[:n_test], score[:n_test]),
            "val": (idx[n_test:], labels[n_test:], probs[n_test:], score[n_test:]),
        }
    ).write(path)
    return pd.read_csv(path)


def test_the_gallery_shows_the_16_highest_test_scores_in_order(tmp_path):
    images = smooth_galaxies(45, size=24, seed=3)
    write_galaxy10(tmp_path / "g.h5", images, np.zeros(45, np.uint8))
    csv = scored_predictions(tmp_path / "predictions.csv", 40, seed=1)
    fig = oddities(
        "v", Predictions.read(tmp_path / "predictions.csv"), tmp_path / "g.h5", tmp_path / "odd.png"
    )
    # The oracle: the test rows by descending score, ties by file order (a stable sort here).
    test = csv[csv["split"] == "test"]
    order = np.argsort(-test["outlier"].to_numpy(), kind="stable")[:16]
    want = test["index"].to_numpy()[order]
    shown = [ax for ax in fig.axes if ax.images]
    assert [int(ax.get_xlabel().split()[0][1:]) for ax in shown] == want.tolist()
    assert [float(ax.get_xlabel().split()[1][2:]) for ax in shown] == pytest.approx(
        test["outlier"].to_numpy()[order], abs=5e-4
    )
    for ax, row in zip(shown, want, strict=True):
        np.testing.assert_array_equal(ax.images[0].get_array(), images[row])
    missed = test["label"].to_numpy()[order] != test["pred"].to_numpy()[order]
    assert [ax.spines["top"].get_visible() for ax in shown] == missed.tolist()
    assert (tmp_path / "odd.png").stat().st_size > 1000


def test_no_gallery_without_scores_or_without_a_test_split(tmp_path):
    write_galaxy10(tmp_path / "g.h5", smooth_galaxies(8, size=24), np.zeros(8, np.uint8))
    (tmp_path / "old.csv").write_text("split,index,label,pred,confidence\ntest,1,0,0,0.9\n")
    assert (
        oddities("v", Predictions.read(tmp_path / "old.csv"), tmp_path / "g.h5", tmp_path / "a.png")
        is None
    )
    (tmp_path / "val.csv").write_text(
        "split,index,label,pred,confidence,outlier\nval,1,0,0,0.9,0.3\n"
    )
    assert (
        oddities("v", Predictions.read(tmp_path / "val.csv"), tmp_path / "g.h5", tmp_path / "b.png")
        is None
    )
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()
