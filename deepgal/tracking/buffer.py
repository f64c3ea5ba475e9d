"""Epochs the tracker has not acknowledged yet: kept in order, re-sent, never sent twice."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .env import TrackingError

log = logging.getLogger(__name__)


class EpochBuffer:
    """``send(metrics)`` delivers one epoch's dict (``"epoch"`` = its step) or raises
    :class:`TrackingError`; ``delivered`` holds the steps the run already has (a resumed run
    re-delivers its history: those epochs are dropped, not duplicated)."""

    def __init__(self, send: Callable[[dict], None], delivered: set[int]):
        self.send, self.delivered = send, set(delivered)
        self.pending: list[dict] = []

    def add(self, metrics: dict[str, float]) -> None:
        if int(metrics["epoch"]) in self.delivered:
            return
        self.pending.append(metrics)
        self.flush()

    def flush(self) -> bool:
        """Send what is pending, oldest first; False (and all kept) at the first failure."""
        while self.pending:
            try:
                self.send(self.pending[0])
            except TrackingError as e:
                log.warning(
                    "MLflow unreachable (%s); %d epoch(s) buffered, will retry",
                    e,
                    len(self.pending),
                )
                return False
            self.delivered.add(int(self.pending.pop(0)["epoch"]))
        return True

    def undelivered(self) -> list[int]:
        return [int(m["epoch"]) for m in self.pending]
