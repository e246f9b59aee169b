"""Procedural multi-track music: sample a song plan from a seed, render each track as a stem.

``sample_song`` draws every musical choice (tempo, key, scale, progression, patterns,
timbres, levels, which tracks play); ``render_song`` turns the plan into one float32 stem
per track. Both are pure functions; randomness comes only from the generator passed in.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from datagen.audio import patterns as P
from datagen.audio import theory as T
from datagen.audio import voices as V

TRACKS = ("kick", "snare", "hihat", "bass", "chords", "lead")

# Probability that a track plays in a clip: kick, bass and chords always play (tempo and key stay audible,
# and the music never thins out to near-silence between notes).
TRACK_PROB = {"kick": 1.0, "snare": 0.9, "hihat": 0.85, "bass": 1.0, "chords": 1.0, "lead": 0.8}
# Nominal stem levels (peak of one hit / note at velocity 1) before the per-clip master gain.
TRACK_LEVEL = {"kick": 0.9, "snare": 0.5, "hihat": 0.22, "bass": 0.5, "chords": 0.22, "lead": 0.28}

SUSTAINED_CHORDS = (0, 1)  # chord rhythms (P.CHORD_RHYTHMS) that hold through the bar: pad, half notes
BASS_RANGE = (33, 45)  # A1..A2 (55-110 Hz)
CHORD_RANGE = (52, 72)  # E3..C5
LEAD_RANGE = (64, 88)  # E4..E6


def sample_song(dcfg, rng: np.random.Generator) -> dict[str, Any]:
    """Every musical decision of one clip (JSON-serialisable)."""
    tempo = float(rng.uniform(dcfg.tempo_min, dcfg.tempo_max))
    scale = str(rng.choice(list(T.SCALES)))
    progs = T.progressions_for(scale)
    mask = {t: bool(rng.random() < p) for t, p in TRACK_PROB.items()}
    return {
        "tempo": tempo,
        "key_root": int(rng.integers(12)),
        "scale": scale,
        "progression": list(progs[int(rng.integers(len(progs)))]),
        "bars_per_chord": int(rng.choice([1, 2])) if tempo > 110 else 1,
        "phrase_bars": int(rng.choice([2, 4])),
        "offset_steps": int(rng.integers(0, P.STEPS_PER_BAR)),  # the song starts this many 16ths before the clip
        "swing": float(rng.choice([0.0, 0.0, rng.uniform(0.05, 0.2)])),
        "kick_pattern": int(rng.integers(len(P.KICK_PATTERNS))),
        "snare_pattern": int(rng.integers(len(P.SNARE_PATTERNS))),
        "hat_pattern": int(rng.integers(len(P.HAT_PATTERNS))),
        "fill": int(rng.integers(len(P.FILLS))),
        "clap": bool(rng.random() < 0.4),
        "bass_pattern": int(rng.integers(len(P.BASS_PATTERNS))),
        "bass_timbre": str(rng.choice(["warm_saw", "soft", "square", "sine"])),
        "chord_rhythm": int(rng.integers(len(P.CHORD_RHYTHMS))),
        "chord_size": int(rng.choice([3, 3, 4])),
        "chord_timbre": str(rng.choice(["soft", "organ", "triangle", "warm_saw"])),
        "arp_mode": str(rng.choice(P.ARP_MODES)),
        "arp_rate": int(rng.choice([1, 2])) if tempo < 130 else 2,  # steps per note (16ths or 8ths)
        "lead_timbre": str(rng.choice(["square", "triangle", "soft", "warm_saw"])),
        "levels_db": {t: float(rng.uniform(-3, 3)) for t in TRACKS},
        "kick_shape": [float(rng.uniform(110, 200)), float(rng.uniform(40, 62)), float(rng.uniform(0.02, 0.05)),
                       float(rng.uniform(0.12, 0.3)), float(rng.uniform(0.0, 0.3))],
        "snare_shape": [float(rng.uniform(160, 240)), float(rng.uniform(0.06, 0.16))],
        "hat_decay": [float(rng.uniform(0.02, 0.06)), float(rng.uniform(0.15, 0.3))],
        "track_mask": [int(mask[t]) for t in TRACKS],
        "sound_seed": int(rng.integers(2**31)),
    }


class _Grid:
    """Song steps (16ths) -> clip samples, with the song's offset and swing."""

    def __init__(self, tempo: float, offset_steps: int, swing: float, sr: int):
        self.step_s = 60.0 / tempo / P.STEPS_PER_BEAT
        self.offset_steps, self.swing, self.sr = offset_steps, swing, sr

    def seconds(self, steps: np.ndarray, swung: bool = False) -> np.ndarray:
        t = (np.asarray(steps, dtype=np.float64) - self.offset_steps) * self.step_s
        if swung and self.swing:
            t = t + (np.asarray(steps) % 2 == 1) * self.swing * self.step_s
        return t

    def samples(self, steps: np.ndarray, swung: bool = False) -> np.ndarray:
        return np.round(self.seconds(steps, swung) * self.sr).astype(np.int64)


