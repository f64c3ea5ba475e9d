"""The ``finetune`` section: adapting a selected checkpoint to a user's own labelled galaxies.

``data`` names the labelled set (a Galaxy10-layout HDF5 file or a folder of class folders, as
:mod:`deepgal.data.labelled` reads them). DVC depends on that path, and a DVC dependency cannot
be null, so "off" is a path too: a folder whose only entry is a ``README.md`` (the repository's
``finetune/``, the default) means "no labels: fine-tuning is off".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .loader import Checked, check_variant_names
from .sections import AugmentCfg

FREEZE_MODES = ("none", "backbone", "all_but_last")


@dataclass(frozen=True)
class FinetuneCfg(Checked):
    data: str  # the labelled set, or a folder holding only README.md (off)
    variants: list[str] | None  # the variants to fine-tune; null = every variant
    folds: int  # k of the k-fold cross-validation that estimates the adapted accuracy
    epochs: int
    lr: float
    optimizer: Literal["sgd", "adamw"]
    weight_decay: float
    batch_size: int
    warmup_epochs: int
    label_smoothing: float
    # none: every weight trains; backbone: only the head; all_but_last: the head and the
    # body's last block (deepgal.adapt.freeze)
    freeze: Literal["none", "backbone", "all_but_last"]
    # freeze-then-unfreeze: ``freeze`` holds for this many epochs, then every weight trains at
    # lr * unfreeze_lr_scale; 0 = ``freeze`` for the whole run
    unfreeze_after: int
    unfreeze_lr_scale: float
    ema: float  # decay of an EMA of the weights; 0 = off
    mixup: float  # Beta(alpha, alpha) of mixup; 0 = off
    augment: AugmentCfg

    def check(self):
        yield (
            "data",
            self.data.strip() != "",
            "must be a labelled set's path, or a folder holding only README.md (off)",
        )
        yield (
            "variants",
            self.variants is None or len(self.variants) > 0,
            "must list at least one variant, or be null (every variant)",
        )
        yield "folds", 2 <= self.folds <= 50, "must be in [2, 50]"
        yield "epochs", 1 <= self.epochs <= 10000, "must be in [1, 10000]"
        yield "lr", 0 < self.lr < 10, "must be in (0, 10)"
        yield "weight_decay", self.weight_decay >= 0, "must be >= 0"
        yield "batch_size", self.batch_size >= 1, "must be >= 1"
        yield (
            "warmup_epochs",
            0 <= self.warmup_epochs < self.epochs,
            "must be >= 0 and below finetune.epochs",
        )
        yield "label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)"
        yield (
            "unfreeze_after",
            0 <= self.unfreeze_after < self.epochs,
            "must be >= 0 and below finetune.epochs (0 = keep finetune.freeze throughout)",
        )
        yield (
            "unfreeze_after",
            self.unfreeze_after == 0 or self.freeze != "none",
            "needs finetune.freeze backbone or all_but_last (with none nothing is frozen)",
        )
        yield "unfreeze_lr_scale", 0 < self.unfreeze_lr_scale <= 10, "must be in (0, 10]"
        yield "ema", 0 <= self.ema < 1, "must be in [0, 1) (0 = off; 0.99 suits short runs)"
        yield "mixup", 0 <= self.mixup <= 10, "must be in [0, 10] (0 = off; 0.2 is light)"


def check_finetune_variants(cfg: FinetuneCfg, params: dict) -> None:
    """Every name in ``finetune.variants`` is a variant of ``params``."""
    check_variant_names("finetune.variants", cfg.variants, params)
