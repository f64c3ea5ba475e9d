"""``deepgal predict`` on what astronomers have: an HDF5 file with images only, a folder of
JPEG/PNG cut-outs of any size; ``--tta``; errors that name the file. Real files throughout
(h5py, Pillow), a real checkpoint written by deepgal.checkpoint."""

import argparse
import logging
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from deepgal import checkpoint as ckpt_io
from deepgal.cli import main
from deepgal.data.galaxy10 import CLASS_NAMES, write_galaxy10
from deepgal.inference import run_model
from deepgal.models import build_model
from deepgal.transforms import Preprocess

PRE = Preprocess(32, crop=0.5)  # smallnet's: the folder path resizes cut-outs to 64 px
CPU = torch.device("cpu")
PROBS = [f"p_{c}" for c in CLASS_NAMES]


@pytest.fixture(scope="module")
def model_and_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("smallnet", 10, PRE.input_size).eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    ckpt_io.save(
        path,
        {
            "model": model.state_dict(),
            "model_name": "smallnet",
            "preprocess": PRE.to_dict(),
            "epoch": 3,
            "variant": "smallnet",
        },
    )
    return model, path


def galaxies(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 150, size)[None, None, :, None] * rng.uniform(0, 1, (n, 1, 1, 3))
    return np.clip(ramp + rng.integers(0, 100, (n, size, size, 3)), 0, 255).astype(np.uint8)


def images_only_h5(path, images):
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
    return path


def predict(ckpt, data, out, *extra) -> pd.DataFrame:
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(ckpt),
                "--data",
                str(data),
                "--out",
                str(out),
                "--device",
                "cpu",
                *extra,
            ]
        )
        == 0
    )
    return pd.read_csv(out)


def test_hdf5_without_labels(model_and_ckpt, tmp_path):
    model, ckpt = model_and_ckpt
    x = galaxies(7)
    df = predict(ckpt, images_only_h5(tmp_path / "new.h5", x), tmp_path / "p.csv")
    probs = run_model(model, x, PRE, CPU)
    assert list(df.columns) == ["index", "predicted", "predicted_name", *PROBS]
    assert df["index"].tolist() == list(range(7))
    np.testing.assert_allclose(df[PROBS].to_numpy(), probs, atol=1e-5)
    assert df["predicted_name"].tolist() == [CLASS_NAMES[i] for i in probs.argmax(1)]


def test_labelled_file_keeps_its_labels(model_and_ckpt, tmp_path):
    _, ckpt = model_and_ckpt
    write_galaxy10(tmp_path / "g.h5", galaxies(5), np.array([0, 1, 2, 3, 4]))
    df = predict(ckpt, tmp_path / "g.h5", tmp_path / "p.csv")
    assert df["label"].tolist() == [0, 1, 2, 3, 4]


def test_folder_of_pngs_and_jpegs_of_any_size(model_and_ckpt, tmp_path):
    model, ckpt = model_and_ckpt
    x = galaxies(3)
    folder = tmp_path / "cutouts"
    folder.mkdir()
    for i, img in enumerate(x):  # lossless and already at 64 px: exactly the HDF5 pixels
        Image.fromarray(img).save(folder / f"b{i}.png")
    big = np.repeat(np.repeat(galaxies(1, 128, seed=5)[0], 2, 0), 2, 1)  # 256 px
    Image.fromarray(big).save(folder / "a_big.png")
    wide = galaxies(1, 300, seed=6)[0][:200]  # 200 x 300: centre square, then 64 px
    Image.fromarray(wide).save(folder / "c_wide.JPG", quality=95)
    Image.fromarray(x[0]).convert("L").save(folder / "d_grey.jpeg")  # one band: made RGB
    (folder / "notes.txt").write_text("not an image: ignored")
    df = predict(ckpt, folder, tmp_path / "p.csv")
    assert df["file"].tolist() == [
        "a_big.png",
        "b0.png",
        "b1.png",
        "b2.png",
        "c_wide.JPG",
        "d_grey.jpeg",
    ]
    np.testing.assert_allclose(df[PROBS].to_numpy()[1:4], run_model(model, x, PRE, CPU), atol=1e-5)
    np.testing.assert_allclose(df[PROBS].sum(axis=1), 1.0, atol=1e-4)
    # The big cut-out is the 128 px galaxy upsampled: resized to 64 px it is close to it.
    small = np.asarray(
        Image.fromarray(galaxies(1, 128, seed=5)[0]).resize((64, 64), Image.BILINEAR)
    )
    np.testing.assert_allclose(
        df[PROBS].to_numpy()[0], run_model(model, small[None], PRE, CPU)[0], atol=0.05
    )


