"""finetune@<variant> in a real git + DVC repository (real `dvc` processes): off by default
(nothing but finetune's own off record), `dvc exp run -S finetune.data=...` re-runs only
finetune@* and what reads results/ (plot) after the params check, and one more image in the
labelled folder re-runs them again."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from tests.pipeline_repo import dvc, make_repo

pytestmark = pytest.mark.slow


def _ran(proc) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr))


def _plant(root, per_class=3, start=0):
    for c in (2, 5):
        (root / f"{c}").mkdir(parents=True, exist_ok=True)
        for k in range(start, start + per_class):
            im = np.full((24, 24, 3), 20 + 10 * k, np.uint8)
            im[6:18, 6:18, c % 3] = 230
            Image.fromarray(im).save(root / f"{c}" / f"g{k}.png")


def test_exp_run_with_a_labelled_set_reruns_only_finetune(tmp_path):
    folder = tmp_path / "mine"
    _plant(folder)
    repo = make_repo(
        tmp_path / "repo",
        {
            "data": {"synthetic": {"image_size": 16, "per_class": 6}},
            "variants": {"smallnet": {"input_size": 16, "crop": 0.5}},
            "reduce": {"pca_dims": 10, "methods": {"pca": {}}},
            "finetune": {"folds": 2, "epochs": 2, "batch_size": 4},
        },
    )
    first = dvc(["repro"], repo)
    assert "finetune@smallnet" in _ran(first)
    off = json.loads((repo / "results/smallnet/finetune.json").read_text())
    assert off["enabled"] is False
    assert (repo / "models/smallnet/finetuned.pt").read_bytes() == (
        repo / "models/smallnet/selected.pt"
    ).read_bytes()
    assert _ran(dvc(["repro"], repo)) == set()  # off costs nothing on the next run
    assert json.loads(dvc(["status", "--json"], repo).stdout or "{}") == {}

    on = dvc(["exp", "run", "-S", f"finetune.data={folder}"], repo)
    assert _ran(on) == {"params", "finetune@smallnet", "plot"}, on.stdout[-3000:]
    report = json.loads((repo / "results/smallnet/finetune.json").read_text())
    assert report["enabled"] is True and report["data"]["n_images"] == 6
    assert report["checkpoint"] == "models/smallnet/finetuned.pt"

    _plant(folder, per_class=1, start=3)  # one more image in each class
    again = dvc(["exp", "run"], repo)
    assert _ran(again) == {"finetune@smallnet", "plot"}, again.stdout[-3000:]
    report = json.loads((repo / "results/smallnet/finetune.json").read_text())
    assert report["data"]["n_images"] == 8
