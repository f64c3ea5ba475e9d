"""The held-out judge's parts against independent oracles: thumbnails against Pillow's
antialiased bilinear resize (over more rows than one read chunk), the duplicate test against
NumPy's mean absolute difference and hand-built distances at the tolerance, and the sample's
documented rules (a seeded order per class, halves split at the floor of half a class, copies
replaced by the next clean rows of their class) on real HDF5 files with hand-counted classes.
"""

import numpy as np
import pytest
from PIL import Image

from deepgal.data import galaxy10
from deepgal.data.heldout import CHUNK, held_out_rows, near_duplicates, thumbnails


def pil_thumbnail(image: np.ndarray, side: int) -> np.ndarray:
    """(3, side, side) float32: each channel resized by Pillow (mode F, BILINEAR, which
    antialiases when it shrinks)."""
    return np.stack(
        [
            np.asarray(
                Image.fromarray(image[..., c].astype(np.float32), mode="F").resize(
                    (side, side), Image.BILINEAR
                )
            )
            for c in range(3)
        ]
    )


def test_thumbnails_match_pillow_across_read_chunks(tmp_path):
    """2 CHUNK + 90 rows of 12 px images, asked in a shuffled order: row i of the result is the
    Pillow thumbnail of the i-th row asked for, in the first, second and third chunk."""
    n = 2 * CHUNK + 90
    images = np.random.default_rng(1).integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)
    path = tmp_path / "g.h5"
    galaxy10.write_galaxy10(path, images, np.arange(n) % 10)
    rows = np.random.default_rng(2).permutation(n)[: 2 * CHUNK + 40]
    got = thumbnails(path, rows, side=5)
    assert got.shape == (2 * CHUNK + 40, 3, 5, 5) and got.dtype == np.float32
    for i in (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 39):
        np.testing.assert_allclose(got[i], pil_thumbnail(images[rows[i]], 5), atol=1e-3)


def test_default_thumbnails_are_32_px(tmp_path):
    images = np.random.default_rng(3).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    galaxy10.write_galaxy10(tmp_path / "g.h5", images, np.arange(3))
    got = thumbnails(tmp_path / "g.h5", np.array([2, 0]))
    assert got.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(got[0], pil_thumbnail(images[2], 32), atol=1e-3)


def test_near_duplicates_is_the_mean_absolute_difference_below_tol():
    """Against NumPy: a candidate is a duplicate when its smallest mean |difference| to any
    excluded thumbnail is below tol (strictly)."""
    rng = np.random.default_rng(4)
    excluded = rng.uniform(0, 255, (6, 3, 4, 4)).astype(np.float32)
    candidates = np.concatenate(
        [
            excluded[[1, 4]] + rng.uniform(-3, 3, (2, 3, 4, 4)).astype(np.float32),
            rng.uniform(0, 255, (5, 3, 4, 4)).astype(np.float32),
        ]
    )
    mad = np.abs(candidates[:, None].astype(np.float64) - excluded[None]).mean((2, 3, 4))
    for tol in (0.5, 1.5, 2.0, 200.0):
        want = mad.min(1) < tol
        np.testing.assert_array_equal(near_duplicates(candidates, excluded, tol), want)
    assert near_duplicates(candidates, excluded).tolist() == (mad.min(1) < 2.0).tolist()


def test_near_duplicates_at_and_around_the_tolerance_by_hand():
    """Thumbnails of 12 values. Against an all-10 excluded one: 11.5 everywhere (mean 1.5:
    duplicate), two values 12 higher (mean exactly 2.0: not, the bound is strict; the
    Euclidean distance would say 1.41), one value 23 higher (mean 1.92: duplicate)."""
    ex = np.full((1, 3, 2, 2), 10.0, np.float32)
    far = np.full((1, 3, 2, 2), 200.0, np.float32)
    two = ex[0].copy()
    two.flat[[0, 5]] += 12
    one = ex[0].copy()
    one.flat[7] += 23
    cand = np.stack([ex[0] + 1.5, two, one, ex[0] + 2.5])
    assert near_duplicates(cand, ex).tolist() == [True, False, True, False]
    assert near_duplicates(cand, np.concatenate([far, ex])).tolist() == [True, False, True, False]
    assert near_duplicates(cand, ex, tol=2.6).tolist() == [True, True, True, True]
    none = near_duplicates(cand, np.zeros((0, 3, 2, 2), np.float32))
    assert none.dtype == bool and none.tolist() == [False] * 4  # a mask: cand[~none] works
    assert near_duplicates(cand, ex).dtype == bool
    assert near_duplicates(cand[:0], ex).shape == (0,)


