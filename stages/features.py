"""Stage features@<variant>: penultimate-layer embeddings of every split, with index and label."""
from __future__ import annotations

import argparse
import io
import json
import logging
import time
from pathlib import Path

import numpy as np

from deepgal import config, stage
from deepgal.data import galaxy10, split as split_io
from deepgal.inference import load_model
from deepgal.inference.source import run_on_file
from deepgal.utils import atomic_write_bytes, pick_device

log = logging.getLogger("features")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--selection", type=Path, required=True, help="results/<variant>/selection.json")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="results/<variant>/features.npz")
    args = p.parse_args()
    base, cfg = config.load_section("base"), config.load_section("features")

    galaxy10.validate(args.data)  # a bad file fails here, before a model is loaded
    labels = galaxy10.read_labels(args.data)
    splits = {name: split_io.read_split(args.split, name) for name in split_io.SPLITS}
    device = pick_device(base.device)
    model, pre, _ = load_model(json.loads(args.selection.read_text())["checkpoint"], device)
    t0 = time.perf_counter()
    # One pass over the file for all three splits: each row is read once, in file order.
    feats = run_on_file(model, args.data, pre, device, splits, cfg.batch_size,
                        output="features", desc="features")
    seconds = time.perf_counter() - t0
    index = np.concatenate(list(splits.values()))
    log.info("%d embeddings of dim %d in %.1f s (%.0f images/s)", len(index), model.feature_dim,
             seconds, len(index) / max(seconds, 1e-9))
    buf = io.BytesIO()
    np.savez(buf, features=np.concatenate(list(feats.values())), index=index, label=labels[index],
             split=np.concatenate([np.full(len(v), k, dtype="<U5") for k, v in splits.items()]))
    atomic_write_bytes(args.out, buf.getvalue())
    return 0


if __name__ == "__main__":
    stage.run(main)
