"""The tables passed between stages: a split's rows (<split>.npy), history.csv,
predictions.csv, embeddings.csv and features.h5, one frozen record each with ``read``/``write`` (atomic) and named errors.

pandas is imported inside the functions: the split and train stages import this package and
should not pay for it.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..utils import _atomic_target, atomic_write_bytes, atomic_write_text
from .record import HandoffError, missing

if TYPE_CHECKING:
    import pandas as pd

HISTORY_COLUMNS = (
    "epoch",
    "train/loss",
    "train/accuracy",
    "val/loss",
    "val/accuracy",
    "lr",
    "images_per_s",
    "seconds",
)
PREDICTION_COLUMNS = ("split", "index", "label", "pred", "confidence")
# Optional: a file written before the evaluate stage scored outliers reads without it.
OUTLIER_COLUMN = "outlier"
EMBEDDING_COLUMNS = ("index", "label", "split", "method", "x", "y")
FEATURE_KEYS = ("features", "index", "label", "split")


def _missing(path: Path, stage: str, what: str) -> HandoffError:
    return missing(path, what, stage)


def _require(path: Path, have: list[str], needed: tuple[str, ...], kind: str, stage: str) -> None:
    """HandoffError naming what of ``needed`` the file at ``path`` lacks, if anything."""
    missing = [c for c in needed if c not in have]
    if missing:
        raise HandoffError(
            f"{path} lacks {kind} {missing}; got {have} (the {stage} stage writes "
            f"them; re-run it: `dvc repro {stage}`)"
        )


@dataclasses.dataclass(frozen=True)
class SplitRows:
    """``data/split/<split>.npy``: the rows (n,) int64 of one split in the data file."""

    rows: np.ndarray

    def write(self, path: str | Path) -> Path:
        buf = io.BytesIO()
        np.save(buf, self.rows)
        atomic_write_bytes(path, buf.getvalue())
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> SplitRows:
        path = Path(path)
        if not path.exists():
            raise _missing(path, "split", "split's row indices")
        rows = np.load(path, allow_pickle=False)
        if rows.ndim != 1 or rows.dtype.kind not in "iu":
            raise HandoffError(
                f"{path}: must hold (n,) integer rows, got {rows.dtype} "
                f"{rows.shape}; re-run `dvc repro split`"
            )
        return cls(rows)


@dataclasses.dataclass(frozen=True)
class History:
    """``results/<variant>/history.csv``: one row per epoch, {column: float} (``epoch`` int);
    a cell left empty (a metric not logged that epoch) is absent from its row, not 0."""

    rows: tuple[dict[str, float], ...]

    def write(self, path: str | Path) -> Path:
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(path, buf.getvalue())
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> History:
        """The rows of ``path``; HandoffError naming the line and column of a cell that is not
        a number, or a file without an ``epoch`` column."""
        path = Path(path)
        if not path.exists():
            raise _missing(path, "train", "history.csv (per-epoch metrics)")
        rows = []
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if "epoch" not in (reader.fieldnames or ()):
                raise HandoffError(
                    f"{path}: no 'epoch' column (columns {reader.fieldnames}); "
                    "re-run `dvc repro train` to rewrite it"
                )
            for line, row in enumerate(reader, start=2):
                try:
                    parsed = {k: float(v) for k, v in row.items() if v not in ("", None)}
                    parsed["epoch"] = int(parsed["epoch"])  # KeyError: a row without one
                    rows.append(parsed)
                except (ValueError, KeyError):
                    bad = next((k for k, v in row.items() if v and not _is_number(v)), "epoch")
                    raise HandoffError(
                        f"{path}: line {line}, column '{bad}': {row[bad]!r} is "
                        "not a number; re-run `dvc repro train`"
                    ) from None
        return cls(tuple(rows))

    def frame(self):
        """The rows as a DataFrame, ``epoch`` as int64."""
        import pandas as pd

        df = pd.DataFrame(list(self.rows))
        return df.astype({"epoch": "int64"}) if len(df) else df

    def seconds(self) -> float:
        """Training time of all epochs, from the ``seconds`` column."""
        return float(sum(r.get("seconds", 0.0) for r in self.rows))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class Predictions:
    """``results/<variant>/predictions.csv``: one row per val/test image. ``frame`` columns:
    ``split`` (str), ``index`` (int, the image's row in the data file), ``label`` (int, true
    class), ``pred`` (int, predicted class), ``confidence`` (float, the predicted class's
    probability) and, when the evaluate stage scored them, ``outlier`` (float, the image's
    outlier score, :func:`deepgal.explore.outliers.knn_outlier_scores` against train; higher =
    more unusual). The report's confusion, chance test and galleries all come from this file."""

    frame: pd.DataFrame

    @classmethod
    def from_parts(cls, parts: Mapping[str, tuple[np.ndarray, ...]]) -> Predictions:
        """Rows of every split in ``parts``: split -> (index (N,) int, label (N,) int, probs
        (N, K) float[, outlier (N,) float]) in the order given; ``pred`` is the argmax of
        ``probs``. The ``outlier`` column is written when every split brings one."""
        import pandas as pd

        frames = []
        for split, (index, label, probs, *outlier) in parts.items():
            probs = np.asarray(probs)
            index, label = np.asarray(index, dtype=np.int64), np.asarray(label, dtype=np.int64)
            sizes = {len(index), len(label), len(probs), *(len(o) for o in outlier)}
            if probs.ndim != 2 or len(sizes) != 1 or len(outlier) > 1:
                raise ValueError(
                    f"predictions of {split}: need index (N,), label (N,), probs "
                    f"(N, K)[, outlier (N,)]; got {index.shape}, {label.shape}, "
                    f"{probs.shape}{''.join(f', {np.shape(o)}' for o in outlier)}"
                )
            pred = probs.argmax(axis=1)
            frame = pd.DataFrame(
                {
                    "split": split,
                    "index": index,
                    "label": label,
                    "pred": pred,
                    "confidence": probs[np.arange(len(pred)), pred],
                }
            )
            if outlier:
                frame[OUTLIER_COLUMN] = np.asarray(outlier[0], dtype=np.float64)
            frames.append(frame)
        if len({OUTLIER_COLUMN in f for f in frames}) > 1:
            raise ValueError("predictions: an outlier score for some splits but not all")
        if not frames:
            return cls(pd.DataFrame({c: [] for c in PREDICTION_COLUMNS}))
        return cls(pd.concat(frames, ignore_index=True))

    def write(self, path: str | Path) -> Path:
        atomic_write_text(path, self.frame.to_csv(index=False, float_format="%.5f"))
        return Path(path)

    @classmethod
    def read(cls, path: str | Path, num_classes: int = 10) -> Predictions:
        """The file at ``path``, checked: every column present, classes in range."""
        import pandas as pd

        path = Path(path)
        if not path.exists():
            raise _missing(path, "evaluate", "predictions.csv (one row per image)")
        df = pd.read_csv(path, dtype={"split": str})
        _require(path, list(df.columns), PREDICTION_COLUMNS, "columns", "evaluate")
        for col in ("label", "pred"):
            bad = df[(df[col] < 0) | (df[col] >= num_classes)]
            if not bad.empty:
                raise HandoffError(
                    f"{path}: {col} {int(bad[col].iloc[0])} (line "
                    f"{bad.index[0] + 2}) is not a class 0..{num_classes - 1}"
                )
        if OUTLIER_COLUMN in df and df[OUTLIER_COLUMN].isna().any():
            line = int(np.flatnonzero(df[OUTLIER_COLUMN].isna())[0]) + 2
            raise HandoffError(
                f"{path}: line {line} has no '{OUTLIER_COLUMN}' score; re-run `dvc repro evaluate`"
            )
        return cls(df)

    def has_outliers(self) -> bool:
        """Whether the file holds the ``outlier`` column (one written before it did not)."""
        return OUTLIER_COLUMN in self.frame

    def most_unusual(self, split: str, n: int) -> pd.DataFrame:
        """The ``n`` rows of ``split`` with the highest outlier score, highest first (ties in
        file order); HandoffError when the file has no scores."""
        if not self.has_outliers():
            raise HandoffError(
                f"predictions.csv has no '{OUTLIER_COLUMN}' column (written "
                "before the evaluate stage scored outliers); re-run "
                "`dvc repro evaluate`"
            )
        part = self.frame[self.frame["split"] == split]
        return part.sort_values(OUTLIER_COLUMN, ascending=False, kind="stable").head(n)

    def confusion_matrix(self, split: str, num_classes: int = 10) -> np.ndarray:
        """(K, K) int64 counts of ``split``'s rows: rows true class, columns predicted."""
        part = self.frame[self.frame["split"] == split]
        cm = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(cm, (part["label"].to_numpy(np.int64), part["pred"].to_numpy(np.int64)), 1)
        return cm


