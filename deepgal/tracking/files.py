"""The DVC side of tracking: ``history.csv`` (DVC plots), rewritten after every epoch."""

from __future__ import annotations

from pathlib import Path

from ..handoff import HISTORY_COLUMNS, History

__all__ = ["HISTORY_COLUMNS", "FileSink"]


class FileSink:
    """``history.csv`` rewritten atomically every epoch, so it is complete whatever happens."""

    def __init__(self, history_csv: str | Path):
        self.history_csv = Path(history_csv)
        self.rows: list[dict] = []

    def log_epoch(self, metrics: dict[str, float]) -> None:
        # A resumed run re-delivers epochs it already wrote: the later copy replaces them.
        self.rows = [r for r in self.rows if r["epoch"] < metrics["epoch"]] + [metrics]
        History(tuple(self.rows)).write(self.history_csv)
