"""torchrun support shared by the producer and the evaluation: process group, ranks, gathering.

Processes are started by ``torchrun`` (one node or several through its rendezvous), which sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; nothing here launches processes. The process group
is joined only when ``WORLD_SIZE`` > 1: NCCL on CUDA (device ``cuda:LOCAL_RANK``), gloo on CPU.
Without torchrun every helper behaves as a world of one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from infer_data.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of one run."""

    rank: int  # 0 .. world - 1
    world: int  # number of processes
    local_rank: int  # rank on this node (picks the GPU)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that reports progress and writes what is written once."""
        return self.rank == 0


def _env_int(name: str, default: int, minimum: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"environment variable {name}={text!r} is not an integer >= {minimum}; "
                          "launch with torchrun (it sets RANK, WORLD_SIZE and LOCAL_RANK) or unset it")
    return value


def env_ranks() -> Ranks:
    """Ranks as torchrun set them in the environment (a world of one without torchrun).

    Raises:
        ConfigError: a malformed ``RANK``, ``WORLD_SIZE`` or ``LOCAL_RANK``, or RANK >= WORLD_SIZE.
    """
    world = _env_int("WORLD_SIZE", 1, 1)
    rank, local = _env_int("RANK", 0, 0), _env_int("LOCAL_RANK", 0, 0)
    if rank >= world:
        raise ConfigError(f"environment variable RANK={rank} is not below WORLD_SIZE={world}; launch with torchrun or unset both")
    return Ranks(rank, world, local)


@contextlib.contextmanager
def distributed(device: str | None = None) -> Iterator[torch.device]:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1; yields this process's device.

    NCCL on CUDA (device ``cuda:LOCAL_RANK``), gloo on CPU. A group that is already
    initialized is used as is and left open. Every rank passes a barrier before the group it
    opened is destroyed, so no rank tears down while another still communicates.
    """
    ranks = env_ranks()
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if ranks.world > 1 and use_cuda:
        dev = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device(device or ("cuda" if use_cuda else "cpu"))
    owned = ranks.world > 1 and not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        logger.info("rank %d of %d on %s", dist.get_rank(), dist.get_world_size(), dev)
    try:
        yield dev
    except BaseException:
        if owned:
            dist.destroy_process_group()
        raise
    if owned:  # every rank reaches this point before any tears the group down
        dist.barrier()
        dist.destroy_process_group()


def current_ranks() -> Ranks:
    """Ranks of the joined process group, or of the environment when none is joined."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), env_ranks().local_rank)
    return env_ranks()


def barrier() -> None:
    """Wait for every rank (nothing to do without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_json(obj: Any, device: torch.device) -> list[Any]:
    """Every rank's ``obj`` (JSON-able), in rank order, on every rank.

    Values travel as UTF-8 JSON in uint8 tensors (no pickle); ``device`` is where the
    collective runs (CUDA for NCCL, CPU for gloo).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return [json.loads(json.dumps(obj))]
    data = torch.tensor(list(json.dumps(obj, sort_keys=True).encode()), dtype=torch.uint8, device=device)  # (L,)
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([data.numel()], dtype=torch.int64, device=device))
    longest = int(max(int(s) for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)
    padded[: data.numel()] = data
    parts = [torch.empty(longest, dtype=torch.uint8, device=device) for _ in range(world)]
    dist.all_gather(parts, padded)
    return [json.loads(bytes(p[: int(n)].cpu().tolist()).decode()) for p, n in zip(parts, sizes)]
