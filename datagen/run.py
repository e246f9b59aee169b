"""`datagen run`: orchestrate shard generation (executors, resume, manifest, progress, summary).

The executor is separate from the step (datatrove's split): every executor runs
:func:`datagen.shard_job.write_shard` through a long-lived
:class:`datagen.shard_job.ShardWorker` (one GL context per worker, created in
the worker), so ``local``, ``processes`` and ``ray`` write identical bytes.

- ``ray`` (default): an embedded single-machine cluster (``ray.init(address="local")``,
  loopback only, no dashboard, a short temp dir) or ``--address`` to join a
  running cluster. Workers are actors holding 1 CPU slot each, and an equal
  fraction of the cluster's GPUs when it has any. A lost or failed actor is
  killed and replaced; its shard is retried up to ``run.max_retries`` times.
- ``processes``: a spawn-context process pool (never fork: an inherited EGL
  context hangs, PLATFORM_NOTES.md); the initializer creates one worker per process.
- ``local``: serial, in this process.

Resume: the final shard name is the completion marker. A shard whose final file
exists and matches the manifest is skipped; a final file the manifest does not
know yet is read back and recorded (the manifest is rebuilt when behind); a
``.partial`` file is deleted and the shard redone.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from shared import shards as S
from shared.config import Config
from shared.provenance import provenance

from datagen.shard_job import VARIANTS, ShardSpec, ShardWorker, plan_shards, read_shard_stats

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
MANIFEST_VERSION = 1

# Fields of data/timeline/render that do not change a shard's bytes: a re-run may change them freely.
_NOT_CONTENT = {
    "data": {"train_shards", "val_shards", "reweight_variants", "audio_debug_mix_schedule_steps"},
    "render": {"chunk_frames"},
    "timeline": set(),
}


class RunError(RuntimeError):
    """A run that cannot start (bad output dir, config mismatch, executor unavailable)."""


# --------------------------------------------------------------- pure helpers


def content_fingerprint(cfg: Config) -> dict[str, Any]:
    """The config fields that decide shard bytes (data, timeline, render minus counts and chunking)."""
    dumped = cfg.model_dump(mode="json")
    return {sec: {k: v for k, v in dumped[sec].items() if k not in _NOT_CONTENT[sec]} for sec in _NOT_CONTENT}


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable ``section.key: old -> new`` lines."""
    out = []
    for sec in sorted(set(old) | set(new)):
        a, b = old.get(sec, {}), new.get(sec, {})
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append(f"{sec}.{k}: {a.get(k)!r} -> {b.get(k)!r}")
    return out


def rates(samples: int, frames: int, seconds: float) -> dict[str, float]:
    s = max(seconds, 1e-9)
    return {"samples_per_s": round(samples / s, 3), "frames_per_s": round(frames / s, 2)}


def actor_plan(resources: dict[str, float], workers: int | None, n_shards: int) -> tuple[int, float]:
    """(number of render actors, GPU share per actor) for a cluster's total resources.

    One actor per CPU slot unless ``workers`` says otherwise, never more than there are shards; with
    GPUs, the actors split them evenly (fractions when there are more actors than GPUs, at most 1 each).
    """
    k = max(1, min(workers or int(resources.get("CPU", 1)) or 1, n_shards))
    n_gpus = float(resources.get("GPU", 0.0))
    return k, (min(1.0, n_gpus / k) if n_gpus > 0 else 0.0)


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware, unlike os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


# --------------------------------------------------------------- output dir


def check_out_dir(out: str | os.PathLike) -> Path:
    """Create ``out`` (and train/, val/) and prove it writable, or raise RunError naming the path and reason."""
    p = Path(out)
    try:
        if p.exists() and not p.is_dir():
            raise RunError(f"--out {p}: exists and is not a directory")
        for d in (p, p / "train", p / "val"):
            d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except RunError:
        raise
    except OSError as e:
        raise RunError(f"--out {p}: not writable ({e.strerror or e})") from None
    if not os.access(p / "train", os.W_OK) or not os.access(p / "val", os.W_OK):
        raise RunError(f"--out {p}: train/ or val/ is not writable")
    return p


# ------------------------------------------------------------------ manifest


