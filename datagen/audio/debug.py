"""Debug clips: a small deterministic set of strongly reactive signals for bootstrapping (postmortem §3).

Clip ``k`` of the set (k = seed % data.debug_set_size) depends only on k and the config:
isolated kick hits at a fixed period (restarting right after each gap), tone bursts in known frequency bands between the
hits (low on the bass stem, mid on the chords stem, high on the lead stem) and silence
gaps (every stem exactly zero). ``meta["events"]`` says what happens when.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datagen.audio import voices as V

HIT_PERIODS_S = (0.5, 0.75, 1.0, 0.6)
BANDS = (  # name, track, centre frequency as a function of the sample rate
    ("low", "bass", lambda sr: 110.0),
    ("mid", "chords", lambda sr: 660.0),
    ("high", "lead", lambda sr: min(3520.0, 0.3 * sr)),
)
HIT_LEN_S = 0.22
BURST_RAMP_S = 0.008


def debug_plan(k: int, duration: float) -> dict[str, Any]:
    """Events and gaps of debug clip ``k`` (JSON-serialisable): a pure function of (k, duration)."""
    rng = np.random.default_rng([int(k), 0xDEB6])
    period = HIT_PERIODS_S[k % len(HIT_PERIODS_S)]
    order = np.roll(np.arange(len(BANDS)), (k // len(HIT_PERIODS_S)) % len(BANDS))
    burst_len = float(rng.uniform(0.2, 0.4)) * period
    hit_len = min(HIT_LEN_S, 0.15 * duration)
    first = float(rng.uniform(0.05, 0.25)) if duration >= 2 else 0.02
    n_gaps = 1 if duration < 8 else 2
    gap_len = min(float(rng.uniform(0.75, 1.25)), 0.3 * duration)
    gaps = []
    for g in range(n_gaps):  # each gap in its own slice of the clip, after the first hit, away from the end
        lo = max(duration * (g + 0.3) / n_gaps, first + hit_len + 0.05)
        hi = duration * (g + 0.75) / n_gaps - gap_len
        start = float(rng.uniform(lo, max(lo, hi)))
        gaps.append((round(start, 4), round(start + gap_len, 4)))

    def clear(a: float, b: float) -> bool:  # [a, b) plus a fade margin misses every gap
        return all(b + 0.03 <= s or e + 0.03 <= a for s, e in gaps)

    events: list[dict[str, Any]] = []
    t, i = first, 0
    while t < duration:
        if not clear(t, t + hit_len):  # the pulse stops for a gap and restarts right after it
            t = min(e for s, e in gaps if e + 0.03 > t) + 0.05
            continue
        if t + hit_len < duration:
            events.append({"type": "hit", "track": "kick", "time_s": round(t, 6)})
        b0 = t + period / 2 - burst_len / 2
        name, track, _ = BANDS[int(order[i % len(BANDS)])]
        if b0 + burst_len < duration and clear(b0, b0 + burst_len):
            events.append({"type": "burst", "track": track, "band": name, "start_s": round(b0, 6),
                           "end_s": round(b0 + burst_len, 6)})
        t, i = t + period, i + 1
    return {"debug_index": int(k), "hit_period_s": period, "hit_len_s": round(hit_len, 6), "gaps": gaps, "events": events}


def render_debug(plan: dict[str, Any], duration: float, sr: int, tracks: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Stems of a debug plan (float32 [n] per track); fills in each burst's ``freq_hz``."""
    n = int(round(duration * sr))
    stems = {t: np.zeros(n, np.float32) for t in tracks}
    hits = [e for e in plan["events"] if e["type"] == "hit"]
    if hits:
        shot = V.kick_oneshot(sr, 160.0, 55.0, 0.03, 0.05, 0.4)[: int(plan["hit_len_s"] * sr)]
        shot[-min(len(shot), int(0.004 * sr)):] *= np.linspace(1, 0, min(len(shot), int(0.004 * sr)), dtype=np.float32)
        V.place_oneshots(n, shot, np.array([round(e["time_s"] * sr) for e in hits]), np.ones(len(hits), np.float32), stems["kick"])
    freqs = {name: f(sr) for name, _, f in BANDS}
    for e in plan["events"]:
        if e["type"] != "burst":
            continue
        e["freq_hz"] = freqs[e["band"]]
        a, b = round(e["start_s"] * sr), round(e["end_s"] * sr)
        t = np.arange(b - a) / sr
        ramp = np.minimum(1.0, np.minimum(t, t[-1] - t) / BURST_RAMP_S)
        stems[e["track"]][a:b] += (0.6 * ramp * np.sin(2 * np.pi * e["freq_hz"] * t)).astype(np.float32)
    return stems
