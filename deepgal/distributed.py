"""Data-parallel training with PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

``train.nproc > 1`` (or ``variants.<name>.nproc``) makes the train stage run itself under
torchrun, as ``python -m torch.distributed.run --nproc-per-node N <the same command>``
would (:func:`launch`);
each of the N processes then calls :func:`init` and gets a :class:`Dist`: its rank, the world
size and its device. One machine uses torchrun's standalone rendezvous on 127.0.0.1; several
machines set ``DEEPGAL_TORCHRUN_ARGS`` on every node (it replaces ``--standalone``), e.g.

    DEEPGAL_TORCHRUN_ARGS="--nnodes 2 --node-rank 0 --rdzv-backend c10d \\
        --rdzv-endpoint head.example:29400 --rdzv-id deepgal-resnet50"

Backend: NCCL on CUDA (one GPU per local rank), gloo on CPU. Every collective waits at most
``DEEPGAL_DIST_TIMEOUT_S`` seconds (default 300): a rank that dies makes the others fail
instead of hanging, and torchrun then stops the stage with a non-zero status.

What the training loop does with a :class:`Dist` (``deepgal.training``): each rank trains on a
disjoint shard of one seeded permutation (:func:`shard`); DDP all-reduces the gradients;
BatchNorm becomes SyncBatchNorm on CUDA (PyTorch's SyncBatchNorm has no CPU kernel, so on
gloo each rank normalises with its own batch statistics and DDP broadcasts rank 0's running
statistics); metrics are summed over ranks (:meth:`Dist.sum`); only rank 0 writes files and
talks to MLflow.
"""

from __future__ import annotations

import datetime
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist

from .errors import DeepgalError

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S = 300.0


def under_torchrun() -> bool:
    """True inside a process that torchrun started (it sets these for every worker)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


class DistributedRunFailed(DeepgalError, RuntimeError):
    """A rank of a torchrun job failed or was lost; the message names it and what to do."""


def torchrun_args(nproc: int, argv: Sequence[str]) -> list[str]:
    """torchrun's command line for ``argv`` (the script, then its arguments)."""
    extra = os.environ.get("DEEPGAL_TORCHRUN_ARGS", "").strip()
    # --standalone: a rendezvous on a free local port, for one machine; several machines
    # name theirs in DEEPGAL_TORCHRUN_ARGS. --max-restarts 0: a failed rank fails the stage,
    # and `dvc repro` (re-run by the user) resumes from the last checkpoint.
    rdzv = shlex.split(extra) if extra else ["--standalone"]
    return [*rdzv, "--nproc-per-node", str(nproc), "--max-restarts", "0", *argv]


def launch(nproc: int, argv: Sequence[str] | None = None) -> None:
    """Run ``nproc`` copies of this command under torchrun (its ``run``, in this process, so
    its agent handles signals and a failure becomes one :class:`DistributedRunFailed`).

    Equivalent to ``python -m torch.distributed.run <torchrun_args(nproc, argv)>``.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = torchrun_args(nproc, list(sys.argv if argv is None else argv))
    # gloo picks the interface of the host name; on one machine keep it on loopback.
    if "DEEPGAL_TORCHRUN_ARGS" not in os.environ:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    # torchrun's own choice for several processes, made here so it skips its 4-line banner
    # saying so in every stage log; a value the user set is kept.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    log.info(
        "nproc %d: running under torchrun: python -m torch.distributed.run %s",
        nproc,
        shlex.join(args),
    )
    try:
        run(get_args_parser().parse_args(args))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        if failure.exitcode == 130:  # the train stage's status after a checkpointed Ctrl-C
            raise DistributedRunFailed(
                "training was interrupted; rank 0 wrote a resumable checkpoint: run the stage "
                "again to resume"
            ) from None
        how = (
            f"killed by {failure.signal_name()}"
            if failure.exitcode < 0
            else f"exit status {failure.exitcode}"
        )
        raise DistributedRunFailed(
            f"training process rank {rank} failed first ({how}); the others were stopped. "
            f"The last checkpoint is kept: run the stage again to resume"
        ) from None
    except SignalException as e:  # Ctrl-C / SIGTERM reached the agent; workers checkpointed
        raise DistributedRunFailed(
            f"stopped by {e.sigval.name}; run the stage again to resume from the checkpoint "
            f"the training processes wrote"
        ) from None


def is_peer_failure(e: BaseException) -> bool:
    """An error that means another rank is gone (gloo/NCCL say so in RuntimeErrors)."""
    if isinstance(e, tdist.DistError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and any(
        s in text
        for s in (
            "closed by peer",
            "reset by peer",
            "Timed out",
            "timed out",
            "NCCL",
            "Broken pipe",
        )
    )


@dataclass(frozen=True)
class Dist:
    """This process's place in the job. ``Dist()`` is the plain single-process case."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the only process that writes files, checkpoints and MLflow."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (float64, so counts stay exact)."""
        t = torch.tensor(list(values), dtype=torch.float64, device=device)
        if self.active:
            tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t.tolist()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is True on any rank (a stop request, say)."""
        if not self.active:
            return flag
        t = torch.tensor([int(flag)], device=device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (small picklable things: RNG states)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            tdist.barrier()


def init(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the torchrun job if this process is in one; else ``Dist()``. Returns the device of
    this rank (``cuda:<local_rank>`` on CUDA)."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist(), device
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    timeout = float(os.environ.get("DEEPGAL_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    backend = "nccl" if device.type == "cuda" else "gloo"
    tdist.init_process_group(
        backend,
        timeout=datetime.timedelta(seconds=timeout),
        device_id=device if device.type == "cuda" else None,
    )
    if rank != 0:  # one voice in the log: rank 0's
        logging.getLogger("deepgal").setLevel(logging.WARNING)
    log.info("rank %d/%d on %s (%s, timeout %.0f s)", rank, world, device, backend, timeout)
    return Dist(rank, world, local), device


def shutdown() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def shard(perm: torch.Tensor, dist: Dist, steps: int) -> list[torch.Tensor]:
    """This rank's batches of one epoch: ``steps`` index tensors.

    ``perm`` (N,) int64 is the same seeded permutation on every rank; rank r takes
    ``perm[r::world]`` (disjoint shards whose union is every image once) and splits it into
    ``steps`` nearly equal batches, so every rank runs the same number of steps (a rank with
    one step fewer would leave the others waiting in an all-reduce).
    """
    mine = perm[dist.rank :: dist.world]
    return list(torch.tensor_split(mine, steps))


def eval_slice(n: int, dist: Dist) -> slice:
    """Contiguous, disjoint rows of an ``n``-row split for this rank; together: all of them."""
    lo = n * dist.rank // dist.world
    hi = n * (dist.rank + 1) // dist.world
    return slice(lo, hi)


def wrap(model: torch.nn.Module, dist: Dist, device: torch.device) -> torch.nn.Module:
    """``model`` for training: DDP (with SyncBatchNorm on CUDA) when distributed, else itself."""
    if not dist.active:
        return model
    if device.type == "cuda":
        # Replaces BatchNorm children in place; Net itself is not a BatchNorm, so ``model``
        # (kept by the caller for checkpoints and evaluation) sees the new layers.
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
