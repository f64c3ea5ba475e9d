"""A training run's checkpoints: what one holds (:class:`CheckpointRecord`) and when and where
they are written, mirrored, discarded and resumed from (:class:`CheckpointKeeper`), in the
spirit of timm's ``CheckpointSaver``.

Files (written by :mod:`deepgal.checkpoint`, atomically, CRC-checked on load) in ``ckpt_dir``:
``last.pt`` after every epoch and where Ctrl-C stopped a run, ``epoch_XXX.pt`` every
``checkpoint_every`` epochs and at the last one. Until the last epoch the folder is mirrored
where ``dvc exp run`` cannot overwrite it (:mod:`.unfinished`); after it the mirror goes.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import checkpoint as ckpt_io
from ..distributed import Dist
from . import unfinished

log = logging.getLogger(__name__)


@dataclass
class CheckpointRecord:
    """One checkpoint, as :func:`to_dict` writes it to disk (one top-level key per field, the
    ``meta`` entries beside them; ``train_model`` and ``ema_n_averaged`` only under an EMA).

    ``model`` holds the weights to use (the EMA's when ``ema`` > 0; the trained ones are then
    in ``train_model``). ``epoch`` is the last finished epoch; ``step_in_epoch`` is 0 at an
    epoch's end, else the steps of epoch ``epoch + 1`` done before Ctrl-C, with that epoch's
    sums over all ranks in ``accum`` (loss, correct, seen, seconds) and every rank's random
    state in ``rng`` (``{"ranks": [...]}``, see :func:`.rng.rank_state`).
    """

    model: dict[str, Any]  # state_dict
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    epoch: int
    step_in_epoch: int
    history: list[dict]  # per-epoch metrics so far
    fingerprint: str  # of the config a resume must match
    preprocess: dict[str, Any]  # Preprocess.to_dict()
    accum: dict[str, float] | None = None
    rng: dict[str, Any] | None = None
    train_model: dict[str, Any] | None = None
    ema_n_averaged: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # variant, model_name, config, ...

    def to_dict(self) -> dict[str, Any]:
        """The plain dict :func:`deepgal.checkpoint.save` writes (key order as always)."""
        out = {
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "accum": self.accum,
            "rng": self.rng,
            "history": self.history,
            "metrics": self.history[-1] if self.history else {},
            "fingerprint": self.fingerprint,
            "preprocess": self.preprocess,
            **self.meta,
        }
        if self.train_model is not None:
            out["train_model"], out["ema_n_averaged"] = self.train_model, self.ema_n_averaged
        return out

    @classmethod
    def from_dict(cls, ckpt: dict[str, Any]) -> CheckpointRecord:
        """A record from a loaded checkpoint: its own keys go to their fields, every other key
        (but ``metrics``, derived, and ``format_version``, the file's) into ``meta``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"meta"}
        meta = {
            k: v
            for k, v in ckpt.items()
            if k not in names and k not in ("metrics", "format_version")
        }
        return cls(**{k: v for k, v in ckpt.items() if k in names}, meta=meta)

    @property
    def trained_weights(self) -> dict[str, Any]:
        """The weights training goes on from (not the EMA's)."""
        return self.train_model if self.train_model is not None else self.model


class CheckpointKeeper:
    """Save / mirror unfinished / discard / resume for one run's ``ckpt_dir``.

    The writing rank (``dist.main``) alone touches the folder: it reads the checkpoint to
    resume from and sends it to the others, and saves (the caller's ``dist.main`` check, since
    only the writer builds the record).
    """

    def __init__(
        self, ckpt_dir: Path, fingerprint: str, every: int, epochs: int, dist: Dist | None = None
    ):
        self.dir, self.fingerprint = Path(ckpt_dir), fingerprint
        self.every, self.epochs, self.dist = every, epochs, dist or Dist()

    @property
    def last(self) -> Path:
        return self.dir / "last.pt"

    def resume(self, resume: bool = True) -> CheckpointRecord | None:
        """The checkpoint to resume from, else None after the writer cleared the folder of
        another config's files. The writer reads it and sends it to every rank: the other
        nodes' disks need not hold it (no shared file system)."""
        state = None
        if self.dist.main:
            self.dir.mkdir(parents=True, exist_ok=True)
            ckpt_io.remove_partial_writes(self.dir)
            state = ckpt_io.find_resumable(self.dir, self.fingerprint) if resume else None
            if state is None:
                ckpt_io.clear(self.dir)
        state = self.dist.from_main(state)
        return None if state is None else CheckpointRecord.from_dict(state)

    def save_epoch(self, record: CheckpointRecord) -> None:
        """End of epoch ``record.epoch``: ``epoch_XXX.pt`` when due, ``last.pt``, then the
        mirror (epochs left) or its removal (the last epoch: the folder is the output)."""
        state = record.to_dict()
        if record.epoch % self.every == 0 or record.epoch == self.epochs:
            ckpt_io.save(ckpt_io.epoch_path(self.dir, record.epoch), state)
        ckpt_io.save(self.last, state)
        if record.epoch < self.epochs:
            unfinished.mirror(self.dir)
        else:
            unfinished.discard(self.dir)

    def save_interrupted(self, record: CheckpointRecord) -> None:
        """Mid-epoch stop: ``last.pt`` and its mirror."""
        ckpt_io.save(self.last, record.to_dict())
        unfinished.mirror(self.dir)
