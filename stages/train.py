"""Stage train@<variant>: train one model variant, checkpoint it, log every epoch to DVC + MLflow."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import torch

from deepgal import checkpoint as ckpt_io
from deepgal import config, stage, tracking
from deepgal.data import galaxy10, split as split_io
from deepgal.models import build_model
from deepgal.training import (RunSpec, Split, TrainingDiverged, TrainingInterrupted, config_dict,
                              fit)
from deepgal.transforms import Augment, Preprocess
from deepgal.utils import pick_device, seed_everything, write_json

log = logging.getLogger("train")


def load_split(data: Path, split_dir: Path, name: str) -> Split:
    idx = split_io.read_split(split_dir, name)
    images = torch.from_numpy(galaxy10.read_images(data, idx))  # (N, H, W, 3) uint8, no copy
    labels = torch.from_numpy(galaxy10.read_labels(data)[idx])
    return Split(images, labels)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", required=True)
    p.add_argument("--data", type=Path, required=True, help="Galaxy10-layout HDF5 file")
    p.add_argument("--source", type=Path, required=True, help="source.json from download")
    p.add_argument("--split", type=Path, required=True, help="folder written by the split stage")
    p.add_argument("--out", type=Path, required=True, help="models/<variant>: checkpoints, run id")
    p.add_argument("--results", type=Path, required=True,
                   help="results/<variant>: history.csv and train.json")
    args = p.parse_args()

    params = config.load_params()
    base, train_cfg = config.load_section("base", params), config.load_section("train", params)
    variant = config.load_variant(args.variant, params)
    galaxy10.validate(args.data)
    stats = split_io.read_stats(args.split)
    source = json.loads(args.source.read_text())
    seed_everything(base.seed, base.deterministic)
    device = pick_device(base.device)

    pre = Preprocess(input_size=variant.input_size, crop=variant.crop,
                     mean=tuple(stats["mean"]), std=tuple(stats["std"]))
    aug = Augment(**dataclasses.asdict(train_cfg.augment))
    epochs = variant.epochs or train_cfg.epochs
    batch_size = variant.batch_size or train_cfg.batch_size
    lr = train_cfg.lr * variant.lr_scale
    cfg = config_dict(base=base, train=train_cfg, variant=variant, preprocess=pre.to_dict(),
                      data={"sha256": source["sha256"], "split_sizes": stats["sizes"]})
    fp = ckpt_io.fingerprint({k: v for k, v in cfg.items() if k != "base"} | {
        "seed": base.seed, "deterministic": base.deterministic})
    model = build_model(variant.model, galaxy10.NUM_CLASSES, variant.input_size, variant.pretrained)

    ckpt_dir = args.out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    run_file = ckpt_dir / "run.json"  # persists with the checkpoints, so a resume reuses the run
    prev = json.loads(run_file.read_text()) if run_file.exists() else {}
    files = tracking.FileSink(args.results / "history.csv", args.results / "train.json")
    sinks: list = [files]
    mlf = None
    if tracking.mlflow_enabled():
        uri = tracking.default_tracking_uri()
        tags = {"deepgal.variant": args.variant, "deepgal.model": variant.model,
                "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""),
                "git.commit": tracking.git_commit(), "data.source": source["source"],
                "data.sha256": source["sha256"], "deepgal.fingerprint": fp}
        flat = config.to_flat_dict(cfg)
        mlf = tracking.MlflowSink(uri, args.variant, tags, flat,
                                  run_id=prev.get("run_id") if prev.get("fingerprint") == fp
                                  else None)
        sinks.append(mlf)
        write_json(run_file, {"run_id": mlf.run_id, "fingerprint": fp})
    spec = RunSpec(cfg=train_cfg, epochs=epochs, batch_size=batch_size, lr=lr, preprocess=pre,
                   augment=aug, seed=base.seed, ckpt_dir=ckpt_dir, fingerprint=fp,
                   meta={"variant": args.variant, "model_name": variant.model, "config": cfg,
                         "class_names": list(galaxy10.CLASS_NAMES),
                         "mlflow_run_id": mlf.run_id if mlf else None})
    train, val = load_split(args.data, args.split, "train"), load_split(args.data, args.split, "val")
    log.info("%s: %d train / %d val images, %d epochs on %s", args.variant, len(train), len(val),
             epochs, device)
    try:
        history = fit(model, train, val, spec, device, sinks)
    except TrainingInterrupted as e:
        if mlf:
            mlf.finish("KILLED")
        print(f"error: {args.variant}: {e}", file=sys.stderr)
        return 130
    except TrainingDiverged as e:
        if mlf:
            mlf.finish("FAILED")
        print(f"error: {args.variant}: {e}", file=sys.stderr)
        return 1

    best = max(history, key=lambda m: m["val/accuracy"])
    metrics = {**{k: v for k, v in history[-1].items()}, "best/val_accuracy": best["val/accuracy"],
               "best/epoch": best["epoch"], "train_seconds": sum(m["seconds"] for m in history),
               "epochs": len(history)}
    gap: list[int] = []
    if mlf:
        mlf.log_artifact(args.results / "history.csv")
        mlf.log_artifact(ckpt_io.epoch_path(ckpt_dir, epochs), "checkpoints")
        mlf.log_artifact(args.source)
        mlf.log_dict(cfg, "config.json")
        gap = mlf.finish("FINISHED")
        if gap:
            log.warning("MLflow never received epochs %s; history.csv has them all", gap)
    metrics["tracking/undelivered_epochs"] = len(gap)
    files.write_metrics(metrics)
    write_json(args.out / "mlflow_run.json",
               {"run_id": mlf.run_id if mlf else None, "run_name": args.variant,
                "tracking_uri": tracking.redact(tracking.default_tracking_uri()) if mlf else None})
    return 0


if __name__ == "__main__":
    stage.run(main, extra_errors=(tracking.TrackingError,))
