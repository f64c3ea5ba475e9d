"""The DVC side of tracking: ``history.csv`` (DVC plots) and the final metrics JSON."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..utils import atomic_write_text, write_json

HISTORY_COLUMNS = ("epoch", "train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr",
                   "images_per_s", "seconds")


class FileSink:
    """``history.csv`` rewritten atomically every epoch, so it is complete whatever happens."""

    def __init__(self, history_csv: str | Path, metrics_json: str | Path):
        self.history_csv, self.metrics_json = Path(history_csv), Path(metrics_json)
        self.rows: list[dict] = []

    def log_epoch(self, metrics: dict[str, float]) -> None:
        # A resumed run re-delivers epochs it already wrote: the later copy replaces them.
        self.rows = [r for r in self.rows if r["epoch"] < metrics["epoch"]] + [metrics]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.history_csv, buf.getvalue())

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.metrics_json, metrics)
