"""Helpers used by more than one test file; test files import these, never each other.

- :func:`make_workdir`, :func:`paths`: a folder the train stage can run in (params.yaml, a
  100-image Galaxy10 file, its 60/30/10 split, source.json) and the ``TrainPaths`` into it;
- :data:`DEVICE`, :func:`data`, :func:`run_cfg`, :func:`spec`, :func:`train`: the training
  loop on a tiny, seeded, learnable split;
- :func:`selected_checkpoint`: a calibrated checkpoint of any variant with random weights;
- :func:`malicious_files`: checkpoints whose unpickling would run code (create a marker file);
- :func:`toy_smallnet`, :func:`two_patches`: a hand-built smallnet whose class 1 counts red
  pixels and class 2 green ones, and an image with one red and one green patch (Grad-CAM);
- :func:`smooth_galaxies`: smooth elliptical blobs, among which pure noise is the oddity.

Ports and a loopback HTTP server live in ``tests/ports.py`` and ``tests/httpserver.py``.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import torch
import yaml

from deepgal import config
from deepgal.data import galaxy10
from deepgal.data import split as split_io
from deepgal.models import build_model
from deepgal.training import RunSpec, Split, TrainPaths, fit
from deepgal.transforms import Augment, Preprocess
from deepgal.utils import seed_everything
from tests.conftest import make_h5
from tests.pipeline_repo import tiny_params

DEVICE = torch.device("cpu")


# ---- a train-stage working folder ------------------------------------------------------------


def make_workdir(root: Path, train: dict | None = None, variant: dict | None = None) -> Path:
    """params.yaml, a 100-image Galaxy10 file, its 60/30/10 split and source.json: what the
    train stage reads. ``train``/``variant``: overrides of the train section / smallnet."""
    params = tiny_params(
        {
            "variants": {"smallnet": {"input_size": 16, "crop": 0.5, **(variant or {})}},
            "train": {
                "epochs": 3,
                "batch_size": 8,
                "warmup_epochs": 0,
                "checkpoint_every": 1,
                **(train or {}),
            },
        }
    )
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    data = make_h5(root / "data/galaxy10.h5", n_per_class=10, size=32)
    write_split_files(data, {"train": 0.6, "val": 0.3, "test": 0.1})
    return root


def write_split_files(data: Path, fractions: dict[str, float]) -> None:
    """What the split stage leaves beside ``data``: ``split/`` (seeded stratified indices and
    the train split's channel statistics) and ``source.json``."""
    labels = galaxy10.read_labels(data)
    splits = split_io.stratified_split(labels, fractions, 0)
    mean, std = split_io.channel_stats(data, splits["train"])
    source = {"source": "synthetic", "sha256": "ab" * 32}
    split_io.write_split(data.parent / "split", splits, labels, mean, std, source=source)
    (data.parent / "source.json").write_text(json.dumps(source))


def paths(root: Path) -> TrainPaths:
    """Where the train stage's smallnet reads and writes inside :func:`make_workdir`'s folder."""
    return TrainPaths(
        root / "data/galaxy10.h5",
        root / "data/source.json",
        root / "data/split",
        root / "models/smallnet",
        root / "results/smallnet",
    )


# ---- the training loop on tiny data ----------------------------------------------------------


def data(n: int = 48, seed: int = 0) -> Split:
    """``n`` uint8 images (n, 16, 16, 3), labels ``arange(n) % 10``; classes 0-4 carry a bright
    red square, so there is something to learn."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 256, (n, 16, 16, 3), generator=g, dtype=torch.uint8)
    images[labels < 5, 4:12, 4:12, 0] = 250
    return Split(images, labels)


def run_cfg(**overrides) -> config.RunCfg:
    """The tiny test configuration's smallnet, resolved as the stage resolves it, shrunk."""
    run = config.resolve_variant(tiny_params(), "smallnet")
    aug = Augment(rotate=True, flip=True, jitter=0.1, scale=0.1, translate=0.0)
    base = {
        "epochs": 3,
        "batch_size": 8,
        "checkpoint_every": 1,
        "warmup_epochs": 0,
        "seed": 7,
        "input_size": 16,
        "crop": 1.0,
        "precision": "fp32",
        "augment": aug,
    }
    return dataclasses.replace(run, **{**base, **overrides})


def spec(tmp_path: Path, fingerprint: str = "a", **cfg) -> RunSpec:
    """A RunSpec checkpointing into ``tmp_path``; ``cfg`` overrides :func:`run_cfg`."""
    return RunSpec(
        cfg=run_cfg(**cfg),
        preprocess=Preprocess(input_size=16),
        ckpt_dir=tmp_path,
        fingerprint=fingerprint,
        meta={"variant": "smallnet", "model_name": "smallnet"},
    )


def train(tmp_path: Path, sinks=(), **kw):
    """A seeded smallnet fitted on ``data()`` (val: ``data(20, seed=1)``); (history, model)."""
    seed_everything(7, deterministic=True)
    model = build_model("smallnet", 10, 16)
    return fit(model, data(), data(20, seed=1), spec(tmp_path, **kw), DEVICE, list(sinks)), model


# ---- the evaluate stage's paths --------------------------------------------------------------


def evaluate_paths(tmp: Path, out: Path):
    """EvaluatePaths reading tmp/selection.json, m.pt, history.csv, g.h5, split/ (no MLflow run
    file) and writing every output under ``out``, under the names dvc.yaml gives them."""
    from deepgal.evaluation import EvaluatePaths

    return EvaluatePaths(
        selection=tmp / "selection.json",
        checkpoint=tmp / "m.pt",
        history=tmp / "history.csv",
        run=tmp / "no_run.json",
        data=tmp / "g.h5",
        split=tmp / "split",
        metrics=out / "metrics.json",
        calibration=out / "calibration.json",
        details=out / "eval.json",
        predictions=out / "predictions.csv",
        plots=out / "confusion",
        features=out / "features.h5",
        gradcam=out / "gradcam.npz",
    )


# ---- a selected checkpoint ------------------------------------------------------------------


def selected_checkpoint(
    path: Path,
    model_name: str = "smallnet",
    pre: Preprocess | None = None,
    temperature: float | None = 2.0,
    seed: int = 0,
) -> Path:
    """A checkpoint as the select stage writes ``selected.pt``: seeded random weights of
    ``model_name`` (tiny input: ``pre`` defaults to 16 px, crop 0.5, skewed mean/std), its
    preprocessing, class names and, unless ``temperature`` is None, a calibration record with
    that temperature (no val probabilities). Returns ``path``."""
    from deepgal import checkpoint as ckpt_io
    from deepgal.calibration import Calibration

    pre = pre or Preprocess(input_size=16, crop=0.5, mean=(0.2, 0.3, 0.4), std=(0.2, 0.25, 0.3))
    torch.manual_seed(seed)
    model = build_model(model_name, galaxy10.NUM_CLASSES, pre.input_size, pretrained="none")
    state = {
        "epoch": 1,
        "model": model.state_dict(),
        "model_name": model_name,
        "preprocess": pre.to_dict(),
        "class_names": list(galaxy10.CLASS_NAMES),
    }
    if temperature is not None:
        cal = Calibration(
            temperature,
            "a test",
            torch.zeros(0, galaxy10.NUM_CLASSES).numpy(),
            torch.zeros(0, dtype=torch.int64).numpy(),
        )
        state["calibration"] = cal.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt_io.save(path, state)
    return path


# ---- malicious pickles -----------------------------------------------------------------------


class Exploit:
    """Unpickling this runs ``open(marker, "w")``, creating ``marker``: what a malicious
    checkpoint would do with any other call."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def malicious_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Three files whose unpickling creates ``marker``, by where the payload sits: the whole
    object in torch's zip format, one value inside an otherwise valid checkpoint dict, and a
    bare (legacy, non-zip) pickle."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "torch_zip": folder / "evil.pt",
        "inside_checkpoint": folder / "evil_ckpt.pt",
        "legacy_pickle": folder / "evil_legacy.pt",
    }
    torch.save(Exploit(marker), files["torch_zip"])
    torch.save(
        {"model": {"body.0.weight": torch.zeros(1)}, "epoch": 1, "extra": Exploit(marker)},
        files["inside_checkpoint"],
    )
    with open(files["legacy_pickle"], "wb") as f:
        pickle.dump(Exploit(marker), f)
    return files


# ---- a network whose decision depends on known patches ---------------------------------------

TOY_PRE = Preprocess(32, crop=1.0, mean=(0, 0, 0), std=(1, 1, 1))  # pixels / 255, uncropped
RED = (slice(4, 11), slice(20, 28))  # rows, cols: off-centre and not symmetric, so a
GREEN = (slice(20, 28), slice(4, 11))  # transposed or flipped map lands on the other patch


def toy_smallnet() -> torch.nn.Module:
    """smallnet whose channel 0 passes red (minus green and blue) and channel 1 green (minus
    red and blue) through both convolutions unchanged; logit 1 sums channel 0 over the image,
    logit 2 channel 1, and class 0 has a bias, so a dark image is class 0."""
    net = build_model("smallnet", 10, 32)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        conv1, conv2 = net.body[0], net.body[3]
        conv1.weight[0, :, 1, 1] = torch.tensor([1.0, -1.0, -1.0])
        conv1.weight[1, :, 1, 1] = torch.tensor([-1.0, 1.0, -1.0])
        conv2.weight[0, 0, 1, 1] = conv2.weight[1, 1, 1, 1] = 1.0
        per_channel = 8 * 8  # smallnet's features: 64 channels of 8x8, flattened
        net.head.weight[1, :per_channel] = 1.0
        net.head.weight[2, per_channel : 2 * per_channel] = 1.0
        net.head.bias[0] = 0.5
    return net.eval()


def two_patches(red_level=220, green_level=120) -> np.ndarray:
    img = np.full((32, 32, 3), 10, np.uint8)
    img[RED] = (red_level, 0, 0)
    img[GREEN] = (0, green_level, 0)
    img[24:30, 24:30] = 200  # a grey square that neither class looks at
    return img


def smooth_galaxies(n, size=64, seed=0):
    """Elliptical Gaussian blobs of random centre, size, axis ratio, angle and colour on a dark
    sky: (n, size, size, 3) uint8, smooth at every scale."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        cy, cx = size / 2 + rng.uniform(-4, 4, 2)
        a, b = rng.uniform(3, 12), rng.uniform(2, 6)
        t = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        blob = np.exp(-0.5 * ((u / a) ** 2 + (v / b) ** 2))
        colour = rng.uniform(120, 230, 3)
        out[i] = np.clip(15 + blob[..., None] * colour, 0, 255).astype(np.uint8)
    return out


# ---- reduce ----------------------------------------------------------------------------------


def sklearn_pca(train):
    """The oracle of the PCA map: StandardScaler + PCA(min(2, N)) fitted by scikit-learn on
    ``train`` (float64), zero-padded to 2 columns, as a transform."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train.astype(np.float64))
    pca = PCA(min(2, len(train))).fit(scaler.transform(train.astype(np.float64)))
    return lambda x: np.pad(
        pca.transform(scaler.transform(x.astype(np.float64))), ((0, 0), (0, 2 - pca.n_components_))
    )
