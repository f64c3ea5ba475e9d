"""deepgal.plots: every figure lands as a PNG of the stated pixel size, with the class names,
variant names and titles a reader needs; files are written atomically."""

import os

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from deepgal.data.galaxy10 import CLASS_NAMES
from deepgal.plots.common import CLASS_COLORS, new_figure, save_png
from deepgal.plots.confusion import CONFUSION_SIZE, plot_confusion
from deepgal.plots.curves import CURVES_SIZE, plot_curves
from deepgal.plots.embeddings import (
    CONTEXT_COLOR,
    LEGEND_IN,
    TITLE_IN,
    plot_embedding_grid,
    plot_variant_maps,
)
from deepgal.plots.embeddings import PANEL_IN as MAP_IN
from deepgal.plots.images import (
    CELL_IN,
    LABEL_IN,
    PANEL_IN,
    ConfusedPair,
    pick_confused,
    plot_augmentation_preview,
    plot_confused_pairs,
    plot_sample_grid,
)

DPI = 40  # small PNGs keep the tests fast; sizes scale exactly with dpi


def png_size(path) -> tuple[int, int]:
    assert os.path.getsize(path) > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def expected(size_in) -> tuple[int, int]:
    return round(size_in[0] * DPI), round(size_in[1] * DPI)


def embeddings(n_per_split=(60, 20, 20), methods=("pca", "umap", "tsne"), seed=0):
    """A reduce-stage frame: every method maps every split; classes 0, 2, 5, 9 only."""
    rng = np.random.default_rng(seed)
    frames, start = [], 0
    for split, n in zip(("train", "val", "test"), n_per_split, strict=True):
        labels = rng.choice([0, 2, 5, 9], size=n)
        for method in methods:
            frames.append(
                pd.DataFrame(
                    {
                        "split": split,
                        "method": method,
                        "index": np.arange(start, start + n),
                        "label": labels,
                        "x": rng.normal(size=n),
                        "y": rng.normal(size=n),
                    }
                )
            )
        start += n
    return pd.concat(frames, ignore_index=True)


def wrong_every_third(emb):
    """Predictions of the val/test rows of ``emb``: every third one wrong (class + 1)."""
    rows = emb[(emb["method"] == emb["method"].iloc[0]) & (emb["split"] != "train")]
    pred = rows["label"].to_numpy().copy()
    pred[::3] = (pred[::3] + 1) % 10
    return pd.DataFrame(
        {
            "split": rows["split"],
            "index": rows["index"],
            "label": rows["label"],
            "pred": pred,
            "confidence": 0.5,
        }
    )


def test_embedding_grid_rows_methods_columns_splits_one_legend(tmp_path):
    emb = embeddings()
    preds = wrong_every_third(emb)
    path = tmp_path / "nested" / "grid.png"
    fig = plot_embedding_grid(emb, "smallnet maps", path, predictions=preds, dpi=DPI)
    assert png_size(path) == expected((3 * MAP_IN + LEGEND_IN, 3 * MAP_IN + TITLE_IN))
    axes = np.array(fig.axes).reshape(3, 3)
    # Methods in the report's order whatever the file's, splits train, val, test.
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["UMAP", "t-SNE", "PCA"]
    assert [ax.get_title() for ax in axes[0]] == [
        "train (60 images)",
        "val (20 images)",
        "test (20 images)",
    ]
    assert len(fig.legends) == 1
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [CLASS_NAMES[k] for k in (0, 2, 5, 9)] + [
        "misclassified",
        "train (behind val/test)",
    ]
    assert [to_hex(h.get_color()) for h in legend.legend_handles[:4]] == [
        CLASS_COLORS[k] for k in (0, 2, 5, 9)
    ]
    # One map per method: the val panel draws the 60 train points in grey first, then its
    # own 20 in their class colours, then rings; on the train panel's axes.
    val = emb[(emb["method"] == "umap") & (emb["split"] == "val")]
    context, points, rings = axes[0, 1].collections
    assert len(context.get_offsets()) == 60
    assert {to_hex(c) for c in context.get_facecolors()} == {CONTEXT_COLOR}
    assert sorted(to_hex(c) for c in points.get_facecolors()) == sorted(
        CLASS_COLORS[k] for k in val["label"]
    )
    assert axes[0, 1].get_xlim() == axes[0, 0].get_xlim()
    assert axes[2, 2].get_ylim() == axes[2, 0].get_ylim()
    # Rings sit exactly on the val points predicted wrong; the train panel has none.
    wrong = val.set_index("index").loc[
        preds[(preds["split"] == "val") & (preds["pred"] != preds["label"])]["index"]
    ]
    np.testing.assert_allclose(
        sorted(map(tuple, rings.get_offsets())),
        sorted(zip(wrong["x"], wrong["y"], strict=True)),
        rtol=1e-6,
    )
    assert len(axes[0, 0].collections) == 1


