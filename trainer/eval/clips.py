"""Stage 1 of the evaluation: choose the val clips, read them, and pair each with a floor partner.

* **Stratified choice** (:func:`choose_clips`): per variant (normal, silence, debug, then any other), the
  clips in key order with copies of an already chosen clip's audio left out (debug clips cycle through a
  small fixed set, so the val split holds copies), the first ``eval.clips_per_variant`` of them. Keys and
  audio fix the choice, so it is deterministic.
* **Floor partners** (:func:`floor_partners`): the "shuffled audio" of clip i is always *different audio*:
  the next chosen clip of the same variant, else the nearest chosen clip of another variant whose audio
  differs; none when there is no such clip.
* **Siblings** (:func:`read_sibling_groups`): the ``val_siblings/`` split, when the data has one, holds
  groups of clips that share audio and differ in their visual plan; they are grouped by audio hash.

A first pass over the shards keeps only metadata and an audio hash per sample; a second decodes the chosen
clips, so memory holds the chosen clips whatever the size of the val split.

The other clip source, a folder of audio (``trainer eval --audio-dir``): every audio file directly inside it
(:func:`list_audio_files`, the files ``trainer sample --audio DIR`` picks), with no ground truth.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared import shards as S
from shared.audio_io import AUDIO_SUFFIXES, audio_files_in
from shared.errors import AudioError, CheckpointError, DataError



@dataclass
class Clip:
    key: str
    meta: dict[str, Any]
    audio_hash: str = ""
    url: str = ""
    frames: np.ndarray | None = None    # uint8 (T, H, W, 3)
    timeline: np.ndarray | None = None  # float32 (T, C) raw
    names: list[str] = field(default_factory=list)
    wave: np.ndarray | None = None      # mono float32
    sr: int = 0

    @property
    def variant(self) -> str:
        return str(self.meta.get("variant", "normal"))


def audio_hash(flac_bytes: bytes) -> str:
    """Hash of the decoded PCM (not of the FLAC bytes, which an encoder version could change)."""
    wave, sr = S.decode_flac(flac_bytes)
    return hashlib.sha1(np.ascontiguousarray(wave).tobytes() + str(sr).encode()).hexdigest()[:16]


def variant_order(variants: set[str] | list[str]) -> list[str]:
    """normal, silence, debug (always listed, so an absent one reports "no clips"), then any other, sorted."""
    return list(S.VARIANTS) + sorted(v for v in set(variants) if v not in S.VARIANTS)


def choose_clips(headers: list[Clip], per_variant: int) -> dict[str, list[Clip]]:
    """Per variant (every name of :func:`variant_order`, empty lists included), the first ``per_variant``
    clips in key order whose audio differs from every clip chosen before."""
    out: dict[str, list[Clip]] = {v: [] for v in variant_order([c.variant for c in headers])}
    seen: set[str] = set()
    for c in sorted(headers, key=lambda c: (c.key, c.url)):
        if c.audio_hash in seen or len(out[c.variant]) >= per_variant:
            continue
        seen.add(c.audio_hash)
        out[c.variant].append(c)
    return out


def floor_partners(clips: list[Clip]) -> list[int | None]:
    """Index of each clip's floor partner in ``clips``: the next clip of the same variant (cyclically), else
    the closest clip in list order of another variant; always with different audio; None when no clip has
    different audio."""
    out: list[int | None] = []
    for i, c in enumerate(clips):
        same = [j for j, d in enumerate(clips) if d.variant == c.variant]
        pos = same.index(i)
        candidates = same[pos + 1:] + same[:pos] if len(same) > 1 else []
        candidates += sorted((j for j in range(len(clips)) if clips[j].variant != c.variant), key=lambda j: abs(j - i))
        out.append(next((j for j in candidates if clips[j].audio_hash != c.audio_hash), None))
    return out


def _scan(urls: list[str]) -> list[Clip]:
    headers: list[Clip] = []
    for url in urls:
        for key, members in S.iter_tar_samples(url):
            if S.META not in members or S.TIMELINE not in members or S.AUDIO not in members \
                    or not S.frame_suffixes(members):
                continue  # not a pixel sample (or a corrupt one): skipped
            headers.append(Clip(key=key, meta=S.decode_json(members[S.META]), audio_hash=audio_hash(members[S.AUDIO]),
                                url=url))
    return headers


def _decode(chosen: list[Clip]) -> None:
    wanted = {(c.url, c.key): c for c in chosen}
    for url in dict.fromkeys(c.url for c in chosen):
        for key, members in S.iter_tar_samples(url):
            c = wanted.get((url, key))
            if c is not None:
                d = S.decode_pixel_sample(members)
                c.frames, c.timeline = d["frames"], d["timeline"].astype(np.float32)
                c.wave, c.sr = d["wave"], int(d["sr"])


def check_resolution(clips: list[Clip], resolution: int, data: str | Path, checkpoint: str | Path) -> None:
    """One-line error naming both when the data's frames are not the checkpoint's resolution."""
    for c in clips:
        have = c.frames.shape[1:3] if c.frames is not None else (c.meta.get("resolution"),) * 2
        if tuple(have) != (resolution, resolution):
            raise CheckpointError(
                f"data {data} has {have[1]}x{have[0]} frames (val clip {c.key}) but checkpoint {checkpoint} makes "
                f"{resolution}x{resolution} (render.resolution of its config): evaluate it on data rendered at its "
                "resolution")


def read_val_clips(data: str | Path, per_variant: int, resolution: int, checkpoint: str | Path
                   ) -> dict[str, list[Clip]]:
    """The chosen val clips per variant, decoded. Raises DataError without val pixel shards, CheckpointError when
    their resolution is not the checkpoint's (checked on the metadata before anything is decoded)."""
    from trainer.data import resolve_shards

    try:
        urls = resolve_shards(str(data), "val")
    except (FileNotFoundError, ValueError) as e:
        raise DataError(f"no val pixel shards under {data}: {e}") from None
    headers = _scan(urls)
    if not headers:
        raise DataError(f"the val shards under {data} hold no pixel samples")
    chosen = choose_clips(headers, per_variant)
    flat = [c for cs in chosen.values() for c in cs]
    check_resolution([c for c in flat if c.meta.get("resolution") is not None], resolution, data, checkpoint)
    _decode(flat)
    check_resolution(flat, resolution, data, checkpoint)
    return chosen


