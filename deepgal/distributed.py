"""Data-parallel training with PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

``train.nproc > 1`` (or ``variants.<name>.nproc``) makes the train stage run itself under
torchrun, as ``python -m torch.distributed.run --nproc-per-node N <the same command>``
would (:func:`launch`);
each of the N processes then calls :func:`init` and gets a :class:`Dist`: its rank, the world
size and its device. One machine uses torchrun's standalone rendezvous on 127.0.0.1; several
machines set ``DEEPGAL_TORCHRUN_ARGS`` on every node (it replaces ``--standalone``; with it the
stage runs under torchrun even with one process per node), e.g.

    DEEPGAL_TORCHRUN_ARGS="--nnodes 2 --node-rank 0 --rdzv-backend c10d \\
        --rdzv-endpoint head.example:29400 --rdzv-id deepgal-resnet50"

Backend: NCCL on CUDA (one GPU per local rank), gloo on CPU. Every collective waits at most
``DEEPGAL_DIST_TIMEOUT_S`` seconds (default 300): a rank that dies makes the others fail
instead of hanging, and torchrun then stops the stage with a non-zero status.

What the training loop does with a :class:`Dist` (``deepgal.training``): each rank trains on a
disjoint shard of one seeded permutation (:func:`shard`); DDP all-reduces the gradients;
BatchNorm becomes SyncBatchNorm on CUDA (PyTorch's SyncBatchNorm has no CPU kernel, so on
gloo each rank normalises with its own batch statistics and DDP broadcasts rank 0's running
statistics; the checkpoint holds the writer's own); metrics are summed over ranks
(:meth:`Dist.sum`). One process, the writer (:attr:`Dist.writer`: local rank 0 of the node
with ``--node-rank 0``, i.e. rank 0 on one machine), writes files and talks to MLflow; on a
resume it reads the checkpoint and sends it to the others, so nodes need no shared disk.
"""

from __future__ import annotations

import datetime
import logging
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist

from .errors import DeepgalError

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S = 300.0
# A training process's exit status after it lost a peer (EX_TEMPFAIL: retrying is the cure).
# It says why on stderr; its torchrun agent then names the node, not this process, as lost.
PEER_LOST = 75


