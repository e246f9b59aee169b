"""The torchrun world: where this process sits, barriers, reductions, and the model under its wrappers.

A command started by ``torchrun --nproc_per_node N`` finds RANK / WORLD_SIZE / LOCAL_RANK in its
environment and joins the process group through ``env://`` (NCCL on CUDA, gloo on the CPU). A plain
``python -m ...`` run is a world of one and never touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as torch_dist
from torch import nn

from shared.errors import ConfigError, SynestheteError

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """Where this process sits in the (possibly one-process) world."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's CUDA device when there is one, else the CPU. ``cuda`` without a GPU is an error."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"run.device must be auto, cpu or cuda (got {requested!r})")
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if requested == "cuda":
        raise ConfigError("run.device=cuda but torch sees no CUDA device")
    return torch.device("cpu")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from e


def setup_distributed(device: str = "auto") -> Dist:
    """Join the torchrun process group when the environment describes one (``env://``).

    Backend: NCCL when this rank runs on CUDA, gloo on the CPU. Idempotent: a second call
    returns the same description without re-initialising.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = pick_device(device, local_rank)
    if world_size > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not torch_dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            kwargs: dict[str, Any] = {"backend": backend, "init_method": "env://"}
            if dev.type == "cuda":
                kwargs["device_id"] = dev
            torch_dist.init_process_group(**kwargs)
        rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, is_main=rank == 0)


def cleanup_distributed() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


@contextmanager
def distributed_world(device: str = "auto") -> Iterator[Dist]:
    """The torchrun world for the length of one command (``with distributed_world(dev) as dist: ...``).

    On a normal exit every rank meets at a barrier before its process group is destroyed, so no rank
    tears down its gloo pairs while a peer still writes to them (a 2-rank CPU run in the docker check once
    ended with SIGABRT in one rank after both had finished). On an error the group is destroyed without
    the barrier, which a failed peer might never reach.
    """
    dist = setup_distributed(device)
    try:
        yield dist
    except BaseException:
        cleanup_distributed()
        raise
    barrier(dist)
    cleanup_distributed()


def barrier(d: Dist) -> None:
    if d.distributed:
        torch_dist.barrier()


def all_reduce_sum(values: list[float], d: Dist) -> list[float]:
    """Sum a few scalars over ranks (identity in a world of one)."""
    if not d.distributed:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def all_reduce_mean(values: list[float], d: Dist) -> list[float]:
    return [v / d.world_size for v in all_reduce_sum(values, d)]


def all_gather_union(items: set[str], d: Dist) -> set[str]:
    """The union of every rank's set of strings (the set itself in a world of one)."""
    if not d.distributed:
        return set(items)
    gathered: list[Any] = [None] * d.world_size
    torch_dist.all_gather_object(gathered, sorted(items))
    return {x for part in gathered for x in part}


def main_first(d: Dist, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result to every rank.

    When ``fn`` raises, rank 0 re-raises it (with its traceback) and the other ranks raise too instead
    of waiting at the next barrier forever: the same :class:`SynestheteError` subclass and message for
    bad input, a ``RuntimeError`` naming rank 0's failure otherwise.
    """
    if not d.distributed:
        return fn()
    outcome: list[Any] = [None]
    error: BaseException | None = None
    if d.is_main:
        try:
            outcome = [("ok", fn())]
        except BaseException as e:  # noqa: BLE001 - re-raised below, after the other ranks are told
            error = e
            outcome = [("error", type(e) if isinstance(e, SynestheteError) else None, f"{type(e).__name__}: {e}")]
    torch_dist.broadcast_object_list(outcome, src=0)
    if error is not None:
        raise error
    kind, *rest = outcome[0]
    if kind == "ok":
        return rest[0]
    cls, message = rest
    if cls is not None:
        raise cls(message.split(": ", 1)[1])
    raise RuntimeError(f"rank 0 failed: {message}")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and/or torch.compile wrappers (what checkpoints, EMA and attribute look-ups see)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod  # torch.compile's OptimizedModule
        else:
            return model
