"""Stratified seeded grouped split (planted repeats on the sky) and chunked channel statistics."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

from deepgal.data.galaxy10 import read_coordinates, read_labels, write_galaxy10
from deepgal.data.split import (
    SplitError,
    channel_stats,
    group_rows,
    group_summary,
    read_split,
    sample_rows,
    sky_groups,
    stratified_split,
    write_split,
)

from .conftest import REPO
from .pipeline_repo import tiny_params

LABELS = np.repeat(np.arange(10), 20)


def test_fractions_and_stratification():
    s = stratified_split(LABELS, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert {k: len(v) for k, v in s.items()} == {"train": 160, "val": 20, "test": 20}
    for idx in s.values():
        assert np.bincount(LABELS[idx], minlength=10).min() > 0
    allidx = np.concatenate(list(s.values()))
    assert len(np.unique(allidx)) == len(LABELS)  # disjoint and complete


def test_seeded():
    f = {"train": 0.8, "val": 0.1, "test": 0.1}
    a, b = stratified_split(LABELS, f, 3), stratified_split(LABELS, f, 3)
    c = stratified_split(LABELS, f, 4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["val"], c["val"])


def test_report_split_without_test():
    s = stratified_split(LABELS, {"train": 0.8, "val": 0.2, "test": 0.0}, seed=0)
    assert len(s["test"]) == 0 and len(s["val"]) == 40


@pytest.mark.parametrize(
    "fractions, match",
    [
        ({"train": 0.9, "val": 0.2, "test": 0.1}, "sum to 1"),
        ({"train": 1.2, "val": -0.1, "test": -0.1}, r"split.train: 1.2"),
    ],
)
def test_bad_fractions(fractions, match):
    with pytest.raises(SplitError, match=match):
        stratified_split(LABELS, fractions, 0)


def test_class_too_small():
    labels = np.concatenate([np.repeat(np.arange(9), 10), [9, 9]])
    with pytest.raises(SplitError, match=r"class 9 \(Edge-on with Bulge\) has 2 image"):
        stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, 0)


def test_channel_stats_match_numpy(small_h5):
    with h5py.File(small_h5) as f:
        x = f["images"][:].astype(np.float64) / 255
    idx = np.array([1, 5, 7, 30, 59])
    mean, std = channel_stats(small_h5, idx, chunk=2)
    np.testing.assert_allclose(mean, x[idx].reshape(-1, 3).mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, x[idx].reshape(-1, 3).std(0), rtol=1e-10)
    # Integer counts: the same bits whatever the chunking.
    assert channel_stats(small_h5, idx, chunk=1) == channel_stats(small_h5, idx) == (mean, std)


def test_write_and_read(tmp_path):
    s = stratified_split(LABELS, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    write_split(tmp_path, s, LABELS, [0.1] * 3, [0.2] * 3, source={"source": "synthetic"})
    np.testing.assert_array_equal(read_split(tmp_path, "val"), s["val"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "stats.json",
        "test.npy",
        "train.npy",
        "val.npy",
    ]


# -- groups: the same galaxy twice never lands in two splits -----------------------------------

ARCSEC = 1 / 3600


def unit_vectors(ra, dec):
    ra, dec = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def brute_force_groups(ra, dec, arcsec):
    """O(N^2) reference: angle from 3-D chord lengths, components by repeated merging."""
    v = unit_vectors(ra, dec)
    chord = np.linalg.norm(v[:, None] - v[None], axis=-1)
    close = 2 * np.degrees(np.arcsin(np.clip(chord / 2, 0, 1))) * 3600 <= arcsec + 1e-9
    comp = np.arange(len(ra))
    while True:
        new = np.array([comp[close[i]].min() for i in range(len(ra))])
        if np.array_equal(new, comp):
            return comp
        comp = new


def same_partition(a, b):
    return all(len(np.unique(b[a == g])) == 1 for g in np.unique(a)) and len(np.unique(a)) == len(
        np.unique(b)
    )


def planted(n_per_class=12, seed=0):
    """Random sky positions plus planted repeats; returns ra, dec, labels and the planted sets
    that must be one group each, and pairs that must stay apart."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(10), n_per_class)
    n = len(labels)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-0.95, 0.95, n)))  # uniform on the sphere
    together, apart = [], []

    def put(rows, ras, decs, label=None):
        ra[rows], dec[rows] = ras, decs
        if label is not None:
            labels[rows] = label

    put([0, 1], [150.0, 150.0], [2.0, 2.0], 0)  # identical coordinates
    together.append([0, 1])
    put([2, 3], [30.0, 30.0], [-10.0, -10.0 + 0.5 * ARCSEC], 2)  # 0.5" apart
    together.append([2, 3])
    put([4, 5], [80.0, 80.0], [40.0, 40.0 + 2 * ARCSEC], 4)  # 2": two galaxies
    apart.append([4, 5])
    put([6, 7, 8], [200.0] * 3, [5.0, 5.0 + 0.8 * ARCSEC, 5.0 + 1.6 * ARCSEC], 6)  # a chain
    together.append([6, 7, 8])
    put([9, 10], [360 - 1e-5, 1e-5], [0.0, 0.0], 9)  # across ra = 0/360: 0.07"
    together.append([9, 10])
    put([11, 12], [0.0, 180.0], [90 - 1e-4, 90 - 1e-4], 1)  # over the pole: 0.72"
    together.append([11, 12])
    put([13, 14], [10.0, 10.0], [-60.0, -60.0], None)  # same position, different labels
    labels[13], labels[14] = 3, 5
    together.append([13, 14])
    return ra, dec, labels, together, apart


