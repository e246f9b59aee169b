"""Silence / track-dropout segments: layout, labels and the per-track gain masks that apply them.

A segment silences some tracks over ``[start_s, end_s)``: the stems are exactly zero for
every sample n with ``start_s <= n / sr < end_s``. Short fades sit *outside* the segment
(before ``start_s`` and after ``end_s``), so there are no clicks and the inside stays
digital zero. Frame labels use the render fps: ``start_frame = ceil(start_s * fps)``,
``end_frame = floor(end_s * fps)`` (exclusive), so every labelled frame lies fully inside.
"""

from __future__ import annotations

import math

import numpy as np

FADE_S = 0.012  # fade length outside each segment edge


def segment_label(kind: str, tracks: list[str], start_s: float, end_s: float, fps: float) -> dict:
    """The metadata record of one segment (frames fully inside; end_frame exclusive)."""
    if kind not in ("silence", "dropout"):
        raise ValueError(f"segment kind must be 'silence' or 'dropout', got {kind!r}")
    return {
        "kind": kind,
        "tracks": list(tracks),
        "start_s": round(float(start_s), 6),
        "end_s": round(float(end_s), 6),
        "start_frame": int(math.ceil(start_s * fps - 1e-9)),
        "end_frame": int(math.floor(end_s * fps + 1e-9)),
    }


def segment_sample_range(start_s: float, end_s: float, sr: int) -> tuple[int, int]:
    """Samples n with start_s <= n/sr < end_s, as a half-open range [a, b)."""
    return int(math.ceil(start_s * sr - 1e-9)), int(math.ceil(end_s * sr - 1e-9))


def gate_mask(n: int, sr: int, spans: list[tuple[float, float]], fade_s: float = FADE_S) -> np.ndarray:
    """Gain mask float32 [n]: 0 inside each span, raised-cosine fades just outside, 1 elsewhere."""
    mask = np.ones(n, np.float32)
    f = max(1, int(round(fade_s * sr)))
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, f + 2)[1:-1])).astype(np.float32)  # (f,) rising, 0 < r < 1
    for start_s, end_s in spans:
        a, b = segment_sample_range(start_s, end_s, sr)
        a, b = min(max(a, 0), n), min(max(b, 0), n)
        lo = max(0, a - f)
        mask[lo:a] = np.minimum(mask[lo:a], ramp[::-1][f - (a - lo):])  # fade out before a
        hi = min(n, b + f)
        mask[b:hi] = np.minimum(mask[b:hi], ramp[: hi - b])  # fade in after b
        mask[a:b] = 0.0
    return mask


def plan_silence_layout(duration: float, active: list[str], keeper: str,
                        rng: np.random.Generator) -> list[tuple[str, list[str], float, float]]:
    """Choose the silence-variant segments of a clip: (kind, tracks, start_s, end_s), sorted by start.

    One full silence with music before and after it (>= 1 s long for clips of 2.5 s and
    more; 0.4 x the clip for shorter ones), then up to three track dropouts (each >= 0.5 s, a
    non-empty proper subset of the active tracks that never includes ``keeper``, so music
    keeps sounding) in the music around it, where there is room. Times are rounded to
    microseconds, the precision of the labels.
    """
    sil_min = min(1.0, 0.4 * duration)
    sil_len = float(rng.uniform(sil_min, max(sil_min, min(3.0, 0.3 * duration))))
    margin = min(max(0.5, 0.12 * duration), (duration - sil_len) / 2)
    sil_start = float(rng.uniform(margin, max(margin, duration - margin - sil_len)))
    segs: list[tuple[str, list[str], float, float]] = [("silence", list(active), round(sil_start, 6),
                                                         round(sil_start + sil_len, 6))]

    # Music regions around the silence; dropouts go inside them, leaving music at their edges too.
    gap = 0.15
    regions = [(0.0, sil_start - gap), (sil_start + sil_len + gap, duration)]
    n_drop = int(rng.integers(1, 4))
    for _ in range(n_drop):
        lo, hi = regions[int(rng.integers(len(regions)))]
        if hi - lo < 0.7:
            lo, hi = max(regions, key=lambda r: r[1] - r[0])
        if hi - lo < 0.7:
            break
        length = float(rng.uniform(0.5, min(2.5, hi - lo - 0.1)))
        start = float(rng.uniform(lo + 0.05, hi - length))
        if any(not (start + length + gap <= s or e + gap <= start) for _, _, s, e in segs):
            continue  # overlaps an earlier segment: skip this one
        candidates = [t for t in active if t != keeper]
        k = int(rng.integers(1, len(candidates) + 1)) if len(active) > 1 else 0
        if k == 0 or k >= len(active):
            continue
        dropped = sorted(rng.choice(candidates, size=k, replace=False).tolist(), key=active.index)
        segs.append(("dropout", dropped, round(start, 6), round(start + length, 6)))
    return sorted(segs, key=lambda s: s[2])


def most_continuous(stems: dict[str, np.ndarray], tracks: list[str], sr: int, hop_s: float = 0.02) -> str:
    """The track whose quietest moments are loudest (2nd percentile of its block RMS): the one to keep
    sounding through dropouts so that a dropout never turns into silence."""
    hop = max(1, int(hop_s * sr))

    def floor_level(x: np.ndarray) -> float:
        nb = len(x) // hop
        return float(np.percentile(np.sqrt(np.mean(np.square(x[: nb * hop].reshape(nb, hop)), axis=1)), 2))

    return max(tracks, key=lambda t: floor_level(stems[t]))


def apply_segments(stems: dict[str, np.ndarray], sr: int, segs: list[tuple[str, list[str], float, float]]) -> None:
    """Multiply each stem, in place, by the gate mask of the segments that name its track (float32 [n])."""
    for track, stem in stems.items():
        spans = [(s, e) for _, names, s, e in segs if track in names]
        if spans:
            stem *= gate_mask(len(stem), sr, spans)
