"""``deepgal evaluate``'s numbers (deepgal.score_on_set) against hand-worked values: a smallnet
whose last layer is zero with bias (10, 9, ..., 1) gives every image the same logits, so its
probabilities are softmax(bias / T) for any image, it predicts class 0, and every score of a
set of rows follows from the labels of those rows alone (NumPy below, not the code).
"""

import numpy as np
import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal.cli import main
from deepgal.data import galaxy10
from deepgal.data.heldout import held_out_rows
from deepgal.data.synthetic import render
from deepgal.inference import load_model, run_model
from deepgal.models import build_model
from deepgal.score_on_set import judge_rows, score_checkpoint
from deepgal.transforms import Preprocess

BIAS = np.arange(10, 0, -1, dtype=np.float64)
NAMES = galaxy10.CLASS_NAMES


@pytest.fixture(scope="module")
def constant(tmp_path_factory):
    """(folder, images, labels): g.h5 with 8 rendered galaxies per class; raw.pt (no
    calibration, variant "v1", epoch 7) and cal.pt (temperature 2.5) of the constant model."""
    tmp = tmp_path_factory.mktemp("scores")
    images, labels = render(8, 32, seed=5)
    galaxy10.write_galaxy10(tmp / "g.h5", images, labels)
    torch.manual_seed(0)
    model = build_model("smallnet", 10, 16).eval()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.as_tensor(BIAS, dtype=torch.float32))
    record = {
        "model": model.state_dict(),
        "model_name": "smallnet",
        "epoch": 7,
        "preprocess": Preprocess(16, crop=0.5).to_dict(),
        "variant": "v1",
    }
    ckpt_io.save(tmp / "raw.pt", record)
    cal = {
        "temperature": 2.5,
        "source": "by hand",
        "val_probs": torch.zeros(0, 10),
        "val_labels": torch.zeros(0, dtype=torch.int64),
    }
    ckpt_io.save(tmp / "cal.pt", {**record, "calibration": cal})
    ckpt_io.save(tmp / "bad.pt", {**record, "calibration": {**cal, "temperature": -1.0}})
    torch.manual_seed(1)  # a model whose answers depend on the image, for the TTA test
    ckpt_io.save(tmp / "rand.pt", {**record, "model": build_model("smallnet", 10, 16).state_dict()})
    return tmp, images, labels


def expected(labels, temperature):
    """Every score of the constant model on rows with these labels, worked out in NumPy."""
    p = np.exp(BIAS / temperature)
    p /= p.sum()
    n = len(labels)
    acc = np.mean(labels == 0)
    support = np.bincount(labels, minlength=10)
    f1_0 = 2 * support[0] / (support[0] + n)  # class 0: precision support0/n, recall 1
    present = support > 0
    return {
        "n": n,
        "accuracy": acc,
        "accuracy_se": np.sqrt(acc * (1 - acc) / n),
        "macro_f1": f1_0 / present.sum(),
        "recall": {c: float(support[i] > 0 and i == 0) for i, c in enumerate(NAMES)},
        "support": {c: int(support[i]) for i, c in enumerate(NAMES)},
        "confusion": [[int(support[i]), *[0] * 9] for i in range(10)],
        "nll": float(np.mean(-np.log(p[labels]))),
        "ece": abs(p[0] - acc),
    }  # one confidence for every image: one bin


