"""Planning a run against what is already on disk: the output dir check and the done/todo split (resume)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from shared import shards as S

from datagen.manifest import Manifest, RunError
from datagen.shard_job import ShardSpec, read_shard_stats


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
