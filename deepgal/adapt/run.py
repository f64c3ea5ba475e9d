"""Fine-tune a selected checkpoint on a small labelled set, cross-validated and calibrated.

:func:`finetune_checkpoint` is the whole job: read the set (one reader,
:func:`deepgal.data.labelled.read_labelled`), check it fits the folds, run the k-fold CV
(:mod:`deepgal.crossval`; each fold starts from the selected weights and is scored on its
held-out images only), fit a temperature on the pooled out-of-fold logits, fine-tune on every
image and write the result in the selected checkpoint's format, calibrated. The checkpoint's
own :class:`~deepgal.transforms.Preprocess` (input size, crop, mean/std) is used throughout:
the model reads the new galaxies as it read the ones it learned from.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint as ckpt_io
from ..calibration import Calibration, before_after
from ..config import FinetuneCfg, RunCfg
from ..crossval import identical_images, run_folds, summarise
from ..data.galaxy10 import CLASS_NAMES, NUM_CLASSES
from ..data.labelled import check_folds, read_labelled, scan
from ..data.labelled_source import digest
from ..inference import run_model
from ..models import Net, build_model
from ..training import RunSpec, Split, fit
from ..transforms import Preprocess, presize, zoom_bound
from ..utils import seed_everything
from .freeze import FreezePlan, freeze

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledSet:
    """A checked labelled set: images (N, S, S, 3) uint8, labels (N,) int64, groups (N,)
    int64 (byte-identical images share one, so a fold never holds a copy of a training image),
    and what it is: path, kind ("hdf5" | "folder"), SHA-256 digest."""

    path: Path
    kind: str
    digest: str
    images: torch.Tensor
    labels: torch.Tensor
    groups: np.ndarray

    def summary(self) -> dict:
        counts = np.bincount(self.labels.numpy(), minlength=NUM_CLASSES)
        return {
            "path": str(self.path),
            "kind": self.kind,
            "sha256": self.digest,
            "n_images": len(self.labels),
            "image_size": list(self.images.shape[1:3]),
            "class_counts": {CLASS_NAMES[c]: int(n) for c, n in enumerate(counts) if n},
        }


def load_set(path: str | Path, folds: int) -> LabelledSet:
    """Read and check the set at ``path`` before any training: LabelledError naming the path
    for a missing/empty/misnamed/unreadable set or a class with fewer images than ``folds``."""
    images, labels, _ = read_labelled(path)
    if images.shape[1] != images.shape[2]:  # inference needs square frames: centre squares
        images, labels, _ = read_labelled(path, min(images.shape[1:3]))
    groups = identical_images(images)
    check_folds(labels, folds, path, groups, key="finetune.folds")
    return LabelledSet(
        Path(path),
        scan(path).kind,
        digest(path),
        torch.from_numpy(images),
        torch.from_numpy(labels.astype(np.int64)),
        groups,
    )


def finetune_run(run: RunCfg, ft: FinetuneCfg, pre: Preprocess) -> RunCfg:
    """The variant's resolved config with the fine-tuning recipe in place of training's: the
    checkpoint's input size and crop, ``finetune``'s epochs, lr, optimiser, batch, warm-up,
    smoothing, EMA, mixup and augmentation; one checkpoint at the end, no CutMix, one process."""
    return dataclasses.replace(
        run,
        input_size=pre.input_size,
        crop=pre.crop,
        pretrained="none",
        epochs=ft.epochs,
        lr=ft.lr,
        optimizer=ft.optimizer,
        weight_decay=ft.weight_decay,
        batch_size=ft.batch_size,
        warmup_epochs=ft.warmup_epochs,
        schedule="cosine",
        label_smoothing=ft.label_smoothing,
        ema=ft.ema,
        mixup=ft.mixup,
        cutmix=0.0,
        epoch_images=None,
        checkpoint_every=ft.epochs,
        nproc=1,
        compile=False,
        augment=ft.augment,
    )


def adapt(
    model_name: str,
    init: dict,
    pre: Preprocess,
    run: RunCfg,
    plan: FreezePlan | str,
    images: torch.Tensor,
    labels: torch.Tensor,
    work: Path,
    device: torch.device,
) -> Net:
    """A ``model_name`` Net started from state dict ``init``, trained with
    :func:`deepgal.training.fit` on images (n, H, W, 3) uint8 / labels (n,) int64 in the
    phases of ``plan`` (a :class:`FreezePlan`, or a freeze mode for one phase); the final
    weights (the EMA's when ``run.ema`` > 0), in eval mode, hooks removed."""
    plan = FreezePlan(plan) if isinstance(plan, str) else plan
    seed_everything(run.seed, run.deterministic)
    model = build_model(model_name, NUM_CLASSES, pre.input_size)
    model.load_state_dict(init)
    train = Split(presize(images, pre, zoom_bound(run.augment)), labels)
    nothing = Split(train.images[:0], labels[:0])  # no validation: nothing here picks an epoch
    for mode, phase_run, sub in plan.phases(run):
        hooks = freeze(model, mode)
        spec = RunSpec(
            cfg=phase_run,
            preprocess=pre,
            ckpt_dir=work / sub,
            fingerprint=f"finetune-{sub}",
            meta={"variant": run.variant, "model_name": model_name},
        )
        fit(model, train, nothing, spec, device, sinks=[], resume=False)
        model.load_state_dict(ckpt_io.load(work / sub / "last.pt")["model"])
        for h in hooks:
            h.remove()
    return model.eval()


def _fold_trainer(
    model_name: str,
    init: dict,
    pre: Preprocess,
    run: RunCfg,
    plan: FreezePlan,
    data: LabelledSet,
    work: Path,
    device: torch.device,
):
    """``train_and_predict`` of :func:`deepgal.crossval.run_folds`: adapt on rows ``tr`` only,
    then score rows ``te``: logits, probabilities, and the 8-view (TTA) probabilities."""

    def train_and_predict(tr: np.ndarray, te: np.ndarray, k: int) -> dict[str, np.ndarray]:
        model = adapt(
            model_name,
            init,
            pre,
            run,
            plan,
            data.images[tr],
            data.labels[tr],
            work / f"fold{k}",
            device,
        )
        held = data.images[te]
        logits = run_model(model, held, pre, device, output="logits", precision=run.precision)
        tta = run_model(model, held, pre, device, tta=True, precision=run.precision)
        log.info(
            "fold %d: %d/%d held-out images right",
            k,
            int((logits.argmax(1) == data.labels[te].numpy()).sum()),
            len(te),
        )
        return {
            "logits": logits,
            "plain": torch.softmax(torch.from_numpy(logits), 1).numpy(),
            "tta": tta,
        }

    return train_and_predict


def finetune_checkpoint(
    selected: str | Path,
    data: LabelledSet,
    ft: FinetuneCfg,
    run: RunCfg,
    dest: str | Path,
    device: torch.device,
) -> dict:
    """Cross-validate, calibrate and fine-tune checkpoint ``selected`` on ``data``; write the
    adapted checkpoint to ``dest`` (atomically, the selected checkpoint's format with the
    new weights, a calibration fitted on the out-of-fold logits and a ``finetune`` record)
    and return the report that ``finetune.json`` holds."""
    t0 = time.perf_counter()
    src = ckpt_io.load(selected)
    pre = Preprocess.from_dict(src["preprocess"])
    run = finetune_run(run, ft, pre)
    plan = FreezePlan(ft.freeze, ft.unfreeze_after, ft.unfreeze_lr_scale)
    labels = data.labels.numpy()
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".finetune-", dir=Path(dest).parent) as work:
        trainer = _fold_trainer(
            src["model_name"], src["model"], pre, run, plan, data, Path(work), device
        )
        results = run_folds(labels, ft.folds, run.seed, trainer, data.groups, path=str(data.path))
        cal = _calibrate(
            results, labels, f"the out-of-fold logits of the {ft.folds}-fold CV on {data.path}"
        )
        model = adapt(
            src["model_name"],
            src["model"],
            pre,
            run,
            plan,
            data.images,
            data.labels,
            Path(work) / "all",
            device,
        )
    cv = {view: summarise(labels, results, view, ft.folds).to_dict() for view in ("plain", "tta")}
    record = {
        "selected": str(selected),
        "data": data.summary(),
        "settings": dataclasses.asdict(ft),
        "cv_accuracy": cv["plain"]["acc"],
        "cv_se": cv["plain"]["se"],
    }
    _save(selected, dest, model, cal, record)
    present = sorted({int(c) for c in labels})
    return {
        "checkpoint": str(dest),
        "enabled": True,
        **record,
        "cv": cv,
        "classes": [CLASS_NAMES[c] for c in present],
        "temperature": cal.temperature,
        "calibration": cal.source,
        "oof_calibration": _oof_calibration(results, labels, cal),
        "minutes": (time.perf_counter() - t0) / 60,
    }