class Manifest:
    """``manifest.json``: resolved config, provenance and one entry per finished shard (atomic writes)."""

    def __init__(self, out: Path, cfg: Config, existing: dict[str, Any] | None):
        self.path = out / MANIFEST
        self.doc: dict[str, Any] = {
            "schema_version": MANIFEST_VERSION,
            "config": cfg.model_dump(mode="json"),
            "content_fingerprint": content_fingerprint(cfg),
            "provenance": provenance(),
            "splits": {"train": cfg.data.train_shards, "val": cfg.data.resolved_val_shards()},
            "samples_per_shard": cfg.data.samples_per_shard,
            "shards": dict((existing or {}).get("shards", {})),
        }
        self._last_save = 0.0

    @staticmethod
    def load(out: Path) -> dict[str, Any] | None:
        p = out / MANIFEST
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise RunError(f"{p}: unreadable manifest ({e}); move it away or pass --force") from None

    @property
    def shards(self) -> dict[str, dict[str, Any]]:
        return self.doc["shards"]

    def record(self, stats: dict[str, Any]) -> None:
        self.shards[stats["path"]] = stats

    def forget(self, rel_path: str) -> None:
        self.shards.pop(rel_path, None)

    def save(self, throttle_s: float = 0.0) -> None:
        """Write atomically; with ``throttle_s`` skip if the last write was more recent (the final save is forced)."""
        now = time.monotonic()
        if throttle_s and now - self._last_save < throttle_s:
            return
        self.doc["shards"] = dict(sorted(self.shards.items()))
        write_json_atomic(self.path, self.doc)
        self._last_save = now


def check_compatible(existing: dict[str, Any] | None, cfg: Config, out: Path, force: bool) -> None:
    """Refuse a re-run into ``out`` if its shards were made with a different content config (unless force)."""
    if existing is None or force:
        return
    diff = fingerprint_diff(existing.get("content_fingerprint", {}), content_fingerprint(cfg))
    if diff:
        raise RunError(f"{out} holds shards made with a different config; pass --force to regenerate them, or "
                       "choose another --out. Differences:\n  " + "\n  ".join(diff))


def reconcile(specs: list[ShardSpec], manifest: Manifest, force: bool,
              log: Callable[[str], None]) -> tuple[list[ShardSpec], list[ShardSpec]]:
    """Split the planned shards into (done, todo), cleaning ``.partial`` files and rebuilding missing entries."""
    done, todo = [], []
    for spec in specs:
        final = spec.path
        partial = Path(str(final) + S.PARTIAL_SUFFIX)
        if partial.exists():
            partial.unlink()
            log(f"removed unfinished {partial}")
        entry = manifest.shards.get(spec.rel_path)
        if force or not final.exists():
            manifest.forget(spec.rel_path)
            todo.append(spec)
            continue
        if entry is not None and entry.get("bytes") == final.stat().st_size:
            done.append(spec)
            continue
        try:  # the manifest is behind (or disagrees): read the finished file back
            stats = read_shard_stats(final, spec.split, spec.index)
        except Exception as e:  # noqa: BLE001 - any unreadable shard is simply redone
            log(f"{spec.rel_path}: unreadable ({e}); regenerating")
            final.unlink()
            manifest.forget(spec.rel_path)
            todo.append(spec)
            continue
        if entry is not None and entry.get("sha256") != stats["sha256"]:
            log(f"{spec.rel_path}: differs from the manifest; regenerating")
            final.unlink()
            manifest.forget(spec.rel_path)
            todo.append(spec)
            continue
        manifest.record(stats)
        done.append(spec)
    return done, todo


# ------------------------------------------------------------------ executors


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


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()


def execute_local(cfg: Config, specs: list[ShardSpec], workers: int | None, max_retries: int,
                  state: ExecState, **_: Any) -> Iterator[Outcome]:
    """Serial, in this process: one worker (one GL context) for the whole run."""
    worker = ShardWorker(cfg.model_dump(mode="json"))
    state.workers.append(worker.describe())
    for spec in specs:
        for attempt in range(max_retries + 1):
            try:
                yield Outcome(spec, stats=worker.run(spec.to_dict()))
                break
            except Exception as e:  # noqa: BLE001 - reported by index, run continues
                state.failures.append({"shard": spec.rel_path, "attempt": attempt, "error": _error_text(e)})
                if attempt == max_retries:
                    yield Outcome(spec, error=_error_text(e))
                else:
                    state.retries += 1


