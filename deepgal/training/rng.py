"""The random state of training, per epoch and rank, so a resume continues exactly.

:func:`epoch_generators` seeds epoch ``e`` of rank ``r`` from ``(seed, e, r)``; a mid-epoch
checkpoint stores the generators' states (:func:`rank_state`) and a resume restores them
(:func:`restore_rank_state`), CPU and CUDA alike.
"""

from __future__ import annotations

from typing import Any

import torch


def epoch_generators(
    seed: int, epoch: int, device: torch.device, rank: int = 0, world: int = 1
) -> tuple[torch.Generator, torch.Generator]:
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


def restore_rank_state(
    state: dict[str, Any], dev_gen: torch.Generator, device: torch.device
) -> None:
    """Inverse of :func:`rank_state` (the CUDA RNG only where the state has one)."""
    dev_gen.set_state(state["device"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
