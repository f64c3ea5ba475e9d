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
from deepgal.inference import load_model, run_on_file
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

    device = pick_device(base.device)
    model, pre, _ = load_model(json.loads(args.selection.read_text())["checkpoint"], device)
    labels = galaxy10.read_labels(args.data)
    feats, index, split = [], [], []
    t0 = time.perf_counter()
    for name in split_io.SPLITS:
        idx = split_io.read_split(args.split, name)
        feats.append(run_on_file(model, args.data, pre, device, idx, cfg.batch_size,
                                 features=True))
        index.append(idx)
        split.append(np.full(len(idx), name, dtype="<U5"))
    index_all = np.concatenate(index)
    seconds = time.perf_counter() - t0
    log.info("%d embeddings of dim %d in %.1f s (%.0f images/s)", len(index_all),
             model.feature_dim, seconds, len(index_all) / max(seconds, 1e-9))
    buf = io.BytesIO()
    np.savez(buf, features=np.concatenate(feats).astype(np.float32), index=index_all,
             label=labels[index_all], split=np.concatenate(split))
    atomic_write_bytes(args.out, buf.getvalue())
    return 0


if __name__ == "__main__":
    stage.run(main)