def test_embedding_grid_without_predictions_or_other_splits(tmp_path):
    emb = embeddings(n_per_split=(30, 0, 0), methods=("pca",))
    fig = plot_embedding_grid(emb, "t", tmp_path / "g.png", dpi=DPI)
    assert png_size(tmp_path / "g.png") == expected((MAP_IN + LEGEND_IN, MAP_IN + TITLE_IN))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        CLASS_NAMES[k] for k in sorted(set(emb["label"]))
    ]  # no ring, no grey entry


def test_embedding_grid_rejects_frames_without_coordinates(tmp_path):
    with pytest.raises(ValueError, match=r"lacks columns \['x'\]"):
        plot_embedding_grid(embeddings().drop(columns="x"), "t", tmp_path / "e.png")
    with pytest.raises(ValueError, match="has no rows"):
        plot_embedding_grid(embeddings().iloc[:0], "t", tmp_path / "e.png")


def test_variant_maps_one_panel_per_variant_with_caption(tmp_path):
    maps = {
        "smallnet": embeddings(seed=1),
        "customnet": embeddings(seed=2),
        "resnet50": embeddings(seed=3),
        "convnext_tiny": embeddings(seed=4),
    }
    path = tmp_path / "variants.png"
    fig = plot_variant_maps(
        maps,
        path,
        captions={"smallnet": "val accuracy 61.0%"},
        predictions={"smallnet": wrong_every_third(maps["smallnet"])},
        dpi=DPI,
    )
    assert png_size(path) == expected((3 * MAP_IN + LEGEND_IN, 2 * MAP_IN + TITLE_IN))
    titles = [ax.get_title() for ax in fig.axes if ax.collections]
    assert titles == ["smallnet\nval accuracy 61.0%", "customnet", "resnet50", "convnext_tiny"]
    assert sum(1 for ax in fig.axes if not ax.axison) == 2  # the empty cells of a 2 x 3 grid
    context, points = fig.axes[1].collections[:2]  # customnet: train in grey, then val
    assert len(context.get_offsets()) == 60 and len(points.get_offsets()) == 20
    assert fig._suptitle.get_text() == "UMAP of the val split, every variant"
    assert "train (behind val/test)" in [t.get_text() for t in fig.legends[0].get_texts()]
    with pytest.raises(ValueError, match=r"'customnet' have no umap map of test"):
        plot_variant_maps({"customnet": embeddings(n_per_split=(5, 5, 0))}, path, split="test")


def history(epochs: int, shift: float) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    return pd.DataFrame(
        {
            "epoch": e,
            "train/loss": 2 / e + shift,
            "train/accuracy": 1 - 1 / (e + 1),
            "val/loss": 2.2 / e + shift,
            "val/accuracy": 0.9 - 1 / (e + 1),
            "lr": 1e-3,
            "images_per_s": 100.0,
            "seconds": 1.0,
        }
    )


def test_curves_show_every_variant_train_dashed_val_solid(tmp_path):
    path = tmp_path / "curves.png"
    fig = plot_curves({"smallnet": history(5, 0.3), "resnet50": history(1, 0.0)}, path, dpi=DPI)
    assert png_size(path) == expected(CURVES_SIZE)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["smallnet", "resnet50", "train", "val"]
    acc, loss = fig.axes[:2]
    assert (acc.get_ylabel(), loss.get_ylabel()) == ("accuracy", "loss (log scale)")
    assert loss.get_yscale() == "log"
    assert acc.get_xlabel() == loss.get_xlabel() == "epoch"
    # Per variant: train then val line, on both panels.
    assert [line.get_linestyle() for line in acc.lines] == ["--", "-", "--", "-"]
    np.testing.assert_allclose(acc.lines[1].get_ydata(), history(5, 0.3)["val/accuracy"])


def test_curves_name_the_variant_with_missing_columns(tmp_path):
    with pytest.raises(ValueError, match=r"history of 'smallnet' lacks columns \['val/loss'\]"):
        plot_curves({"smallnet": history(2, 0).drop(columns="val/loss")}, tmp_path / "c.png")


def test_confusion_annotates_shares_and_counts(tmp_path):
    cm = np.zeros((10, 10), dtype=int)
    cm[0, 0], cm[0, 1] = 3, 1  # Disturbed: 75% right, 25% called Merging
    cm[4, 4] = 7
    path = tmp_path / "cm.png"
    fig = plot_confusion(cm, CLASS_NAMES, "resnet50 val", path, dpi=DPI)
    assert png_size(path) == expected(CONFUSION_SIZE)
    ax = fig.axes[0]
    cells = [t.get_text() for t in ax.texts]
    assert cells[0] == "75%\n(3)" and cells[1] == "25%\n(1)" and cells[44] == "100%\n(7)"
    assert cells[22] == "0%\n(0)"  # an empty row reads zero, not nan
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASS_NAMES)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASS_NAMES)
    raw = plot_confusion(cm, CLASS_NAMES, "counts", tmp_path / "raw.png", normalize=False, dpi=DPI)
    assert [t.get_text() for t in raw.axes[0].texts][:2] == ["3", "1"]
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        plot_confusion(np.eye(3), CLASS_NAMES, "t", tmp_path / "bad.png")


