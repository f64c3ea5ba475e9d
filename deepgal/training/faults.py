"""The fault suite's deterministic trigger: ``DEEPGAL_FAULT`` makes training signal itself at a
given epoch and step (:class:`Fault`) instead of a test guessing the moment with ``sleep``."""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

log = logging.getLogger(__name__)


_SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


@dataclass(frozen=True)
class Fault:
    """``DEEPGAL_FAULT="signal=SIGKILL,epoch=2,step=3[,rank=1][,target=group]"``.

    At the start of that step (1-based epoch, 0-based step) the process sends ``signal`` to
    itself, or to its whole process group with ``target=group`` (as a terminal's Ctrl-C, or a
    SIGKILL of ``dvc repro`` and its children, would). ``rank``: only that DDP rank.
    """

    signum: int
    epoch: int
    step: int
    rank: int | None = None
    group: bool = False

    @classmethod
    def from_env(cls) -> Fault | None:
        spec = os.environ.get("DEEPGAL_FAULT", "").strip()
        if not spec:
            return None
        try:
            kv = dict(part.split("=", 1) for part in spec.split(","))
            return cls(
                _SIGNALS[kv["signal"]],
                int(kv["epoch"]),
                int(kv["step"]),
                int(kv["rank"]) if "rank" in kv else None,
                kv.get("target", "self") == "group",
            )
        except (KeyError, ValueError) as e:
            raise ValueError(
                f"DEEPGAL_FAULT={spec!r}: expected signal=SIGINT|SIGTERM|SIGKILL,"
                f"epoch=N,step=N[,rank=N][,target=self|group] ({e})"
            ) from None

    def maybe_fire(self, epoch: int, step: int, steps: int, rank: int) -> None:
        if (epoch, step) != (self.epoch, self.step) or self.rank not in (None, rank):
            return
        name = signal.Signals(self.signum).name
        log.warning(
            "DEEPGAL_FAULT: sending %s to %s at epoch %d step %d/%d (rank %d)",
            name,
            "the process group" if self.group else "itself",
            epoch,
            step,
            steps,
            rank,
        )
        for h in logging.getLogger().handlers:
            h.flush()
        if self.group:
            os.killpg(os.getpgrp(), self.signum)
        else:
            os.kill(os.getpid(), self.signum)
