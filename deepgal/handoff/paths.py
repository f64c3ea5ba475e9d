"""Where one variant's files live: ``models/<variant>/``, ``results/<variant>/`` and
``reports/<variant>/`` (dvc.yaml names the same paths in its per-variant stages;
tests/test_handoff.py checks that the two agree)."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class VariantPaths:
    """The paths of variant ``variant`` under the three roots (relative to the repository root
    by default; the plot stage passes its ``--results`` folder)."""

    variant: str
    models_root: Path = Path("models")
    results_root: Path = Path("results")
    reports_root: Path = Path("reports")

    @property
    def models(self) -> Path:
        """checkpoints, the MLflow run id, the calibrated selected checkpoint, the features"""
        return Path(self.models_root) / self.variant

    @property
    def results(self) -> Path:
        """exactly the files the report is built from"""
        return Path(self.results_root) / self.variant

    @property
    def reports(self) -> Path:
        """details nobody downstream reads"""
        return Path(self.reports_root) / self.variant

    # models/<variant>/
    checkpoints = property(lambda self: self.models / "checkpoints")
    mlflow_run = property(lambda self: self.models / "mlflow_run.json")
    selected = property(lambda self: self.models / "selected.pt")
    features = property(lambda self: self.models / "features.h5")
    finetuned = property(lambda self: self.models / "finetuned.pt")  # finetune@<v>
    # results/<variant>/
    history = property(lambda self: self.results / "history.csv")
    train = property(lambda self: self.results / "train.json")
    selection = property(lambda self: self.results / "selection.json")
    metrics = property(lambda self: self.results / "metrics.json")
    predictions = property(lambda self: self.results / "predictions.csv")
    embeddings = property(lambda self: self.results / "embeddings.csv")
    calibration = property(lambda self: self.results / "calibration.json")
    gradcam = property(lambda self: self.results / "gradcam.npz")
    finetune = property(lambda self: self.results / "finetune.json")  # not read by the report
    cv = property(lambda self: self.results / "cv.json")  # cv@<v>
    # reports/<variant>/
    eval_details = property(lambda self: self.reports / "eval.json")
    confusion_plots = property(lambda self: self.reports / "confusion")
    reduce_timings = property(lambda self: self.reports / "reduce_timings.json")

    def files(self) -> dict[str, Path]:
        """{attribute name: path} of every file and folder above."""
        return {
            name: getattr(self, name)
            for name, v in vars(type(self)).items()
            if isinstance(v, property) and name not in ("models", "results", "reports")
        }
