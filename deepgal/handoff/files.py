"""The JSON files passed between stages, one record each (see :mod:`.record` for the rules).

Required fields are the keys a downstream reader relies on; the rest are optional, checked
when present. Keys are written in field order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from .record import HandoffError, Record, load_json


@dataclasses.dataclass(frozen=True, kw_only=True)
class Source(Record):
    """``data/source.json``: what the data file is. ``image_size`` is [H, W]; ``class_counts``
    {class name: images}; ``url`` only where a caller names the file's origin."""

    WHAT: ClassVar[str] = "source.json (what the data file is)"
    STAGE: ClassVar[str] = "download"
    OMIT_NONE: ClassVar[tuple[str, ...]] = (
        "labelled_path",
        "url",
        "path",
        "n_images",
        "image_size",
        "class_counts",
        "optional_keys",
    )

    source: str
    sha256: str
    labelled_path: str | None = None
    url: str | None = None
    path: str | None = None
    n_images: int | None = None
    image_size: list | None = None
    class_counts: dict | None = None
    optional_keys: list | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class SplitStats(Record):
    """``data/split/stats.json``: per-channel ``mean``/``std`` (3 floats each, of the train
    split, in [0, 1] units), the data's ``source`` ({source, sha256}), per-split class
    ``counts`` and ``sizes``, and what the sky ``grouping`` did (None without one)."""

    WHAT: ClassVar[str] = "stats.json (the split's statistics)"
    STAGE: ClassVar[str] = "split"

    mean: list
    std: list
    source: dict
    counts: dict | None = None
    sizes: dict
    grouping: dict | None = None

    def problem(self) -> str | None:
        for key in ("mean", "std"):
            got = getattr(self, key)
            if len(got) != 3 or not all(isinstance(x, (int, float)) for x in got):
                return f"'{key}' must hold 3 channel values, got {got!r:.80}"
        return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainSummary(Record):
    """``results/<variant>/train.json``: the last epoch's metrics (``last_epoch``: the keys of
    a history row, written first and flat), the best epoch, time, the resolved ``config``
    (RunCfg.flat()) and the ``machine`` it ran on."""

    WHAT: ClassVar[str] = "train.json (what the variant trained with)"
    STAGE: ClassVar[str] = "train"
    KEYS: ClassVar[dict[str, str]] = {
        "best_val_accuracy": "best/val_accuracy",
        "best_epoch": "best/epoch",
        "undelivered_epochs": "tracking/undelivered_epochs",
    }

    last_epoch: dict = dataclasses.field(default_factory=dict)
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    train_seconds: float | None = None
    epochs: int | None = None
    undelivered_epochs: int | None = None
    config: dict
    machine: dict | None = None

    @classmethod
    def from_dict(cls, data: Any, path: str | Path = "<dict>") -> TrainSummary:
        if not isinstance(data, dict):
            return super().from_dict(data, path)
        named = {key for _, key, _ in cls._fields()} | {"version"}
        last = {k: v for k, v in data.items() if k not in named}
        return dataclasses.replace(super().from_dict(data, path), last_epoch=last)

    def to_dict(self) -> dict[str, Any]:
        rest = super().to_dict()
        rest.pop("last_epoch")
        return {**self.last_epoch, **rest}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Selection(Record):
    """``results/<variant>/selection.json``: the chosen ``checkpoint`` and its ``epoch``, its
    scores, why it won (``reason``, ``candidates``), the variant's MLflow ``run_id``, the
    chance test's p-value, the calibrated copy (``selected``) and its ``temperature``."""

    WHAT: ClassVar[str] = "selection.json (the chosen checkpoint)"
    STAGE: ClassVar[str] = "select"

    checkpoint: str | None = None
    epoch: int
    val_accuracy: float | None = None
    train_accuracy: float | None = None
    gap: float | None = None
    val_loss: float | None = None
    val_loss_rise: float | None = None
    passed: bool | None = None
    reason: str | None = None
    skipped: list | None = None
    candidates: list | None = None
    variant: str | None = None
    run_id: str | None = None
    chance_p_value: float | None = None
    selected: str | None = None
    temperature: float | None = None
    calibration: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class VariantMetrics(Record):
    """``results/<variant>/metrics.json``: ``val`` and (with a test split) ``test`` as
    {accuracy, macro_f1}, the selected ``epoch`` and training minutes. No version key: the
    file's keys and values are the metrics the plot stage gathers for DVC."""

    WHAT: ClassVar[str] = "metrics.json (a variant's headline scores)"
    STAGE: ClassVar[str] = "evaluate"
    OMIT_NONE: ClassVar[tuple[str, ...]] = ("val", "test")
    STORE_VERSION: ClassVar[bool] = False

    val: dict | None = None
    test: dict | None = None
    epoch: int
    train_min: float

    def problem(self) -> str | None:
        for split in ("val", "test"):
            got = getattr(self, split)
            if got is not None and not all(
                isinstance(got.get(k), (int, float)) for k in ("accuracy", "macro_f1")
            ):
                return f"'{split}' must hold numbers 'accuracy' and 'macro_f1', got {got!r:.120}"
        return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class MlflowRun(Record):
    """``models/<variant>/mlflow_run.json``: the variant's MLflow run (``run_id`` None when
    tracking was off) for the stages after training to log into."""

    WHAT: ClassVar[str] = "mlflow_run.json (the variant's MLflow run)"
    STAGE: ClassVar[str] = "train"

    run_id: str | None
    run_name: str | None = None
    tracking_uri: str | None = None

    @classmethod
    def read_if_present(cls, path: str | Path) -> MlflowRun | None:
        return cls.read(path) if Path(path).exists() else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResumeRun(Record):
    """``models/<variant>/checkpoints/run.json``: the MLflow run an interrupted training of
    config ``fingerprint`` logged to, so its resume logs into the same run."""

    WHAT: ClassVar[str] = "run.json (the run a resumed training reopens)"
    STAGE: ClassVar[str] = "train"

    run_id: str | None
    fingerprint: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class CalibrationReport(Record):
    """``results/<variant>/calibration.json``: the checkpoint's ``temperature`` and where it
    was fitted (``source``); per split (``val``, ``test`` when present) ECE, NLL and
    reliability bins before and after it (:func:`deepgal.calibration.measure`)."""

    WHAT: ClassVar[str] = "calibration.json (the calibration's effect)"
    STAGE: ClassVar[str] = "evaluate"
    OMIT_NONE: ClassVar[tuple[str, ...]] = ("val", "test")

    temperature: float
    source: str
    val: dict | None = None
    test: dict | None = None

    def splits(self) -> dict[str, Any]:
        """The file's content without ``version``: what the calibration plots and table take."""
        return {k: v for k, v in self.to_dict().items() if k != "version"}


@dataclasses.dataclass(frozen=True)
class PipelineMetrics:
    """``metrics.json`` (the one file DVC declares as metrics): {variant: {test_acc, test_f1,
    val_acc, val_f1, epoch, train_min}}. No version key: every key is a `dvc exp show` column."""

    rows: Mapping[str, Mapping[str, float]]

    def write(self, path: str | Path) -> Path:
        from ..utils import write_json

        write_json(path, {v: dict(r) for v, r in self.rows.items()})
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> PipelineMetrics:
        data = load_json(path, "metrics.json (every variant's headline)", "plot")
        for v, row in data.items() if isinstance(data, dict) else [("", data)]:
            if not isinstance(row, dict) or not all(
                isinstance(x, (int, float)) for x in row.values()
            ):
                raise HandoffError(
                    f"{path}: '{v}' must map metric names to numbers, got "
                    f"{row!r:.120}; re-run `dvc repro plot`"
                )
        return cls(data)
