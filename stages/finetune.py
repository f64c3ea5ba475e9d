"""Stage finetune@<variant>: adapt the selected checkpoint to the labelled set at finetune.data.

k-fold cross-validation on the set (each fold starts from the selected weights and is scored
only on its held-out images) estimates what the adapted model reads on galaxies it never saw;
a temperature is fitted on those out-of-fold logits; then the model is fine-tuned on every
image and written, calibrated, in selected.pt's format (``deepgal evaluate/predict
--checkpoint`` and the MLflow pyfunc load it). The set is read and checked before any training.
The nested MLflow run under the variant's run also holds the adapted model (pyfunc).
With finetune.data a folder holding only README.md (the default ``finetune/``) it is off: the
checkpoint is the selected one, linked, and nothing heavy is imported.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from deepgal import config, stage, tracking
from deepgal.adapt import is_off, write_off
from deepgal.utils import write_json

log = logging.getLogger("finetune")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", required=True)
    p.add_argument("--selected", type=Path, required=True, help="models/<variant>/selected.pt")
    p.add_argument("--run", type=Path, required=True, help="models/<variant>/mlflow_run.json")
    p.add_argument("--out", type=Path, required=True, help="models/<variant>/finetuned.pt")
    p.add_argument("--report", type=Path, required=True,
                   help="results/<variant>/finetune.json")
    args = p.parse_args()
    params = config.load_params()
    ft = config.load_section("finetune", params)
    if is_off(ft.data):
        write_json(args.report, write_off(args.selected, args.out, ft.data))
        log.info("%s: off (%s holds only its README)", args.variant, ft.data)
        return 0
    from deepgal.adapt.run import finetune_checkpoint, load_set  # torch: only when on
    from deepgal.utils import pick_device

    data = load_set(ft.data, ft.folds)  # every image checked before any training
    run = config.resolve_variant(params, args.variant)
    device = pick_device(config.load_section("base", params).device)
    report = finetune_checkpoint(args.selected, data, ft, run, args.out, device)
    write_json(args.report, report)
    cv = report["cv"]["plain"]
    log.info("%s: %d-fold CV accuracy %.3f +- %.3f on %d images; temperature %.3f; %s",
             args.variant, ft.folds, cv["acc"], cv["se"], cv["n"], report["temperature"],
             args.out)
    child = tracking.log_nested_run(
        args.run, f"{args.variant}-finetune", "finetune", config.to_flat_dict(ft),
        {"finetune/fold_accuracy": cv["fold_acc"]},
        {"finetune/cv_accuracy": cv["acc"], "finetune/cv_se": cv["se"],
         "finetune/macro_f1": cv["macro_f1"], "finetune/temperature": report["temperature"]},
        {"source": "finetune", "sha256": data.digest, "path": str(data.path),
         "image_size": list(data.images.shape[1:3]), "n_images": len(data.labels)},
        args.report)
    if child is not None:  # the adapted model, loadable with mlflow.pyfunc (calibrated)
        from deepgal.mlflow_model import log_checkpoint_model

        log_checkpoint_model(tracking.attach(child), args.out, ft.epochs,
                             data.images[:2].numpy())
    return 0


if __name__ == "__main__":
    stage.run(main, extra_errors=(tracking.TrackingError,))
