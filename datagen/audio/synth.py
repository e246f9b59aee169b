"""``synthesize_clip``: one clip of procedural audio (stems, mix, labels) from (config, seed, variant).

Variants (ARCHITECTURE.md): ``normal`` music; ``silence`` the same kind of music with
track dropouts and at least one full digital silence, every segment labelled; ``debug``
one of a small deterministic set of strongly reactive signals. The mix is the sum of the
stems; the per-clip gain is applied to the stems, and the mix peak stays under 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datagen.audio import debug as D
from datagen.audio import dynamics as DYN
from datagen.audio import segments as S
from datagen.audio import theory as T
from datagen.audio.music import SUSTAINED_CHORDS, TRACKS, render_song, sample_song
from shared.config import Config, DataConfig
from shared.shards import VARIANTS
from shared.timeline import band_edges

# Version of the procedural audio's content: bump it whenever a seed's audio changes (it is part of the shards'
# content fingerprint, datagen/manifest.py). 1: one dynamic level per clip; 2: song dynamics (dynamics.py, b7be8d6);
# 3: more breakdowns among the dynamics profiles.
AUDIO_VERSION = 3
PEAK_TARGET = 0.89  # mix peak at 0 dB gain (headroom for AAC/resampling)
PEAK_MAX = 0.99  # hard ceiling when gain_db > 0 would push past full scale

# Independent random streams per clip seed (so that, e.g., the variant draw does not shift the music).
_STREAM_VARIANT, _STREAM_SONG, _STREAM_SEGMENTS, _STREAM_GAIN, _STREAM_DYNAMICS = 1, 2, 3, 4, 5


@dataclass
class AudioClip:
    """One synthesized clip: ``wave`` float32 [N] == sum of ``stems`` (track -> float32 [N])."""

    wave: np.ndarray
    stems: dict[str, np.ndarray]
    sr: int
    meta: dict[str, Any]
    # Pitched notes in seconds per track: (start_s, end_s, midi); not part of meta.json (size).
    notes: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream]))


def choose_variant(dcfg: DataConfig, seed: int) -> str:
    """The clip's variant, deterministic in ``seed``: debug always in debug mode; otherwise debug with probability
    audio_debug_mix_prob, silence with probability min(audio_silence_mix_prob, 1 - audio_debug_mix_prob) (an
    absolute share, capped at what debug leaves; not a share of the rest), else normal. The same rule as the
    trainer's target_variant_mix."""
    if dcfg.audio_debug_mode:
        return "debug"
    u = float(_rng(seed, _STREAM_VARIANT).random())
    if u < dcfg.audio_debug_mix_prob:
        return "debug"
    if u < dcfg.audio_debug_mix_prob + dcfg.audio_silence_mix_prob:
        return "silence"
    return "normal"


def song_plan(dcfg: DataConfig, seed: int) -> dict[str, Any]:
    """The song a normal or silence clip of ``seed`` plays, as written (:func:`~datagen.audio.music.sample_song`),
    before its dynamics and segments."""
    return sample_song(dcfg, _rng(seed, _STREAM_SONG))


def master_scale(mix_peak: float, gain_db: float) -> float:
    """Factor applied to every stem: normalise the mix peak to PEAK_TARGET, apply gain_db, never exceed PEAK_MAX."""
    if mix_peak <= 0:
        return 0.0
    return min(PEAK_TARGET * 10 ** (gain_db / 20) / mix_peak, PEAK_MAX / mix_peak)


def _mix(stems: dict[str, np.ndarray]) -> np.ndarray:
    """Sum of the stems in TRACKS order (float32)."""
    out = np.zeros_like(next(iter(stems.values())))
    for t in TRACKS:
        out += stems[t]
    return out


def _finish(stems: dict[str, np.ndarray], gain_db: float) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Scale every stem (in place) by :func:`master_scale`; the mix is the sum of the scaled stems."""
    mix = _mix(stems)
    scale = master_scale(max(float(mix.max()), -float(mix.min())), gain_db)
    for s in stems.values():
        s *= np.float32(scale)
    return stems, _mix(stems), scale


def synthesize_clip(cfg: Config, seed: int, variant: str) -> AudioClip:
    """Synthesize one clip of ``cfg.data.clip_seconds`` at ``cfg.data.sample_rate``: a pure function of its arguments."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown audio variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    d, fps = cfg.data, cfg.render.fps
    duration, sr = float(d.clip_seconds), int(d.sample_rate)
    meta: dict[str, Any] = {"variant": variant, "seed": int(seed), "tracks": list(TRACKS), "duration_s": duration,
                            "sample_rate": sr}

    if variant == "debug":
        k = int(seed) % d.debug_set_size
        plan = D.debug_plan(k, duration)
        stems = D.render_debug(plan, duration, sr, TRACKS)
        edges = band_edges(sr, cfg.timeline)
        for e in plan["events"]:  # which timeline band channel each burst lands in
            if e["type"] == "burst":
                e["timeline_band"] = int(np.clip(np.searchsorted(edges, e["freq_hz"], side="right") - 1, 0, len(edges) - 2))
        segs = [("silence", list(TRACKS), a, b) for a, b in plan["gaps"]]
        S.apply_segments(stems, sr, segs)
        stems, wave, scale = _finish(stems, 0.0)
        used = {e["track"] for e in plan["events"]}
        meta.update({"tempo": round(60.0 / plan["hit_period_s"], 6), "key": None, "key_root": None, "scale": None,
                     "track_mask": [int(t in used) for t in TRACKS], "gain_db": 0.0, "master_scale": scale,
                     "debug_index": k, "hit_period_s": plan["hit_period_s"], "events": plan["events"],
                     "segments": [S.segment_label(*s, fps) for s in segs]})
        return AudioClip(wave, stems, sr, meta)

    song = song_plan(d, seed)
    stems, timing = render_song(song, duration, sr)
    active = [t for t, m in zip(TRACKS, song["track_mask"]) if m]
    gain_db = float(_rng(seed, _STREAM_GAIN).uniform(d.gain_db_min, d.gain_db_max))
    dyn = DYN.sample_dynamics(song["tempo"], song["offset_steps"], duration, active, gain_db,
                              song["chord_rhythm"] in SUSTAINED_CHORDS, _rng(seed, _STREAM_DYNAMICS))
    for track, gain in DYN.gain_curves(dyn, active, int(round(duration * sr)), sr).items():
        stems[track] *= gain
    segs = []
    if variant == "silence":
        segs = S.plan_silence_layout(duration, active, S.most_continuous(stems, active, sr), _rng(seed, _STREAM_SEGMENTS))
        segs = [(k, list(TRACKS) if k == "silence" else tr, a, b) for k, tr, a, b in segs]  # silence: every track
    S.apply_segments(stems, sr, segs)
    stems, wave, scale = _finish(stems, gain_db)
    meta.update({
        "tempo": round(song["tempo"], 6),
        "key": T.NOTE_NAMES[song["key_root"]],
        "key_root": song["key_root"],
        "scale": song["scale"],
        "key_name": T.key_name(song["key_root"], song["scale"]),
        "track_mask": song["track_mask"],
        "gain_db": round(gain_db, 4),
        "master_scale": scale,
        "segments": [S.segment_label(*s, fps) for s in segs],
        "dynamics": dyn,
        "bars": timing["bars"],
        "beat_times": timing["beat_times"],
        "downbeat_times": timing["downbeat_times"],
        "song": {k: v for k, v in song.items() if k not in ("track_mask", "sound_seed")},
    })
    return AudioClip(wave, stems, sr, meta, notes=timing["notes"])
