"""Grouping rows into galaxies, against hand-built geometry and hand-written ids: pairs exactly
at the radius (inclusive), single-precision coordinates grouped at full precision, the empty
and one-row cases, and byte-identical images in a real HDF5 file read in chunks."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from deepgal.data.galaxy10 import write_galaxy10
from deepgal.data.split import group_rows, group_summary, identical_groups, sky_groups, split_file

SOURCE = {"source": "synthetic", "sha256": "cd" * 32}


@pytest.mark.parametrize("arcsec", [0.001, 0.5, 1.0, 2.5])
def test_pairs_exactly_at_the_radius_are_one_galaxy(arcsec):
    """ "Within" is inclusive: a pair exactly ``arcsec`` apart along a meridian, and one along
    the equator (where a step in ra is the same angle), merge; a third row 2x away does not."""
    a = arcsec / 3600
    ra = np.array([40.0, 40.0, 100.0, 100.0 + a, 250.0])
    dec = np.array([10.0, 10.0 + a, 0.0, 0.0, 10.0 + 2 * a])
    g = sky_groups(ra, dec, arcsec)
    assert g.tolist() == [0, 0, 1, 1, 2]
    assert g.dtype == np.int64


def haversine_arcsec(ra1, dec1, ra2, dec2):
    """Great-circle separation in arcseconds (float64), the textbook haversine formula."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, np.float64)) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(h))) * 3600


@pytest.mark.parametrize("axis", ["ra", "dec"])
def test_single_precision_coordinates_are_grouped_at_full_precision(axis):
    """float32 ra/dec (as a catalogue may store them): 150 well-separated pairs 0.98-1.02"
    apart; each pair is one group exactly when the haversine separation of its float32 values,
    computed in float64, is within 1". Trigonometry in float32 gets ~0.02" wrong."""
    rng = np.random.default_rng(7)
    n = 150
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-60, 60, n)
    off = rng.uniform(0.98, 1.02, n) / 3600
    ra2, dec2 = (ra + off / np.cos(np.radians(dec)), dec) if axis == "ra" else (ra, dec + off)
    ra32 = np.concatenate([ra, ra2]).astype(np.float32)
    dec32 = np.concatenate([dec, dec2]).astype(np.float32)
    sep = haversine_arcsec(ra32[:n], dec32[:n], ra32[n:], dec32[n:])
    assert np.abs(sep - 1.0).min() > 1e-6  # no pair the rounding of the oracle could flip
    g = sky_groups(ra32, dec32, 1.0)
    together = g[:n] == g[n:]
    assert 20 < together.sum() < n - 20  # both outcomes occur
    np.testing.assert_array_equal(together, sep <= 1.0)
    assert len(np.unique(g)) == 2 * n - together.sum()  # no pair merges with another


def test_no_rows_and_one_row():
    empty = sky_groups(np.array([]), np.array([]), 1.0)
    assert empty.shape == (0,) and empty.dtype == np.int64
    one = sky_groups(np.array([12.0]), np.array([-3.0]), 1.0)
    assert one.tolist() == [0] and one.dtype == np.int64
    assert group_summary(np.array([], np.int64), np.array([], np.uint8)) == {
        "groups": 0,
        "merged_groups": 0,
        "rows_in_merged_groups": 0,
        "mixed_label_groups": 0,
    }
    assert group_summary(np.array([0]), np.array([7])) == {
        "groups": 1,
        "merged_groups": 0,
        "rows_in_merged_groups": 0,
        "mixed_label_groups": 0,
    }


def test_group_summary_counts_by_hand():
    """Group 0 (rows 0, 3) mixes labels 1 and 2; group 2 (rows 2, 4, 5) is all label 4;
    groups 1 and 3 are single rows."""
    groups = np.array([0, 1, 2, 0, 2, 2, 3])
    labels = np.array([1, 6, 4, 2, 4, 4, 6])
    assert group_summary(groups, labels) == {
        "groups": 4,
        "merged_groups": 2,
        "rows_in_merged_groups": 5,
        "mixed_label_groups": 1,
    }


def test_group_rows_chooses_its_grouping():
    labels = np.array([0, 1, 1, 2])
    identical = np.array([0, 1, 1, 2])
    groups, summary = group_rows(labels, None, 1.5, identical)
    assert groups.tolist() == [0, 1, 1, 2] and groups.dtype == np.int64
    assert summary == {
        "arcsec": 1.5,
        "coordinates": False,
        "identical_images": True,
        "groups": 3,
        "merged_groups": 1,
        "rows_in_merged_groups": 2,
        "mixed_label_groups": 0,
    }
    groups, summary = group_rows(labels, None, 1.5)  # nothing known: one row per group
    assert groups.tolist() == [0, 1, 2, 3]
    assert summary == {
        "arcsec": 1.5,
        "coordinates": False,
        "groups": 4,
        "merged_groups": 0,
        "rows_in_merged_groups": 0,
        "mixed_label_groups": 0,
    }
    coords = (np.array([5.0, 5.0, 90.0, 200.0]), np.array([1.0, 1.0, 1.0, 1.0]))
    groups, summary = group_rows(labels, coords, 1.5, identical=np.array([0, 0, 0, 0]))
    assert groups.tolist() == [0, 0, 1, 2]  # positions win over pixels when both are known
    assert summary == {
        "arcsec": 1.5,
        "coordinates": True,
        "groups": 3,
        "merged_groups": 1,
        "rows_in_merged_groups": 2,
        "mixed_label_groups": 1,
    }