def test_tta_option_averages_the_views(model_and_ckpt, tmp_path):
    model, ckpt = model_and_ckpt
    x = galaxies(4)
    data = images_only_h5(tmp_path / "new.h5", x)
    df = predict(ckpt, data, tmp_path / "p.csv", "--tta")
    np.testing.assert_allclose(
        df[PROBS].to_numpy(), run_model(model, x, PRE, CPU, tta=True), atol=1e-5
    )
    assert np.abs(df[PROBS].to_numpy() - run_model(model, x, PRE, CPU)).max() > 1e-4


def test_progress_lines_on_long_input(model_and_ckpt, tmp_path, caplog, monkeypatch):
    _, ckpt = model_and_ckpt
    monkeypatch.setenv("DEEPGAL_PROGRESS", "lines")
    data = images_only_h5(tmp_path / "new.h5", galaxies(40))
    with caplog.at_level(logging.INFO, logger="deepgal.progress"):
        predict(ckpt, data, tmp_path / "p.csv")
    assert any("predict: 40/40 img" in r.getMessage() for r in caplog.records)


def test_the_command_prints_progress_lines_when_piped(model_and_ckpt, tmp_path):
    """The installed command, as a user pipes it to a log file: stderr is not a terminal, so
    progress comes as log lines; they need the CLI's own logging set-up to be seen at all."""
    _, ckpt = model_and_ckpt
    data = images_only_h5(tmp_path / "new.h5", galaxies(40))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepgal.cli",
            "predict",
            "--checkpoint",
            str(ckpt),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "p.csv"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "deepgal.progress: predict: 40/40 img (100%)" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "make, says",
    [
        (
            lambda d: (d / "bad.png").write_bytes(b"\x89PNG but not really"),
            "bad.png: not a readable",
        ),
        (lambda d: (d / "notes.txt").write_text("x"), "no .jpg/.jpeg/.png files"),
    ],
)
def test_bad_folders_name_the_file(model_and_ckpt, tmp_path, capsys, make, says):
    _, ckpt = model_and_ckpt
    folder = tmp_path / "cutouts"
    folder.mkdir()
    make(folder)
    code = main(
        [
            "predict",
            "--checkpoint",
            str(ckpt),
            "--data",
            str(folder),
            "--out",
            str(tmp_path / "p.csv"),
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and says in err and not (tmp_path / "p.csv").exists(), err


def test_bad_hdf5_names_the_file_and_key(model_and_ckpt, tmp_path, capsys):
    _, ckpt = model_and_ckpt
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("pixels", data=galaxies(2))
    (tmp_path / "y.h5").write_bytes(b"not hdf5 at all")
    for name, says in (
        ("x.h5", "no 'images' dataset (found: ['pixels'])"),
        ("y.h5", "neither a folder of JPEG/PNG cut-outs nor an HDF5 file"),
        ("missing.h5", "no such file or folder"),
    ):
        code = main(
            [
                "predict",
                "--checkpoint",
                str(ckpt),
                "--data",
                str(tmp_path / name),
                "--out",
                str(tmp_path / "p.csv"),
            ]
        )
        err = capsys.readouterr().err
        assert code == 1 and f"{tmp_path / name}: {says}" in err, err


def test_a_truncated_hdf5_is_one_line_naming_it(model_and_ckpt, tmp_path, capsys):
    """A download or copy cut short keeps a valid header: h5py fails later, with OSError."""
    _, ckpt = model_and_ckpt
    whole = images_only_h5(tmp_path / "whole.h5", galaxies(40))
    cut = tmp_path / "cut.h5"
    cut.write_bytes(whole.read_bytes()[:100_000])
    code = main(
        ["predict", "--checkpoint", str(ckpt), "--data", str(cut), "--out", str(tmp_path / "p.csv")]
    )
    err = capsys.readouterr().err
    assert code == 1 and f"{cut}: unreadable HDF5 data" in err and "truncated" in err, err
    assert "Traceback" not in err and not (tmp_path / "p.csv").exists()


def test_evaluate_on_images_without_labels_points_to_predict(model_and_ckpt, tmp_path, capsys):
    _, ckpt = model_and_ckpt
    data = images_only_h5(tmp_path / "new.h5", galaxies(4))
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert "new.h5" in err and "missing dataset 'ans'" in err and "deepgal predict" in err, err


def test_evaluate_on_a_folder_points_to_predict(model_and_ckpt, tmp_path, capsys):
    _, ckpt = model_and_ckpt
    folder = tmp_path / "cutouts"
    folder.mkdir()
    Image.fromarray(galaxies(1)[0]).save(folder / "a.png")
    code = main(["evaluate", "--checkpoint", str(ckpt), "--data", str(folder)])
    err = capsys.readouterr().err
    assert code == 1 and f"{folder}: a folder" in err and "deepgal predict" in err, err
    assert "delete" not in err and (folder / "a.png").exists()


def test_every_option_of_every_command_explains_itself():
    from deepgal.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    silent = [
        f"{name} {a.option_strings or a.dest}"
        for name, parser in sub.choices.items()
        for a in parser._actions
        if not a.help
    ]
    assert not silent, silent
