"""Progress on long work: a tqdm bar on a terminal, a few milestone log lines elsewhere.

DVC captures a stage's output and CI logs are files: a bar redrawn 10 times a second turns
into thousands of lines there. So when stderr is not a terminal (or ``DEEPGAL_PROGRESS=lines``)
:class:`Progress` writes one line per quarter of the work (count, rate, ETA) instead.

    with Progress(total=n, desc="render", unit="img") as bar:
        for chunk in chunks:
            ...
            bar.update(len(chunk))
"""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger("deepgal.progress")


def _use_bar() -> bool:
    mode = os.environ.get("DEEPGAL_PROGRESS", "auto").lower()
    if mode in ("bar", "tty"):
        return True
    if mode in ("lines", "log", "off"):
        return False
    return sys.stderr.isatty()


class Progress:
    """``update(n)`` as work is done; ``milestones`` log lines (default 4) when not a terminal."""

    def __init__(self, total: int, desc: str, unit: str = "it", milestones: int = 4):
        self.total, self.desc, self.unit = max(int(total), 0), desc, unit
        self.done = 0
        self._t0 = time.perf_counter()
        self._bar = None
        self._marks = [self.total * k // milestones for k in range(1, milestones + 1)]
        if _use_bar():
            from tqdm import tqdm  # only on a terminal: tqdm is cheap, but keep stages lean

            self._bar = tqdm(
                total=self.total,
                desc=desc,
                unit=unit,
                unit_scale=True,
                dynamic_ncols=True,
                leave=False,
            )

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        passed = False
        while self._marks and self.done >= self._marks[0]:  # one line, however many passed
            self._marks.pop(0)
            passed = True
        if passed:
            self._log()

    def _log(self) -> None:
        dt = time.perf_counter() - self._t0
        rate = self.done / dt if dt > 0 else float("inf")
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100 * self.done / self.total if self.total else 100.0
        log.info(
            "%s: %d/%d %s (%.0f%%), %.1f %s/s, %.0f s elapsed, ETA %.0f s",
            self.desc,
            self.done,
            self.total,
            self.unit,
            pct,
            rate,
            self.unit,
            dt,
            max(eta, 0.0),
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
