"""The report's Grad-CAM gallery: which images it shows (a predictions table written by hand,
the expected rows written here), that the maps the evaluate stage stores are
:func:`deepgal.explore.cam.grad_cam`'s on those rows, that the report draws and links them, and
that a model Grad-CAM cannot serve, or an install without Captum, gives a stated reason."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal import config
from deepgal.config import EvaluateCfg
from deepgal.data.galaxy10 import CLASS_NAMES, write_galaxy10
from deepgal.data.split import stratified_split, write_split
from deepgal.evaluation import evaluate_variant
from deepgal.explore.cam import grad_cam
from deepgal.explore.cam_gallery import gallery_split, gradcam_gallery, pick_rows
from deepgal.handoff import GradCams, HandoffError, Predictions
from deepgal.models import Net
from deepgal.plots.gradcam import gradcam_report
from deepgal.report import report_row, write_report
from deepgal.transforms import Preprocess
from tests.helpers import evaluate_paths, smooth_galaxies
from tests.pipeline_repo import tiny_params

pytest.importorskip("captum")

PRE = Preprocess(32, crop=0.5)
CPU = torch.device("cpu")

# One split of predictions.csv by hand: (index, label, pred, confidence).
TEST_ROWS = [
    # class 0: four correct; 0.95 twice (the lower row first), then 0.90; 0.50 is left out
    (10, 0, 0, 0.90),
    (11, 0, 0, 0.95),
    (5, 0, 0, 0.95),
    (12, 0, 0, 0.50),
    # class 1: one correct image only
    (20, 1, 1, 0.70),
    # class 3 -> 4 three times (the most confused pair): the two surest, 31 then 32
    (30, 3, 4, 0.60),
    (31, 3, 4, 0.80),
    (32, 3, 4, 0.70),
    # class 2 -> 7 twice out of 2 (share 1.0) before 5 -> 6 twice out of 4 (share 0.5)
    (40, 2, 7, 0.40),
    (41, 2, 7, 0.45),
    (50, 5, 6, 0.30),
    (51, 5, 6, 0.90),
    (52, 5, 5, 0.99),
    (53, 5, 5, 0.20),
    # 8 -> 9 once: the fourth pair, beyond the three shown
    (60, 8, 9, 0.99),
    # class 9: one correct, less sure than the mistake above
    (70, 9, 9, 0.35),
]
EXPECTED = [
    (5, "correct"),
    (11, "correct"),
    (20, "correct"),
    (52, "correct"),
    (53, "correct"),
    (70, "correct"),
    (31, "confused"),
    (32, "confused"),
    (41, "confused"),
    (40, "confused"),
    (51, "confused"),
    (50, "confused"),
]


def table(rows, split) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["index", "label", "pred", "confidence"])
    return df.assign(split=split)[["split", "index", "label", "pred", "confidence"]]


def test_the_gallery_picks_the_surest_correct_per_class_then_the_confused_pairs(tmp_path):
    # val rows that would win every slot: the gallery shows test when there is a test split
    val = table([(r + 100, label, pred, 1.0) for r, label, pred, _ in TEST_ROWS], "val")
    csv = tmp_path / "predictions.csv"
    Predictions(pd.concat([val, table(TEST_ROWS, "test")], ignore_index=True)).write(csv)
    preds = Predictions.read(csv)
    assert gallery_split(preds) == "test"
    picked = pick_rows(preds.frame[preds.frame["split"] == "test"])
    assert list(zip(picked["index"], picked["kind"], strict=True)) == EXPECTED
    by_row = {r: (label, pred, c) for r, label, pred, c in TEST_ROWS}
    for _, p in picked.iterrows():
        assert (p["label"], p["pred"], p["confidence"]) == by_row[p["index"]]


def test_without_a_test_split_the_gallery_shows_val():
    preds = Predictions(table(TEST_ROWS, "val"))
    assert gallery_split(preds) == "val"
    assert gallery_split(Predictions(table([], "val"))) is None


def evaluate_tiny(tmp_path, tta=False):
    """The evaluate library call on a written data file, split and random smallnet checkpoint
    (``tta``: 8-view probabilities); returns (images, model, paths)."""
    images = smooth_galaxies(60, size=64, seed=5)
    labels = np.repeat(np.arange(10), 6)
    splits = stratified_split(labels, {"train": 0.5, "val": 0.2, "test": 0.3}, seed=0)
    write_galaxy10(tmp_path / "g.h5", images, labels)
    write_split(tmp_path / "split", splits, labels, [0.5] * 3, [0.25] * 3, {"source": "t"})
    torch.manual_seed(3)
    from deepgal.models import build_model

    model = build_model("smallnet", 10, PRE.input_size).eval()
    ckpt_io.save(
        tmp_path / "m.pt",
        {"model": model.state_dict(), "model_name": "smallnet", "preprocess": PRE.to_dict()},
    )
    (tmp_path / "selection.json").write_text(json.dumps({"checkpoint": "m.pt", "epoch": 1}))
    (tmp_path / "history.csv").write_text("epoch,seconds\n1,3.0\n")
    out = tmp_path / "out"
    paths = evaluate_paths(tmp_path, out)
    cfg = EvaluateCfg(batch_size=7, tta=tta, map_train=None, outlier_k=3, outlier_ref=None)
    evaluate_variant("smallnet", paths, cfg, config.load_section("base", tiny_params()))
    return images, model, paths


@pytest.mark.parametrize("tta", [False, True])
def test_the_stored_maps_are_grad_cams_of_the_rows_predictions_csv_names(tmp_path, tta):
    images, model, paths = evaluate_tiny(tmp_path, tta)
    cams = GradCams.read(paths.gradcam)
    preds = pd.read_csv(paths.predictions)
    test = preds[preds["split"] == "test"].set_index("index")
    assert cams.split == "test" and not cams.skipped and len(cams.rows) > 0
    # The pick, redone here on the CSV: per class the two surest correct rows (lower row on a
    # tie), in class order, before the mistakes; every mistake a test row the CSV calls wrong.
    right = test[test["label"] == test["pred"]].reset_index()
    right = right.sort_values(["confidence", "index"], ascending=[False, True])
    want = [r for c in range(10) for r in right[right["label"] == c]["index"][:2]]
    n = len(want)
    assert cams.rows[:n].tolist() == want and set(cams.kind[:n]) <= {"correct"}
    assert set(cams.kind[n:]) <= {"confused"}
    assert all(test.loc[r, "label"] != test.loc[r, "pred"] for r in cams.rows[n:])
    np.testing.assert_array_equal(cams.label, test.loc[cams.rows, "label"])
    np.testing.assert_array_equal(cams.pred, test.loc[cams.rows, "pred"])
    np.testing.assert_allclose(cams.confidence, test.loc[cams.rows, "confidence"])
    # The oracle for the maps: Captum's Grad-CAM through deepgal.explore.cam, on those images.
    maps, _, views, layer = grad_cam(model, images[cams.rows], PRE, CPU, targets=cams.pred)
    assert cams.layer == layer == "body.4"
    np.testing.assert_allclose(cams.maps, maps, atol=1e-6)
    np.testing.assert_array_equal(cams.views, views)
    assert cams.maps.shape == (len(cams.rows), 32, 32) and cams.maps.max() <= 1
    if tta:  # the control: a map of the one-view argmax would differ somewhere
        one_view, *_ = grad_cam(model, images[cams.rows], PRE, CPU)
        assert not np.allclose(one_view, cams.maps, atol=1e-6)


def test_report_md_links_the_gallery_it_drew(tmp_path):
    _, _, paths = evaluate_tiny(tmp_path)
    cams = GradCams.read(paths.gradcam)
    reports = tmp_path / "reports"
    lines = gradcam_report("smallnet", cams, reports / "plots")
    cm = Predictions.read(paths.predictions).confusion_matrix("val")
    row = report_row("smallnet", json.loads(paths.metrics.read_text()), cm)
    text = write_report(reports / "report.md", [row], {"smallnet": cm}, attention=lines)
    # after the best variant's confused pairs, a section with how to read it and the picture
    assert text.index("## What smallnet looked at (Grad-CAM)") > text.index("## Most confused")
    (link,) = re.findall(r"!\[[^\]]*\]\(([^)]+_gradcam[^)]*)\)", text)
    assert link == "plots/smallnet_gradcam.png"
    png = reports / link  # relative to report.md
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert f"layer `{cams.layer}`" in text and "the test images" in text


class Dense(torch.nn.Module):
    """A network with no convolution: Grad-CAM has no layer to attribute to."""

    def __init__(self):
        super().__init__()
        self.flat = torch.nn.Flatten()
        self.fc = torch.nn.Linear(3 * 32 * 32, 8)

    def forward(self, x):
        return self.fc(self.flat(x))


def test_a_model_without_a_conv_layer_is_skipped_with_its_reason(tmp_path):
    model = Net("mlp", Dense(), 8, 10).eval()
    preds = Predictions(table(TEST_ROWS, "test"))
    cams = gradcam_gallery(model, PRE, CPU, tmp_path / "absent.h5", preds)
    assert cams.skipped.startswith("no Grad-CAM target layer for model 'mlp'")
    assert "convolutional layer" in cams.skipped
    back = GradCams.read(cams.write(tmp_path / "gradcam.npz"))
    assert back.skipped == cams.skipped and len(back.rows) == 0
    lines = gradcam_report("mlp", back, tmp_path / "plots")
    assert f"No Grad-CAM gallery: {cams.skipped}." in lines
    assert not (tmp_path / "plots").exists()  # nothing drawn


def test_without_captum_the_gallery_says_how_to_install_it(tmp_path, monkeypatch):
    write_galaxy10(tmp_path / "g.h5", smooth_galaxies(20, size=64), np.zeros(20, np.uint8))
    from deepgal.models import build_model

    monkeypatch.setitem(__import__("sys").modules, "captum.attr", None)  # import raises
    cams = gradcam_gallery(
        build_model("smallnet", 10, 32),
        PRE,
        CPU,
        tmp_path / "g.h5",
        Predictions(table([(1, 0, 0, 0.9), (2, 0, 3, 0.8)], "val")),
    )
    assert "pip install 'deepgal[explore]'" in cams.skipped and cams.split == "val"


def two_cams() -> GradCams:
    """Rows 4 (class 1, right) and 9 (class 2 taken for 3), blank maps and views."""
    return GradCams(
        np.array([4, 9]),
        np.array([1, 2]),
        np.array([1, 3]),
        np.array([0.9, 0.6]),
        np.array(["correct", "confused"]),
        np.zeros((2, 8, 8), np.float32),
        np.zeros((2, 8, 8, 3), np.uint8),
        "body.4",
        "test",
    )


def test_a_gallery_file_that_disagrees_with_itself_is_refused(tmp_path):
    good = two_cams()
    back = GradCams.read(good.write(tmp_path / "ok.npz"))
    assert back.rows.tolist() == [4, 9] and back.kind.tolist() == ["correct", "confused"]
    assert (back.layer, back.split, back.skipped) == ("body.4", "test", "")
    np.savez(tmp_path / "short.npz", **{k: getattr(good, k) for k in ("rows", "maps")})
    with pytest.raises(HandoffError, match=r"short.npz lacks arrays .*'label'.*dvc repro evaluate"):
        GradCams.read(tmp_path / "short.npz")
    with pytest.raises(HandoffError, match=r"missing .*run `dvc repro evaluate`"):
        GradCams.read(tmp_path / "none.npz")
    arrays = {k: np.array(getattr(good, k)) for k in vars(good)}
    np.savez(tmp_path / "bad.npz", **(arrays | {"pred": np.array([1])}))
    with pytest.raises(HandoffError, match=r"bad.npz: arrays of different lengths"):
        GradCams.read(tmp_path / "bad.npz")
    np.savez(tmp_path / "kind.npz", **(arrays | {"kind": np.array(["correct", "lucky"])}))
    with pytest.raises(HandoffError, match=r"kind 'lucky' is none of"):
        GradCams.read(tmp_path / "kind.npz")


def test_class_names_in_captions_follow_the_stored_classes(tmp_path):
    cams = two_cams()
    from deepgal.plots.gradcam import plot_gradcams

    fig = plot_gradcams(cams, "v", tmp_path / "g.png")
    shown = [ax.get_xlabel() for ax in fig.axes if ax.images]
    assert shown == [
        f"#4\n{CLASS_NAMES[1]}",
        f"map of {CLASS_NAMES[1]}\np=0.90",
        f"#9\ntrue {CLASS_NAMES[2]}",
        f"map of {CLASS_NAMES[3]}\np=0.60",
    ]
    frames = [ax.spines["top"].get_visible() for ax in fig.axes if ax.images]
    assert frames == [False, False, True, True]