def read_sibling_groups(data: str | Path, resolution: int, max_groups: int) -> list[list[Clip]] | None:
    """Groups (>= 2 clips sharing audio) from the ``val_siblings/`` split, decoded; None when the data has no
    such split (an older dataset)."""
    root = Path(data) / "val_siblings"
    if not root.is_dir():
        return None
    urls = sorted(str(p) for p in root.glob("*.tar"))
    groups: dict[str, list[Clip]] = {}
    for c in _scan(urls):
        groups.setdefault(c.audio_hash, []).append(c)
    keep = [sorted(g, key=lambda c: c.key) for _, g in sorted(groups.items(), key=lambda kv: min(c.key for c in kv[1]))
            if len(g) >= 2][:max_groups]
    _decode([c for g in keep for c in g])
    for g in keep:
        check_resolution(g, resolution, root, "(the evaluated checkpoint)")
    return keep


def list_audio_files(folder: str | Path) -> list[Path]:
    """The audio files directly inside ``folder`` (:func:`shared.audio_io.audio_files_in`). An error names the
    folder when it is missing, not a folder, unreadable or holds no audio file."""
    folder = Path(folder)
    if not folder.exists():
        raise AudioError(f"--audio-dir {folder}: not found")
    if not folder.is_dir():
        raise AudioError(f"--audio-dir {folder}: not a directory")
    try:
        entries = audio_files_in(folder)
    except OSError as e:
        raise AudioError(f"--audio-dir {folder}: cannot be read ({e.strerror or e})") from None
    if not entries:
        raise AudioError(f"--audio-dir {folder}: no audio files (looked for {' '.join(AUDIO_SUFFIXES)})")
    return entries
