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
from sklearn.metrics import f1_score

from deepgal.config import apply_overrides, load_params, resolve_variant
from deepgal.crossval import FoldResult, identical_images, run_folds, summarise, train_fold
from deepgal.data.labelled import check_folds, read_labelled
from deepgal.metrics import binomial_se

ROOT = Path(__file__).resolve().parents[1]
REAL700 = ROOT.parent / "shared" / "data" / "galaxy10_decals_real700"


def cross_validate(
    run,
    images,
    labels,
    folds: int,
    seed: int,
    max_folds: int | None,
    only: list[int] | None = None,
    probs: Path | None = None,
) -> dict:
    """Stratified, seeded ``folds``-fold CV (identical images kept in one fold) of the
    variant ``run`` with :mod:`deepgal.crossval`; only the first ``max_folds`` folds when
    set, or only the fold numbers in ``only`` (to run folds in parallel processes). With
    ``probs``, each fold's held-out rows and probabilities go to ``probs/fold<k>.npz`` (for
    :func:`ensemble`)."""
    y = labels.numpy()
    keep = list(range(max_folds)) if max_folds else None
    if only:
        keep = sorted(set(only) & set(keep)) if keep is not None else list(only)
    cpu0 = time.process_time()

    def report(r: FoldResult) -> None:
        acc = {n: float((p.argmax(1) == y[r.held]).mean()) for n, p in r.views.items()}
        print(
            f"fold {r.fold}: acc {acc['plain']:.3f} (tta {acc['tta']:.3f}), "
            f"{r.wall_s / 60:.1f} min",
            flush=True,
        )
        if probs:
            probs.mkdir(parents=True, exist_ok=True)
            np.savez(probs / f"fold{r.fold}.npz", held=r.held, wall_s=r.wall_s, **r.views)

    with tempfile.TemporaryDirectory(prefix="real_recipe_") as work:
        results = run_folds(
            y,
            folds,
            seed,
            lambda tr, te, k: train_fold(run, images, labels, tr, te, Path(work), k),
            groups=identical_images(images.numpy()),
            only=keep,
            on_fold=report,
        )
    cpu = time.process_time() - cpu0
    return _result(y, results, folds, cpu / len(results) / 60)


def _result(labels: np.ndarray, results: list[FoldResult], folds: int, cpu_min: float) -> dict:
    """The result of folds ``results``: counts, time per fold, the plain and TTA summaries."""
    out = {
        "folds": folds,
        "folds_run": len(results),
        "n": int(sum(len(r.held) for r in results)),
        "wall_min_per_fold": float(np.mean([r.wall_s for r in results])) / 60,
        "cpu_min_per_fold": cpu_min,
        "loadavg": os.getloadavg(),
    }
    for name in ("plain", "tta"):
        out[name] = summarise(labels, results, name, folds).to_dict()
    return out


def merge(parts: list[dict]) -> dict:
    """Results of disjoint fold subsets (``--only-folds`` in parallel processes, ``--json``)
    -> one result: fold accuracies concatenated, confusions summed, the pooled s.e. and
    macro-F1 from the summed confusion, time per fold averaged over the folds."""
    runs = [p["folds_run"] for p in parts]
    out = {
        "folds": parts[0]["folds"],
        "folds_run": sum(runs),
        "n": sum(p["n"] for p in parts),
        "wall_min_per_fold": float(
            np.average([p["wall_min_per_fold"] for p in parts], weights=runs)
        ),
        "cpu_min_per_fold": float(np.average([p["cpu_min_per_fold"] for p in parts], weights=runs)),
        "loadavg": parts[-1]["loadavg"],
    }
    for name in ("plain", "tta"):
        if not all(name in p for p in parts):
            continue
        cm = np.sum([np.asarray(p[name]["confusion"]) for p in parts], axis=0)
        accs = [a for p in parts for a in p[name]["fold_acc"]]
        truth = np.repeat(np.arange(len(cm)), cm.sum(1))
        pred = np.concatenate([np.repeat(np.arange(len(cm)), row) for row in cm])
        pooled = float(np.trace(cm) / cm.sum())
        out[name] = {
            "fold_acc": accs,
            "acc": float(np.mean(accs)),
            "spread": float(np.std(accs)),
            "se": binomial_se(pooled, int(cm.sum())),
            "macro_f1": float(f1_score(truth, pred, average="macro")),
            "confusion": cm.tolist(),
        }
    return out


