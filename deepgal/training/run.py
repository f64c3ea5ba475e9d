"""One variant's training run, assembled: the train stage's whole job as one library call.

:func:`train_variant` takes the variant's resolved config (:class:`deepgal.config.RunCfg`, the
one record of what it really runs with) and the stage's paths, and:

- reads the train/val splits (uint8, once, on the CPU already shrunk to what the input
  needs: :func:`load_split`) and the train split's statistics;
- builds the model, the preprocessing and the resume fingerprint;
- on rank 0, opens the MLflow run (reopening the interrupted one of the same config), with
  ``RunCfg.flat()`` as its params and the data set as its dataset input;
- runs :func:`deepgal.training.fit`, under DDP when torchrun started this process;
- on rank 0, writes ``train.json`` (final metrics, best epoch, the resolved config),
  ``mlflow_run.json`` and the run's artifacts, and closes the run FINISHED / KILLED / FAILED.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checkpoint as ckpt_io
from .. import distributed, tracking
from ..config import RunCfg
from ..data import galaxy10
from ..data import split as split_io
from ..handoff import MlflowRun, ResumeRun, Source, SplitStats, TrainSummary
from ..models import build_model
from ..transforms import Preprocess, presize_shape, zoom_bound
from ..utils import machine, machine_label, pick_device, seed_everything
from . import stream, unfinished
from .epoch import RunSpec, Split, TrainingDiverged
from .loop import TrainingInterrupted, fit, place_split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainPaths:
    data: Path  # Galaxy10-layout HDF5
    source: Path  # source.json of the download stage
    split: Path  # folder of the split stage
    out: Path  # models/<variant>: checkpoints/, mlflow_run.json
    results: Path  # results/<variant>: history.csv, train.json


def load_split(
    data: Path,
    split_dir: Path,
    name: str,
    pre: Preprocess | None = None,
    zoom_bound: float = 1.0,
    chunk: int = galaxy10.READ_CHUNK,
) -> Split:
    """Rows ``name`` of the split as (N, H, W, 3) uint8 images and (N,) int64 labels.

    With ``pre``, each chunk of ``chunk`` rows is shrunk as it is read by
    :func:`deepgal.transforms.presize` (the resize every batch fed with ``zoom_bound`` would
    get first), so memory holds the images at the size the model's input needs plus one
    chunk, never the whole split at full size: at the real 256 px and a 32 px input, 0.05 GB
    instead of 2.8 GB, with the same bytes reaching the model.
    """
    idx = split_io.read_split(split_dir, name)
    labels = torch.from_numpy(galaxy10.read_labels(data)[idx].astype("int64"))
    return Split(stream.read_presized(data, idx, pre, zoom_bound, chunk), labels)


def stream_split(
    data: Path,
    split_dir: Path,
    name: str,
    plan: stream.StreamPlan,
    pre: Preprocess | None = None,
    zoom_bound: float = 1.0,
) -> Split:
    """:func:`load_split`'s rows, streamed (:mod:`deepgal.training.stream`): the same images
    and labels, in file order, read a block at a time as training asks for them."""
    idx = np.sort(split_io.read_split(split_dir, name))
    labels = torch.from_numpy(galaxy10.read_labels(data)[idx].astype("int64"))
    return Split(stream.StreamedImages(data, idx, plan, pre, zoom_bound), labels)


def split_bytes(
    info: galaxy10.Galaxy10Info, n: int, pre: Preprocess | None, zoom: float
) -> tuple[int, int]:
    """(bytes of one row, of ``n`` rows) in memory as uint8: presized by ``pre``, else at the
    file's size."""
    h, w = info.height, info.width
    if pre is not None:
        h, w = presize_shape(pre, h, w, zoom)
    return h * w * 3, n * h * w * 3


def run_config(
    run: RunCfg,
    pre: Preprocess,
    source: Source,
    stats: SplitStats,
    plan: stream.StreamPlan | None = None,
) -> dict[str, Any]:
    """What a checkpoint records and a resume must match (the device may differ). A streamed
    run draws its epochs in another order (block shuffle, set by the block size), so ``plan``
    is part of it; an in-memory run does not depend on the stream settings, so they are not."""
    skip = {"device"} if plan else {"device", "stream", "stream_buffer_mb"}
    resolved = {k: v for k, v in dataclasses.asdict(run).items() if k not in skip}
    data = {"sha256": source.sha256, "split_sizes": stats.sizes}
    if plan is not None:
        data["streamed"] = dataclasses.asdict(plan)
    return {"run": resolved, "preprocess": pre.to_dict(), "data": data}


