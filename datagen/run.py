"""`datagen run`: orchestrate shard generation (plan, resume, execute, manifest, progress, summary).

The pieces, one concern each (datatrove's split):

- :mod:`datagen.shard_job`: the per-shard work, identical under every executor.
- :mod:`datagen.executors`: where shards run (``ray``, ``processes``, ``local``), under one retry policy.
- :mod:`datagen.manifest`: ``manifest.json`` and the config's content fingerprint.
- :mod:`datagen.reconcile`: the output dir check and the done/todo split against what is on disk.

Resume: the final shard name is the completion marker. A shard whose final file
exists and matches the manifest is skipped; a final file the manifest does not
know yet is read back and recorded (the manifest is rebuilt when behind); a
``.partial`` file is deleted and the shard redone.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from shared import shards as S
from shared.config import Config
from shared.errors import DiskFullError
from shared.runlock import dir_lock

from datagen.executors import EXECUTORS, ExecState, Outcome, RetryPolicy, actor_plan, available_cpus
from datagen.manifest import (MANIFEST, SUMMARY, Manifest, RunError, check_compatible, content_changed,
                              content_fingerprint, fingerprint_diff, write_json_atomic)
from datagen.reconcile import check_out_dir, reconcile
from datagen.shard_job import SPLITS, VARIANTS, plan_shards, split_counts

__all__ = ["MANIFEST", "SUMMARY", "RunError", "actor_plan", "available_cpus", "content_fingerprint",
           "fingerprint_diff", "rates", "run_datagen"]


def rates(samples: int, frames: int, seconds: float) -> dict[str, float]:
    s = max(seconds, 1e-9)
    return {"samples_per_s": round(samples / s, 3), "frames_per_s": round(frames / s, 2)}


def _log(msg: str) -> None:
    print(f"datagen run: {msg}", file=sys.stderr, flush=True)


def remove_beyond(out_dir: Path, counts: dict[str, int]) -> int:
    """Delete the shards (and unfinished ``.partial`` files) of each split whose index is >= its new count."""
    removed = 0
    for split, n in counts.items():
        for p in sorted((out_dir / split).glob("shard-*.tar*")):
            try:
                index = S.shard_index(p)
            except ValueError:
                continue
            if index >= n:
                p.unlink()
                removed += not p.name.endswith(S.PARTIAL_SUFFIX)
    return removed


def run_datagen(cfg: Config, out: str | os.PathLike, force: bool = False, progress: bool = True,
                stall_timeout_s: float = 600.0, redo: frozenset[str] = frozenset()) -> tuple[int, dict[str, Any]]:
    """Generate every missing shard of ``cfg`` into ``out``; returns (exit code, summary).

    Finished shards are verified against the manifest's sha256 (cached by size + mtime) and regenerated
    when they differ; so are the shards named in ``redo`` (``split/shard-NNNNNN.tar``, from inspect --repair).

    Holds ``out``'s lock for the whole run (a second run into it gets LockHeldError naming this one).
    Raises a SynestheteError before any work when the output dir or config cannot be used, and
    DiskFullError (finished shards kept, temporary files removed) when the disk fills up.
    """
    if cfg.run.executor not in EXECUTORS:
        raise RunError(f"unknown executor {cfg.run.executor!r}; choose one of {', '.join(EXECUTORS)}")
    out_dir = check_out_dir(out).resolve()  # absolute: workers on other nodes have other working dirs
    with dir_lock(out_dir, "datagen run"):
        return _run_locked(cfg, out_dir, force, progress, stall_timeout_s, redo)


def _run_locked(cfg: Config, out_dir: Path, force: bool, progress: bool, stall_timeout_s: float,
                redo: frozenset[str]) -> tuple[int, dict[str, Any]]:
    from tqdm import tqdm

    existing = Manifest.load(out_dir)
    check_compatible(existing, cfg, out_dir, force)
    changed = content_changed(existing, cfg)
    removed = 0
    if changed:  # --force over another content: the old set goes, also its shards beyond the new count
        removed = remove_beyond(out_dir, split_counts(cfg))
        if removed:
            _log(f"removed {removed} shards of the old set beyond the new count (its content differs: "
                 f"{'; '.join(changed)})")
    manifest = Manifest(out_dir, cfg, None if changed else existing)
    specs = plan_shards(cfg, out_dir)
    done, todo = reconcile(specs, manifest, force, _log, redo_paths=redo)
    manifest.save()

    state = ExecState()
    policy = RetryPolicy(cfg.run.max_retries, state)
    outcomes_failed: list[Outcome] = []
    disk_full: Outcome | None = None
    samples = frames = written = 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(specs), initial=len(done), unit="shard", desc="datagen", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        if todo:
            run_fn = EXECUTORS[cfg.run.executor]
            for outcome in run_fn(cfg, todo, cfg.run.workers, policy, state,
                                  address=cfg.run.address, stall_timeout_s=stall_timeout_s,
                                  connect_timeout_s=cfg.run.ray_connect_timeout_s):
                if outcome.stats is not None:
                    manifest.record(outcome.stats)
                    manifest.save(throttle_s=1.0)
                    written += 1
                    samples += outcome.stats["samples"]
                    frames += outcome.stats["frames"]
                else:
                    outcomes_failed.append(outcome)
                    if outcome.disk_full:  # reported once, by the DiskFullError raised below
                        disk_full = outcome
                        break
                    _log(f"shard {outcome.spec.rel_path} (index {outcome.spec.index}) failed after "
                         f"{cfg.run.max_retries + 1} attempts: {outcome.error}")
                bar.update(1)
                bar.set_postfix(rates(samples, frames, time.perf_counter() - t0), refresh=False)
    finally:
        bar.close()
        if disk_full is None:
            manifest.save()
    seconds = time.perf_counter() - t0
    by_split: dict[str, dict[str, int]] = {split: Counter() for split in SPLITS}
    for entry in manifest.shards.values():
        for v, n in entry.get("variants", {}).items():
            by_split[entry["split"]][v] += n
    summary = {
        "out": str(out_dir),
        "executor": cfg.run.executor,
        "address": cfg.run.address,
        "shards_total": len(specs),
        "shards_skipped": len(done),
        "shards_removed": removed,
        "shards_written": written,
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
    if disk_full is None:
        write_json_atomic(out_dir / SUMMARY, summary)
        return (1 if outcomes_failed else 0), summary
    # The disk is full: the executor has stopped its workers; drop what they left unfinished (this run holds
    # the lock, so every .partial here is its own), record what finished where there is still room (a re-run
    # reads unrecorded shards back), then stop with one line; no retry can help.
    for partial in out_dir.glob(f"*/shard-*.tar{S.PARTIAL_SUFFIX}"):
        partial.unlink(missing_ok=True)
    with contextlib.suppress(DiskFullError):
        manifest.save()
        write_json_atomic(out_dir / SUMMARY, summary)
    raise DiskFullError(f"shard {disk_full.spec.rel_path} (index {disk_full.spec.index}) failed: {disk_full.error}; "
                        f"the {len(manifest.shards)} finished shards are kept: free space and re-run `datagen run` "
                        "to resume")
