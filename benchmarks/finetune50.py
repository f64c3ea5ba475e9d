"""One row of docs/experiments/finetune50.md: the finetune stage's CV of one variant's selected
checkpoint on the 50 real galaxies, with ``-S key=value`` overrides of the finetune section.

    python benchmarks/finetune50.py --variant smallnet -S freeze=backbone -S augment.scale=0.2

Prints one JSON line (CV accuracy, s.e., spread, macro-F1, TTA accuracy, temperature, minutes).
The adapted checkpoint goes to a temporary folder; nothing in the repository is written.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
import yaml

from deepgal import config
from deepgal.adapt.run import finetune_checkpoint, load_set

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared/data/galaxy10_decals_sample50.h5"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="smallnet")
    p.add_argument(
        "--models",
        type=Path,
        default=REPO.parent / "main/models",
        help="folder of <variant>/selected.pt (read only)",
    )
    p.add_argument("--data", type=Path, default=SAMPLE)
    p.add_argument("--seed", type=int, help="base.seed (folds, initial draws); default params'")
    p.add_argument(
        "-S",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override finetune.<KEY> (dotted for augment.*)",
    )
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    params = config.load_params(REPO / "params.yaml")
    section = params["finetune"]
    for item in args.sets:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = section
        for k in parents:
            node = node[k]
        node[leaf] = yaml.safe_load(value)
    if args.seed is not None:
        params["base"]["seed"] = args.seed
    ft = config.load_section("finetune", params)
    run = config.resolve_variant(params, args.variant)
    data = load_set(args.data, ft.folds)
    with tempfile.TemporaryDirectory() as tmp:
        rep = finetune_checkpoint(
            args.models / args.variant / "selected.pt",
            data,
            ft,
            run,
            Path(tmp) / "finetuned.pt",
            torch.device("cpu"),
        )
    cv, tta = rep["cv"]["plain"], rep["cv"]["tta"]
    print(
        json.dumps(
            {
                "variant": args.variant,
                "sets": args.sets,
                "seed": run.seed,
                "acc": round(cv["acc"], 3),
                "se": round(cv["se"], 3),
                "spread": round(cv["spread"], 3),
                "macro_f1": round(cv["macro_f1"], 3),
                "tta": round(tta["acc"], 3),
                "temperature": round(rep["temperature"], 3),
                "minutes": round(rep["minutes"], 2),
                "load": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