@pytest.mark.parametrize("which, temperature", [("raw.pt", 1.0), ("cal.pt", 2.5)])
def test_scores_of_a_row_subset_are_the_hand_worked_ones(constant, which, temperature):
    tmp, _, labels = constant
    rows = np.r_[
        np.flatnonzero(labels == 0)[:3],
        np.flatnonzero(labels == 4),
        np.flatnonzero(labels == 9)[:1],
    ]
    out = score_checkpoint(
        tmp / which, tmp / "g.h5", np.sort(rows), torch.device("cpu"), batch_size=5
    )
    want = expected(labels[rows], temperature)
    assert out["n"] == want["n"] == 12
    for key in ("accuracy", "accuracy_se", "macro_f1", "nll", "ece"):
        assert out[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key
    for key in ("recall", "support", "confusion"):
        assert out[key] == want[key], key
    lo, hi = out["macro_f1_ci95"]
    assert lo < want["macro_f1"] < hi
    assert out["calibrated"] is (which == "cal.pt") and out["temperature"] == temperature
    assert (out["variant"], out["epoch"]) == ("v1", 7)
    assert out["checkpoint"] == str(tmp / which) and out["data"] == str(tmp / "g.h5")
    raw = score_checkpoint(
        tmp / which, tmp / "g.h5", np.sort(rows), torch.device("cpu"), calibrated=False
    )
    assert raw["calibrated"] is False and raw["temperature"] == 1.0
    assert raw["nll"] == pytest.approx(expected(labels[rows], 1.0)["nll"], rel=1e-5)


def test_tta_is_off_by_default_and_averages_the_eight_views(constant):
    """Against run_model without TTA on the 8 dihedral views made with NumPy (np.rot90 and a
    flip of the uint8 images): the default scores one view, tta=True their mean."""
    tmp, images, labels = constant
    cpu = torch.device("cpu")
    model, pre, _ = load_model(tmp / "rand.pt", cpu)
    rows = np.arange(0, 80, 3)
    x, y = images[rows], labels[rows]
    views = [
        np.ascontiguousarray(np.rot90(v, k, axes=(1, 2)))
        for v in (x, x[:, :, ::-1])
        for k in range(4)
    ]
    plain = run_model(model, x, pre, cpu)
    mean = np.mean([run_model(model, v, pre, cpu) for v in views], axis=0)

    def nll(p):
        return float(np.mean(-np.log(p[np.arange(len(y)), y].astype(np.float64))))

    assert abs(nll(mean) - nll(plain)) > 1e-3  # the two are told apart
    default = score_checkpoint(tmp / "rand.pt", tmp / "g.h5", rows, cpu)
    assert default["nll"] == pytest.approx(nll(plain), rel=1e-5)
    tta = score_checkpoint(tmp / "rand.pt", tmp / "g.h5", rows, cpu, tta=True)
    assert tta["nll"] == pytest.approx(nll(mean), rel=1e-4)


def test_a_malformed_calibration_is_named_by_its_file(constant):
    tmp, _, _ = constant
    with pytest.raises(ValueError, match=r"bad\.pt: calibration record has temperature -1\.0"):
        score_checkpoint(tmp / "bad.pt", tmp / "g.h5", np.arange(5), torch.device("cpu"))


def test_evaluate_prints_the_hand_worked_figures(constant, capsys):
    """The text form through the command: n, accuracy ± s.e., macro-F1, the temperature,
    ECE and NLL and each class's recall and support, as worked out above."""
    tmp, _, labels = constant
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(tmp / "cal.pt"),
                "--data",
                str(tmp / "g.h5"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    want = expected(labels, 2.5)
    assert f"80 images\n  accuracy {0.1:.3f} ± {want['accuracy_se']:.3f}" in text
    assert f"macro-F1 {want['macro_f1']:.3f} [95% bootstrap" in text
    assert "(v1, epoch 7)" in text
    assert f"temperature 2.500: ECE {want['ece']:.3f} (15 bins), NLL {want['nll']:.3f}" in text
    assert f"recall  1.000 ± 0.000  of     8  {NAMES[0]}" in text
    assert f"recall  0.000 ± 0.000  of     8  {NAMES[3]}" in text


def test_judge_rows_without_a_sample_is_every_row(constant):
    tmp, _, labels = constant
    rows, held = judge_rows(tmp / "g.h5")
    assert held is None and rows.tolist() == list(range(len(labels)))


def test_judge_rows_records_the_sample_it_drew(constant):
    tmp, images, labels = constant
    galaxy10.write_galaxy10(tmp / "seen.h5", images[:2], labels[:2])
    rows, held = judge_rows(tmp / "g.h5", 3, 5, "judge", [tmp / "seen.h5"])
    assert len(rows) == 30 and not np.isin(rows, [0, 1]).any()
    assert held["per_class_asked"] == 3 and held["seed"] == 5 and held["half"] == "judge"
    assert held["exclude"] == [str(tmp / "seen.h5")] and held["per_class"] == [3] * 10
    rows, held = judge_rows(tmp / "g.h5", half="tune", seed=1)  # a half alone is a sample
    assert len(rows) == 40 and held["per_class"] == [4] * 10 and held["exclude"] == []
    # The library's default seed is the command's (--seed 0).
    assert np.array_equal(judge_rows(tmp / "g.h5", 3)[0], held_out_rows(tmp / "g.h5", 3, 0)[0])


def test_nothing_left_after_exclusion_is_an_error_naming_the_files(tmp_path, constant, capsys):
    _, images, labels = constant
    galaxy10.write_galaxy10(tmp_path / "g.h5", images[:10], labels[:10])
    galaxy10.write_galaxy10(tmp_path / "all.h5", images[:6], labels[:6])
    galaxy10.write_galaxy10(tmp_path / "rest.h5", images[6:10], labels[6:10])
    with pytest.raises(
        ValueError,
        match=r"g\.h5: no image left to score after skipping the "
        r"10 that duplicate .*all\.h5, .*rest\.h5$",
    ):
        judge_rows(tmp_path / "g.h5", exclude=[tmp_path / "all.h5", tmp_path / "rest.h5"])
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(tmp_path / "nope.pt"),
                "--data",
                str(tmp_path / "g.h5"),
                "--device",
                "cpu",
                "--exclude",
                str(tmp_path / "all.h5"),
                str(tmp_path / "rest.h5"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err  # the rows fail first, before the checkpoint is looked for
    assert "no image left to score" in err and "nope.pt" not in err
