"""The split stage's numbers: ``stats.json``'s channel mean/std come from the train rows only
(numpy over exactly those rows is the oracle), and nothing in val or test can move them; the
stage script itself, run in-process on a real HDF5 file with a params.yaml of its own."""

import importlib.util
import json
import logging

import numpy as np
import pytest
import yaml

from deepgal.data.galaxy10 import write_galaxy10
from deepgal.data.split import read_split, read_stats, split_file

from .conftest import REPO
from .pipeline_repo import tiny_params

SOURCE = {"source": "synthetic", "sha256": "ab" * 32, "ignored": "not kept"}
FRACTIONS = {"train": 0.6, "val": 0.3, "test": 0.1}


def pictures(n=100, seed=0):
    """Labels (N,) with 10 per class and images (N, 8, 8, 3) uint8 whose channels differ."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(10), n // 10).astype(np.uint8)
    images = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.uint8)
    images[..., 1] //= 3  # channels with different means and spreads
    images[..., 2] = 200 + images[..., 2] % 40
    return labels, images


def numpy_stats(images, rows):
    x = images[rows].reshape(-1, 3).astype(np.float64) / 255
    return x.mean(0), x.std(0)


def test_stats_are_the_train_rows_only(tmp_path):
    labels, images = pictures()
    write_galaxy10(tmp_path / "g.h5", images, labels)
    done = split_file(tmp_path / "g.h5", SOURCE, tmp_path / "split", FRACTIONS, 3, 1.0)
    stats = read_stats(tmp_path / "split")
    train = read_split(tmp_path / "split", "train")
    assert {k: len(read_split(tmp_path / "split", k)) for k in FRACTIONS} == {
        "train": 60,
        "val": 30,
        "test": 10,
    }
    mean, std = numpy_stats(images, train)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(stats.std, std, rtol=1e-12)
    assert done["mean"] == stats.mean and done["std"] == stats.std
    # Control: over every row the figures differ by far more than the tolerance above.
    every_mean, every_std = numpy_stats(images, np.arange(len(labels)))
    assert np.abs(np.array(stats.mean) - every_mean).max() > 1e-4
    assert np.abs(np.array(stats.std) - every_std).max() > 1e-4
    assert stats.source == {"source": "synthetic", "sha256": "ab" * 32}
    assert stats.sizes == {"train": 60, "val": 30, "test": 10}
    assert stats.counts["val"] == {name: 3 for name in stats.counts["val"]}
    assert stats.grouping["coordinates"] is False and stats.grouping["groups"] == 100


def test_val_and_test_pixels_cannot_move_the_stats(tmp_path):
    """Val and test rows set to flat grey levels (one per row, so no two rows become identical:
    without ra/dec identical pixels would be one galaxy and regroup the split), then to noise:
    the same split and bit-identical mean/std; one train pixel changed does move them."""
    labels, images = pictures(seed=1)
    write_galaxy10(tmp_path / "a.h5", images, labels)
    base = split_file(tmp_path / "a.h5", SOURCE, tmp_path / "a", FRACTIONS, 0, 1.0)
    held = np.concatenate([base["splits"]["val"], base["splits"]["test"]])
    flat = np.broadcast_to((255 - np.arange(len(images)))[:, None, None, None] % 256, images.shape)
    for k, fill in enumerate((flat, np.random.default_rng(9).integers(0, 256, images.shape))):
        changed = images.copy()
        changed[held] = fill[held]
        write_galaxy10(tmp_path / f"b{k}.h5", changed, labels)
        got = split_file(tmp_path / f"b{k}.h5", SOURCE, tmp_path / f"b{k}", FRACTIONS, 0, 1.0)
        for s in FRACTIONS:
            assert np.array_equal(got["splits"][s], base["splits"][s])
        assert read_stats(tmp_path / f"b{k}").mean == read_stats(tmp_path / "a").mean
        assert read_stats(tmp_path / f"b{k}").std == read_stats(tmp_path / "a").std
    changed = images.copy()
    changed[base["splits"]["train"][0], 0, 0] ^= 0x80
    write_galaxy10(tmp_path / "c.h5", changed, labels)
    got = split_file(tmp_path / "c.h5", SOURCE, tmp_path / "c", FRACTIONS, 0, 1.0)
    assert got["mean"] != base["mean"]


def test_sky_groups_are_read_from_the_file(tmp_path):
    """Hand-built coordinates: rows 0-3 (class 0) sit within 0.5" of each other, so they are
    one galaxy and land in one split whatever the seed; at 0 arcsec they are four."""
    labels, images = pictures()
    rng = np.random.default_rng(4)
    ra, dec = rng.uniform(0, 360, 100), rng.uniform(-60, 60, 100)
    same = np.flatnonzero(labels == 0)[:4]
    ra[same], dec[same] = 120.0, 10.0 + np.arange(4) * 0.5 / 3600
    write_galaxy10(tmp_path / "g.h5", images, labels, {"ra": ra, "dec": dec})
    for seed in range(6):
        done = split_file(tmp_path / "g.h5", SOURCE, tmp_path / "s", FRACTIONS, seed, 1.0)
        where = {s: np.isin(same, done["splits"][s]).sum() for s in FRACTIONS}
        assert sorted(where.values()) == [0, 0, 4], (seed, where)
        assert done["grouping"]["merged_groups"] == 1
        assert done["grouping"]["rows_in_merged_groups"] == 4
    apart = split_file(tmp_path / "g.h5", SOURCE, tmp_path / "s", FRACTIONS, 0, 0.0)
    assert apart["grouping"]["merged_groups"] == 0 and apart["grouping"]["groups"] == 100


def load_stage():
    spec = importlib.util.spec_from_file_location("stages.split", REPO / "stages" / "split.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed, val, test", [(0, 0.2, 0.1), (5, 0.1, 0.3)])
def test_stage_reads_its_params(tmp_path, monkeypatch, caplog, seed, val, test):
    """The stage script in-process: base.seed and split.* from params.yaml decide the split;
    the log names the sizes and the train mean."""
    labels, images = pictures()
    write_galaxy10(tmp_path / "g.h5", images, labels)
    (tmp_path / "source.json").write_text(json.dumps(SOURCE))
    params = tiny_params()
    params["base"]["seed"] = seed
    params["split"] = {
        **params["split"],
        "train": round(1 - val - test, 6),
        "val": val,
        "test": test,
        "group_arcsec": 1.0,
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        "sys.argv", ["split.py", "--data", "g.h5", "--source", "source.json", "--out", "out"]
    )
    with (
        caplog.at_level(logging.INFO, logger="split"),
        caplog.at_level(logging.INFO, logger="deepgal.data.split"),
    ):
        assert load_stage().main() == 0
    sizes = {k: len(read_split(tmp_path / "out", k)) for k in FRACTIONS}
    assert sizes == {
        "train": round(100 * (1 - val - test)),
        "val": round(100 * val),
        "test": round(100 * test),
    }
    expected = split_file(
        "g.h5",
        SOURCE,
        tmp_path / "again",
        {"train": 1 - val - test, "val": val, "test": test},
        seed,
        1.0,
    )
    assert np.array_equal(read_split(tmp_path / "out", "val"), expected["splits"]["val"])
    assert read_stats(tmp_path / "out").source == {"source": "synthetic", "sha256": "ab" * 32}
    assert read_stats(tmp_path / "out").grouping["arcsec"] == 1.0  # split.group_arcsec
    mean, std = numpy_stats(images, read_split(tmp_path / "out", "train"))
    assert f"'train': {sizes['train']}" in caplog.text
    assert str([round(float(m), 4) for m in mean]) in caplog.text
    assert str([round(float(s), 4) for s in std]) in caplog.text
    assert "no ra/dec in g.h5" in caplog.text


def test_the_grouping_radius_is_arcseconds_to_the_hair():
    """Pairs 0.9999" apart merge at 1", pairs 1.0002" apart do not (the radius is arcsec /
    3600 degrees: a radius off by one part in 3600 gets one of the two wrong)."""
    from deepgal.data.split import sky_groups

    dec = np.array([10.0, 10.0 + 0.9999 / 3600, -20.0, -20.0 + 1.0002 / 3600])
    g = sky_groups(np.array([40.0, 40.0, 300.0, 300.0]), dec, 1.0)
    assert g.tolist() == [0, 0, 1, 2]


def test_a_split_may_take_every_row():
    """train 1, val 0, test 0 is a valid split: everything in train, empty val and test."""
    from deepgal.data.split import stratified_split

    s = stratified_split(np.repeat(np.arange(10), 3), {"train": 1.0, "val": 0.0, "test": 0.0}, 0)
    assert len(s["train"]) == 30 and len(s["val"]) == len(s["test"]) == 0


@pytest.mark.parametrize("missing", ["--data", "--source", "--out"])
def test_stage_names_a_missing_argument(tmp_path, monkeypatch, capsys, missing):
    """Each of --data, --source, --out is required: argparse's usage error (exit 2) names the
    one left out, before any file is read."""
    argv = {"--data": "g.h5", "--source": "source.json", "--out": "out"}
    del argv[missing]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["split.py", *[x for kv in argv.items() for x in kv]])
    with pytest.raises(SystemExit) as stop:
        load_stage().main()
    assert stop.value.code == 2
    assert f"the following arguments are required: {missing}" in capsys.readouterr().err
