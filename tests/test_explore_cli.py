"""``deepgal similar`` and ``deepgal explain`` end to end: real HDF5 files, real PNGs (Pillow),
real checkpoints written by deepgal.checkpoint, the cache on disk. Oracles: a planted duplicate,
Pillow's own resize of a larger query image, a pure-noise image among smooth ones, a hand-built
network whose classes depend on known patches, and run_model's predictions."""

import logging

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
from tests.helpers import GREEN, RED, TOY_PRE, smooth_galaxies, toy_smallnet, two_patches

pytest.importorskip("captum")
PRE = Preprocess(32, crop=0.5)  # smallnet's: a query image is brought to 64 px first


def save_ckpt(path, model, pre):
    ckpt_io.save(
        path,
        {
            "model": model.state_dict(),
            "model_name": "smallnet",
            "preprocess": pre.to_dict(),
            "epoch": 1,
            "variant": "smallnet",
        },
    )
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_ckpt(
        tmp_path_factory.mktemp("ckpt") / "model.pt",
        build_model("smallnet", 10, PRE.input_size),
        PRE,
    )


def labelled_file(path, images):
    write_galaxy10(path, images, np.arange(len(images)) % 10)
    return path


def run(*argv) -> int:
    return main([*map(str, argv), "--device", "cpu"])


def test_a_planted_duplicate_is_the_nearest_at_distance_zero(ckpt, tmp_path):
    x = smooth_galaxies(30)
    x[21] = x[4]
    data = labelled_file(tmp_path / "g.h5", x)
    assert (
        run(
            "similar",
            "--checkpoint",
            ckpt,
            "--data",
            data,
            "--query",
            4,
            "-k",
            5,
            "--out",
            tmp_path / "out",
            "--cache",
            tmp_path / "cache",
        )
        == 0
    )
    df = pd.read_csv(tmp_path / "out/similar.csv")
    assert list(df.columns) == ["rank", "index", "distance", "label", "label_name"]
    assert df["rank"].tolist() == list(range(6)) and df["index"][0] == 4
    assert df["index"][1] == 21 and df["distance"][1] < 1e-5
    assert 4 not in df["index"][1:].tolist()  # the query is not its own look-alike
    assert (np.diff(df["distance"][1:]) >= 0).all()
    assert df["label_name"].tolist() == [CLASS_NAMES[i % 10] for i in df["index"]]
    assert Image.open(tmp_path / "out/similar.png").size[0] > 0


def test_a_query_image_of_another_size_goes_through_the_checkpoints_preprocessing(ckpt, tmp_path):
    big = np.kron(smooth_galaxies(1, size=75, seed=3)[0], np.ones((4, 4, 1), np.uint8))
    wide = np.zeros((300, 340, 3), np.uint8)  # not square: the centre 300 px square is used
    wide[:, 20:320] = big
    # The oracle: Pillow's own bilinear resize of the centre square to 64 px (32 / crop 0.5).
    row = np.asarray(Image.fromarray(big).resize((64, 64), Image.Resampling.BILINEAR))
    x = smooth_galaxies(20, seed=4)
    x[9] = row
    data = labelled_file(tmp_path / "g.h5", x)
    Image.fromarray(wide).save(tmp_path / "query.png")
    assert (
        run(
            "similar",
            "--checkpoint",
            ckpt,
            "--data",
            data,
            "--query",
            tmp_path / "query.png",
            "-k",
            3,
            "--out",
            tmp_path / "out",
            "--cache",
            tmp_path / "cache",
        )
        == 0
    )
    df = pd.read_csv(tmp_path / "out/similar.csv")
    assert df["index"][0] == str(tmp_path / "query.png") and pd.isna(df["label"][0])
    assert df["index"][1] == "9" and df["distance"][1] < 1e-5


def test_pure_noise_among_smooth_galaxies_is_the_top_outlier(ckpt, tmp_path):
    x = smooth_galaxies(40, seed=5)
    x[13] = np.random.default_rng(6).integers(0, 256, x[13].shape, dtype=np.uint8)
    data = labelled_file(tmp_path / "g.h5", x)
    assert (
        run(
            "similar",
            "--checkpoint",
            ckpt,
            "--data",
            data,
            "--outliers",
            4,
            "--out",
            tmp_path / "out",
            "--cache",
            tmp_path / "cache",
        )
        == 0
    )
    df = pd.read_csv(tmp_path / "out/outliers.csv")
    assert df["rank"].tolist() == [1, 2, 3, 4] and df["index"][0] == 13
    assert (np.diff(df["score"]) <= 0).all()
    assert Image.open(tmp_path / "out/outliers.png").size[0] > 0


