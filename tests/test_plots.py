"""deepgal.plots: every figure lands as a PNG of the stated pixel size, with the class names,
variant names and titles a reader needs; files are written atomically."""
import os

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from deepgal.data.galaxy10 import CLASS_NAMES
from deepgal.plots import (CONFUSION_SIZE, CURVES_SIZE, EMBEDDING_SIZE, plot_augmentation_preview,
                           plot_confusion, plot_curves, plot_embedding, plot_sample_grid)
from deepgal.plots_common import CLASS_COLORS, new_figure, save_png
from deepgal.plots_images import CELL_IN, LABEL_IN, PANEL_IN

DPI = 40  # small PNGs keep the tests fast; sizes scale exactly with dpi


def png_size(path) -> tuple[int, int]:
    assert os.path.getsize(path) > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def expected(size_in) -> tuple[int, int]:
    return round(size_in[0] * DPI), round(size_in[1] * DPI)


def test_embedding_legend_names_the_classes_present_in_their_colours(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.choice([0, 2, 5, 9], size=200)
    df = pd.DataFrame({"split": "train", "method": "umap", "index": np.arange(200),
                       "label": labels, "x": rng.normal(size=200), "y": rng.normal(size=200)})
    path = tmp_path / "nested" / "dir" / "umap_train.png"
    fig = plot_embedding(df, "UMAP RESNET50 TRAIN", path, dpi=DPI)
    assert png_size(path) == expected(EMBEDDING_SIZE)
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [CLASS_NAMES[k] for k in (0, 2, 5, 9)]
    assert [to_hex(h.get_color()) for h in legend.legend_handles] == \
        [CLASS_COLORS[k] for k in (0, 2, 5, 9)]
    ax = fig.axes[0]
    assert ax.get_title() == "UMAP RESNET50 TRAIN"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("UMAP 1", "UMAP 2")
    # Every point is painted in its own class colour, whatever the drawing order.
    painted = sorted(to_hex(c) for c in ax.collections[0].get_facecolors())
    assert painted == sorted(CLASS_COLORS[k] for k in labels)


def test_embedding_rejects_frame_without_coordinates(tmp_path):
    with pytest.raises(ValueError, match="lacks column 'x'"):
        plot_embedding(pd.DataFrame({"label": [0], "y": [0.0]}), "t", tmp_path / "e.png")


def history(epochs: int, shift: float) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": e, "train/loss": 2 / e + shift, "train/accuracy": 1 - 1 / (e + 1),
                         "val/loss": 2.2 / e + shift, "val/accuracy": 0.9 - 1 / (e + 1),
                         "lr": 1e-3, "images_per_s": 100.0, "seconds": 1.0})


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
