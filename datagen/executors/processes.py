"""The ``processes`` executor: a spawn-context process pool, one ShardWorker per process.

Never fork: an inherited EGL context hangs (PLATFORM_NOTES.md). The pool initializer creates the
worker inside each process; a crashed pool is rebuilt and its in-flight shards are resubmitted. The workers
watch the driver (``owner_pid``): when it dies, even by SIGKILL, they end within a second and commit no
further shard (:class:`datagen.shard_job.ShardWorker`); multiprocessing's resource tracker ends with them.

GPUs: each worker is pinned to one of this machine's GPUs, round robin (worker j gets GPU
j mod n), the way the ``ray`` executor's actors are: its CUDA_VISIBLE_DEVICES is narrowed to that
GPU before its Renderer exists, and the Renderer then takes the first visible GPU's EGL device.
Without NVIDIA GPUs (Mesa) nothing is pinned.
"""

from __future__ import annotations

from typing import Any, Iterator

from shared.config import Config

from datagen.executors.base import ExecState, Outcome, RetryPolicy, available_cpus
from datagen.shard_job import ShardSpec, ShardWorker

# Process-pool worker state (one per spawned process).
_POOL_WORKER: ShardWorker | None = None


def visible_gpus(cuda_visible_devices: str | None, egl_cuda_ids: list[int | None]) -> list[str]:
    """The GPUs this process may hand to workers, as CUDA_VISIBLE_DEVICES entries.

    A CUDA_VISIBLE_DEVICES that lists GPUs is kept as given (its entries, in order); unset, the
    NVIDIA GPUs EGL reports (their CUDA ordinals); "" / "-1" / "NoDevFiles" or no NVIDIA EGL device: none.
    """
    if cuda_visible_devices is not None:
        cvd = cuda_visible_devices.strip()
        if cvd in ("", "-1", "NoDevFiles"):
            return []
        return [d.strip() for d in cvd.split(",") if d.strip()]
    return [str(c) for c in sorted({c for c in egl_cuda_ids if c is not None})]


def gpu_for_worker(slot: int, gpus: list[str]) -> str | None:
    """The GPU of worker ``slot``: round robin over ``gpus`` (several workers share one when there are more
    workers than GPUs, like the ray executor's fractional GPUs); None without GPUs."""
    return gpus[slot % len(gpus)] if gpus else None


def _pool_init(cfg_dict: dict[str, Any], report_queue, render_threads: int, slots, gpus: list[str],
               owner_pid: int) -> None:
    global _POOL_WORKER
    import os
    import queue as queue_mod

    try:
        slot = slots.get(timeout=30)
    except queue_mod.Empty:  # more processes than slots (not expected): the first GPU
        slot = 0
    gpu = gpu_for_worker(slot, gpus)
    if gpu is not None:  # before the Renderer (and CUDA/EGL) exists in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    _POOL_WORKER = ShardWorker(cfg_dict, render_threads=render_threads, owner_pid=owner_pid)
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

    import os

    from datagen.visual.renderer import query_egl_cuda_ids

    ctx = mp.get_context("spawn")
    k = max(1, min(workers or available_cpus(), len(specs)))
    reports = ctx.Queue()
    cfg_dict = cfg.model_dump(mode="json")
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = visible_gpus(cvd, [] if cvd is not None else query_egl_cuda_ids())

    def new_pool() -> ProcessPoolExecutor:
        slots = ctx.Queue()  # worker slot j -> GPU j mod n; a rebuilt pool hands them out afresh
        for j in range(k):
            slots.put(j)
        return ProcessPoolExecutor(max_workers=k, mp_context=ctx, initializer=_pool_init,
                                   initargs=(cfg_dict, reports, max(1, available_cpus() // k), slots, gpus,
                                             os.getpid()))

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
