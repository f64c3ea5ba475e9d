"""HDF5 -> litdata chunks -> the same images and labels, in file order; a loader resumed from
its state_dict continues at the same batch. The oracle is the HDF5 file itself (h5py)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from deepgal.data import shards
from tests.conftest import make_h5

litdata = pytest.importorskip("litdata", reason="pip install 'deepgal[stream]'")


@pytest.fixture
def chunked(tmp_path):
    h5 = make_h5(tmp_path / "g.h5", n_per_class=30, size=16)  # 300 images, 768 B each
    # 64 kB chunks: 300 images span 4 files, so order across chunk boundaries is checked
    return h5, shards.write_shards(h5, tmp_path / "chunks", chunk_bytes=64 * 1024)


def test_chunks_hold_the_files_images_and_labels_in_order(chunked):
    h5, folder = chunked
    assert len(list(folder.glob("*.bin"))) > 1
    assert not folder.with_name("chunks.partial").exists()
    with h5py.File(h5, "r") as f:
        images, labels = f["images"][:], f["ans"][:]
    ds = shards.open_shards(folder)
    assert len(ds) == len(labels) == 300
    for i in range(len(ds)):
        row = ds[i]
        assert row["index"] == i and row["label"] == labels[i]
        np.testing.assert_array_equal(row["image"], images[i])


def test_a_loader_resumed_from_its_state_continues_at_the_same_batch(chunked):
    _, folder = chunked

    def loader(state=None):
        dl = litdata.StreamingDataLoader(
            shards.open_shards(folder, shuffle=True, seed=3), batch_size=16
        )
        if state is not None:
            dl.load_state_dict(state)
        return dl

    whole = [int(i) for b in loader() for i in b["index"]]
    assert sorted(whole) == list(range(300)) and whole != list(range(300))
    head, state = [], None
    dl = loader()
    for k, b in enumerate(dl):
        head += [int(i) for i in b["index"]]
        if k == 6:  # stop after 7 batches = 112 samples, mid-chunk
            state = dl.state_dict()
            break
    tail = [int(i) for b in loader(state) for i in b["index"]]
    assert head + tail == whole
