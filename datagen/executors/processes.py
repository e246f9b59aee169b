"""The ``processes`` executor: a spawn-context process pool, one ShardWorker per process.

Never fork: an inherited EGL context hangs (PLATFORM_NOTES.md). The pool initializer creates the
worker inside each process; a crashed pool is rebuilt and its in-flight shards are resubmitted.
"""

from __future__ import annotations

from typing import Any, Iterator

from shared.config import Config

from datagen.executors.base import ExecState, Outcome, RetryPolicy, available_cpus
from datagen.shard_job import ShardSpec, ShardWorker

# Process-pool worker state (one per spawned process).
_POOL_WORKER: ShardWorker | None = None


def _pool_init(cfg_dict: dict[str, Any], report_queue, render_threads: int) -> None:
    global _POOL_WORKER
    _POOL_WORKER = ShardWorker(cfg_dict, render_threads=render_threads)
    report_queue.put(_POOL_WORKER.describe())


def _pool_run(spec: dict[str, Any]) -> dict[str, Any]:
    assert _POOL_WORKER is not None, "pool initializer did not run"
    return _POOL_WORKER.run(spec)


def execute_processes(cfg: Config, specs: list[ShardSpec], workers: int | None, policy: RetryPolicy,
                      state: ExecState, **_: Any) -> Iterator[Outcome]:
    """``workers`` processes (default: one per CPU, at most one per shard)."""
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    k = max(1, min(workers or available_cpus(), len(specs)))
    reports = ctx.Queue()
    cfg_dict = cfg.model_dump(mode="json")

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=k, mp_context=ctx, initializer=_pool_init,
                                   initargs=(cfg_dict, reports, max(1, available_cpus() // k)))

    def drain() -> None:
        while True:
            try:
                state.workers.append(reports.get(timeout=0.2))
            except queue_mod.Empty:
                return

    pool = new_pool()
    try:
        pending = {pool.submit(_pool_run, s.to_dict()): s for s in specs}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            requeue: list[ShardSpec] = []
            for fut in finished:
                spec = pending.pop(fut)
                try:
                    yield Outcome(spec, stats=fut.result())
                    continue
                except BrokenProcessPool as e:
                    broken = True
                    err: BaseException = e
                except Exception as e:  # noqa: BLE001
                    err = e
                final = policy.failed(spec, err)
                if final is not None:
                    yield final
                else:
                    requeue.append(spec)
            if broken:  # every in-flight future of a broken pool fails: rebuild and resubmit
                state.lost_workers += 1
                pool.shutdown(wait=True, cancel_futures=True)
                requeue += list(pending.values())
                pending.clear()
                pool = new_pool()
            for spec in requeue:
                pending[pool.submit(_pool_run, spec.to_dict())] = spec
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        drain()