def _open_mlflow(
    run: RunCfg, source: Source, stats: SplitStats, fp: str, run_file: Path, device: torch.device
) -> tracking.MlflowSink | None:
    """The variant's MLflow run; an interrupted run of the same config is reopened."""
    if not tracking.mlflow_enabled():
        return None
    prev = ResumeRun.read(run_file) if run_file.exists() else None
    tags = {
        "deepgal.variant": run.variant,
        "deepgal.model": run.model,
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""),
        "git.commit": tracking.git_commit(),
        "data.source": source.source,
        "data.sha256": source.sha256,
        "deepgal.fingerprint": fp,
        # Runs repeat bit for bit only on the same kind of CPU (or GPU): say which one.
        "deepgal.machine": machine_label(machine(device)),
    }
    mlf = tracking.MlflowSink(
        tracking.default_tracking_uri(),
        run.variant,
        tags,
        run.flat(),
        run_id=prev.run_id if prev and prev.fingerprint == fp else None,
    )
    mlf.log_dataset(source, stats.sizes)
    ResumeRun(run_id=mlf.run_id, fingerprint=fp).write(run_file)
    return mlf


def summarise(
    history: list[dict], run: RunCfg, undelivered: int, device: torch.device | None = None
) -> TrainSummary:
    """``train.json``: the last epoch's metrics, the best epoch, time, the config run and the
    machine it ran on (:func:`deepgal.utils.machine`)."""
    best = max(history, key=lambda m: m["val/accuracy"])
    return TrainSummary(
        last_epoch=dict(history[-1]),
        best_val_accuracy=best["val/accuracy"],
        best_epoch=best["epoch"],
        train_seconds=sum(m["seconds"] for m in history),
        epochs=len(history),
        undelivered_epochs=undelivered,
        config=run.flat(),
        machine=machine(device),
    )


def train_variant(run: RunCfg, paths: TrainPaths) -> dict[str, Any] | None:
    """Train variant ``run.variant``; returns train.json's dict on rank 0 (None elsewhere).

    Raises TrainingInterrupted / TrainingDiverged (the MLflow run is then closed KILLED /
    FAILED) and, under DDP, torch.distributed errors when another rank is lost.
    """
    info = galaxy10.validate(paths.data)
    stats = split_io.read_stats(paths.split)
    source = Source.read(paths.source)
    seed_everything(run.seed, run.deterministic)
    dist, device = distributed.init(pick_device(run.device))
    try:
        return _train(run, paths, stats, source, dist, device, info)
    finally:
        distributed.shutdown()


def _train(
    run: RunCfg,
    paths: TrainPaths,
    stats: SplitStats,
    source: Source,
    dist: distributed.Dist,
    device: torch.device,
    info: galaxy10.Galaxy10Info,
) -> dict[str, Any] | None:
    """:func:`train_variant` once the process group is up: assemble the run, fit, and on
    rank 0 write ``train.json`` and ``mlflow_run.json`` and close the MLflow run."""
    pre = Preprocess(
        input_size=run.input_size, crop=run.crop, mean=tuple(stats.mean), std=tuple(stats.std)
    )
    data = _DataPlan.make(run, paths, pre, device, info, dist)
    config = run_config(run, pre, source, stats, data.plan)
    fp = ckpt_io.fingerprint(config)
    model = build_model(run.model, galaxy10.NUM_CLASSES, run.input_size, run.pretrained)
    ckpt_dir = paths.out / "checkpoints"
    if dist.main:  # an interrupted `dvc exp run` of this config: its checkpoints come back
        unfinished.restore(ckpt_dir, fp)
    # run.json persists with the checkpoints, so a resume reuses the MLflow run
    mlf = _open_mlflow(run, source, stats, fp, ckpt_dir / "run.json", device) if dist.main else None
    files = tracking.FileSink(paths.results / "history.csv")
    sinks = [files] + ([mlf] if mlf else [])
    spec = RunSpec(
        cfg=run,
        preprocess=pre,
        ckpt_dir=ckpt_dir,
        fingerprint=fp,
        meta={
            "variant": run.variant,
            "model_name": run.model,
            "config": config,
            "class_names": list(galaxy10.CLASS_NAMES),
            "mlflow_run_id": mlf.run_id if mlf else None,
        },
    )
    train, val = data.load(paths, device)
    log.info(
        "%s: %d train / %d val images, %d epochs on %s x %d%s",
        *(run.variant, len(train), len(val), run.epochs, device, dist.world),
        f", streamed in blocks of {data.plan.block} rows" if data.plan else "",
    )
    history = _fit_or_close(mlf, model, train, val, spec, device, sinks, dist)
    if not dist.main:
        return None
    missing_epochs = _close_finished(mlf, paths, config) if mlf else []
    summary = summarise(history, run, len(missing_epochs), device)
    summary.write(paths.results / "train.json")
    MlflowRun(
        run_id=mlf.run_id if mlf else None,
        run_name=run.variant,
        tracking_uri=tracking.redact(tracking.default_tracking_uri()) if mlf else None,
    ).write(paths.out / "mlflow_run.json")
    return summary.to_dict()


