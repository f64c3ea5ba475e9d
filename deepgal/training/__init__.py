"""Training: the loop (:mod:`.loop`: ``train_one_epoch`` / ``evaluate`` / ``fit``), the recipe's
parts (:mod:`.recipe`: optimiser, schedule, EMA, precision, compile), exact stop and resume
(:mod:`.control`) and one variant's whole run (:mod:`.run`: ``train_variant``, what the train
stage calls). Multi-process training is :mod:`deepgal.distributed`.
"""
from .loop import (RunSpec, Sink, Split, TrainingDiverged, TrainingInterrupted, evaluate, fit,
                   place_split, train_one_epoch)
from .run import TrainPaths, train_variant

__all__ = ["RunSpec", "Sink", "Split", "TrainingDiverged", "TrainingInterrupted", "evaluate",
           "fit", "place_split", "train_one_epoch", "TrainPaths", "train_variant"]
