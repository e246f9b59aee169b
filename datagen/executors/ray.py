"""The ``ray`` executor: long-lived Ray actors, one ShardWorker (one Renderer) each.

An embedded single-machine cluster (``ray.init(address="local")``, loopback only, no dashboard, a
short temp dir) or ``--address`` to join a running cluster. Workers are actors holding 1 CPU slot
each, and an equal fraction of the cluster's GPUs when it has any. A lost or failed actor is killed
and replaced; its shard is retried under the run's retry policy.

When the driver of an embedded cluster is killed (even by SIGKILL), its actors end within a second and commit
no further shard (they watch it: :class:`datagen.shard_job.ShardWorker`), and :mod:`shared.reaper` kills the
rest of the cluster (Ray's agents would wait a minute for the dead GCS) and removes its temp dir. A joined
cluster (``--address``) ends a dead driver's actors itself.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import threading
import time
from collections import deque
from typing import Any, Callable, Iterator

from shared.config import Config
from shared.reaper import start_reaper, stop_reaper

from datagen.executors.base import ExecState, Outcome, RetryPolicy, available_cpus, error_text
from datagen.manifest import RunError
from datagen.shard_job import ShardSpec, ShardWorker


def actor_plan(resources: dict[str, float], workers: int | None, n_shards: int) -> tuple[int, float]:
    """(number of render actors, GPU share per actor) for a cluster's total resources.

    One actor per CPU slot unless ``workers`` says otherwise, never more than there are shards; with
    GPUs, the actors split them evenly (fractions when there are more actors than GPUs, at most 1 each).
    """
    k = max(1, min(workers or int(resources.get("CPU", 1)) or 1, n_shards))
    n_gpus = float(resources.get("GPU", 0.0))
    return k, (min(1.0, n_gpus / k) if n_gpus > 0 else 0.0)


def wait_for_address(address: str, timeout_s: float) -> None:
    """Until ``timeout_s`` has passed, retry a TCP connection to a ``host:port`` address (a cluster may still be
    starting); raise RunError naming the address if nothing answers. Other forms (``auto``, ``ray://``) pass."""
    m = re.fullmatch(r"\[?([^\[\]/]+?)\]?:(\d+)", address)
    if not m:
        return
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((m.group(1), int(m.group(2))), timeout=max(0.1, min(left, 5.0))):
                return
        except OSError as e:
            if time.monotonic() + 0.5 > deadline:
                raise RunError(f"the Ray cluster at {address} does not answer ({e.strerror or e} for "
                               f"{timeout_s:g} s, run.ray_connect_timeout_s); check --address and that the head "
                               "node is running") from None
            time.sleep(0.5)


def connect_within(ray: Any, address: str, timeout_s: float) -> None:
    """``ray.init(address)``, failing with RunError naming the address when it has not connected in ``timeout_s``
    (a port that accepts TCP but is no Ray head makes ray.init wait for minutes)."""
    result: dict[str, BaseException] = {}

    def connect() -> None:
        try:
            # Joining a cluster: its auth settings (RAY_AUTH_MODE / token) come from the user's environment.
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        except BaseException as e:  # noqa: BLE001 - handed to the caller below
            result["error"] = e

    thread = threading.Thread(target=connect, name="ray-connect", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise RunError(f"the Ray cluster at {address} did not answer within {timeout_s:g} s "
                       "(run.ray_connect_timeout_s); check --address")
    if "error" in result:
        raise RunError(f"cannot connect to the Ray cluster at {address}: {error_text(result['error'])}")


def init_ray(address: str | None, workers: int | None, connect_timeout_s: float = 30.0) -> Callable[[], None]:
    """Connect to ``address`` (failing within ``connect_timeout_s`` when it does not answer) or start the
    embedded local cluster; returns the matching shutdown."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not address:
        # Embedded cluster: lives as long as this process and listens on loopback only. Ray rewrites a
        # 127.0.0.1 node address to the machine's address (and then listens on every interface) unless
        # its single-machine switch is off; it is read when ray is imported, so set it first.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # Nothing but this process can reach a loopback-only cluster: token auth is switched off
        # deliberately (export RAY_AUTH_MODE=token to keep it on).
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import ray
    except ImportError as e:
        raise RunError(f"the ray executor needs Ray ({e}); install ray or pass --executor processes") from None
    if address:
        deadline = time.monotonic() + connect_timeout_s
        wait_for_address(address, connect_timeout_s)
        connect_within(ray, address, max(1.0, deadline - time.monotonic()))
        return ray.shutdown
    # CPU slots: one per CPU, or as many as --workers asks for (one actor holds one slot).
    # A short temp dir keeps socket paths under the length limit; address="local" never re-attaches
    # to a stale cluster left in a temp dir (a bare ray.init() can, and hang). Its name carries this driver's pid
    # (/tmp/ray<pid>-XXXX), so that what a dead driver left can be told from a running one's.
    temp_dir = tempfile.mkdtemp(prefix=f"ray{os.getpid()}-", dir="/tmp")
    reaper = start_reaper(temp_dir)  # kills what the cluster leaves behind if this process is killed

    def shutdown() -> None:
        import shutil

        ray.shutdown()
        stop_reaper(reaper)
        shutil.rmtree(temp_dir, ignore_errors=True)

    try:
        ray.init(address="local", num_cpus=max(available_cpus(), workers or 0), include_dashboard=False,
                 _temp_dir=temp_dir, _node_ip_address="127.0.0.1", object_store_memory=100 * 1024 * 1024,
                 log_to_driver=False, logging_level="WARNING")
    except BaseException:
        shutdown()
        raise
    return shutdown


def execute_ray(cfg: Config, specs: list[ShardSpec], workers: int | None, policy: RetryPolicy,
                state: ExecState, address: str | None = None, stall_timeout_s: float = 600.0,
                connect_timeout_s: float = 30.0, **_: Any) -> Iterator[Outcome]:
    """A ray.wait loop hands shards to idle actors; a failed actor is killed and replaced."""
    shutdown = init_ray(address, workers, connect_timeout_s)
    import ray
    from ray.exceptions import RayActorError

    try:
        k, gpu_share = actor_plan(ray.cluster_resources(), workers, len(specs))
        actor_cls = ray.remote(ShardWorker).options(num_cpus=1, num_gpus=gpu_share, max_restarts=0, max_task_retries=0)
        cfg_dict = cfg.model_dump(mode="json")
        owner_pid = None if address else os.getpid()  # embedded: the actors run on this host and watch this process
        queue = deque(specs)
        starting: dict[Any, Any] = {}  # ready ref -> actor
        busy: dict[Any, tuple[Any, ShardSpec]] = {}  # task ref -> (actor, spec)
        idle: deque = deque()
        started: list[Any] = []  # every actor, so that none outlives the run (also when the caller stops early)
        start_failures = 0

        def start_actor() -> None:
            # One CPU slot per actor, so one llvmpipe thread each on CPU-only nodes.
            actor = actor_cls.remote(cfg_dict, ray_gpu=gpu_share > 0, render_threads=1, owner_pid=owner_pid)
            started.append(actor)
            starting[actor.describe.remote()] = actor

        for _ in range(k):
            start_actor()
        last_progress = time.monotonic()
        while queue or busy:
            while idle and queue:
                actor, spec = idle.popleft(), queue.popleft()
                busy[actor.run.remote(spec.to_dict())] = (actor, spec)
            refs = list(busy) + list(starting)
            if not refs:
                start_actor()
                continue
            ready, _ = ray.wait(refs, num_returns=1, timeout=5.0)
            if not ready:
                if time.monotonic() - last_progress > stall_timeout_s:
                    raise RunError(f"no progress for {stall_timeout_s:.0f} s: no render worker could start "
                                   f"(cluster resources: {ray.available_resources()})")
                continue
            last_progress = time.monotonic()
            ref = ready[0]
            if ref in starting:
                actor = starting.pop(ref)
                try:
                    state.workers.append(ray.get(ref))
                    idle.append(actor)
                except Exception as e:  # noqa: BLE001 - the worker could not start (lost node, GL failure)
                    start_failures += 1
                    state.lost_workers += 1
                    ray.kill(actor, no_restart=True)
                    if start_failures > k + policy.max_retries:
                        raise RunError(f"render workers keep failing to start; last error: {error_text(e)}") from None
                    if len(busy) + len(starting) + len(idle) < k:
                        start_actor()
                continue
            actor, spec = busy.pop(ref)
            try:
                stats = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - task error or lost actor: replace the actor, retry the shard
                if isinstance(e, RayActorError):
                    state.lost_workers += 1
                ray.kill(actor, no_restart=True)
                start_actor()
                final = policy.failed(spec, e)
                if final is not None:
                    yield final
                else:
                    queue.appendleft(spec)
                continue
            idle.append(actor)
            yield Outcome(spec, stats=stats)
    finally:
        for actor in started:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead (a lost node)
                pass
        shutdown()