@dataclasses.dataclass(frozen=True)
class Embeddings:
    """``results/<variant>/embeddings.csv``: 2-D coordinates, one row per image and method:
    ``index``, ``label``, ``split``, ``method``, ``x``, ``y`` (train fits each map, val and
    test are placed on it)."""

    frame: pd.DataFrame

    def write(self, path: str | Path) -> Path:
        atomic_write_text(path, self.frame.to_csv(index=False))
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> Embeddings:
        import pandas as pd

        path = Path(path)
        if not path.exists():
            raise _missing(path, "reduce", "embeddings.csv (the 2-D maps)")
        df = pd.read_csv(path)
        _require(path, list(df.columns), EMBEDDING_COLUMNS, "columns", "reduce")
        return cls(df)


@dataclasses.dataclass(frozen=True)
class Features:
    """``models/<variant>/features.h5``: penultimate embeddings, rows grouped by split.
    ``features`` (N, D) float32, ``index`` (N,) int64 (row in the data file), ``label`` (N,)
    int64, ``split`` (N,) str.

    HDF5 rather than ``.npz`` so that neither side holds the (N, D) matrix: the evaluate stage
    writes it a block of rows at a time (:class:`FeaturesWriter`) and the reduce stage reads the
    rows it needs (:meth:`open`). At 283,000 images of a 4,096-D embedding it is 4.6 GB."""

    features: np.ndarray
    index: np.ndarray
    label: np.ndarray
    split: np.ndarray

    @classmethod
    def from_splits(
        cls, feats: Mapping[str, np.ndarray], rows: Mapping[str, np.ndarray], labels: np.ndarray
    ) -> Features:
        """``feats`` {split: (n, D)} and ``rows`` {split: (n,) indices}, in ``rows``' order;
        ``labels`` (all images,) int: every image's class."""
        index, label, split = _feature_columns(rows, labels)
        return cls(np.concatenate([feats[s] for s in rows]), index, label, split)

    def arrays(self) -> dict[str, np.ndarray]:
        """{key: array}, what :func:`deepgal.reduce.reduce_features` takes."""
        return {k: getattr(self, k) for k in FEATURE_KEYS}

    def write(self, path: str | Path) -> Path:
        with FeaturesWriter(path, self.index, self.label, self.split, self.features.shape[1]) as w:
            w.put(np.arange(len(self.index)), self.features)
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> Features:
        """Every array in memory (small files, tests); :meth:`open` reads rows on demand."""
        with cls.open(path) as lazy:
            return cls(lazy["features"][()], *(lazy[k] for k in FEATURE_KEYS[1:]))

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | Path) -> Iterator[dict]:
        """{key: array} like :meth:`arrays`, but ``features`` is the open HDF5 dataset (rows are
        read when indexed); the columns are in memory (N int64 / str: small)."""
        import h5py

        path = Path(path)
        if not path.exists():
            raise _missing(path, "evaluate", "features.h5 (the embeddings)")
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise HandoffError(
                f"{path} is not a readable HDF5 file ({e}); re-run the evaluate stage: "
                "`dvc repro evaluate`"
            ) from e
        with f:
            _require(path, list(f.keys()), FEATURE_KEYS, "arrays", "evaluate")
            yield {
                "features": f["features"],
                "index": f["index"][()].astype(np.int64),
                "label": f["label"][()].astype(np.int64),
                "split": f["split"][()].astype(str),
            }