def _humanise(vel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (vel * rng.uniform(0.75, 1.0, size=len(vel))).astype(np.float32)


def _notes(grid: _Grid, start_steps, len_steps, midi, vel, gate: float, swung: bool) -> V.Notes:
    start_steps = np.asarray(start_steps, dtype=np.float64)
    starts = grid.samples(start_steps, swung)
    ends = starts + np.round(np.asarray(len_steps) * gate * grid.step_s * grid.sr).astype(np.int64)
    order = np.argsort(starts, kind="stable")
    return V.Notes(starts[order], ends[order], np.asarray(T.midi_to_hz(np.asarray(midi)))[order],
                   np.asarray(vel, dtype=np.float32)[order])


def _fold(m: int, lo: int, hi: int) -> int:
    while m < lo:
        m += 12
    while m > hi:
        m -= 12
    return m


def song_notes(song: dict[str, Any], n_bars: int, rng: np.random.Generator) -> dict[str, list[tuple]]:
    """Pitched events per track in song steps: track -> list of (voice, start_step, len_steps, midi, velocity)."""
    root, scale = song["key_root"], song["scale"]
    chord_deg = P.chord_unit_per_bar(n_bars, tuple(song["progression"]), song["bars_per_chord"])
    out: dict[str, list[tuple]] = {"bass": [], "chords": [], "lead": []}
    motif = P.melody_motif(2 * P.STEPS_PER_BAR, rng)
    for b in range(n_bars):
        deg, bar0 = int(chord_deg[b]), b * P.STEPS_PER_BAR
        # bass: chord root, fifth (the chord's third stacked degree) or octave
        r = _fold(T.degree_to_midi(root, scale, deg, 0), *BASS_RANGE)
        fifth = T.degree_to_midi(root, scale, deg + 4, 0)
        while fifth <= r:
            fifth += 12
        tones = (r, fifth if fifth - r <= 12 else fifth - 12, r + 12)
        for step, length, tone in P.BASS_PATTERNS[song["bass_pattern"]]:
            out["bass"].append((0, bar0 + step, length, tones[tone], 0.9))
        # chords: one voice per chord tone, on the clip's chord rhythm
        pitches = T.voice_chord(root, scale, deg, song["chord_size"], *CHORD_RANGE)
        for step, length in P.CHORD_RHYTHMS[song["chord_rhythm"]]:
            for v, m in enumerate(pitches):
                out["chords"].append((v, bar0 + step, length, m, 0.8))
        # lead: arpeggio over the chord, or a repeating two-bar melodic motif in the scale
        rate = song["arp_rate"]
        if song["arp_mode"] == "melody":
            for step, length, off in motif:
                if (b % 2) * P.STEPS_PER_BAR <= step < (b % 2 + 1) * P.STEPS_PER_BAR:
                    m = _fold(T.degree_to_midi(root, scale, deg + off, 0), LEAD_RANGE[0], LEAD_RANGE[0] + 16)
                    out["lead"].append((0, bar0 + step - (b % 2) * P.STEPS_PER_BAR, length, m, 0.85))
        else:
            lead_chord = T.voice_chord(root, scale, deg, 3, LEAD_RANGE[0], LEAD_RANGE[0] + 11)
            seq = P.arp_sequence(lead_chord, song["arp_mode"], P.STEPS_PER_BAR // rate, rng)
            for i, m in enumerate(seq):
                if rng.random() > 0.12:
                    out["lead"].append((0, bar0 + i * rate, rate, m, 0.8 if i % 2 else 0.95))
    return out


def _render_pitched(events: list[tuple], grid: _Grid, n: int, timbre: str, env: tuple, gate: float,
                    swung: bool, detune: float, rng: np.random.Generator) -> np.ndarray:
    """One pitched track (float32 [n]): its voices share note timing, so they share one envelope."""
    if not events:
        return np.zeros(n, np.float32)
    ev = np.array(events, dtype=np.float64)  # (k, 5): voice, start, len, midi, vel
    table = V.band_limited_table(timbre, float(T.midi_to_hz(ev[:, 3].max())), grid.sr)
    voices = [ev[ev[:, 0] == v] for v in np.unique(ev[:, 0])]
    if any(not np.array_equal(v[:, 1:3], voices[0][:, 1:3]) for v in voices):
        raise ValueError("voices of one pitched track must share note timing")
    midi = np.stack([v[:, 3] for v in voices], axis=1)  # (notes, voices)
    notes = _notes(grid, voices[0][:, 1], voices[0][:, 2], midi, _humanise(voices[0][:, 4], rng), gate, swung)
    return V.render_voice(notes, n, grid.sr, table, *env, detune_cents=detune)


def render_song(song: dict[str, Any], duration: float, sr: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Render every track of ``song`` over ``duration`` seconds: (stems float32 [n] per track, timing info).

    A track whose mask bit is 0 gets an all-zero stem. Timing info: beat and downbeat times,
    bar count and the pitched notes in seconds (for tests and evaluation).
    """
    n = int(round(duration * sr))
    rng = np.random.default_rng(song["sound_seed"])
    grid = _Grid(song["tempo"], song["offset_steps"], song["swing"], sr)
    n_steps = song["offset_steps"] + math.ceil(duration / grid.step_s) + 1
    n_bars = math.ceil(n_steps / P.STEPS_PER_BAR)
    active = dict(zip(TRACKS, song["track_mask"]))
    level = {t: TRACK_LEVEL[t] * 10 ** (song["levels_db"][t] / 20) for t in TRACKS}
    stems = {t: np.zeros(n, np.float32) for t in TRACKS}

    # drums
    fill_snare, fill_hat = P.FILLS[song["fill"]]
    if active["kick"]:
        s, v, _ = P.tile_bars(P.drum_bars(P.KICK_PATTERNS[song["kick_pattern"]], None, n_bars, song["phrase_bars"]), n_bars)
        shot = V.kick_oneshot(sr, *song["kick_shape"])
        V.place_oneshots(n, shot, grid.samples(s), _humanise(v, rng) * level["kick"], stems["kick"])
    if active["snare"]:
        s, v, _ = P.tile_bars(P.drum_bars(P.SNARE_PATTERNS[song["snare_pattern"]], fill_snare, n_bars, song["phrase_bars"]), n_bars)
        shot = V.snare_oneshot(sr, rng, song["snare_shape"][0], song["snare_shape"][1], song["clap"])
        V.place_oneshots(n, shot, grid.samples(s, swung=True), _humanise(v, rng) * level["snare"], stems["snare"])
    if active["hihat"]:
        s, v, o = P.tile_bars(P.drum_bars(P.HAT_PATTERNS[song["hat_pattern"]], fill_hat, n_bars, song["phrase_bars"]), n_bars)
        vel = _humanise(v, rng) * level["hihat"]
        for is_open, decay in ((False, song["hat_decay"][0]), (True, song["hat_decay"][1])):
            V.place_oneshots(n, V.hat_oneshot(sr, rng, decay), grid.samples(s[o == is_open], swung=True), vel[o == is_open], stems["hihat"])

    # pitched tracks
    notes = song_notes(song, n_bars, rng)
    stab = song["chord_rhythm"] >= 2
    settings = {  # timbre, (attack, decay, sustain, release), gate, swung, detune cents
        "bass": (song["bass_timbre"], (0.004, 0.25, 0.6, 0.08), 0.85, False, 0.0),
        "chords": (song["chord_timbre"], (0.005, 0.15, 0.45, 0.15) if stab else (0.08, 0.6, 0.75, 0.25), 0.9, False, 7.0),
        "lead": (song["lead_timbre"], (0.003, 0.12, 0.3, 0.05), 0.7, True, 0.0),
    }
    for track, (timbre, env, gate, swung, detune) in settings.items():
        if active[track]:
            stems[track] = _render_pitched(notes[track], grid, n, timbre, env, gate, swung, detune, rng) * (
                level[track] / (song["chord_size"] if track == "chords" else 1))

    beat_steps = np.arange(0, n_steps + P.STEPS_PER_BEAT, P.STEPS_PER_BEAT)
    beat_t = grid.seconds(beat_steps)
    in_clip = (beat_t >= 0) & (beat_t < duration)
    timing = {
        "bars": n_bars,
        "beat_times": [round(float(t), 6) for t in beat_t[in_clip]],
        "downbeat_times": [round(float(t), 6) for t, st in zip(beat_t[in_clip], beat_steps[in_clip]) if st % P.STEPS_PER_BAR == 0],
        "notes": {
            track: [(round(float(grid.seconds(st, track == "lead")), 6),
                     round(float(grid.seconds(st, track == "lead") + ln * gate * grid.step_s), 6), int(m))
                    for (_, st, ln, m, _) in notes[track]]
            for track, (_, _, gate, _, _) in settings.items() if active[track]
        },
    }
    return stems, timing