# Process-pool worker state (one per spawned process).
_POOL_WORKER: ShardWorker | None = None


def _pool_init(cfg_dict: dict[str, Any], report_queue, render_threads: int) -> None:
    global _POOL_WORKER
    _POOL_WORKER = ShardWorker(cfg_dict, render_threads=render_threads)
    report_queue.put(_POOL_WORKER.describe())


def _pool_run(spec: dict[str, Any]) -> dict[str, Any]:
    assert _POOL_WORKER is not None, "pool initializer did not run"
    return _POOL_WORKER.run(spec)


def execute_processes(cfg: Config, specs: list[ShardSpec], workers: int | None, max_retries: int,
                      state: ExecState, **_: Any) -> Iterator[Outcome]:
    """A spawn-context process pool; a crashed pool is rebuilt and its in-flight shards retried."""
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    k = max(1, min(workers or available_cpus(), len(specs)))
    reports = ctx.Queue()
    cfg_dict = cfg.model_dump(mode="json")
    attempts: Counter[str] = Counter()

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
                    err = _error_text(e)
                except Exception as e:  # noqa: BLE001
                    err = _error_text(e)
                state.failures.append({"shard": spec.rel_path, "attempt": attempts[spec.rel_path], "error": err})
                attempts[spec.rel_path] += 1
                if attempts[spec.rel_path] > max_retries:
                    yield Outcome(spec, error=err)
                else:
                    state.retries += 1
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


def init_ray(address: str | None, workers: int | None) -> Callable[[], None]:
    """Connect to ``address`` or start the embedded local cluster; returns the matching shutdown."""
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
        # Joining a cluster: its auth settings (RAY_AUTH_MODE / token) come from the user's environment.
        try:
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        except Exception as e:  # noqa: BLE001
            raise RunError(f"cannot connect to the Ray cluster at {address}: {_error_text(e)}") from None
        return ray.shutdown
    # CPU slots: one per CPU, or as many as --workers asks for (one actor holds one slot).
    # A short temp dir keeps socket paths under the length limit; address="local" never re-attaches
    # to a stale cluster left in a temp dir (a bare ray.init() can, and hang).
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(address="local", num_cpus=max(available_cpus(), workers or 0), include_dashboard=False, _temp_dir=temp_dir,
             _node_ip_address="127.0.0.1", object_store_memory=100 * 1024 * 1024,
             log_to_driver=False, logging_level="WARNING")

    def shutdown() -> None:
        import shutil

        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)

    return shutdown


def execute_ray(cfg: Config, specs: list[ShardSpec], workers: int | None, max_retries: int,
                state: ExecState, address: str | None = None, stall_timeout_s: float = 600.0,
                **_: Any) -> Iterator[Outcome]:
    """Long-lived Ray actors, one Renderer each; a ray.wait loop hands shards to idle actors."""
    shutdown = init_ray(address, workers)
    import ray
    from ray.exceptions import RayActorError

    try:
        k, gpu_share = actor_plan(ray.cluster_resources(), workers, len(specs))
        actor_cls = ray.remote(ShardWorker).options(num_cpus=1, num_gpus=gpu_share, max_restarts=0, max_task_retries=0)
        cfg_dict = cfg.model_dump(mode="json")
        queue = deque(specs)
        attempts: Counter[str] = Counter()
        starting: dict[Any, Any] = {}  # ready ref -> actor
        busy: dict[Any, tuple[Any, ShardSpec]] = {}  # task ref -> (actor, spec)
        idle: deque = deque()
        start_failures = 0

        def start_actor() -> None:
            # One CPU slot per actor, so one llvmpipe thread each on CPU-only nodes.
            actor = actor_cls.remote(cfg_dict, ray_gpu=gpu_share > 0, render_threads=1)
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
                    if start_failures > k + max_retries:
                        raise RunError(f"render workers keep failing to start; last error: {_error_text(e)}") from None
                    if len(busy) + len(starting) + len(idle) < k:
                        start_actor()
                continue
            actor, spec = busy.pop(ref)
            try:
                stats = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - task error or lost actor: replace the actor, retry the shard
                if isinstance(e, RayActorError):
                    state.lost_workers += 1
                err = _error_text(e).splitlines()[0] if not isinstance(e, RayActorError) else _error_text(e)
                state.failures.append({"shard": spec.rel_path, "attempt": attempts[spec.rel_path], "error": err})
                attempts[spec.rel_path] += 1
                ray.kill(actor, no_restart=True)
                start_actor()
                if attempts[spec.rel_path] > max_retries:
                    yield Outcome(spec, error=err)
                else:
                    state.retries += 1
                    queue.appendleft(spec)
                continue
            idle.append(actor)
            yield Outcome(spec, stats=stats)
        for actor in list(idle) + list(starting.values()):
            ray.kill(actor, no_restart=True)
    finally:
        shutdown()


