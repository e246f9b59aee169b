"""Song dynamics: an arrangement of sections whose loudness differs, as per-track gain curves over the clip.

Real music moves between loud and quiet (crescendos, breakdowns, drum-outs, build-ups and drops), and a
training set must show that contrast plainly for a model to learn that louder means more (issue "the
teacher teaches the music"). :func:`sample_dynamics` draws a clip's arrangement from a seed: a profile,
a dynamic range and sections on the song's beat grid, each with a level (dB, 0 = the loudest) and the
tracks that play in it. :func:`gain_curves` turns it into one float32 gain per sample and track; the
caller multiplies the stems by them, so the mix stays the exact sum of its stems.

Profiles (weights in :data:`PROFILES`):

* ``steady``: one level (about +-1 dB), every track: like most real recordings over a few seconds;
* ``terraced``: each section at its own level in [-range, 0], mostly near its ends (block dynamics, as in
  Baroque music);
* ``crescendo`` / ``decrescendo``: a linear ramp in dB over the clip, tracks entering / leaving with it;
* ``breakdown``: full, then one or two quiet sections without drums (a drum-out), then full again;
* ``build_drop``: a rising ramp with the drums entering one by one, then the drop at full level;
* ``swell``: levels that rise and fall with the phrase (a ramp up and down per section pair).

The chords never leave (the clip never thins out to near-silence between notes, so a quiet section is
never taken for digital silence), and the quietest section stays :data:`MIN_SECTION_DBFS` or louder
after the master gain. Pure functions: randomness only from the generator passed in.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from datagen.audio import patterns as P

# Profile -> weight of its draw.
PROFILES = {"steady": 0.14, "terraced": 0.22, "crescendo": 0.08, "decrescendo": 0.04, "breakdown": 0.36,
            "build_drop": 0.12, "swell": 0.04}
RANGE_DB = (12.0, 32.0)  # dynamic range of a non-steady clip: loudest minus quietest section, dB
# The quietest section's RMS stays above this after the master gain (dBFS): far above the timeline's
# silence threshold (-60 dBFS), so a quiet passage never reads as silence.
MIN_SECTION_DBFS = -44.0
LOUD_SECTION_DBFS = -17.0  # typical RMS of a full section at 0 dB master gain (peak normalised to 0.89)
SECTION_SECONDS = (0.7, 2.7)  # a section lasts a whole number of beats within this range when it can
STEP_RAMP_S = 0.03  # level steps and track entries/exits ramp over this long (no clicks)
DRUMS = ("kick", "snare", "hihat")
# The drums carry most of a full mix's energy: a section without them is already 10-20 dB quieter, so its
# level is cut by at most this much more (else a chords-only breakdown would sink toward digital silence).
DRUMLESS_MAX_CUT_DB = 6.0
ALWAYS_ON = "chords"


def section_beats(tempo: float, duration: float, rng: np.random.Generator) -> int:
    """Beats per section: 2, 4 or 8, among those whose length falls in SECTION_SECONDS (else the closest),
    and at least two sections per clip."""
    beat_s = 60.0 / tempo
    options = [b for b in (2, 4, 8) if SECTION_SECONDS[0] <= b * beat_s <= SECTION_SECONDS[1]
               and b * beat_s <= duration / 2]
    if not options:
        return 2
    return int(rng.choice(options))


def _range_db(gain_db: float, rng: np.random.Generator) -> float:
    """The clip's dynamic range: uniform in RANGE_DB, capped so the quietest section stays >= MIN_SECTION_DBFS."""
    cap = LOUD_SECTION_DBFS + gain_db - MIN_SECTION_DBFS
    return float(min(rng.uniform(*RANGE_DB), max(cap, 0.0)))


