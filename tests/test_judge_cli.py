"""``deepgal evaluate`` as the held-out judge, through the real command (deepgal.cli.main) on
real HDF5 files and a real checkpoint whose every answer is known: a smallnet whose last layer
says "class 0" for any image. Its accuracy on a set of rows is then the share of class-0 rows,
so the counts written below (by hand, from how the files were built) tell which rows were
scored: rows of an ``--exclude`` file never are, ``--per-class`` is what is scored, the
``tune`` and ``judge`` halves never share an image.
"""

import json

import numpy as np
import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal.cli import main
from deepgal.data import galaxy10
from deepgal.data.heldout import HALVES, held_out_rows
from deepgal.data.synthetic import render
from deepgal.models import build_model
from deepgal.transforms import Preprocess

PER_CLASS = 12  # rows per class in the judged file
CLASS_0 = galaxy10.CLASS_NAMES[0]


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """(file, labels, checkpoint, folder): 12 rendered galaxies per class and a checkpoint that
    predicts class 0 whatever it sees."""
    tmp = tmp_path_factory.mktemp("judge")
    images, labels = render(PER_CLASS, 64, seed=21)
    path = tmp / "g.h5"
    galaxy10.write_galaxy10(path, images, labels)
    torch.manual_seed(0)
    model = build_model("smallnet", 10, 32).eval()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.arange(10, 0, -1, dtype=torch.float32))  # class 0 always wins
    ckpt = tmp / "m.pt"
    ckpt_io.save(
        ckpt,
        {
            "model": model.state_dict(),
            "model_name": "smallnet",
            "preprocess": Preprocess(32, crop=0.5).to_dict(),
            "epoch": 1,
            "variant": "smallnet",
        },
    )
    return path, images, labels, ckpt, tmp


def evaluate(capsys, ckpt, data, *extra) -> dict:
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(ckpt),
                "--data",
                str(data),
                "--device",
                "cpu",
                "--json",
                *map(str, extra),
            ]
        )
        == 0
    )
    return json.loads(capsys.readouterr().out)


def test_the_constant_model_scores_the_share_of_class_0(judged, capsys):
    path, _, _, ckpt, _ = judged
    out = evaluate(capsys, ckpt, path)
    assert out["n"] == 120 and out["accuracy"] == pytest.approx(12 / 120)
    assert out["support"] == {c: PER_CLASS for c in galaxy10.CLASS_NAMES}
    assert "sample" not in out


def test_rows_of_the_exclude_file_are_never_scored(judged, capsys):
    """Copies of 3 class-0 rows (the model gets them right) and 2 class-5 rows (wrong) are
    excluded: 115 rows scored, 9 of them class 0. Ignoring the exclusion gives 120 and 12/120;
    dropping the wrong rows only, or the right ones only, moves the accuracy either way."""
    path, images, labels, ckpt, tmp = judged
    right = np.flatnonzero(labels == 0)[[1, 4, 7]]
    wrong = np.flatnonzero(labels == 5)[[0, 11]]
    seen = np.concatenate([right, wrong])
    galaxy10.write_galaxy10(tmp / "seen.h5", images[seen], labels[seen])
    out = evaluate(capsys, ckpt, path, "--exclude", tmp / "seen.h5")
    assert out["n"] == 115 and out["sample"]["excluded"] == 5
    assert out["accuracy"] == pytest.approx(9 / 115)
    support = {c: PER_CLASS for c in galaxy10.CLASS_NAMES}
    support[CLASS_0], support[galaxy10.CLASS_NAMES[5]] = 9, 10
    assert out["support"] == support
    assert out["recall"][CLASS_0] == 1.0
    # With a per-class sample the skipped rows are replaced by other rows of their class,
    # as far as the class has them: class 0 keeps only 9 clean rows and is named short.
    out = evaluate(capsys, ckpt, path, "--exclude", tmp / "seen.h5", "--per-class", 10)
    assert out["support"][CLASS_0] == 9 and out["support"][galaxy10.CLASS_NAMES[5]] == 10
    assert out["n"] == 99 and out["accuracy"] == pytest.approx(9 / 99)
    assert out["sample"]["short"] == [CLASS_0] and out["sample"]["excluded"] == 3 + 2


def test_per_class_is_what_gets_scored(judged, capsys):
    path, _, _, ckpt, _ = judged
    for k in (1, 4, 7):
        out = evaluate(capsys, ckpt, path, "--per-class", k, "--seed", k)
        assert out["n"] == 10 * k and out["accuracy"] == pytest.approx(0.1)
        assert out["support"] == {c: k for c in galaxy10.CLASS_NAMES}
        assert out["sample"]["per_class"] == [k] * 10 and out["sample"]["short"] == []


def test_tune_and_judge_halves_are_disjoint_for_every_seed(judged, capsys):
    """Through the library for ten seeds (the rows themselves) and through the command for
    three (the halves of each class add up to the class: 6 + 6)."""
    path, _, labels, ckpt, _ = judged
    everything = np.arange(len(labels))
    for seed in range(10):
        tune, _ = held_out_rows(path, None, seed, half="tune")
        judge, _ = held_out_rows(path, None, seed, half="judge")
        assert np.intersect1d(tune, judge).size == 0, seed
        assert np.array_equal(np.union1d(tune, judge), everything), seed
        few, _ = held_out_rows(path, 4, seed, half="judge")
        assert np.isin(few, judge).all() and len(few) == 40, seed
    halves = {}
    for seed in (0, 3, 11):
        for half in HALVES:
            halves[half] = evaluate(capsys, ckpt, path, "--half", half, "--seed", seed)
            assert halves[half]["sample"]["half"] == half
        assert (
            halves["tune"]["support"]
            == halves["judge"]["support"]
            == {c: PER_CLASS // 2 for c in galaxy10.CLASS_NAMES}
        )


def test_halves_split_the_rows_left_after_exclusion(judged, capsys):
    """Excluded rows fall in one half or the other, never both, never neither."""
    path, images, labels, ckpt, tmp = judged
    seen = np.flatnonzero(labels == 2)[:4]
    galaxy10.write_galaxy10(tmp / "seen2.h5", images[seen], labels[seen])
    for seed in (0, 1, 2):
        got = [
            evaluate(capsys, ckpt, path, "--half", h, "--seed", seed, "--exclude", tmp / "seen2.h5")
            for h in HALVES
        ]
        assert sum(o["sample"]["excluded"] for o in got) == 4
        assert sum(o["n"] for o in got) == 116
        assert sum(o["support"][galaxy10.CLASS_NAMES[2]] for o in got) == 8
