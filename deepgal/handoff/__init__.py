"""Every file passed between stages, one frozen record each with ``read(path)``/``write(path)``.

The stages and the library read these files only through here, so a renamed key or a file
from an older layout fails where it is read, with the file, the key and what to do (re-run
a named stage) in one :class:`HandoffError`. Writes are atomic (the old file or the new one).

============================  =====================  =============================
file                          record                 written by -> read by
============================  =====================  =============================
data/source.json              :class:`Source`        download -> split, train
data/split/<split>.npy        :class:`SplitRows`     split -> train .. plot
data/split/stats.json         :class:`SplitStats`    split -> train, plot
models/<v>/checkpoints/run.json :class:`ResumeRun`   train -> train (resume)
models/<v>/mlflow_run.json    :class:`MlflowRun`     train -> select, evaluate
results/<v>/history.csv       :class:`History`       train -> select, evaluate, plot
results/<v>/train.json        :class:`TrainSummary`  train -> plot
results/<v>/selection.json    :class:`Selection`     select -> evaluate, plot
results/<v>/metrics.json      :class:`VariantMetrics`  evaluate -> plot
results/<v>/calibration.json  :class:`CalibrationReport`  evaluate -> plot
results/<v>/predictions.csv   :class:`Predictions`   evaluate -> plot
results/<v>/gradcam.npz       :class:`GradCams`      evaluate -> plot
models/<v>/features.h5        :class:`Features`      evaluate -> reduce
results/<v>/embeddings.csv    :class:`Embeddings`    reduce -> plot
metrics.json                  :class:`PipelineMetrics`  plot -> DVC
============================  =====================  =============================

:class:`VariantPaths` says where a variant's files are.
"""

from .cams import GradCams
from .files import (
    CalibrationReport,
    MlflowRun,
    PipelineMetrics,
    ResumeRun,
    Selection,
    Source,
    SplitStats,
    TrainSummary,
    VariantMetrics,
)
from .paths import VariantPaths
from .record import LAYOUT_VERSION, HandoffError, Record
from .tables import (
    EMBEDDING_COLUMNS,
    FEATURE_KEYS,
    HISTORY_COLUMNS,
    OUTLIER_COLUMN,
    PREDICTION_COLUMNS,
    Embeddings,
    Features,
    FeaturesWriter,
    History,
    Predictions,
    SplitRows,
)

__all__ = [
    "CalibrationReport",
    "EMBEDDING_COLUMNS",
    "Embeddings",
    "FEATURE_KEYS",
    "Features",
    "FeaturesWriter",
    "GradCams",
    "HISTORY_COLUMNS",
    "HandoffError",
    "History",
    "LAYOUT_VERSION",
    "MlflowRun",
    "OUTLIER_COLUMN",
    "PREDICTION_COLUMNS",
    "PipelineMetrics",
    "Predictions",
    "Record",
    "ResumeRun",
    "Selection",
    "Source",
    "SplitRows",
    "SplitStats",
    "TrainSummary",
    "VariantMetrics",
    "VariantPaths",
]
