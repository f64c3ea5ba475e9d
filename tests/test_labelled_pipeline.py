"""data.source labelled in a real git + DVC repository (real `dvc` processes): adding one image
to the user's folder re-runs labelled -> download -> split and not the params check; with the
synthetic source the same edit re-runs only the cheap labelled check."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from tests.pipeline_repo import dvc, make_repo

pytestmark = pytest.mark.slow


def _ran(proc) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr))


def _plant(root, per_class=4, start=0):
    for c in (2, 5):
        (root / f"{c}").mkdir(parents=True, exist_ok=True)
        for k in range(start, start + per_class):
            Image.fromarray(np.full((24, 24, 3), 10 * c + k, np.uint8)).save(
                root / f"{c}" / f"g{k}.png"
            )


@pytest.mark.parametrize(
    "source,expected",
    [
        ("labelled", {"labelled", "download", "split"}),
        ("synthetic", {"labelled"}),
    ],
)
def test_one_more_image_reruns_only_what_uses_it(tmp_path, source, expected):
    folder = tmp_path / "mine"
    _plant(folder)
    repo = make_repo(
        tmp_path / "repo",
        {
            "data": {
                "source": source,
                "path": str(folder),
                "synthetic": {"image_size": 16, "per_class": 4},
            },
            "split": {"train": 0.5, "val": 0.5, "test": 0.0},
        },
    )
    first = dvc(["repro", "split"], repo)
    assert {"params", "labelled", "download", "split"} <= _ran(first)
    assert _ran(dvc(["repro", "split"], repo)) == set()  # cached: nothing to do
    _plant(folder, per_class=1, start=4)  # one more image in each class
    again = dvc(["repro", "split"], repo)
    assert _ran(again) == expected
    if source == "labelled":
        info = (repo / "data" / "source.json").read_text()
        assert '"n_images": 10' in info