@dataclass(frozen=True)
class _DataPlan:
    """How the train and val splits are held: whole (``plan`` None) or streamed in blocks."""

    shrink: Preprocess | None  # the CPU shrinks rows as they are read; CUDA keeps full size
    zoom: float  # the augmentation's largest zoom (train rows are shrunk leaving room for it)
    plan: stream.StreamPlan | None

    @classmethod
    def make(
        cls,
        run: RunCfg,
        paths: TrainPaths,
        pre: Preprocess,
        device: torch.device,
        info: galaxy10.Galaxy10Info,
        dist: distributed.Dist,
    ) -> _DataPlan:
        # On the CPU, batches are first shrunk by the uint8 resize (transforms.apply_params);
        # doing it once at load gives the same bytes in a fraction of the memory. On CUDA that
        # resize runs in float on the device, so the split keeps its full size there.
        shrink = pre if device.type == "cpu" else None
        zoom = zoom_bound(run.augment)
        n = len(split_io.read_split(paths.split, "train"))
        row, total = split_bytes(info, n, shrink, zoom)
        buffer = run.stream_buffer_mb * 2**20
        if not stream.wants_stream(run.stream, total, buffer, cuda=device.type == "cuda"):
            return cls(shrink, zoom, None)
        plan = stream.plan_for(run.stream_buffer_mb, row, run.batch_size, n, dist.world)
        return cls(shrink, zoom, plan)

    def load(self, paths: TrainPaths, device: torch.device) -> tuple[Split, Split]:
        """The train split (on ``device`` when it fits there) and the val split (CPU)."""
        if self.plan is not None:
            train = stream_split(
                paths.data, paths.split, "train", self.plan, self.shrink, self.zoom
            )
            # val is scored front to back, a block at a time: a window of one (2 blocks held)
            one = dataclasses.replace(self.plan, window=1)
            val = stream_split(paths.data, paths.split, "val", one, self.shrink)
            return train, val
        train = place_split(
            load_split(paths.data, paths.split, "train", self.shrink, self.zoom), device
        )
        val = load_split(paths.data, paths.split, "val", self.shrink)  # evaluated without zoom
        return train, val


def _fit_or_close(
    mlf: tracking.MlflowSink | None,
    model: torch.nn.Module,
    train: Split,
    val: Split,
    spec: RunSpec,
    device: torch.device,
    sinks: list,
    dist: distributed.Dist,
) -> list[dict]:
    """:func:`fit`'s history; when it raises, the MLflow run (if any) is closed KILLED
    (interrupted) or FAILED (diverged, or a runtime error) before the error goes on."""
    try:
        return fit(model, train, val, spec, device, sinks, dist=dist)
    except TrainingInterrupted:
        if mlf:
            mlf.finish("KILLED")
        raise
    except (TrainingDiverged, RuntimeError):
        if mlf:
            mlf.finish("FAILED")
        raise


def _close_finished(mlf: tracking.MlflowSink, paths: TrainPaths, config: dict) -> list[int]:
    """Log the run's files to MLflow and close it FINISHED; returns the epochs MLflow never
    received (logged as a warning: history.csv has them all)."""
    # No checkpoint here: the resumable state (optimizer included) lives in models/ under
    # DVC, and `select` logs the chosen epoch's weights as the run's MLflow model.
    mlf.log_artifact(paths.results / "history.csv")
    mlf.log_artifact(paths.source)
    mlf.log_dict(config, "config.json")
    missing_epochs = mlf.finish("FINISHED")
    if missing_epochs:
        log.warning("MLflow never received epochs %s; history.csv has them all", missing_epochs)
    return missing_epochs