def ensemble(labels: np.ndarray, dirs: list[Path], folds: int) -> dict:
    """Average the probabilities that runs on the same fold assignment saved (``--probs``),
    fold by fold and view by view -> one result as :func:`cross_validate` returns it. Only the
    folds every run has are scored; a fold whose held-out rows differ between runs is refused
    (different ``--folds``/``--seed``)."""
    common = set.intersection(*({p.name for p in d.glob("fold*.npz")} for d in dirs))
    if not common:
        raise SystemExit(f"error: no fold<k>.npz common to {', '.join(map(str, dirs))}")
    results = []
    for name in sorted(common):
        parts = [np.load(d / name) for d in dirs]
        held = parts[0]["held"]
        for d, p in zip(dirs, parts, strict=True):
            if not np.array_equal(p["held"], held):
                raise SystemExit(f"error: {d / name}: other held-out rows than {dirs[0] / name}")
        views = {v: np.mean([p[v] for p in parts], 0) for v in ("plain", "tta")}
        wall = float(sum(p["wall_s"] for p in parts))
        results.append(FoldResult(int(name[4:-4]), held, views, wall))
    return _result(labels, results, folds, float("nan"))  # the members' CPU time is not saved


def table_rows(label: str, r: dict) -> list[str]:
    folds = f"{r['folds_run']}/{r['folds']}"
    load = "/".join(f"{v:.1f}" for v in r["loadavg"])
    return [
        f"| {label}{' +TTA' if name == 'tta' else ''} | {folds} | "
        f"{100 * s['acc']:.1f} ± {100 * s['se']:.1f} | {100 * s['spread']:.1f} | "
        f"{s['macro_f1']:.3f} | {r['wall_min_per_fold']:.1f} | {r['cpu_min_per_fold']:.1f} | "
        f"{load} |"
        for name, s in ((n, r[n]) for n in ("plain", "tta") if n in r)
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=REAL700,
        help="folder of class folders (or Galaxy10-layout HDF5)",
    )
    ap.add_argument("--variant", help="variant name under variants: (required unless --merge)")
    ap.add_argument(
        "-S",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override, as dvc exp run -S (repeatable)",
    )
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="fold assignment seed")
    ap.add_argument("--max-folds", type=int, default=None, help="train only the first N folds")
    ap.add_argument("--only-folds", type=int, nargs="+", help="train only these fold numbers")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--label", default=None, help="row label (default: the overrides)")
    ap.add_argument("--json", type=Path, default=None, help="write the full result here")
    ap.add_argument("--probs", type=Path, default=None, help="save fold<k>.npz probabilities here")
    ap.add_argument(
        "--ensemble",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="score the average of these --probs folders (same folds); no training",
    )
    ap.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="print one row for these --json results of disjoint folds; no training",
    )
    args = ap.parse_args(argv)
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        _print_table(args.label or " + ".join(p.stem for p in args.merge), merge(parts))
        return
    if args.ensemble:
        _, labels, _ = read_labelled(args.data)
        result = ensemble(labels.astype("int64"), args.ensemble, args.folds)
        _print_table(args.label or "ensemble of " + " + ".join(map(str, args.ensemble)), result)
        return
    if not args.variant:
        ap.error("--variant is required (unless --merge)")
    torch.set_num_threads(args.threads)
    params = apply_overrides(load_params(args.params), args.set)
    run = resolve_variant(params, args.variant)
    images, labels, _ = read_labelled(args.data)
    check_folds(labels, args.folds, args.data)
    images, labels = torch.from_numpy(images), torch.from_numpy(labels.astype("int64"))
    print(
        f"{args.data}: {len(labels)} images; {run.model} {run.input_size}px crop {run.crop} "
        f"{run.epochs} ep lr {run.lr:g}",
        flush=True,
    )
    result = cross_validate(
        run, images, labels, args.folds, args.seed, args.max_folds, args.only_folds, args.probs
    )
    result["config"] = run.flat()
    result["overrides"] = args.set
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    _print_table(args.label or " ".join([args.variant, *args.set]), result)


def _print_table(label: str, result: dict) -> None:
    print(
        "| recipe | folds | CV acc % ± s.e. | spread | macro-F1 | wall min/fold | "
        "CPU min/fold | load avg |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for line in table_rows(label, result):
        print(line)


if __name__ == "__main__":
    main()
