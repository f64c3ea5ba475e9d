"""The ``cv`` section: k-fold cross-validation of each variant's whole recipe (the ``cv@``
stages). Off (``folds: 0``) by default; on, every listed variant is trained ``folds`` times
from scratch on all but one fold of the pipeline's images and scored on the fold it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from .loader import Checked, check_variant_names


@dataclass(frozen=True)
class CvCfg(Checked):
    folds: int  # 0 = off; else k >= 2 stratified, grouped folds
    seed: int  # deals the folds (training seeds stay base.seed)
    tta: bool  # also score each held-out fold with the 8 dihedral views
    variants: list[str] | None  # the variants to cross-validate; null = every variant

    def check(self):
        yield "folds", self.folds == 0 or self.folds >= 2, "must be 0 (off) or >= 2 folds"
        yield (
            "variants",
            self.variants is None or len(self.variants) > 0,
            "must list at least one variant, or be null (every variant)",
        )

    def runs(self, variant: str) -> bool:
        """Whether the ``cv@<variant>`` stage trains anything."""
        return self.folds > 0 and (self.variants is None or variant in self.variants)


def check_cv_variants(cfg: CvCfg, params: dict) -> None:
    """Every name in ``cv.variants`` is a variant of ``params``: a typo would otherwise
    silently cross-validate nothing."""
    check_variant_names("cv.variants", cfg.variants, params)