def test_sample_grid_rows_are_named_classes(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 16, 16, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 4)
    labels[labels == 3] = 2  # class 3 has no image: its row stays, blank
    path = tmp_path / "grid.png"
    fig = plot_sample_grid(images, labels, path, per_class=3, dpi=DPI)
    assert png_size(path) == expected((LABEL_IN + 3 * CELL_IN, 10 * CELL_IN + 0.5))
    first_column = fig.axes[::3]
    assert [ax.get_ylabel() for ax in first_column] == list(CLASS_NAMES)
    assert sum(len(ax.images) for ax in fig.axes) == 9 * 3
    with pytest.raises(ValueError, match="uint8"):
        plot_sample_grid(images.astype(np.float32), labels, tmp_path / "x.png")


def test_augmentation_preview_titles_panels(tmp_path):
    img = np.zeros((24, 24, 3), dtype=np.uint8)
    names = ["original", "rotate 37°", "flip", "colour jitter", "all"]
    path = tmp_path / "aug.png"
    fig = plot_augmentation_preview([(n, img) for n in names], path, dpi=DPI)
    assert png_size(path) == expected((4 * PANEL_IN, 2 * PANEL_IN + 0.5))
    assert [ax.get_title() for ax in fig.axes if ax.images] == names
    with pytest.raises(ValueError, match="no panels"):
        plot_augmentation_preview([], tmp_path / "none.png")


def test_failed_save_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"old")
    fig = new_figure(2, 2, dpi=DPI)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    fig.savefig = broken
    with pytest.raises(RuntimeError, match="disk full"):
        save_png(fig, path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["plot.png"]


def confusions_frame():
    """val predictions: A (0) -> B (1) twice (confidences .9, .6), A -> C (2) once,
    B right twice (.8, .7), C right once."""
    return pd.DataFrame(
        {
            "split": "val",
            "index": [10, 11, 12, 13, 14, 15, 16],
            "label": [0, 0, 0, 1, 1, 2, 0],
            "pred": [1, 1, 2, 1, 1, 2, 0],
            "confidence": [0.6, 0.9, 0.5, 0.7, 0.8, 0.99, 0.95],
        }
    )


def test_pick_confused_most_confident_first():
    pairs = pick_confused(confusions_frame(), [(0, 1), (0, 2)], per_pair=6, references=1)
    a_b, a_c = pairs
    assert (a_b.true, a_b.pred, a_b.count, a_b.support) == (0, 1, 2, 4)
    assert a_b.mistakes.tolist() == [11, 10]  # .9 before .6
    assert a_b.references.tolist() == [14]  # the surest right B
    assert (a_c.count, a_c.mistakes.tolist(), a_c.references.tolist()) == (1, [12], [15])
    assert pick_confused(confusions_frame(), [(0, 1)], per_pair=1)[0].mistakes.tolist() == [11]


def test_confused_pairs_gallery_rows_and_thumbnails(tmp_path):
    pairs = pick_confused(confusions_frame(), [(0, 1), (0, 2)], per_pair=6, references=2)
    images = {i: np.full((16, 16, 3), i, dtype=np.uint8) for i in range(10, 17)}
    path = tmp_path / "gallery.png"
    fig = plot_confused_pairs(
        pairs, images, "smallnet: most confused (val)", path, confidence={11: 0.9, 10: 0.6}, dpi=DPI
    )
    # Widest row: 2 mistakes, a gap, 2 references (A -> C has one of each: blanks).
    from deepgal.plots.images import GAP_IN

    assert png_size(path) == expected((LABEL_IN + 4 * CELL_IN + GAP_IN, 2 * (CELL_IN + 0.25) + 1))
    # One image strip per row: 16 px cells, a 6 px gap (GAP_IN / CELL_IN of a cell), blanks white.
    strips = [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]
    assert [st.shape for st in strips] == [(16, 4 * 16 + 6, 3)] * 2
    cells = [0, 16, 16 * 2 + 6, 16 * 3 + 6]  # mistakes 1-2, gap, references 1-2
    assert [int(strips[0][8, x + 8, 0]) for x in cells] == [11, 10, 14, 13]
    assert [int(strips[1][8, x + 8, 0]) for x in cells] == [12, 255, 15, 255]
    captions = [t.get_text() for ax in fig.axes if ax.images for t in ax.texts]
    assert captions[:3] == ["#11  p=0.90", "#10  p=0.60", "#14"]
    assert "#12" in captions and "#15" in captions
    first_row_text = [t.get_text() for t in fig.axes[0].texts]
    assert first_row_text == [CLASS_NAMES[0], "predicted as", CLASS_NAMES[1], "2 of 4 (50%)"]
    with pytest.raises(ValueError, match=r"no image given for data-file indices \[14\]"):
        plot_confused_pairs(pairs, {k: v for k, v in images.items() if k != 14}, "t", path)
    with pytest.raises(ValueError, match="no confused pairs"):
        plot_confused_pairs([], images, "t", path)
    bad = [ConfusedPair(0, 1, 1, 1, np.array([10]), np.array([], dtype=np.int64))]
    with pytest.raises(ValueError, match="image 10 must be uint8"):
        plot_confused_pairs(bad, {10: np.zeros((4, 4, 3))}, "t", path)
