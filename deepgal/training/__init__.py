"""Training: the loop (:mod:`.loop`: ``fit``; :mod:`.epoch`: ``train_one_epoch`` / ``evaluate``
on a :class:`TrainState`), the recipe's parts (:mod:`.recipe`: optimiser, schedule, EMA,
precision, compile), checkpoints (:mod:`.keeper`: :class:`CheckpointKeeper`,
:class:`CheckpointRecord`; :mod:`.unfinished`), exact stop and resume (:mod:`.signals`,
:mod:`.rng`, :mod:`.faults`) and one variant's whole run (:mod:`.run`: ``train_variant``, what
the train stage calls). Multi-process training is :mod:`deepgal.distributed`.
"""

from .keeper import CheckpointKeeper, CheckpointRecord
from .loop import (
    EpochPlan,
    RunSpec,
    Sink,
    Split,
    TrainingDiverged,
    TrainingInterrupted,
    TrainState,
    evaluate,
    fit,
    place_split,
    train_one_epoch,
)
from .run import TrainPaths, train_variant

__all__ = [
    "CheckpointKeeper",
    "CheckpointRecord",
    "EpochPlan",
    "RunSpec",
    "Sink",
    "Split",
    "TrainState",
    "TrainingDiverged",
    "TrainingInterrupted",
    "evaluate",
    "fit",
    "place_split",
    "train_one_epoch",
    "TrainPaths",
    "train_variant",
]
