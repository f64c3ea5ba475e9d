"""The embedded galaxies: shapes, determinism, class balance, file layout, argument errors, and
that the classes differ the way the morphologies say they should."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from deepgal.data import galaxy10
from deepgal.data.synthetic import class_counts, render, render_catalogue, write_synthetic
from deepgal.data.synthetic.catalogue import positions

SIZE = 32


@pytest.fixture(scope="module")
def small_set():
    return render(3, SIZE, seed=7)


def test_shapes_dtypes_and_labels(small_set):
    images, labels = small_set
    assert images.shape == (30, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert labels.shape == (30,) and labels.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [3] * 10
    # Shuffled, not ten blocks of one class.
    assert (np.diff(labels.astype(int)) != 0).sum() > 10
    # A grey sky, not a black or saturated frame.
    assert 15 < np.median(images) < 70


def test_same_seed_same_bytes_and_other_seed_differs(small_set):
    images, labels = small_set
    again, labels_again = render(3, SIZE, seed=7)
    assert images.tobytes() == again.tobytes() and labels.tobytes() == labels_again.tobytes()
    other, _ = render(3, SIZE, seed=8)
    assert images.tobytes() != other.tobytes()


def test_bytes_do_not_depend_on_batch_size(monkeypatch):
    from deepgal.data.synthetic import dataset as synthetic

    images, _ = render(2, SIZE, seed=3)
    monkeypatch.setattr(synthetic, "BATCH_PIXELS", 3 * SIZE * SIZE)  # batches of 3 images
    rebatched, _ = render(2, SIZE, seed=3)
    assert images.tobytes() == rebatched.tobytes()


def test_bytes_do_not_depend_on_worker_processes(monkeypatch, small_set):
    """Chunks of 2 images, 15 of them: rendered by 3 spawned processes, the same bytes as here."""
    from deepgal.data.synthetic import dataset as synthetic

    monkeypatch.setattr(synthetic, "BATCH_PIXELS", 2 * SIZE * SIZE)
    for workers in (1, 3):
        images, labels = render(3, SIZE, seed=7, workers=workers)
        assert images.tobytes() == small_set[0].tobytes()
        assert labels.tobytes() == small_set[1].tobytes()


def test_per_class_counts_sequence():
    counts = [0, 1, 2, 0, 0, 0, 0, 0, 0, 3]
    _, labels = render(counts, 16, seed=0)
    assert np.bincount(labels, minlength=10).tolist() == counts


@pytest.mark.parametrize("per_class", [2, 5, 37, 1000])
def test_class_counts(per_class):
    assert class_counts(per_class, "equal") == [per_class] * 10
    real = class_counts(per_class, "real")
    assert sum(real) == 10 * per_class and min(real) >= 2
    if per_class >= 100:  # proportions follow the real file: Round Smooth most, Cigar least
        assert np.argmax(real) == 2 and np.argmin(real) == 4
        share = np.array(real) / sum(real)
        expected = np.array(galaxy10.REAL_CLASS_COUNTS) / sum(galaxy10.REAL_CLASS_COUNTS)
        assert np.abs(share - expected).max() < 0.01


def test_written_file_is_valid_and_matches_render(tmp_path):
    path = tmp_path / "synthetic.h5"
    write_synthetic(path, per_class=2, image_size=16, seed=5, balance="real")
    info = galaxy10.validate(path)
    assert (info.n_images, info.height, info.width) == (20, 16, 16)
    assert list(info.class_counts) == class_counts(2, "real")
    images, _ = render(class_counts(2, "real"), 16, seed=5)
    assert np.array_equal(galaxy10.read_images(path), images)
    assert not (tmp_path / "synthetic.h5.tmp").exists()
    with h5py.File(path, "r") as f:  # the real file's catalogue columns, all finite
        cols = {k: f[k][:] for k in ("ra", "dec", "redshift", "pxscale")}
    assert all(c.shape == (20,) and np.isfinite(c).all() for c in cols.values())


def _pairs(ra: np.ndarray, dec: np.ndarray, arcsec: float) -> list[tuple[int, int]]:
    """Index pairs (i < j) closer than ``arcsec`` (flat-sky; fine at these separations)."""
    dra = (ra[:, None] - ra[None, :]) * np.cos(np.deg2rad(dec))[:, None]
    sep = np.hypot(dra, dec[:, None] - dec[None, :]) * 3600
    i, j = np.nonzero(np.triu(sep <= arcsec, 1))
    return list(zip(i.tolist(), j.tolist(), strict=True))


def test_catalogue_plants_exact_and_near_duplicates_within_a_class():
    labels = np.repeat(np.arange(10, dtype=np.uint8), 60)  # 600 rows -> 2 + 2 planted pairs
    ra, dec, counts = positions(labels, seed=4)
    assert counts == {"exact": 2, "near": 2}
    assert ((0 <= ra) & (ra < 360)).all() and ((-20 <= dec) & (dec <= 35)).all()
    exact = [(i, j) for i, j in _pairs(ra, dec, 0.5) if ra[i] == ra[j] and dec[i] == dec[j]]
    near = [(i, j) for i, j in _pairs(ra, dec, 0.5) if (i, j) not in exact]
    assert len(exact) == 2 and len(near) == 2
    assert all(labels[i] == labels[j] for i, j in exact + near)
    # Nothing else is within 10" of anything: the planted pairs are the only groups.
    assert len(_pairs(ra, dec, 10.0)) == 4
    again = positions(labels, seed=4)
    assert np.array_equal(ra, again[0]) and np.array_equal(dec, again[1])


def test_catalogue_pxscale_and_redshift():
    """pxscale is that of a 256 px cut-out at 0.262"/px resized to S px; the columns come
    from streams of their own, so the images are those of ``render``."""
    images, labels, cols = render_catalogue(2, 32, seed=9)
    assert np.array_equal(cols["pxscale"], np.full(20, 0.262 * 256 / 32))
    assert ((0.005 <= cols["redshift"]) & (cols["redshift"] <= 0.15)).all()
    assert len(np.unique(cols["redshift"])) == 20
    plain, plain_labels = render(2, 32, seed=9)
    assert images.tobytes() == plain.tobytes() and np.array_equal(labels, plain_labels)


@pytest.mark.parametrize(
    "call, word",
    [
        (lambda: render(2, 8, seed=0), "image_size"),
        (lambda: render(0, 32, seed=0), "n_per_class"),
        (lambda: render([1] * 9, 32, seed=0), "n_per_class"),
        (lambda: render(2, 32, seed=-1), "seed"),
        (lambda: class_counts(0, "equal"), "per_class"),
        (lambda: class_counts(3, "uniform"), "balance"),
        (lambda: class_counts(1, "real"), "per_class"),
    ],
)
def test_argument_errors_name_the_argument(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def _shape_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis ratio (minor/major, from second moments) and colour (R-B)/(R+B) of the light
    above the sky within the central third of each image."""
    x = images.astype(np.float64)
    s = x.shape[1]
    c = slice(s // 3, s - s // 3)
    core = x[:, c, c]
    lum = core.mean(-1)
    sky = np.median(x.mean(-1).reshape(len(x), -1), axis=1)[:, None, None]
    w = np.clip(lum - sky - 20, 0, None)  # clearly above the sky noise
    yy, xx = np.mgrid[0 : core.shape[1], 0 : core.shape[2]].astype(np.float64)
    tot = w.sum((1, 2)) + 1e-9
    my, mx = (w * yy).sum((1, 2)) / tot, (w * xx).sum((1, 2)) / tot
    dy, dx = yy - my[:, None, None], xx - mx[:, None, None]
    cyy, cxx = (w * dy * dy).sum((1, 2)) / tot, (w * dx * dx).sum((1, 2)) / tot
    cxy = (w * dx * dy).sum((1, 2)) / tot
    tr, det = cyy + cxx, cyy * cxx - cxy**2
    disc = np.sqrt(np.maximum(tr**2 / 4 - det, 0))
    axis = np.sqrt(np.maximum(tr / 2 - disc, 0) / (tr / 2 + disc + 1e-9))
    sub = np.clip(core - sky[..., None], 0, None) * (w > 0)[..., None]
    r, b = sub[..., 0].sum((1, 2)), sub[..., 2].sum((1, 2))
    return axis, (r - b) / (r + b + 1e-9)


def test_classes_differ_as_their_morphology_says():
    images, labels = render(12, 64, seed=11)
    axis, red = _shape_stats(images)
    med = {c: np.median(axis[labels == c]) for c in range(10)}
    # Edge-on discs and cigars are elongated; round smooth galaxies are round.
    assert med[8] < 0.4 and med[4] < 0.6 and med[2] > 0.7
    assert med[8] < med[3] < med[2] and med[4] < med[3]
    # Smooth (old, yellow-orange) galaxies are redder than disturbed, star-forming ones.
    smooth = np.median(red[np.isin(labels, (2, 3, 4))])
    assert smooth > np.median(red[labels == 0]) + 0.05
    assert smooth > np.median(red[labels == 7])


def test_written_chunk_by_chunk_the_file_matches_the_whole_render(tmp_path, monkeypatch):
    from deepgal.data.synthetic import dataset

    images, labels = render(3, 16, seed=2)  # the oracle: one in-memory render
    monkeypatch.setattr(dataset, "BATCH_PIXELS", 16 * 16 * 4)  # 4 images a chunk: 8 chunks
    write_synthetic(tmp_path / "s.h5", per_class=3, image_size=16, seed=2)
    assert np.array_equal(galaxy10.read_images(tmp_path / "s.h5"), images)
    assert np.array_equal(galaxy10.read_labels(tmp_path / "s.h5"), labels)


def test_a_short_stream_of_blocks_leaves_no_file(tmp_path):
    blocks = [np.zeros((3, 8, 8, 3), np.uint8)]
    with pytest.raises(ValueError, match="3 images written for 5 labels"):
        galaxy10.write_galaxy10_blocks(tmp_path / "g.h5", (8, 8), blocks, np.zeros(5, np.uint8))
    assert list(tmp_path.iterdir()) == []