@pytest.fixture(scope="module")
def odd_file(tmp_path_factory):
    """Random 8 px images; class c has 3 + c rows (classes of odd and even size)."""
    labels = np.repeat(np.arange(10), 3 + np.arange(10))
    labels = labels[np.random.default_rng(5).permutation(len(labels))]
    images = np.random.default_rng(6).integers(0, 256, (len(labels), 8, 8, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("odd") / "g.h5"
    galaxy10.write_galaxy10(path, images, labels)
    return path, images, labels


def seeded_order(path, labels, seed, half=None):
    """Each class's seeded order, read off the samples of 1, 2, ... rows: each sample holds
    the one before it plus at most one row of each class."""
    order = {c: [] for c in range(10)}
    for k in range(1, int(np.bincount(labels).max()) + 1):
        rows, _ = held_out_rows(path, k, seed, half=half)
        for c in range(10):
            mine = rows[labels[rows] == c]
            assert np.isin(order[c], mine).all(), (c, k)
            new = np.setdiff1d(mine, order[c])
            assert len(new) <= 1, (c, k)
            order[c] += new.tolist()
    return order


def test_halves_are_the_floor_and_the_rest_of_each_class(odd_file):
    path, _, labels = odd_file
    sizes = np.bincount(labels)
    for seed in (0, 7):
        tune, info_t = held_out_rows(path, None, seed, half="tune")
        judge, info_j = held_out_rows(path, None, seed, half="judge")
        assert info_t["per_class"] == (sizes // 2).tolist()
        assert info_j["per_class"] == (sizes - sizes // 2).tolist()
        assert info_t["short"] == info_j["short"] == [] and info_t["excluded"] == 0
        assert np.intersect1d(tune, judge).size == 0
        assert np.array_equal(np.union1d(tune, judge), np.arange(len(labels)))
        everything, info = held_out_rows(path, None, seed)
        assert np.array_equal(everything, np.arange(len(labels)))
        assert info["per_class"] == sizes.tolist()


def test_samples_grow_along_one_seeded_order_per_class(odd_file):
    """The sample of k rows of a class is the first k of one seeded order: the sample of k + 1
    adds one row; classes too small for k are named short and give all they have."""
    path, _, labels = odd_file
    sizes = np.bincount(labels)
    for seed in (1, 2):
        order = seeded_order(path, labels, seed)
        for c in range(10):
            assert sorted(order[c]) == np.flatnonzero(labels == c).tolist()
        rows, info = held_out_rows(path, 6, seed)
        assert info["per_class"] == np.minimum(sizes, 6).tolist()
        assert info["short"] == [galaxy10.CLASS_NAMES[c] for c in range(3)]
        assert np.array_equal(rows, np.sort(np.concatenate([order[c][:6] for c in range(10)])))
        judge = seeded_order(path, labels, seed, half="judge")
        for c in range(10):  # the judge half is the tail of the class's seeded order
            assert judge[c] == order[c][sizes[c] // 2 :]
    assert seeded_order(path, labels, 1) != seeded_order(path, labels, 2)


def test_copies_are_replaced_by_the_next_clean_rows_of_their_class(odd_file, tmp_path):
    """Rows copied into an exclude file: each class's sample is the first k rows of its seeded
    order that are not copies; only the copies looked at are counted, short as they fall."""
    path, images, labels = odd_file
    seed = 3
    order = seeded_order(path, labels, seed)
    # Class 9 loses positions 0, 2, 3 of its order, class 4 position 1, class 0 position 0. A
    # sample of 1 looks at one copy in classes 9 and 0; of 2, at all five (class 9 reads on
    # past three copies to find its second clean row).
    copied = [order[9][0], order[9][2], order[9][3], order[4][1], order[0][0]]
    galaxy10.write_galaxy10(tmp_path / "seen.h5", images[copied], labels[copied])
    for k, looked in ((1, 1 + 0 + 1), (2, 3 + 1 + 1), (12, 3 + 1 + 1)):
        rows, info = held_out_rows(path, k, seed, exclude=[tmp_path / "seen.h5"])
        clean = {c: [r for r in order[c] if r not in copied] for c in range(10)}
        assert np.array_equal(rows, np.sort(np.concatenate([clean[c][:k] for c in range(10)])))
        assert info["excluded"] == looked, k
        assert info["short"] == [galaxy10.CLASS_NAMES[c] for c in range(10) if len(clean[c]) < k]
    every, info = held_out_rows(path, None, seed, exclude=[tmp_path / "seen.h5"])
    assert np.array_equal(every, np.setdiff1d(np.arange(len(labels)), copied))
    assert info["excluded"] == 5 and info["short"] == []


@pytest.mark.parametrize("bad", [True, 0, -2, 2.0, "3"])
def test_per_class_must_be_a_positive_integer(odd_file, bad):
    with pytest.raises(
        ValueError,
        match=rf"per_class = {bad!r}: expected an integer >= 1 "
        r"\(or none: every row\)",
    ):
        held_out_rows(odd_file[0], bad, 0)


def test_a_bad_half_or_exclude_file_is_named(odd_file, tmp_path):
    with pytest.raises(ValueError, match=r"half = 'judges': expected one of tune, judge"):
        held_out_rows(odd_file[0], None, 0, half="judges")
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(galaxy10.Galaxy10FormatError, match=r"broken\.h5"):
        held_out_rows(odd_file[0], 2, 0, exclude=[tmp_path / "broken.h5"])


def test_dark_images_stay_without_exclusions_and_tol_is_used(tmp_path):
    """Classes 0-7 only (counts still 10 long); all-black and near-black images are kept when
    nothing is excluded. Copies 1 grey level brighter (mean |difference| 1) are duplicates at
    the default tol 2 and not at tol 0.5."""
    labels = np.repeat(np.arange(8), 3)
    images = np.random.default_rng(8).integers(0, 256, (24, 8, 8, 3), dtype=np.uint8)
    images[[0, 5]] = 0
    images[7] = 1
    images[images == 255] = 254
    galaxy10.write_galaxy10(tmp_path / "g.h5", images, labels)
    rows, info = held_out_rows(tmp_path / "g.h5", None, 0)
    assert rows.tolist() == list(range(24))
    assert info["per_class"] == [3] * 8 + [0, 0]
    galaxy10.write_galaxy10(tmp_path / "seen.h5", images[[2, 9]] + 1, labels[[2, 9]])
    rows, info = held_out_rows(tmp_path / "g.h5", None, 0, [tmp_path / "seen.h5"])
    assert info["excluded"] == 2 and not np.isin([2, 9], rows).any()
    rows, info = held_out_rows(tmp_path / "g.h5", None, 0, [tmp_path / "seen.h5"], tol=0.5)
    assert info["excluded"] == 0 and len(rows) == 24
