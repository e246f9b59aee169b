"""What every executor shares: the outcome of a shard, the run's worker/failure record, and the one retry policy."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared.errors import DiskFullError
from shared.fsutil import is_enospc

from datagen.shard_job import ShardSpec


@dataclass
class Outcome:
    """One shard's end: stats on success, or the error after its last attempt."""

    spec: ShardSpec
    stats: dict[str, Any] | None = None
    error: str | None = None
    disk_full: bool = False  # the error was a full disk: the run stops (retrying cannot help)


@dataclass
class ExecState:
    """What executors report besides outcomes: the workers they started and the failures they absorbed."""

    workers: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 0
    lost_workers: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)  # every failed attempt, retried or not


class RetryPolicy:
    """The one attempt policy of every executor: a shard gets ``1 + max_retries`` attempts.

    ``failed(spec, exc)`` records the failed attempt in ``state`` and returns the shard's final
    :class:`Outcome` when it has no attempts left (or the disk is full: no retry can help), or None
    when the executor should run it again.
    """

    def __init__(self, max_retries: int, state: ExecState):
        self.max_retries = max_retries
        self.state = state
        self.attempts: Counter[str] = Counter()

    def failed(self, spec: ShardSpec, exc: BaseException) -> Outcome | None:
        error = error_text(exc)
        self.state.failures.append({"shard": spec.rel_path, "attempt": self.attempts[spec.rel_path], "error": error})
        self.attempts[spec.rel_path] += 1
        if is_disk_full(exc):
            return Outcome(spec, error=error, disk_full=True)
        if self.attempts[spec.rel_path] > self.max_retries:
            return Outcome(spec, error=error)
        self.state.retries += 1
        return None


def _cause(e: BaseException) -> BaseException | None:
    """The exception a remote task raised, when ``e`` wraps one (Ray's RayTaskError keeps it as ``cause``)."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) and cause is not e else None


def is_disk_full(e: BaseException) -> bool:
    """A full disk, here or in a worker (DiskFullError crosses process pools and Ray pickled)."""
    cause = _cause(e)
    return isinstance(e, DiskFullError) or is_enospc(e) or (cause is not None and is_disk_full(cause))


def error_text(e: BaseException) -> str:
    """``Type: message`` of the error a shard failed with (a remote task's own error, not Ray's wrapper
    with its traceback), so that the reason (e.g. 'no space left on device') is never cut off."""
    cause = _cause(e)
    if cause is not None:
        return error_text(cause)
    text = f"{type(e).__name__}: {e}".strip()
    return text if type(e).__name__ == "RayActorError" else text.splitlines()[0]


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware, unlike os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
