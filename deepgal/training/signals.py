"""Ctrl-C and SIGTERM as a flag: :class:`StopFlag` turns them into a value the loop checks
between steps, so the checkpoint written on the way out is consistent."""

from __future__ import annotations

import signal
from typing import Any


class StopFlag:
    """Turn SIGINT/SIGTERM into a flag checked between steps. A second SIGINT stops at once."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        # Only a repeated Ctrl-C means "now": under torchrun a SIGTERM from the agent follows
        # the terminal's SIGINT, and must not cut the checkpoint being written short.
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = self.signum or signum

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