def test_sky_groups_planted_repeats():
    ra, dec, labels, together, apart = planted()
    g = sky_groups(ra, dec, 1.0)
    for rows in together:
        assert len(set(g[rows])) == 1, rows
    for rows in apart:
        assert len(set(g[rows])) == len(rows), rows
    assert same_partition(g, brute_force_groups(ra, dec, 1.0))
    assert np.array_equal(np.unique(g), np.arange(g.max() + 1))  # ids 0..G-1
    s = group_summary(g, labels)
    assert s == {
        "groups": len(labels) - 7,
        "merged_groups": 6,
        "rows_in_merged_groups": 13,
        "mixed_label_groups": 1,
    }
    # 0 arcsec: identical coordinates only; 3": the 2" pair merges too.
    assert sky_groups(ra, dec, 0.0)[0] == sky_groups(ra, dec, 0.0)[1]
    assert len(set(sky_groups(ra, dec, 0.0)[[2, 3]])) == 2
    assert len(set(sky_groups(ra, dec, 3.0)[[4, 5]])) == 1


@pytest.mark.parametrize("seed", range(5))
def test_sky_groups_match_brute_force_on_crowded_fields(seed):
    rng = np.random.default_rng(seed)
    centres = rng.uniform([0, -80], [360, 80], (6, 2))
    pts = centres[rng.integers(0, 6, 300)] + rng.normal(0, 2 * ARCSEC, (300, 2))
    g = sky_groups(pts[:, 0] % 360, pts[:, 1], 1.5)
    assert same_partition(g, brute_force_groups(pts[:, 0] % 360, pts[:, 1], 1.5))
    assert 6 < len(np.unique(g)) < 300  # crowded enough to merge, loose enough to split


@pytest.mark.parametrize("seed", range(4))
def test_grouped_split_keeps_each_galaxy_in_one_split(seed):
    ra, dec, labels, together, _ = planted(seed=seed)
    groups = sky_groups(ra, dec, 1.0)
    s = stratified_split(labels, {"train": 0.7, "val": 0.15, "test": 0.15}, seed, groups)
    where = np.full(len(labels), -1)
    for k, idx in enumerate(s.values()):
        assert (where[idx] == -1).all()
        where[idx] = k
    assert (where >= 0).all()  # complete and disjoint
    for g in np.unique(groups):
        assert len(set(where[groups == g])) == 1, f"group {g} in several splits"
    for idx in s.values():  # still stratified: every class in every split
        assert len(np.unique(labels[idx])) == 10


