"""What stage ``finetune@<variant>`` does, as one call: :func:`finetune_variant`.

Off (``finetune.data`` a folder holding only README.md, or the variant not in
``finetune.variants``): the selected checkpoint is linked to the adapted checkpoint's path and
``finetune.json`` says so; nothing heavy is imported. On: the
set is read and checked before any training, the checkpoint is cross-validated, calibrated and
fine-tuned (:func:`deepgal.adapt.run.finetune_checkpoint`), ``finetune.json`` is written, then
MLflow gets a run nested under the variant's run (settings, the per-fold accuracies as a
curve, the set as a dataset input, the adapted model for ``mlflow.pyfunc``), best effort.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .. import tracking
from ..config import BaseCfg, FinetuneCfg, RunCfg, to_flat_dict
from ..utils import write_json
from . import is_off, write_off

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetunePaths:
    selected: Path  # models/<v>/selected.pt, read
    run: Path  # models/<v>/mlflow_run.json, read
    out: Path  # models/<v>/finetuned.pt, written
    report: Path  # results/<v>/finetune.json, written


def finetune_variant(
    variant: str, paths: FinetunePaths, ft: FinetuneCfg, run: RunCfg, base: BaseCfg
) -> dict:
    """Fine-tune (or, off, link) ``variant``'s selected checkpoint; returns finetune.json's
    content. Raises LabelledError naming the set before any training when it is unusable."""
    if is_off(ft.data):
        report = write_off(paths.selected, paths.out, ft.data)
        write_json(paths.report, report)
        log.info("%s: off (%s holds only its README)", variant, ft.data)
        return report
    if ft.variants is not None and variant not in ft.variants:
        why = (
            f"fine-tuning is off for {variant}: finetune.variants lists only "
            f"{', '.join(ft.variants)}; the checkpoint is the selected one, unchanged"
        )
        report = write_off(paths.selected, paths.out, ft.data, why)
        write_json(paths.report, report)
        log.info("%s: not in finetune.variants", variant)
        return report
    from ..utils import pick_device
    from .run import finetune_checkpoint, load_set  # torch: only when on

    data = load_set(ft.data, ft.folds)
    report = finetune_checkpoint(paths.selected, data, ft, run, paths.out, pick_device(base.device))
    write_json(paths.report, report)
    cv = report["cv"]["plain"]
    log.info(
        "%s: %d-fold CV accuracy %.3f +- %.3f on %d images; temperature %.3f; %s",
        variant,
        ft.folds,
        cv["acc"],
        cv["se"],
        cv["n"],
        report["temperature"],
        paths.out,
    )
    _track(variant, paths, ft, data, report)
    return report


def _track(variant: str, paths: FinetunePaths, ft: FinetuneCfg, data, report: dict) -> None:
    """The nested MLflow run and its model; silent when MLflow is off or away."""
    cv = report["cv"]["plain"]
    child = tracking.log_nested_run(
        paths.run,
        f"{variant}-finetune",
        "finetune",
        to_flat_dict(ft),
        {"finetune/fold_accuracy": cv["fold_acc"]},
        {
            "finetune/cv_accuracy": cv["acc"],
            "finetune/cv_se": cv["se"],
            "finetune/macro_f1": cv["macro_f1"],
            "finetune/temperature": report["temperature"],
        },
        {
            "source": "finetune",
            "sha256": data.digest,
            "path": str(data.path),
            "image_size": list(data.images.shape[1:3]),
            "n_images": len(data.labels),
        },
        paths.report,
    )
    if child is not None:  # the adapted model, loadable with mlflow.pyfunc (calibrated)
        from ..mlflow_model import log_checkpoint_model

        log_checkpoint_model(tracking.attach(child), paths.out, ft.epochs, data.images[:2].numpy())
