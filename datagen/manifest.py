"""The pixel shard set's ``manifest.json``: the resolved config, its content fingerprint, one entry per finished shard.

The manifest is the record a re-run, ``datagen inspect`` and ``trainer cache-latents`` trust: per shard its
count, bytes and sha256 (ARCHITECTURE.md, "Paths"). It is written atomically (temp file renamed), so a
reader sees the previous or the next version, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import shared.timeline
from shared import shards as S
from shared.config import Config
from shared.errors import DataError, SynestheteError
from shared.fsutil import atomic_write_json
from shared.provenance import provenance

from datagen.shard_job import split_counts

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
MANIFEST_VERSION = 1

# Fields of data/timeline/render that do not change a shard's bytes: a re-run may change them freely.
_NOT_CONTENT = {
    "data": {"train_shards", "val_shards", "val_style_siblings", "audio_debug_mix_schedule_steps", "snippets_per_clip"},
    "render": {"chunk_frames"},
    "timeline": set(),
}


class RunError(SynestheteError):
    """A run that cannot start (bad output dir, config mismatch, executor unavailable)."""


def content_versions() -> dict[str, int]:
    """Code versions that change shard bytes without a config change (ARCHITECTURE.md, "Versioned content"):
    the timeline, the shard schema, the procedural audio and the visualizers."""
    from datagen.audio.synth import AUDIO_VERSION
    from datagen.visual.drive import VISUAL_VERSION

    return {"timeline": shared.timeline.TIMELINE_VERSION, "shard_schema": S.SCHEMA_VERSION,
            "audio": AUDIO_VERSION, "visual": VISUAL_VERSION}


def content_fingerprint(cfg: Config) -> dict[str, Any]:
    """What decides shard bytes: the data, timeline and render fields (minus counts and chunking) and the code versions."""
    dumped = cfg.model_dump(mode="json")
    out: dict[str, Any] = {sec: {k: v for k, v in dumped[sec].items() if k not in _NOT_CONTENT[sec]}
                           for sec in _NOT_CONTENT}
    out["versions"] = content_versions()
    return out


def content_id(fingerprint: dict[str, Any]) -> str:
    """A short name for a content fingerprint: the first 16 hex digits of the sha256 of its sorted-key JSON."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


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
    """The manifest/summary format (indent 1, sorted keys), written through shared.fsutil (a full disk: DiskFullError)."""
    atomic_write_json(path, obj, indent=1, sort_keys=True)


class Manifest:
    """``manifest.json``: resolved config, provenance and one entry per finished shard (atomic writes)."""

    def __init__(self, out: Path, cfg: Config, existing: dict[str, Any] | None):
        self.path = out / MANIFEST
        fingerprint = content_fingerprint(cfg)
        self.content_id = content_id(fingerprint)
        self.doc: dict[str, Any] = {
            "schema_version": MANIFEST_VERSION,
            "config": cfg.model_dump(mode="json"),
            "content_fingerprint": fingerprint,
            "content_id": self.content_id,
            "provenance": provenance(),
            "splits": split_counts(cfg),
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
            raise DataError(f"{p}: unreadable manifest ({e}); move it away or pass --force") from None

    @property
    def shards(self) -> dict[str, dict[str, Any]]:
        return self.doc["shards"]

    def record(self, stats: dict[str, Any]) -> None:
        """Record a finished shard of this content (its entry names the content id it was made with)."""
        self.shards[stats["path"]] = dict(stats, content_id=self.content_id)

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


def content_changed(existing: dict[str, Any] | None, cfg: Config) -> list[str]:
    """The ``section.key: old -> new`` lines between the manifest's content fingerprint and ``cfg``'s (empty: same)."""
    if existing is None:
        return []
    return fingerprint_diff(existing.get("content_fingerprint", {}), content_fingerprint(cfg))


def check_compatible(existing: dict[str, Any] | None, cfg: Config, out: Path, force: bool) -> None:
    """Refuse a re-run into ``out`` if its shards were made with a different content config (unless force)."""
    if force:
        return
    diff = content_changed(existing, cfg)
    if diff:
        raise RunError(f"{out} holds shards made with a different config ({'; '.join(diff)}); pass --force to "
                       "regenerate them, or choose another --out")