def under_torchrun() -> bool:
    """True inside a process that torchrun started (it sets these for every worker)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


class DistributedRunFailed(DeepgalError, RuntimeError):
    """A rank of a torchrun job failed or was lost; the message names it and what to do."""


def wanted(nproc: int) -> bool:
    """Whether the train stage runs under torchrun: several processes on this node, or several
    nodes (``DEEPGAL_TORCHRUN_ARGS`` set), even with one process per node."""
    return nproc > 1 or bool(os.environ.get("DEEPGAL_TORCHRUN_ARGS", "").strip())


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
    from torch.distributed.elastic.rendezvous.api import RendezvousError
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
        raise DistributedRunFailed(_failure_message(e)) from None
    except RendezvousError as e:  # the nodes never met: a wrong endpoint, port or node count
        why = "; ".join(str(x).strip().splitlines()[0] for x in (e, e.__cause__) if x and str(x))
        raise DistributedRunFailed(
            f"torchrun's rendezvous failed ({type(e).__name__}: {why or 'no details'}); check "
            f"DEEPGAL_TORCHRUN_ARGS on every node: one --rdzv-endpoint that every node reaches "
            f"(and only the head serves: --rdzv-conf is_host=1 there), one --rdzv-id, and "
            f"--nnodes nodes started"
        ) from None
    except SignalException as e:  # Ctrl-C / SIGTERM reached the agent; workers checkpointed
        raise DistributedRunFailed(
            f"stopped by {e.sigval.name}; run the stage again to resume from the checkpoint "
            f"the training processes wrote"
        ) from None


def _failure_message(e: Any) -> str:
    """One line for a failed torchrun job, about the first of this node's processes that
    failed on its own; if all of them only lost a peer (:data:`PEER_LOST`), another node."""
    culprit = _culprit(e.failures)
    if culprit is None:
        return (
            f"lost a training process on another node (rank {min(e.failures)} saw its "
            f"connection close: see its warning above); the last checkpoint is kept on the "
            f"node with --node-rank 0: run the stage again on every node to resume"
        )
    rank, failure = culprit
    if failure.exitcode == 130:  # the train stage's status after a checkpointed Ctrl-C
        return "training was interrupted; a resumable checkpoint was written: run the stage again"
    how = (
        f"killed by {failure.signal_name()}"
        if failure.exitcode < 0
        else f"exit status {failure.exitcode}"
    )
    return (
        f"training process rank {rank} failed first ({how}); the others were stopped. "
        f"The last checkpoint is kept: run the stage again to resume"
    )


def _culprit(failures: dict[int, Any]) -> tuple[int, Any] | None:
    """(rank, failure) that caused the others, earliest first: not one that only lost a peer,
    nor, if another is there, one the agent stopped with SIGTERM after the first failure
    (failure timestamps are whole seconds, so order alone cannot tell them apart)."""
    order = sorted(failures.items(), key=lambda kv: kv[1].timestamp)
    for skip in ((PEER_LOST, -signal.SIGTERM), (PEER_LOST,)):
        for rank, failure in order:
            if failure.exitcode not in skip:
                return rank, failure
    return None


def report_peer_failure(variant: str, e: BaseException) -> int:
    """Say on stderr which peer error ended this training process; returns :data:`PEER_LOST`,
    its exit status. No ``error:`` prefix: the torchrun agent prints the one error line."""
    detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    print(f"warning: {variant}: lost another training process ({detail})", file=sys.stderr)
    return PEER_LOST


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
    writer: int = 0  # the rank that writes: local rank 0 of the node with --node-rank 0

    @property
    def main(self) -> bool:
        """The only process that writes files, checkpoints and MLflow (see :func:`init`)."""
        return self.rank == self.writer

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

    def from_main(self, obj: Any) -> Any:
        """The writing rank's ``obj`` on every rank (the checkpoint to resume from: only the
        writer's node is sure to hold the file; the others may have no shared disk)."""
        if not self.active:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=self.writer)
        return box[0]


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
    writer = _writer_rank(local == 0 and node_rank() == 0, world)
    if rank != writer:  # one voice in the log: the writer's
        logging.getLogger("deepgal").setLevel(logging.WARNING)
    log.info(
        "rank %d/%d on %s (%s, timeout %.0f s); rank %d writes the outputs",
        rank,
        world,
        device,
        backend,
        timeout,
        writer,
    )
    return Dist(rank, world, local, writer), device


def node_rank() -> int:
    """This node's ``--node-rank`` in ``DEEPGAL_TORCHRUN_ARGS`` (0 on one machine).

    Read by the training processes, which inherit the variable: torchrun's c10d rendezvous
    numbers the nodes in an order of its own (by host name, then process id), so global rank 0
    may sit on any node, while ``dvc repro`` waits for the outputs on the node it runs on.
    """
    from torch.distributed.run import get_args_parser

    extra = os.environ.get("DEEPGAL_TORCHRUN_ARGS", "").strip()
    if not extra:
        return 0
    return get_args_parser().parse_args([*shlex.split(extra), "script"]).node_rank


def _writer_rank(head: bool, world: int) -> int:
    """The one rank for which ``head`` is True (every rank calls this; a collective)."""
    heads: list[Any] = [None] * world
    tdist.all_gather_object(heads, head)
    writers = [r for r, h in enumerate(heads) if h]
    if len(writers) != 1:
        raise DistributedRunFailed(
            f"{len(writers)} nodes have --node-rank 0 in DEEPGAL_TORCHRUN_ARGS: give every "
            f"node its own --node-rank, 0 on the node where `dvc repro` runs (it writes the "
            f"outputs)"
        )
    return writers[0]


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
