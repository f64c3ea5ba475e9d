"""The held-out judge (deepgal.data.heldout) and ``deepgal evaluate``'s sample and uncertainties.

Real HDF5 files written by deepgal, real JPEG re-encodes (Pillow), the 50 shared real images
where they exist, a real checkpoint.
"""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from deepgal import checkpoint as ckpt_io
from deepgal.cli import main
from deepgal.data import galaxy10
from deepgal.data.heldout import held_out_rows
from deepgal.data.synthetic import render
from deepgal.metrics import binomial_se, bootstrap_macro_f1
from deepgal.models import build_model
from deepgal.transforms import Preprocess

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "galaxy10_decals_sample50.h5"


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    out = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=quality)
        out.append(np.array(Image.open(buf)))
    return np.stack(out)


@pytest.fixture(scope="module")
def synthetic_file(tmp_path_factory):
    images, labels = render(12, 64, seed=21)
    path = tmp_path_factory.mktemp("heldout") / "g.h5"
    galaxy10.write_galaxy10(path, images, labels)
    return path, images, labels


def test_sample_is_stratified_seeded_and_sorted(synthetic_file):
    path, _, labels = synthetic_file
    rows, info = held_out_rows(path, 5, seed=0)
    assert len(rows) == 50 and (np.diff(rows) > 0).all()
    assert np.bincount(labels[rows], minlength=10).tolist() == [5] * 10 == info["per_class"]
    assert info["excluded"] == 0 and info["short"] == []
    assert np.array_equal(rows, held_out_rows(path, 5, seed=0)[0])
    assert not np.array_equal(rows, held_out_rows(path, 5, seed=1)[0])
    every, _ = held_out_rows(path, None, seed=0)
    assert np.array_equal(every, np.arange(len(labels)))


def test_tune_and_judge_halves_never_share_an_image(synthetic_file):
    path, _, labels = synthetic_file
    tune, _ = held_out_rows(path, None, seed=4, half="tune")
    judge, _ = held_out_rows(path, None, seed=4, half="judge")
    assert not np.isin(tune, judge).any() and len(tune) + len(judge) == len(labels)
    assert np.bincount(labels[tune], minlength=10).tolist() == [6] * 10
    few, _ = held_out_rows(path, 2, seed=4, half="judge")
    assert np.isin(few, judge).all()
    with pytest.raises(ValueError, match="half = 'test'"):
        held_out_rows(path, 2, seed=4, half="test")


def test_a_short_class_gives_what_it_has_and_is_named(tmp_path):
    images, labels = render(4, 32, seed=3)
    keep = np.flatnonzero((labels != 3) | (np.cumsum(labels == 3) <= 2))  # class 3: 2 rows
    galaxy10.write_galaxy10(tmp_path / "g.h5", images[keep], labels[keep])
    rows, info = held_out_rows(tmp_path / "g.h5", 3, seed=0)
    assert info["per_class"][3] == 2 and info["short"] == ["In-between Round Smooth"]
    assert sum(info["per_class"]) == 9 * 3 + 2


def test_near_duplicates_of_an_excluded_file_are_skipped(tmp_path):
    """JPEG re-encodes (quality 40) and 2 px shifts of 10 rows of a 256 px file (the real
    cut-outs' size) are found; no other row goes."""
    images, labels = render(8, 256, seed=21)
    path = tmp_path / "g.h5"
    galaxy10.write_galaxy10(path, images, labels)
    copied = np.array([3, 17, 29, 40, 55, 61, 66, 70, 74, 79])
    seen = np.concatenate([jpeg(images[copied[:7]], 40), np.roll(images[copied[7:]], 2, axis=2)])
    galaxy10.write_galaxy10(tmp_path / "seen.h5", seen, labels[copied])
    rows, info = held_out_rows(path, None, seed=0, exclude=[tmp_path / "seen.h5"])
    assert info["excluded"] == 10
    assert np.array_equal(rows, np.setdiff1d(np.arange(len(labels)), copied))
    # With a per-class sample, skipped rows are replaced by further rows of the same class.
    rows, info = held_out_rows(path, 5, seed=0, exclude=[tmp_path / "seen.h5"])
    assert info["per_class"] == [5] * 10 and not np.isin(rows, copied).any()


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data sample absent")
def test_real_galaxies_are_told_apart_from_their_re_encodes(tmp_path):
    """On real pixels: the 25 shared images that were seen (as JPEG quality-75 re-encodes,
    as the shared file itself was made) are skipped, the 25 other real galaxies are all kept."""
    with h5py.File(SHARED, "r") as f:
        images, labels = f["images"][:], f["ans"][:]
    seen = np.arange(0, 50, 2)
    galaxy10.write_galaxy10(tmp_path / "seen.h5", jpeg(images[seen], 75), labels[seen])
    rows, info = held_out_rows(SHARED, None, seed=0, exclude=[tmp_path / "seen.h5"])
    assert info["excluded"] == 25 and np.array_equal(rows, np.arange(1, 50, 2))