def test_the_embedding_is_cached_per_checkpoint_and_file_bytes(ckpt, tmp_path, caplog):
    x = smooth_galaxies(12, seed=7)
    data = labelled_file(tmp_path / "g.h5", x)
    cache = tmp_path / "cache"
    args = (
        "similar",
        "--checkpoint",
        ckpt,
        "--data",
        data,
        "--query",
        0,
        "-k",
        2,
        "--cache",
        cache,
    )
    caplog.set_level(logging.INFO, "deepgal.explore.embed")
    assert run(*args, "--out", tmp_path / "a") == 0
    files = list((cache / "embeddings").iterdir())
    assert len(files) == 1 and "cached in" in caplog.text
    caplog.clear()
    assert (
        main(
            [
                "similar",
                "--checkpoint",
                str(ckpt),
                "--data",
                str(data),
                "--outliers",
                "3",
                "--cache",
                str(cache),
                "--out",
                str(tmp_path / "b"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "read from the cache" in caplog.text
    assert list((cache / "embeddings").iterdir()) == files
    files[0].write_bytes(b"damaged")  # recomputed, not trusted
    assert run(*args, "--out", tmp_path / "c") == 0
    assert np.load(files[0]).shape[0] == 12
    x[5, 0, 0, 0] ^= 1  # one bit of one pixel: other bytes, another embedding
    labelled_file(data, x)
    assert run(*args, "--out", tmp_path / "d") == 0
    assert len(list((cache / "embeddings").iterdir())) == 2


def test_explain_maps_peak_on_the_patch_of_the_predicted_class(tmp_path):
    ckpt = save_ckpt(tmp_path / "toy.pt", toy_smallnet(), TOY_PRE)
    red, green = two_patches(250, 60), two_patches(60, 250)
    data = labelled_file(tmp_path / "g.h5", np.stack([green, red, red, green]))
    assert (
        run(
            "explain",
            "--checkpoint",
            ckpt,
            "--data",
            data,
            "--rows",
            2,
            0,
            "--out",
            tmp_path / "out",
        )
        == 0
    )
    df = pd.read_csv(tmp_path / "out/explain.csv")
    assert df["index"].tolist() == [2, 0] and df["predicted"].tolist() == [1, 2]
    saved = np.load(tmp_path / "out/explain.npz")
    assert saved["rows"].tolist() == [2, 0] and saved["maps"].shape == (2, 32, 32)
    for m, patch in zip(saved["maps"], (RED, GREEN), strict=True):
        peak = np.unravel_index(m.argmax(), m.shape)
        assert peak[0] in range(32)[patch[0]] and peak[1] in range(32)[patch[1]]
    assert Image.open(tmp_path / "out/explain.png").size[0] > 0


def test_explain_predictions_are_run_models(ckpt, tmp_path):
    x = smooth_galaxies(8, seed=9)
    data = labelled_file(tmp_path / "g.h5", x)
    assert (
        run(
            "explain",
            "--checkpoint",
            ckpt,
            "--data",
            data,
            "--rows",
            7,
            1,
            3,
            "--out",
            tmp_path / "out",
        )
        == 0
    )
    df = pd.read_csv(tmp_path / "out/explain.csv")
    torch.manual_seed(0)  # the fixture's model, built again
    model = build_model("smallnet", 10, PRE.input_size)
    probs = run_model(model, x[[7, 1, 3]], PRE, torch.device("cpu"))
    assert df["predicted"].tolist() == probs.argmax(1).tolist()
    np.testing.assert_allclose(df["probability"], probs.max(1), atol=1e-5)
    assert df["layer"].unique().tolist() == ["body.4"]


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "not_a_checkpoint.pt").write_text("hello\n")
    (folder / "not_an_image.png").write_bytes(b"\x89PNG but not really")
    return labelled_file(folder / "g.h5", smooth_galaxies(30, seed=10))


BAD = {  # what is wrong: (arguments, what the one error line must say)
    "row out of range": (
        ["similar", "--query", "30"],
        "--query 30: {data} has 30 images, rows 0 to 29",
    ),
    "negative row": (["explain", "--rows", "0", "-1"], "--rows -1: {data} has 30 images"),
    "explain row out of range": (["explain", "--rows", "3", "99"], "--rows 99: {data} has 30"),
    "not an image": (
        ["similar", "--query", "{dir}/not_an_image.png"],
        "{dir}/not_an_image.png: not a readable JPEG/PNG image",
    ),
    "no such image": (
        ["similar", "--query", "{dir}/missing.png"],
        "--query {dir}/missing.png: neither a row number of {data} nor an existing JPEG/PNG file",
    ),
    "k beyond the file": (
        ["similar", "--query", "2", "-k", "30"],
        "-k 30: {data} has 29 images to search besides the query",
    ),
    "outliers beyond the file": (["similar", "--outliers", "31"], "--outliers 31: {data} has 30"),
    "not a checkpoint": (
        ["similar", "--query", "2", "--checkpoint", "{dir}/not_a_checkpoint.pt"],
        "{dir}/not_a_checkpoint.pt: unreadable",
    ),
    "explain, not a checkpoint": (
        ["explain", "--rows", "1", "--checkpoint", "{dir}/not_a_checkpoint.pt"],
        "{dir}/not_a_checkpoint.pt",
    ),
    "no checkpoint": (
        ["similar", "--outliers", "3", "--checkpoint", "{dir}/none.pt"],
        "{dir}/none.pt: no such checkpoint",
    ),
    "no data": (
        ["similar", "--outliers", "3", "--data", "{dir}/none.h5"],
        "{dir}/none.h5: no such file or folder",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_error_line_and_nothing_written(case, ckpt, small_file, tmp_path, capsys):
    argv, says = BAD[case]
    fill = {"dir": small_file.parent, "data": small_file}
    argv = [a.format(**fill) for a in argv]
    cmd, rest = argv[0], argv[1:]
    given = {a for a in rest if a.startswith("--")}
    base = []
    for flag, value in (("--checkpoint", ckpt), ("--data", small_file)):
        if flag not in given:
            base += [flag, str(value)]
    out, cache = tmp_path / "out", tmp_path / "cache"
    extra = ["--cache", str(cache)] if cmd == "similar" else []
    assert main([cmd, *base, *rest, *extra, "--out", str(out), "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert says.format(**fill) in err[0]
    assert not out.exists() and not cache.exists()


def test_a_folder_of_cutouts_names_its_files(ckpt, tmp_path):
    x = smooth_galaxies(12, seed=11)
    folder = tmp_path / "cutouts"
    folder.mkdir()
    for i, img in enumerate(x):  # at 64 px and lossless: exactly the pixels the model gets
        Image.fromarray(img).save(folder / f"g{i:02d}.png")
    Image.fromarray(x[3]).save(folder / "copy_of_g03.png")
    assert (
        run(
            "similar",
            "--checkpoint",
            ckpt,
            "--data",
            folder,
            "--query",
            4,
            "-k",
            2,
            "--out",
            tmp_path / "out",
            "--cache",
            tmp_path / "cache",
        )
        == 0
    )
    df = pd.read_csv(tmp_path / "out/similar.csv")  # rows: the files in name order
    assert list(df.columns) == ["rank", "file", "distance"]
    assert df["file"][0] == "g03.png" and df["file"][1] == "copy_of_g03.png"
    assert df["distance"][1] < 1e-5


def test_tta_finds_a_rotated_copy_at_distance_zero(ckpt, tmp_path):
    x = smooth_galaxies(16, seed=12)
    x[11] = np.rot90(x[2], 1, axes=(0, 1))  # the same galaxy, turned by 90 degrees
    data = labelled_file(tmp_path / "g.h5", x)
    dist = {}
    for extra in ([], ["--tta"]):
        out = tmp_path / f"out{len(extra)}"
        assert (
            run(
                "similar",
                "--checkpoint",
                ckpt,
                "--data",
                data,
                "--query",
                2,
                "-k",
                15,
                "--out",
                out,
                "--cache",
                tmp_path / "cache",
                *extra,
            )
            == 0
        )
        df = pd.read_csv(out / "similar.csv").set_index("index")
        dist[bool(extra)] = df["distance"][11]
    # The 8 views of a turned image are the 8 views of the image: their mean is the same.
    assert dist[True] < 1e-5 < dist[False]
    assert len(list((tmp_path / "cache/embeddings").iterdir())) == 2  # cached apart