def test_grouped_split_is_seeded_and_singletons_give_exact_counts():
    ra, dec, labels, _, _ = planted()
    groups = sky_groups(ra, dec, 1.0)
    f = {"train": 0.8, "val": 0.1, "test": 0.1}
    a, b = stratified_split(labels, f, 5, groups), stratified_split(labels, f, 5, groups)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = stratified_split(labels, f, 6, groups)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
    plain = stratified_split(LABELS, f, 1, np.arange(len(LABELS)))
    assert {k: len(v) for k, v in plain.items()} == {"train": 160, "val": 20, "test": 20}


def test_a_class_with_too_few_groups_is_named():
    labels = np.repeat(np.arange(10), 5)
    groups = np.arange(50)
    groups[labels == 4] = 999  # all five class-4 rows are one galaxy
    with pytest.raises(
        SplitError,
        match=r"class 4 \(Cigar Shaped Smooth\) has 5 image\(s\) in "
        r"1 group\(s\).*split.group_arcsec",
    ):
        stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, 0, groups)
    groups[labels == 4] = [999, 999, 999, 1000, 1001]  # three groups: just enough
    s = stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, 0, groups)
    for idx in s.values():
        assert 4 in labels[idx]


def write_planted_h5(path, seed=0, with_coords=True):
    ra, dec, labels, together, apart = planted(seed=seed)
    images = np.random.default_rng(seed).integers(0, 256, (len(labels), 8, 8, 3), np.uint8)
    write_galaxy10(path, images, labels, {"ra": ra, "dec": dec} if with_coords else None)
    return labels, together


@pytest.mark.parametrize("with_coords", [True, False])
def test_split_stage_reports_merged_groups(tmp_path, with_coords):
    """The real stage script on a real HDF5 file with planted repeats (and one without ra/dec)."""
    data = tmp_path / "galaxy10.h5"
    labels, together = write_planted_h5(data, with_coords=with_coords)
    (tmp_path / "source.json").write_text(json.dumps({"source": "synthetic", "sha256": "0" * 64}))
    params = tiny_params()
    params["split"] = {**params["split"], "group_arcsec": 1.0}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    # A script run as __main__ cannot carry a mutant: mutation testing (mutmut) reaches the
    # stage in-process (tests/test_split_stats.py); here its trampolines are told to stand down.
    env = {k: v for k, v in os.environ.items() if k != "MUTANT_UNDER_TEST"}
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "stages" / "split.py"),
            "--data",
            str(data),
            "--source",
            "source.json",
            "--out",
            "split",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    stats = json.loads((tmp_path / "split" / "stats.json").read_text())
    where = np.full(len(labels), -1)
    for k, name in enumerate(("train", "val", "test")):
        where[read_split(tmp_path / "split", name)] = k
    if with_coords:
        assert "merged 13 rows into 6 groups" in proc.stderr + proc.stdout
        assert stats["grouping"] == {
            "arcsec": 1.0,
            "coordinates": True,
            "groups": 113,
            "merged_groups": 6,
            "rows_in_merged_groups": 13,
            "mixed_label_groups": 1,
        }
        for rows in together:
            assert len(set(where[rows])) == 1, rows
    else:
        assert "no ra/dec" in proc.stderr + proc.stdout
        assert stats["grouping"]["coordinates"] is False
        assert stats["grouping"]["merged_groups"] == 0


def test_real_sample_without_coordinates_still_splits(real_sample):
    labels = read_labels(real_sample)
    assert read_coordinates(real_sample) is None
    groups, summary = group_rows(labels, None, 1.0)
    assert summary["merged_groups"] == 0 and summary["groups"] == len(labels)
    s = stratified_split(labels, {"train": 0.6, "val": 0.4, "test": 0.0}, 0, groups)
    assert sum(len(v) for v in s.values()) == len(labels)


def test_sample_rows_is_a_seeded_ordered_subset():
    rows = np.arange(100, 400, 3)
    sub = sample_rows(rows, 40, seed=5)
    assert len(sub) == 40 and len(set(sub)) == 40 and set(sub) <= set(rows)
    assert np.all(np.diff(sub) > 0)  # the rows' own order
    assert np.array_equal(sub, sample_rows(rows, 40, seed=5))
    assert not np.array_equal(sub, sample_rows(rows, 40, seed=6))
    assert sample_rows(rows, None, seed=5) is rows
    assert sample_rows(rows, len(rows), seed=5) is rows
