"""Transfer of the pipeline's own models: every variant's *selected* checkpoint (the one
``select@`` chose, ``results/<variant>/selection.json``) scored on real galaxies, the variant
the report ranks best marked. This is what an outside check of ``dvc repro`` measures; it trains
nothing (``sim_to_real.py`` retrains with several seeds instead).

    python benchmarks/transfer_report.py          # the 50 shared real images (±7 points)
    python benchmarks/transfer_report.py --real Galaxy10_DECals.h5 --per-class 100 \\
        --half judge --exclude ../shared/data/galaxy10_decals_sample50.h5   # ±1.5 points

Prints a markdown table (accuracy ± binomial s.e., macro-F1 with its bootstrap 95 % interval)
and per-class recall; ``--json`` also writes every score.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from deepgal.data.galaxy10 import CLASS_NAMES
from deepgal.handoff import Selection, VariantMetrics, VariantPaths
from deepgal.report import report_row, sort_rows
from deepgal.score_on_set import judge_rows, score_checkpoint
from deepgal.utils import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "galaxy10_decals_sample50.h5"


def selected(repo: Path, variants: list[str]) -> dict[str, dict]:
    """Per variant: its selected checkpoint and its report row (to rank as the report does).
    Fails naming the missing file and what to run."""
    out = {}
    for v in variants:
        at = VariantPaths(v, repo / "models", repo / "results", repo / "reports")
        for path in (at.selection, at.metrics, at.eval_details):
            if not path.exists():
                raise SystemExit(f"{path}: missing; run `dvc repro` first (variant {v})")
        evaluated = json.loads(at.eval_details.read_text())
        sel = Selection.read(at.selection)
        if sel.checkpoint is None:
            raise SystemExit(f"{at.selection}: names no checkpoint; run `dvc repro select@{v}`")
        out[v] = {
            "checkpoint": repo / sel.checkpoint,
            "row": report_row(
                v,
                VariantMetrics.read(at.metrics).to_dict(),
                np.asarray(evaluated["val"]["confusion"]),
            ),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=ROOT, help="a repository after `dvc repro`")
    ap.add_argument("--real", type=Path, default=SHARED, help="labelled Galaxy10 file")
    ap.add_argument("--per-class", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--half", choices=["tune", "judge"])
    ap.add_argument("--exclude", type=Path, nargs="+", default=[])
    ap.add_argument("--variants", nargs="+", help="default: every variant in params.yaml")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not args.real.exists():
        raise SystemExit(
            f"{args.real}: no such file; the 50-image sample lives in "
            "../shared/data, the full file is data.url in params.yaml"
        )
    params = yaml.safe_load((args.repo / "params.yaml").read_text())
    variants = args.variants or list(params["variants"])
    models = selected(args.repo, variants)  # every input checked before any scoring
    rows, held = judge_rows(args.real, args.per_class, args.seed, args.half, args.exclude)
    ranked, unranked = sort_rows([m["row"] for m in models.values()])
    best = (ranked or unranked)[0]["variant"]
    learned = {r["variant"] for r in ranked}
    scores = {
        v: score_checkpoint(m["checkpoint"], args.real, rows, torch.device("cpu"))
        for v, m in models.items()
    }
    sample = (
        "every image"
        if held is None
        else (
            f"{args.per_class or 'all'} per class, seed {args.seed}"
            f"{', ' + args.half + ' half' if args.half else ''}, {held['excluded']} near-duplicates "
            f"of {', '.join(map(str, args.exclude)) or 'nothing'} skipped"
        )
    )
    print(f"{args.real}: {len(rows)} images ({sample})\n")
    print("| variant | selected epoch | synthetic val acc % | real acc % | real macro-F1 [95%] |")
    print("|---|---:|---:|---:|---:|")
    for v in [r["variant"] for r in ranked + unranked]:
        s, r = scores[v], models[v]["row"]
        name = (
            f"**{v}** (pipeline's best)"
            if v == best
            else (v if v in learned else f"{v} (not learned)")
        )
        print(
            f"| {name} | {s['epoch']} | {100 * r['val_accuracy']:.1f} | "
            f"{100 * s['accuracy']:.1f} ± {100 * s['accuracy_se']:.1f} | {s['macro_f1']:.3f} "
            f"[{s['macro_f1_ci95'][0]:.3f}, {s['macro_f1_ci95'][1]:.3f}] |"
        )
    order = [r["variant"] for r in ranked + unranked]
    print("\nrecall on the real images, % (support in brackets):\n")
    print("| class | " + " | ".join(order) + " |\n|---|" + "---:|" * len(order))
    for c in CLASS_NAMES:
        k = scores[order[0]]["support"][c]
        print(
            f"| {c} ({k}) | "
            + " | ".join(f"{100 * scores[v]['recall'][c]:.0f}" for v in order)
            + " |"
        )
    if args.json:
        atomic_write_text(
            args.json, json.dumps({"best": best, "sample": held, "scores": scores}, indent=1)
        )


if __name__ == "__main__":
    main()
