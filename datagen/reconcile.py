"""Planning a run against what is already on disk: the output dir check and the done/todo split (resume)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from shared import shards as S
from shared.errors import OutputPathError

from datagen.manifest import Manifest
from datagen.shard_job import ShardSpec, read_shard_stats


def check_out_dir(out: str | os.PathLike) -> Path:
    """Create ``out`` (and train/, val/) and prove it writable, or raise OutputPathError naming the path and reason."""
    p = Path(out)
    try:
        if p.exists() and not p.is_dir():
            raise OutputPathError(f"--out {p}: exists and is not a directory")
        for d in (p, p / "train", p / "val"):
            d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except OutputPathError:
        raise
    except OSError as e:
        raise OutputPathError(f"--out {p}: not writable ({e.strerror or e})") from None
    if not os.access(p / "train", os.W_OK) or not os.access(p / "val", os.W_OK):
        raise OutputPathError(f"--out {p}: train/ or val/ is not writable")
    return p


def verified(entry: dict | None, path: Path) -> bool:
    """Whether the finished file ``path`` is the shard its manifest ``entry`` describes.

    The sha256 is checked in full unless size and mtime equal those recorded when the hash was last
    checked (a hash cache keyed by size + mtime; ``datagen inspect --repair`` hashes every shard itself).
    A successful full check refreshes the recorded mtime.
    """
    if entry is None:
        return False
    st = path.stat()
    if entry.get("bytes") != st.st_size:
        return False
    if entry.get("mtime_ns") == st.st_mtime_ns:
        return True
    if S.file_sha256(path) != entry.get("sha256"):
        return False
    entry["mtime_ns"] = st.st_mtime_ns
    return True


def reconcile(specs: list[ShardSpec], manifest: Manifest, force: bool, log: Callable[[str], None],
              redo_paths: frozenset[str] = frozenset()) -> tuple[list[ShardSpec], list[ShardSpec]]:
    """Split the planned shards into (done, todo): clean ``.partial`` files, verify finished shards against
    the manifest (a mismatch is regenerated), read back finished shards the manifest does not list yet,
    and regenerate the shards named in ``redo_paths`` (``split/shard-NNNNNN.tar``: those `inspect` failed)."""
    done, todo = [], []

    def redo(spec: ShardSpec, why: str) -> None:
        log(f"{spec.rel_path}: {why}; regenerating")
        spec.path.unlink()
        manifest.forget(spec.rel_path)
        todo.append(spec)

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
        if spec.rel_path in redo_paths:
            redo(spec, "failed `datagen inspect`")
            continue
        if entry is not None:
            if verified(entry, final):
                done.append(spec)
            else:
                redo(spec, "size or sha256 differs from the manifest")
            continue
        try:  # the manifest is behind: read the finished file back
            stats = read_shard_stats(final, spec.split, spec.index)
        except Exception as e:  # noqa: BLE001 - any unreadable shard is simply redone
            redo(spec, f"unreadable ({e})")
            continue
        manifest.record(stats)
        done.append(spec)
    return done, todo