EXECUTORS: dict[str, Callable[..., Iterator[Outcome]]] = {
    "ray": execute_ray,
    "processes": execute_processes,
    "local": execute_local,
}


# ------------------------------------------------------------------ the run


def _log(msg: str) -> None:
    print(f"datagen run: {msg}", file=sys.stderr, flush=True)


def run_datagen(cfg: Config, out: str | os.PathLike, force: bool = False, progress: bool = True,
                stall_timeout_s: float = 600.0) -> tuple[int, dict[str, Any]]:
    """Generate every missing shard of ``cfg`` into ``out``; returns (exit code, summary).

    Raises RunError before any work when the output dir or config cannot be used.
    """
    from tqdm import tqdm

    if cfg.run.executor not in EXECUTORS:
        raise RunError(f"unknown executor {cfg.run.executor!r}; choose one of {', '.join(EXECUTORS)}")
    out_dir = check_out_dir(out).resolve()  # absolute: workers on other nodes have other working dirs
    existing = Manifest.load(out_dir)
    check_compatible(existing, cfg, out_dir, force)
    manifest = Manifest(out_dir, cfg, None if force else existing)
    specs = plan_shards(cfg, out_dir)
    done, todo = reconcile(specs, manifest, force, _log)
    manifest.save()

    state = ExecState()
    outcomes_failed: list[Outcome] = []
    samples = frames = 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(specs), initial=len(done), unit="shard", desc="datagen", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        if todo:
            run_fn = EXECUTORS[cfg.run.executor]
            for outcome in run_fn(cfg, todo, cfg.run.workers, cfg.run.max_retries, state,
                                  address=cfg.run.address, stall_timeout_s=stall_timeout_s):
                if outcome.stats is not None:
                    manifest.record(outcome.stats)
                    manifest.save(throttle_s=1.0)
                    samples += outcome.stats["samples"]
                    frames += outcome.stats["frames"]
                else:
                    outcomes_failed.append(outcome)
                    _log(f"shard {outcome.spec.rel_path} (index {outcome.spec.index}) failed after "
                         f"{cfg.run.max_retries + 1} attempts: {outcome.error}")
                bar.update(1)
                bar.set_postfix(rates(samples, frames, time.perf_counter() - t0), refresh=False)
    finally:
        bar.close()
        manifest.save()

    seconds = time.perf_counter() - t0
    by_split: dict[str, dict[str, int]] = {"train": Counter(), "val": Counter()}
    for entry in manifest.shards.values():
        for v, n in entry.get("variants", {}).items():
            by_split[entry["split"]][v] += n
    summary = {
        "out": str(out_dir),
        "executor": cfg.run.executor,
        "address": cfg.run.address,
        "shards_total": len(specs),
        "shards_skipped": len(done),
        "shards_written": len(todo) - len(outcomes_failed),
        "shards_failed": [{"split": o.spec.split, "index": o.spec.index, "path": o.spec.rel_path, "error": o.error}
                          for o in outcomes_failed],
        "retries": state.retries,
        "lost_workers": state.lost_workers,
        "attempt_failures": state.failures,
        "workers": state.workers,
        "gl_contexts": len(state.workers),
        "samples_written": samples,
        "frames_written": frames,
        "seconds": round(seconds, 3),
        **rates(samples, frames, seconds),
        "variants": {split: {v: c.get(v, 0) for v in VARIANTS} for split, c in by_split.items()},
    }
    write_json_atomic(out_dir / SUMMARY, summary)
    return (1 if outcomes_failed else 0), summary
