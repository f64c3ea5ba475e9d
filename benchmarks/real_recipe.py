"""Stratified k-fold CV of one training recipe on a folder of real labelled galaxies.

The recipe is a pipeline variant: ``params.yaml`` plus ``-S key=value`` overrides exactly as
``dvc exp run -S`` takes them (``train.*``, ``train.augment.*``, ``variants.<name>.*``), resolved
by :func:`deepgal.config.resolve_variant`. Each fold trains with the library's own loop
(:func:`deepgal.training.fit`: optimiser, schedule, EMA, mixup, augmentation as the train stage
runs them), and the final weights (the EMA's when ``ema`` > 0; no epoch is picked on the
held-out fold) are scored on the held-out fold by :func:`deepgal.inference.run_model`, plain
and with the 8 dihedral views averaged (``evaluate.tta``), with :mod:`deepgal.metrics`.

Prints one markdown row per scoring (plain, TTA): mean fold accuracy ± the binomial s.e. of
the pooled accuracy, the spread (std) over folds, pooled macro-F1, minutes of wall and process
CPU time per fold, and the load average (the machine is shared).

    python benchmarks/real_recipe.py --variant customnet --folds 5 --seed 0
    python benchmarks/real_recipe.py --variant r18 -S variants.r18.model=resnet18 \
        -S variants.r18.input_size=64 -S variants.r18.epochs=20 --max-folds 2
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from deepgal.config import apply_overrides, load_params, resolve_variant
from deepgal.data.galaxy10 import CLASS_NAMES, NUM_CLASSES
from deepgal.data.labelled import check_folds, read_labelled
from deepgal.inference import run_model
from deepgal.metrics import binomial_se, score
from deepgal.models import build_model
from deepgal.training import RunSpec, Split, fit
from deepgal.transforms import Preprocess, presize, zoom_bound
from deepgal.utils import seed_everything

ROOT = Path(__file__).resolve().parents[1]
REAL700 = ROOT.parent / "shared" / "data" / "galaxy10_decals_real700"


def train_fold(run, images: torch.Tensor, labels: torch.Tensor, tr: np.ndarray,
               te: np.ndarray, work: Path, fold: int) -> tuple[dict, float]:
    """Train on rows ``tr`` with the library's loop; returns ({"plain"|"tta": (n, C) probs},
    wall seconds). ``images`` (N, H, W, 3) uint8, ``labels`` (N,) int64."""
    x = images[tr].double()
    # The train stage normalises with its train split's statistics (pixel/255): same here.
    mean = tuple((x.mean((0, 1, 2)) / 255).tolist())
    std = tuple((x.std((0, 1, 2)) / 255).tolist())
    del x
    pre = Preprocess(input_size=run.input_size, crop=run.crop, mean=mean, std=std)
    train = Split(presize(images[tr], pre, zoom_bound(run.augment)), labels[tr])
    held = Split(presize(images[te], pre), labels[te])
    seed_everything(run.seed, run.deterministic)
    model = build_model(run.model, NUM_CLASSES, run.input_size, run.pretrained)
    ckpt = work / f"fold{fold}"
    spec = RunSpec(cfg=run, preprocess=pre, ckpt_dir=ckpt, fingerprint=f"fold{fold}",
                   meta={"variant": run.variant, "model_name": run.model})
    t0 = time.perf_counter()
    fit(model, train, held, spec, torch.device("cpu"), sinks=[], resume=False)
    wall = time.perf_counter() - t0
    # last.pt's "model" is what a checkpoint says to use: the EMA when ema > 0.
    state = torch.load(ckpt / "last.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    probs = {name: run_model(model, held.images, pre, torch.device("cpu"), tta=tta,
                             precision=run.precision, channels_last=run.channels_last)
             for name, tta in (("plain", False), ("tta", True))}
    return probs, wall


def cross_validate(run, images, labels, folds: int, seed: int, max_folds: int | None,
                   only: list[int] | None = None) -> dict:
    """Stratified ``folds``-fold CV (seeded); only the first ``max_folds`` folds when set, or
    only the folds numbered ``only`` (to run folds in parallel processes)."""
    y = labels.numpy()
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(y, y))
    splits = splits[:max_folds] if max_folds else splits
    splits = [splits[k] for k in only] if only else splits
    out = {"plain": [], "tta": []}
    walls, scored = [], []
    cpu0 = time.process_time()
    with tempfile.TemporaryDirectory(prefix="real_recipe_") as work:
        for k, (tr, te) in enumerate(splits):
            probs, wall = train_fold(run, images, labels, tr, te, Path(work), k)
            walls.append(wall)
            scored.append(te)
            for name in out:
                out[name].append(probs[name])
            acc = {n: float((p[-1].argmax(1) == y[te]).mean()) for n, p in out.items()}
            print(f"fold {k}: acc {acc['plain']:.3f} (tta {acc['tta']:.3f}), "
                  f"{wall / 60:.1f} min", flush=True)
    cpu = time.process_time() - cpu0
    rows = np.concatenate(scored)
    result = {"folds": folds, "folds_run": len(splits), "n": int(len(rows)),
              "wall_min_per_fold": float(np.mean(walls)) / 60,
              "cpu_min_per_fold": cpu / len(splits) / 60, "loadavg": os.getloadavg()}
    for name, parts in out.items():
        accs = [float((p.argmax(1) == y[te]).mean()) for p, te in zip(parts, scored)]
        pooled = score(y[rows], np.concatenate(parts))
        result[name] = {"fold_acc": accs, "acc": float(np.mean(accs)),
                        "spread": float(np.std(accs)),
                        "se": binomial_se(pooled["accuracy"], len(rows)),
                        "macro_f1": pooled["macro_f1"],
                        "recall": {c: pooled["per_class"][c]["recall"] for c in CLASS_NAMES},
                        "confusion": pooled["confusion"]}
    return result


def table_rows(label: str, r: dict) -> list[str]:
    folds = f"{r['folds_run']}/{r['folds']}"
    load = "/".join(f"{v:.1f}" for v in r["loadavg"])
    return [f"| {label}{' +TTA' if name == 'tta' else ''} | {folds} | "
            f"{100 * s['acc']:.1f} ± {100 * s['se']:.1f} | {100 * s['spread']:.1f} | "
            f"{s['macro_f1']:.3f} | {r['wall_min_per_fold']:.1f} | {r['cpu_min_per_fold']:.1f} | "
            f"{load} |" for name, s in ((n, r[n]) for n in ("plain", "tta"))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REAL700,
                    help="folder of class folders (or Galaxy10-layout HDF5)")
    ap.add_argument("--variant", required=True, help="variant name under variants:")
    ap.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                    help="params override, as dvc exp run -S (repeatable)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="fold assignment seed")
    ap.add_argument("--max-folds", type=int, default=None, help="train only the first N folds")
    ap.add_argument("--only-folds", type=int, nargs="+", help="train only these fold numbers")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--label", default=None, help="row label (default: the overrides)")
    ap.add_argument("--json", type=Path, default=None, help="write the full result here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = apply_overrides(load_params(args.params), args.set)
    run = resolve_variant(params, args.variant)
    images, labels, _ = read_labelled(args.data)
    check_folds(labels, args.folds, args.data)
    images, labels = torch.from_numpy(images), torch.from_numpy(labels.astype("int64"))
    print(f"{args.data}: {len(labels)} images; {run.model} {run.input_size}px crop {run.crop} "
          f"{run.epochs} ep lr {run.lr:g}", flush=True)
    result = cross_validate(run, images, labels, args.folds, args.seed, args.max_folds,
                            args.only_folds)
    result["config"] = run.flat()
    result["overrides"] = args.set
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print("| recipe | folds | CV acc % ± s.e. | spread | macro-F1 | wall min/fold | "
          "CPU min/fold | load avg |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for line in table_rows(args.label or " ".join([args.variant, *args.set]), result):
        print(line)


if __name__ == "__main__":
    main()