def _levels(profile: str, n: int, rng_db: float, rng: np.random.Generator) -> tuple[list[float], list[float]]:
    """(level at each section's start, level at its end) in dB, 0 = loudest; ramps where start != end."""
    if profile == "steady":
        lv = rng.uniform(-1.0, 1.0, n) - 1.0
        return lv.tolist(), lv.tolist()
    if profile == "terraced":
        lv = -rng_db * rng.beta(0.5, 0.5, n)  # mostly near the ends of the range: loud and soft blocks
        lv[int(rng.integers(n))], lv[int(rng.integers(n))] = 0.0, -rng_db  # the range is used in full
        return lv.tolist(), lv.tolist()
    edges = np.linspace(-rng_db, 0.0, n + 1)
    if profile == "crescendo":
        return edges[:-1].tolist(), edges[1:].tolist()
    if profile == "decrescendo":
        return edges[::-1][:-1].tolist(), edges[::-1][1:].tolist()
    if profile == "breakdown":
        lv = np.zeros(n)
        k = int(rng.integers(1, 3)) if n > 2 else 1
        first = int(rng.integers(0, n - k + 1))
        lv[first:first + k] = -rng_db
        return lv.tolist(), lv.tolist()
    if profile == "build_drop":
        drop = int(rng.integers(max(1, n // 2), n))  # sections before the drop build up
        start = np.concatenate([np.linspace(-rng_db, -0.3 * rng_db, drop + 1)[:-1], np.zeros(n - drop)])
        end = np.concatenate([np.linspace(-rng_db, -0.3 * rng_db, drop + 1)[1:], np.zeros(n - drop)])
        return start.tolist(), end.tolist()
    if profile == "swell":
        top = rng.uniform(-0.2 * rng_db, 0.0, n)
        low = -rng_db + rng.uniform(0.0, 0.2 * rng_db, n)
        up = np.arange(n) % 2 == 0
        return np.where(up, low, top).tolist(), np.where(up, top, low).tolist()
    raise ValueError(f"unknown dynamics profile {profile!r}")


def _tracks_on(profile: str, start_db: list[float], end_db: list[float], rng_db: float, active: list[str],
               sustained: bool, rng: np.random.Generator) -> list[list[str]]:
    """Which of the clip's active tracks play in each section: quiet sections of the breakdown, crescendo and
    build profiles leave the drums (and sometimes bass or lead) out; the chords always play. Drums leave only
    over ``sustained`` chords (a pad or half notes): stabs alone would leave gaps that read as silence."""
    out = []
    n = len(start_db)
    for i in range(n):
        quiet = max(start_db[i], end_db[i]) <= -0.5 * rng_db
        off: set[str] = set()
        if profile == "breakdown" and quiet:
            off = set(DRUMS) | ({"bass"} if rng.random() < 0.4 else set())
        elif profile in ("crescendo", "decrescendo") and quiet:
            off = set(DRUMS[int(rng.integers(0, 2)):])  # hats and snare, sometimes the kick too
        elif profile == "build_drop" and end_db[i] < 0:
            k = int(round(3 * (1.0 - (i + 1) / max(1, sum(e < 0 for e in end_db)))))  # drums enter one by one
            off = set(DRUMS[3 - k:]) if k else set()
            off |= {"lead"} if i == 0 else set()
        if not sustained:
            off -= set(DRUMS) | {"bass"}
        out.append([t for t in active if t not in off or t == ALWAYS_ON])
    return out


def sample_dynamics(tempo: float, offset_steps: int, duration: float, active: list[str], gain_db: float,
                    sustained: bool, rng: np.random.Generator) -> dict[str, Any]:
    """A clip's arrangement (JSON-serialisable): profile, range_db, beats per section and, per section,
    start/end time (s), level at its start/end (dB) and the tracks that play. ``sustained``: the chords
    hold (pad or half notes), so the drums may leave."""
    names = list(PROFILES)
    weights = np.array([PROFILES[p] for p in names])
    profile = str(rng.choice(names, p=weights / weights.sum()))
    beats = section_beats(tempo, duration, rng)
    step_s = 60.0 / tempo / P.STEPS_PER_BEAT
    sec_s = beats * P.STEPS_PER_BEAT * step_s
    # Sections are aligned to the song's bar grid: boundaries at song steps that are multiples of the section.
    first = -(offset_steps % (beats * P.STEPS_PER_BEAT)) * step_s
    n = max(1, math.ceil((duration - first) / sec_s - 1e-9))
    rng_db = 0.0 if profile == "steady" else _range_db(gain_db, rng)
    start_db, end_db = _levels(profile, n, rng_db, rng)
    tracks = _tracks_on(profile, start_db, end_db, rng_db, active, sustained, rng)
    for i, on in enumerate(tracks):
        if any(d in active and d not in on for d in DRUMS):
            start_db[i], end_db[i] = max(start_db[i], -DRUMLESS_MAX_CUT_DB), max(end_db[i], -DRUMLESS_MAX_CUT_DB)
    sections = [{"start_s": round(max(0.0, first + i * sec_s), 6), "end_s": round(min(duration, first + (i + 1) * sec_s), 6),
                 "start_db": round(float(start_db[i]), 3), "end_db": round(float(end_db[i]), 3), "tracks": tracks[i]}
                for i in range(n)]
    return {"profile": profile, "range_db": round(rng_db, 3), "section_beats": beats, "sections": sections}


def piecewise_linear(n: int, sr: int, times: list[float], values: list[float], fn=None) -> np.ndarray:
    """``fn`` of the piecewise-linear curve through (times[j], values[j]) at samples k / sr, k < n (float32 [n]);
    constant before the first and after the last breakpoint. Flat pieces are filled with one value, so ``fn``
    (e.g. dB -> amplitude) runs only over the ramps."""
    fn = fn or (lambda v: v)
    out = np.empty(n, np.float32)
    k = np.clip(np.ceil(np.asarray(times, dtype=np.float64) * sr - 1e-9).astype(np.int64), 0, n)
    out[:k[0]] = fn(values[0])
    for j in range(len(times) - 1):
        a, b = int(k[j]), int(k[j + 1])
        if b <= a:
            continue
        if values[j] == values[j + 1]:
            out[a:b] = fn(values[j])
        else:
            x = (np.arange(a, b) / sr - times[j]) / (times[j + 1] - times[j])
            out[a:b] = fn(values[j] + (values[j + 1] - values[j]) * x)
    out[k[-1]:] = fn(values[-1])
    return out


def _db_to_gain(db):
    return 10.0 ** (np.asarray(db, dtype=np.float64) / 20.0)


def gain_curves(dyn: dict[str, Any], tracks: list[str], n: int, sr: int) -> dict[str, np.ndarray]:
    """Per-track gain (float32 [n]) of an arrangement: each section's level, linear in dB from its start to
    its end, times 1 where the track plays and 0 where it does not; steps ramp over STEP_RAMP_S."""
    secs = dyn["sections"]
    times: list[float] = []  # breakpoints: each section's start (plus the ramp after a boundary) and end
    for i, s in enumerate(secs):
        a = s["start_s"] + (STEP_RAMP_S if i else 0.0)
        times += [a, max(a, s["end_s"])]
    level = piecewise_linear(n, sr, times, [d for s in secs for d in (s["start_db"], s["end_db"])], _db_to_gain)
    out = {}
    for track in tracks:
        on = [float(track in s["tracks"]) for s in secs]
        out[track] = level if all(on) else level * piecewise_linear(n, sr, times, [v for v in on for _ in (0, 1)])
    return out
