"""benchmarks/sim_to_real.py measures what the pipeline does: its recipe is the train stage's
resolved config, its optimiser and schedule are the ones deepgal.training builds (Nesterov,
no weight decay on norms and biases, warm-up then cosine), and its scores agree with
scikit-learn's."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, recall_score

from deepgal import config
from deepgal.models import build_model
from tests.pipeline_repo import REPO, tiny_params


def _bench():
    spec = importlib.util.spec_from_file_location(
        "sim_to_real", REPO / "benchmarks" / "sim_to_real.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_optimiser_and_schedule_are_the_pipelines():
    bench = _bench()
    params = tiny_params(
        {
            "train": {
                "epochs": 3,
                "batch_size": 8,
                "warmup_epochs": 1,
                "optimizer": "sgd",
                "momentum": 0.9,
                "weight_decay": 0.01,
                "schedule": "cosine",
                "epoch_images": 20,
            }
        }
    )
    r = bench.recipe(params, "smallnet")
    assert r == config.resolve_variant(params, "smallnet")
    model = build_model(r.model, 10, r.input_size)
    opt, sched, n_epoch = bench.optimiser_parts(model, r, n_train=100)
    assert n_epoch == 20  # epoch_images of the 100 training images
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] is True
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim <= 1 for p in no_decay["params"]) and no_decay["params"]
    # 20 images / batch 8 = 3 steps an epoch, 9 in all, 3 of warm-up: by hand, the textbook
    # linear warm-up then half-cosine over the remaining 6 steps.
    steps, warm = 9, 3
    want = [
        (s + 1) / warm if s < warm else 0.5 * (1 + np.cos(np.pi * (s - warm) / (steps - warm)))
        for s in range(steps)
    ]
    got = []
    for _ in range(steps):
        got.append(opt.param_groups[0]["lr"] / r.lr)
        opt.step()
        sched.step()
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_scores_agree_with_scikit_learn():
    bench = _bench()
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 5)  # every class present, as on the 50 real images
    pred = np.where(rng.random(50) < 0.6, y, rng.integers(0, 10, 50))
    s = bench.scores(pred, y)
    assert s["acc"] == pytest.approx(accuracy_score(y, pred))
    assert s["f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    np.testing.assert_allclose(
        s["recall"], recall_score(y, pred, average=None, labels=range(10), zero_division=0)
    )
