"""The pixel shard set's ``manifest.json``: the resolved config, its content fingerprint, one entry per finished shard.

The manifest is the record a re-run, ``datagen inspect`` and ``trainer cache-latents`` trust: per shard its
count, bytes and sha256 (ARCHITECTURE.md, "Paths"). It is written atomically (temp file renamed), so a
reader sees the previous or the next version, never half of one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from shared.config import Config
from shared.provenance import provenance

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


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


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
