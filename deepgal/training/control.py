"""Stopping and resuming exactly: signals, seeded per-epoch generators, RNG state, faults.

- :class:`StopFlag` turns SIGINT/SIGTERM into a flag the loop checks between steps, so a
  checkpoint written on Ctrl-C is consistent.
- :func:`epoch_generators` seeds epoch ``e`` of rank ``r`` from ``(seed, e, r)``; a mid-epoch
  checkpoint stores the generators' states (:func:`rank_state`) and a resume restores them
  (:func:`restore_rank_state`), CPU and CUDA alike.
- :class:`Fault` is the fault suite's deterministic trigger: ``DEEPGAL_FAULT`` makes training
  signal itself at a given epoch and step instead of a test guessing with ``sleep``.
"""
from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)


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


def epoch_generators(seed: int, epoch: int, device: torch.device, rank: int = 0,
                     world: int = 1) -> tuple[torch.Generator, torch.Generator]:
    """(shuffle generator on the CPU, augmentation generator on ``device``) of one epoch.

    The shuffle is the same on every rank (they shard one permutation); augmentation and
    dropout differ per rank. Rank 0 of 1 gets the seeds a single process always had.
    """
    cpu = torch.Generator().manual_seed(seed * 100_003 + epoch)
    dev = torch.Generator(device=device).manual_seed((seed * 100_019 + epoch) * world + rank)
    torch.manual_seed((seed * 100_043 + epoch) * world + rank)  # dropout
    if device.type == "cuda":
        torch.cuda.manual_seed((seed * 100_043 + epoch) * world + rank)
    return cpu, dev


def rank_state(dev_gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    """This rank's random state mid-epoch: augmentation generator, torch CPU and CUDA RNGs."""
    state = {"device": dev_gen.get_state(), "torch": torch.get_rng_state(), "cuda": None}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rank_state(state: dict[str, Any], dev_gen: torch.Generator,
                       device: torch.device) -> None:
    """Inverse of :func:`rank_state` (the CUDA RNG only where the state has one)."""
    dev_gen.set_state(state["device"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


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
    def from_env(cls) -> "Fault | None":
        spec = os.environ.get("DEEPGAL_FAULT", "").strip()
        if not spec:
            return None
        try:
            kv = dict(part.split("=", 1) for part in spec.split(","))
            return cls(_SIGNALS[kv["signal"]], int(kv["epoch"]), int(kv["step"]),
                       int(kv["rank"]) if "rank" in kv else None,
                       kv.get("target", "self") == "group")
        except (KeyError, ValueError) as e:
            raise ValueError(f"DEEPGAL_FAULT={spec!r}: expected signal=SIGINT|SIGTERM|SIGKILL,"
                             f"epoch=N,step=N[,rank=N][,target=self|group] ({e})") from None

    def maybe_fire(self, epoch: int, step: int, steps: int, rank: int) -> None:
        if (epoch, step) != (self.epoch, self.step) or self.rank not in (None, rank):
            return
        name = signal.Signals(self.signum).name
        log.warning("DEEPGAL_FAULT: sending %s to %s at epoch %d step %d/%d (rank %d)", name,
                    "the process group" if self.group else "itself", epoch, step, steps, rank)
        for h in logging.getLogger().handlers:
            h.flush()
        if self.group:
            os.killpg(os.getpgrp(), self.signum)
        else:
            os.kill(os.getpid(), self.signum)