def _calibrate(results: list, labels: np.ndarray, what: str) -> Calibration:
    """A temperature fitted on the pooled out-of-fold logits of the folds ``results`` against
    ``labels`` (N,) int; ``what`` says where the logits come from."""
    rows = np.concatenate([r.held for r in results])
    oof = np.concatenate([r.views["logits"] for r in results])
    return Calibration.fit(oof, labels[rows], what)


def _oof_calibration(results: list, labels: np.ndarray, cal: Calibration) -> dict:
    """The pooled out-of-fold probabilities' calibration scores before and after ``cal``'s
    temperature (:func:`deepgal.calibration.before_after`, reliability tables left out)."""
    rows = np.concatenate([r.held for r in results])
    plain = np.concatenate([r.views["plain"] for r in results])
    scores = before_after(plain, labels[rows], cal.temperature)
    return {k: v for k, v in scores.items() if not k.startswith("reliability")}


def _save(selected, dest, model: Net, cal: Calibration, record: dict) -> None:
    """Write ``dest`` (atomically) in checkpoint ``selected``'s format with ``model``'s
    weights (on the CPU), the calibration and the ``finetune`` record."""
    ckpt_io.save_for_inference(
        selected,
        dest,
        {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "calibration": cal.to_dict(),
            "finetune": record,
        },
    )