def images_with_copies(n, copies, seed=0):
    """(n, 8, 8, 3) uint8 random images where row ``dst`` is a byte copy of row ``src`` for
    each (dst, src) in ``copies``."""
    images = np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    for dst, src in copies:
        images[dst] = images[src]
    return images


@pytest.mark.parametrize("chunk", [1, 3, 4, 256])
def test_identical_images_share_a_group_whatever_the_chunking(tmp_path, chunk):
    images = images_with_copies(11, [(4, 0), (7, 2), (9, 2), (10, 5)])
    images[3] = images[6]
    images[3, 0, 0, 0] ^= 1  # one bit away from row 6: another galaxy
    write_galaxy10(tmp_path / "g.h5", images, np.zeros(11, np.uint8))
    g = identical_groups(tmp_path / "g.h5", chunk=chunk)
    assert g.tolist() == [0, 1, 2, 3, 0, 4, 5, 2, 6, 2, 4]  # ids in order of first row
    assert g.dtype == np.int64


def test_split_file_without_positions_keeps_copies_together(tmp_path, caplog):
    """No ra/dec: three copies of a class-0 image, two of a class-3 one, and a class-4 image
    copied into a class-5 row (one galaxy with mixed labels) are each one galaxy in one split,
    for every seed; the summary and the log say 7 rows in 3 groups, 1 mixed."""
    labels = np.tile(np.arange(10), 10).astype(np.uint8)
    images = images_with_copies(100, [(10, 0), (20, 0), (13, 3), (25, 4)], seed=3)
    path = tmp_path / "g.h5"
    write_galaxy10(path, images, labels)
    planted = [[0, 10, 20], [3, 13], [4, 25]]
    for seed in range(4):
        with caplog.at_level(logging.INFO, logger="deepgal.data.split"):
            done = split_file(
                path,
                SOURCE,
                tmp_path / f"s{seed}",
                {"train": 0.6, "val": 0.3, "test": 0.1},
                seed,
                1.0,
            )
        where = np.full(100, -1)
        for k, rows in enumerate(done["splits"].values()):
            where[rows] = k
        assert (where >= 0).all()
        for rows in planted:
            assert len(set(where[rows])) == 1, (seed, rows)
    assert done["grouping"] == {
        "arcsec": 1.0,
        "coordinates": False,
        "identical_images": True,
        "groups": 96,
        "merged_groups": 3,
        "rows_in_merged_groups": 7,
        "mixed_label_groups": 1,
    }
    record = [r for r in caplog.records if "ra/dec" in r.getMessage()][-1]
    assert record.args == (path, 7, 3, 1)
    assert "7 rows merged into 3 groups; 1 with mixed labels" in record.getMessage()


def test_split_file_with_positions_logs_what_it_merged(tmp_path, caplog):
    """Rows 0-2 (class 0) within 0.6" of each other, rows 5-6 (classes 5 and 6) at one
    position: 5 rows in 2 groups, 1 mixed, 97 groups in all, at 1"."""
    labels = np.tile(np.arange(10), 10).astype(np.uint8)
    labels[[0, 1, 2]] = 0
    rng = np.random.default_rng(2)
    ra, dec = rng.uniform(0, 360, 100), rng.uniform(-60, 60, 100)
    ra[[0, 1, 2]], dec[[0, 1, 2]] = 33.0, 4.0 + np.array([0.0, 0.6, 1.2]) / 3600
    ra[6], dec[6] = ra[5], dec[5]
    write_galaxy10(tmp_path / "g.h5", images_with_copies(100, []), labels, {"ra": ra, "dec": dec})
    with caplog.at_level(logging.INFO, logger="deepgal.data.split"):
        done = split_file(
            tmp_path / "g.h5",
            SOURCE,
            tmp_path / "s",
            {"train": 0.6, "val": 0.3, "test": 0.1},
            0,
            1.0,
        )
    assert done["grouping"] == {
        "arcsec": 1.0,
        "coordinates": True,
        "groups": 97,
        "merged_groups": 2,
        "rows_in_merged_groups": 5,
        "mixed_label_groups": 1,
    }
    record = [r for r in caplog.records if "merged" in r.getMessage()][-1]
    assert record.args == (5, 2, 1.0, 1, 97)
    assert "merged 5 rows into 2 groups" in record.getMessage()
    assert "97 groups in all" in record.getMessage()
