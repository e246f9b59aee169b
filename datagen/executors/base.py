"""What every executor shares: the outcome of a shard, the run's worker/failure record, and the one retry policy."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from datagen.shard_job import ShardSpec


@dataclass
class Outcome:
    """One shard's end: stats on success, or the error after its last attempt."""

    spec: ShardSpec
    stats: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class ExecState:
    """What executors report besides outcomes: the workers they started and the failures they absorbed."""

    workers: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 0
    lost_workers: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)  # every failed attempt, retried or not


class RetryPolicy:
    """The one attempt policy of every executor: a shard gets ``1 + max_retries`` attempts.

    ``failed(spec, error)`` records the failed attempt in ``state`` and returns the shard's final
    :class:`Outcome` when it has no attempts left, or None when the executor should run it again.
    """

    def __init__(self, max_retries: int, state: ExecState):
        self.max_retries = max_retries
        self.state = state
        self.attempts: Counter[str] = Counter()

    def failed(self, spec: ShardSpec, error: str) -> Outcome | None:
        self.state.failures.append({"shard": spec.rel_path, "attempt": self.attempts[spec.rel_path], "error": error})
        self.attempts[spec.rel_path] += 1
        if self.attempts[spec.rel_path] > self.max_retries:
            return Outcome(spec, error=error)
        self.state.retries += 1
        return None


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware, unlike os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
