"""The ``local`` executor: serial, in this process."""

from __future__ import annotations

from typing import Any, Iterator

from shared.config import Config

from datagen.executors.base import ExecState, Outcome, RetryPolicy
from datagen.shard_job import ShardSpec, ShardWorker


def execute_local(cfg: Config, specs: list[ShardSpec], workers: int | None, policy: RetryPolicy,
                  state: ExecState, **_: Any) -> Iterator[Outcome]:
    """One worker (one GL context) for the whole run; a failed shard is retried at once."""
    worker = ShardWorker(cfg.model_dump(mode="json"))
    state.workers.append(worker.describe())
    for spec in specs:
        while True:
            try:
                yield Outcome(spec, stats=worker.run(spec.to_dict()))
                break
            except Exception as e:  # noqa: BLE001 - reported by index, run continues
                final = policy.failed(spec, e)
                if final is not None:
                    yield final
                    break