def _feature_columns(
    rows: Mapping[str, np.ndarray], labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """index, label and split columns (N,) of the splits ``rows`` laid out one after another."""
    index = np.concatenate([np.asarray(v, np.int64) for v in rows.values()])
    split = np.concatenate([np.full(len(v), k, dtype="<U5") for k, v in rows.items()])
    return index, np.asarray(labels)[index].astype(np.int64), split


# ~1 MB of features per HDF5 chunk: rows are written and read in runs, and a chunk much larger
# than h5py's 1 MB chunk cache would be re-read for every partial write.
_CHUNK_BYTES = 1 << 20


class FeaturesWriter:
    """Writes a :class:`Features` file whose (N, D) matrix arrives a block of rows at a time
    (``put(rows, values)``, in any order), so the writer holds one block, never the matrix.
    The file appears under ``path`` only when the ``with`` block ends cleanly (written under a
    temporary name, then renamed); an error leaves the old file, if any, untouched."""

    def __init__(self, path, index, label, split, dim: int):
        self.path, self.n, self.dim = Path(path), len(index), int(dim)
        self._cols = (np.asarray(index, np.int64), np.asarray(label, np.int64), split)
        self.filled = np.zeros(self.n, bool)

    @classmethod
    def for_splits(
        cls, path, rows: Mapping[str, np.ndarray], labels: np.ndarray, dim: int
    ) -> FeaturesWriter:
        """A writer for the splits ``rows`` laid out one after another (as :meth:`Features.from_splits`)."""
        return cls(path, *_feature_columns(rows, labels), dim)

    def __enter__(self) -> FeaturesWriter:
        import h5py

        self._target = _atomic_target(self.path)
        self._tmp = self._target.__enter__()
        self._f = h5py.File(self._tmp, "w")
        index, label, split = self._cols
        self._f["index"], self._f["label"] = index, label
        self._f["split"] = np.asarray(split).astype("S5")
        rows = max(1, min(self.n, _CHUNK_BYTES // (4 * max(self.dim, 1))))
        self._ds = self._f.create_dataset(
            "features", (self.n, self.dim), "f4", chunks=(rows, self.dim) if self.n else None
        )
        return self

    def put(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Rows ``rows`` (m,) of the file get ``values`` (m, D); written as runs of consecutive
        rows (one hyperslab each)."""
        rows = np.asarray(rows, np.int64)
        if not len(rows):
            return
        order = np.argsort(rows, kind="stable")
        rows, values = rows[order], np.asarray(values, np.float32)[order]
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True):
            self._ds[rows[a] : rows[b - 1] + 1] = values[a:b]
        self.filled[rows] = True

    def __exit__(self, kind, err, tb) -> None:
        self._f.close()
        if kind is None and not self.filled.all():
            err = HandoffError(
                f"{self.path}: {int((~self.filled).sum())} of {self.n} feature rows were "
                "never written (a bug in the writer's caller)"
            )
            self._target.__exit__(HandoffError, err, None)  # removes the temporary file
            raise err
        if kind is None:  # on disk before the rename, as atomic_write_bytes does
            try:
                fd = os.open(self._tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as e:
                self._target.__exit__(OSError, e, None)  # removes the temporary file
                raise
        # No error: renamed onto path. An error: the temporary file removed, the error goes on.
        self._target.__exit__(kind, err, tb)
