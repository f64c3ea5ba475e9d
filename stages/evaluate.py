"""Stage evaluate@<variant>: accuracy, macro-F1, per-class scores and confusion on val and test."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from deepgal import config, stage, tracking
from deepgal.data import galaxy10, split as split_io
from deepgal.inference import load_model, run_on_file, score
from deepgal.plots import plot_confusion
from deepgal.utils import pick_device, write_json

log = logging.getLogger("evaluate")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", required=True)
    p.add_argument("--selection", type=Path, required=True, help="results/<variant>/selection.json")
    p.add_argument("--run", type=Path, required=True, help="models/<variant>/mlflow_run.json")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="results/<variant>/eval.json")
    p.add_argument("--plots", type=Path, required=True, help="folder for <split>.png confusion matrices")
    args = p.parse_args()
    base = config.load_section("base")
    batch = config.load_section("features").batch_size

    device = pick_device(base.device)
    sel = json.loads(args.selection.read_text())
    model, pre, _ = load_model(sel["checkpoint"], device)
    labels = galaxy10.read_labels(args.data)
    result, pngs = {}, []
    for name in ("val", "test"):
        idx = split_io.read_split(args.split, name)
        if len(idx) == 0:
            continue  # split.test = 0 reproduces the report: no test split
        probs = run_on_file(model, args.data, pre, device, idx, batch_size=batch)
        result[name] = score(labels[idx], probs)
        png = args.plots / f"{name}.png"
        plot_confusion(result[name]["confusion"], galaxy10.CLASS_NAMES,
                       f"{args.variant} {name} (epoch {sel['epoch']})", png)
        pngs.append(png)
        log.info("%s %s: accuracy %.3f macro-F1 %.3f", args.variant, name,
                 result[name]["accuracy"], result[name]["macro_f1"])
    result["epoch"] = sel["epoch"]
    write_json(args.out, result)
    sink = tracking.open_run(args.run)
    if sink:
        flat = {f"{s}/{k}": result[s][k] for s in ("val", "test") if s in result
                for k in ("accuracy", "macro_f1")}
        flat |= {f"{s}/recall/{c}": m["recall"] for s in ("val", "test") if s in result
                 for c, m in result[s]["per_class"].items()}
        sink.log_metrics({f"eval/{k}": v for k, v in flat.items()})
        for f in [args.out, *pngs]:
            sink.log_artifact(f, "evaluate")
    return 0


if __name__ == "__main__":
    stage.run(main, extra_errors=(tracking.TrackingError,))
