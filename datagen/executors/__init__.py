"""Executors: where shards run (datatrove's split: the executor is separate from the step).

Every executor runs :func:`datagen.shard_job.write_shard` through a long-lived
:class:`datagen.shard_job.ShardWorker` (one GL context per worker, created in the worker), yields one
:class:`Outcome` per shard, and retries failures under the one :class:`RetryPolicy`:

- ``ray`` (default, :mod:`datagen.executors.ray`): Ray actors, embedded cluster or ``--address``.
- ``processes`` (:mod:`datagen.executors.processes`): a spawn-context process pool.
- ``local`` (:mod:`datagen.executors.local`): serial, in this process.
"""

from __future__ import annotations

from typing import Callable, Iterator

from datagen.executors.base import ExecState, Outcome, RetryPolicy, available_cpus, error_text
from datagen.executors.local import execute_local
from datagen.executors.processes import execute_processes
from datagen.executors.ray import actor_plan, execute_ray

EXECUTORS: dict[str, Callable[..., Iterator[Outcome]]] = {
    "ray": execute_ray,
    "processes": execute_processes,
    "local": execute_local,
}

__all__ = ["EXECUTORS", "ExecState", "Outcome", "RetryPolicy", "actor_plan", "available_cpus", "error_text",
           "execute_local", "execute_processes", "execute_ray"]
