"""The ``deepgal`` command: what the DAG does not cover.

    deepgal info FILE.h5                                    validate and summarise a file
    deepgal evaluate --checkpoint CKPT --data FILE.h5 [--json]
    deepgal predict  --checkpoint CKPT --data FILE.h5 --out preds.csv
    deepgal ui [--port 5000]                                MLflow UI on 127.0.0.1, training view

A checkpoint carries its own preprocessing, so any Galaxy10-layout file of any image size works.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from .data import galaxy10


def cmd_info(args) -> int:
    info = galaxy10.validate(args.file)
    if args.json:
        print(json.dumps(info.as_dict()))
        return 0
    print(f"{info.path}: {info.n_images} images of {info.height}x{info.width} px, "
          f"optional columns: {', '.join(info.optional_keys) or 'none'}")
    for name, count in zip(galaxy10.CLASS_NAMES, info.class_counts):
        print(f"  {count:6d}  {name}")
    return 0


def _scored(args):
    from .inference import load_model
    from .inference.source import run_on_file
    from .utils import pick_device

    info = galaxy10.validate(args.data)  # before loading a model: bad input fails first
    device = pick_device(args.device)
    model, pre, ckpt = load_model(args.checkpoint, device)
    probs = run_on_file(model, args.data, pre, device, np.arange(info.n_images),
                        batch_size=args.batch_size)
    return probs, ckpt


def cmd_evaluate(args) -> int:
    from .metrics import score

    probs, ckpt = _scored(args)
    result = score(galaxy10.read_labels(args.data), probs)
    out = {"checkpoint": str(args.checkpoint), "data": str(args.data), "n": result["n"],
           "accuracy": result["accuracy"], "macro_f1": result["macro_f1"],
           "recall": {c: m["recall"] for c, m in result["per_class"].items()},
           "confusion": result["confusion"], "variant": ckpt.get("variant")}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{args.data}: {out['n']} images, accuracy {out['accuracy']:.3f}, "
          f"macro-F1 {out['macro_f1']:.3f} ({ckpt.get('variant')}, epoch {ckpt.get('epoch')})")
    for c, r in out["recall"].items():
        print(f"  recall {r:6.3f}  {c}")
    return 0


def cmd_predict(args) -> int:
    from .utils import atomic_write_text

    probs, _ = _scored(args)
    df = pd.DataFrame(probs, columns=[f"p_{i}" for i in range(probs.shape[1])])
    df.insert(0, "index", np.arange(len(df)))
    df.insert(1, "predicted", probs.argmax(1))
    df.insert(2, "predicted_name", [galaxy10.CLASS_NAMES[i] for i in probs.argmax(1)])
    atomic_write_text(args.out, df.to_csv(index=False, float_format="%.6f"))
    print(f"wrote {len(df)} predictions to {args.out}")
    return 0


def cmd_ui(args) -> int:
    """Start a light MLflow server on the repo's store and print the training-view link."""
    from .tracking import EXPERIMENT_DEFAULT, default_tracking_uri, redact

    uri = default_tracking_uri()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--host", args.host, "--port", str(args.port), "--workers", "1"]
    proc = subprocess.Popen(cmd, env=env)
    base = f"http://{args.host}:{args.port}"
    exp_id = None
    for _ in range(60):  # the server takes a few seconds to start
        try:
            url = (f"{base}/api/2.0/mlflow/experiments/get-by-name?"
                   f"experiment_name={EXPERIMENT_DEFAULT}")
            with urllib.request.urlopen(url, timeout=2) as r:
                exp_id = json.load(r)["experiment"]["experiment_id"]
            break
        except urllib.error.HTTPError:
            break  # up, but no experiment yet
        except (urllib.error.URLError, OSError):
            if proc.poll() is not None:
                print(f"error: mlflow server exited ({proc.returncode})", file=sys.stderr)
                return 1
            time.sleep(1)
    print(f"MLflow UI on {redact(uri)}:")
    print(f"  {base}/#/experiments/{exp_id}/runs?workflowType=machine_learning" if exp_id
          else f"  {base}  (no '{EXPERIMENT_DEFAULT}' runs yet: run `dvc repro` first)")
    print("Select the variants' runs, then Chart view to compare their accuracy curves. Ctrl-C stops.")
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepgal", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("info", help="validate and summarise a Galaxy10-layout file")
    s.add_argument("file", type=Path)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)
    for name, func, help_ in (("evaluate", cmd_evaluate, "score a checkpoint on a labelled file"),
                              ("predict", cmd_predict, "per-image class probabilities to CSV")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--checkpoint", type=Path, required=True)
        s.add_argument("--data", type=Path, required=True)
        s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
        s.add_argument("--batch-size", type=int, default=256)
        if name == "evaluate":
            s.add_argument("--json", action="store_true", help="print exactly one JSON object")
        else:
            s.add_argument("--out", type=Path, required=True)
        s.set_defaults(func=func)
    s = sub.add_parser("ui", help="MLflow UI for this repository's runs (127.0.0.1)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=5000)
    s.set_defaults(func=cmd_ui)
    return p


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (galaxy10.Galaxy10FormatError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