def test_bad_arguments_are_named_before_any_work(synthetic_file, tmp_path):
    path, _, _ = synthetic_file
    with pytest.raises(ValueError, match="per_class = 0"):
        held_out_rows(path, 0, seed=0)
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        held_out_rows(path, 2, seed=0, exclude=[tmp_path / "nope.h5"])


def test_uncertainties():
    assert binomial_se(0.5, 50) == pytest.approx(0.0707, abs=1e-4)
    assert binomial_se(0.5, 1000) == pytest.approx(0.0158, abs=1e-4)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 30)
    pred = np.where(rng.random(300) < 0.5, y, rng.integers(0, 10, 300))
    lo, hi = bootstrap_macro_f1(y, pred, 10)
    assert (lo, hi) == bootstrap_macro_f1(y, pred, 10)  # seeded
    assert 0.3 < lo < hi < 0.8
    lo_big, hi_big = bootstrap_macro_f1(np.tile(y, 10), np.tile(pred, 10), 10)
    assert hi_big - lo_big < (hi - lo) / 2  # 10x the images: ~1/sqrt(10) the width
    assert bootstrap_macro_f1(y, y, 10) == (1.0, 1.0)


def test_evaluate_on_a_held_out_sample(synthetic_file, tmp_path, capsys):
    path, images, labels = synthetic_file
    pre = Preprocess(32, crop=0.5)
    torch.manual_seed(0)
    model = build_model("smallnet", 10, 32).eval()
    ckpt = tmp_path / "m.pt"
    ckpt_io.save(
        ckpt,
        {
            "model": model.state_dict(),
            "model_name": "smallnet",
            "preprocess": pre.to_dict(),
            "epoch": 1,
            "variant": "smallnet",
        },
    )
    galaxy10.write_galaxy10(tmp_path / "seen.h5", images[:4], labels[:4])
    args = [
        "evaluate",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(path),
        "--device",
        "cpu",
        "--per-class",
        "6",
        "--seed",
        "2",
        "--exclude",
        str(tmp_path / "seen.h5"),
        "--json",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    rows, _ = held_out_rows(path, 6, 2, [tmp_path / "seen.h5"])
    assert out["n"] == 60 and sum(out["support"].values()) == 60
    assert out["sample"]["excluded"] <= 4 and not np.isin(rows, np.arange(4)).any()
    # Every row but the 4 copied ones is scored when no per-class sample is asked for.
    assert main(["evaluate", *args[1:7], "--exclude", str(tmp_path / "seen.h5"), "--json"]) == 0
    every = json.loads(capsys.readouterr().out)
    assert every["sample"]["excluded"] == 4 and every["n"] == len(labels) - 4
    assert out["accuracy_se"] == pytest.approx(binomial_se(out["accuracy"], 60))
    lo, hi = out["macro_f1_ci95"]
    assert 0 <= lo <= hi <= 1
    assert main(args[:-1]) == 0  # the text form names the sample
    assert "60 images (6 per class, seed 2" in capsys.readouterr().out
    assert main([*args[:8], "1000", *args[9:-1]]) == 0  # more than the file holds: said
    assert re.search(
        r"images \(1000 per class asked, [\d–]+ found, seed 2", capsys.readouterr().out
    )
    assert main([*args[:8], "0"]) == 1
    assert "per_class = 0" in capsys.readouterr().err


def test_evaluate_piped_into_head_ends_quietly(synthetic_file, tmp_path):
    """`deepgal evaluate ... | head`: no BrokenPipeError traceback when the reader leaves."""
    path, _, _ = synthetic_file
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    ckpt_io.save(
        ckpt,
        {
            "model": build_model("smallnet", 10, 32).state_dict(),
            "model_name": "smallnet",
            "preprocess": Preprocess(32).to_dict(),
            "epoch": 1,
            "variant": "smallnet",
        },
    )
    # `true` leaves before the command (seconds of imports) writes a byte: the pipe is closed.
    proc = subprocess.run(
        [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f"{sys.executable} -m deepgal.cli evaluate --checkpoint {ckpt} "
            f"--data {path} --device cpu | true",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 141 and "Traceback" not in proc.stderr, proc.stderr
