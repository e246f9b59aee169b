"""Sound sources, vectorised with numpy: wavetable voices for pitched tracks, one-shots for drums.

A pitched *voice* plays a monophonic sequence of notes (start, end, pitch, velocity):
every sample knows which note it belongs to (``np.repeat``), so the envelope and the
oscillator phase are whole-array expressions, with no Python loop over samples.
Drums are short one-shot buffers added at their onsets (a loop over a few dozen
events of slice additions).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TABLE_SIZE = 4096  # wavetable length (a power of two: phase -> index is a mask)

# Harmonic amplitudes of each timbre (1-based harmonics). Fundamentals dominate on
# purpose: pitch is measurable from a stem's spectrum peak.
TIMBRES: dict[str, tuple[float, ...]] = {
    "sine": (1.0,),
    "soft": (1.0, 0.30, 0.12, 0.06, 0.03),
    "warm_saw": (1.0, 0.45, 0.28, 0.18, 0.12, 0.08, 0.05, 0.03),
    "square": (1.0, 0.0, 0.33, 0.0, 0.2, 0.0, 0.14, 0.0, 0.11),
    "triangle": (1.0, 0.0, 0.11, 0.0, 0.04, 0.0, 0.02),
    "organ": (1.0, 0.4, 0.0, 0.25, 0.0, 0.0, 0.0, 0.12),
}


@lru_cache(maxsize=128)
def wavetable(timbre: str, max_harmonic: int) -> np.ndarray:
    """One period of ``timbre`` (float32 [TABLE_SIZE], peak 1) keeping harmonics <= max_harmonic (anti-aliasing)."""
    amps = TIMBRES[timbre][: max(1, max_harmonic)]
    phase = np.arange(TABLE_SIZE) / TABLE_SIZE
    wave = sum(a * np.sin(2 * np.pi * (h + 1) * phase) for h, a in enumerate(amps) if a)
    return (wave / np.abs(wave).max()).astype(np.float32)


def band_limited_table(timbre: str, max_hz: float, sr: int) -> np.ndarray:
    """The wavetable for notes up to ``max_hz`` with no harmonic above 0.9 x Nyquist."""
    return wavetable(timbre, int(0.45 * sr // max(max_hz, 1.0)))


@dataclass(frozen=True)
class Notes:
    """Note events in samples: sorted, non-overlapping starts (may be negative).

    ``hz`` is (M,) for one oscillator or (M, V) for V voices sharing one envelope (a chord).
    """

    start: np.ndarray  # int64 (M,)
    end: np.ndarray  # int64 (M,)  note-off sample (release starts here)
    hz: np.ndarray  # float64 (M,) or (M, V)
    vel: np.ndarray  # float32 (M,) in [0, 1]

    def __len__(self) -> int:
        return int(self.start.shape[0])


def note_spans(starts: np.ndarray, n: int) -> np.ndarray:
    """Run lengths (int64 [M + 1]) of the note active at each sample 0..n-1: first the samples before any note,
    then one run per note (a note's run lasts until the next note starts; notes starting before 0 may get 0)."""
    bounds = np.clip(starts, 0, n)
    return np.diff(np.concatenate([[0], bounds, [n]]))


def per_sample(values: np.ndarray, spans: np.ndarray, before: float = 0.0) -> np.ndarray:
    """Spread per-note ``values`` (M,) over samples with the runs of :func:`note_spans` (a repeat, not a gather)."""
    return np.repeat(np.concatenate([np.array([before], dtype=values.dtype), values]), spans)


def attack_decay_curve(n: int, sr: int, attack: float, decay: float, sustain: float) -> np.ndarray:
    """Envelope vs samples since note-on (float32 [n]): linear attack, exponential decay to ``sustain``."""
    t = np.arange(n, dtype=np.float32) / sr
    return (np.minimum(1.0, t / max(attack, 1e-4))
            * (sustain + (1.0 - sustain) * np.exp(-np.maximum(t - attack, 0.0) / decay))).astype(np.float32)


def release_curve(sr: int, release: float) -> np.ndarray:
    """Envelope vs samples since note-off (float32): exponential release over 8 time constants, ending at exact 0."""
    n = max(2, int(8 * release * sr))
    out = np.exp(-np.arange(n, dtype=np.float32) / (release * sr)).astype(np.float32)
    out[-1] = 0.0
    return out


def carry_levels(notes: Notes, ad: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Envelope level (float32 [M]) of the previous note at each note's start (0 for the first note)."""
    out = np.zeros(len(notes), np.float32)
    if len(notes) > 1:
        since_on = notes.start[1:] - notes.start[:-1]
        since_off = notes.start[1:] - notes.end[:-1]
        out[1:] = (ad[np.minimum(since_on, len(ad) - 1)] * rel[np.clip(since_off, 0, len(rel) - 1)]
                   * notes.vel[:-1])
    return out


def render_voice(notes: Notes, n: int, sr: int, table: np.ndarray, attack: float, decay: float, sustain: float,
                 release: float, detune_cents: float = 0.0) -> np.ndarray:
    """Render a note sequence through a wavetable (float32 [n]); exactly 0 before the first note and after a release.

    The envelope comes from two lookup curves indexed by samples since note-on and note-off
    (no per-sample ``exp``). The oscillator phase is continuous across notes (a running
    sum of the per-sample frequency), so pitch changes do not click; ``detune_cents`` adds
    a second, detuned oscillator per voice (chorus).
    """
    if len(notes) == 0:
        return np.zeros(n, np.float32)
    spans = note_spans(notes.start, n)  # (M + 1,)
    lead = int(spans[0])
    longest = int(np.max(notes.end - notes.start)) + 1
    ad = attack_decay_curve(min(longest, int(sr * (attack + 8 * decay)) + 1), sr, attack, decay, sustain)
    rel = release_curve(sr, release)
    # In-place arithmetic below: these are whole-clip arrays, and fresh allocations cost as much as the math.
    t_on = per_sample(-notes.start, spans)  # samples since note-on (n,)
    t_on += _arange(n)
    t_off = per_sample(notes.start - notes.end, spans)  # samples since note-off (n,)
    t_off += t_on
    np.clip(t_off, 0, len(rel) - 1, out=t_off)
    env = ad[np.minimum(t_on, len(ad) - 1)]  # (n,) float32
    env *= rel[t_off]
    env *= per_sample(notes.vel, spans)
    # Legato: a note that starts while the previous one still sounds fades that level out over its
    # attack instead of dropping it to zero (an amplitude jump would click).
    carry = carry_levels(notes, ad, rel)  # (M,)
    xfade = max(1, int(max(attack, 0.005) * sr))
    fade = np.linspace(1.0, 0.0, xfade, endpoint=False, dtype=np.float32)
    for j in np.nonzero(carry > 0)[0].tolist():  # a few notes: slices, not whole-clip passes
        a = int(notes.start[j])
        b = min(a + xfade, n, int(notes.start[j + 1]) if j + 1 < len(notes) else n)
        if b > max(a, 0):
            env[max(a, 0):b] += carry[j] * fade[max(a, 0) - a:b - a]
    env[:lead] = 0.0
    hz = notes.hz.reshape(len(notes), -1)  # (M, V)
    mask = TABLE_SIZE - 1
    out = np.zeros(n, np.float32)
    for v in range(hz.shape[1]):
        inc = hz[:, v] * (TABLE_SIZE / sr)  # table positions per sample, per note (M,)
        # phase at each note-on so that the phase runs on continuously from the previous note
        phi0 = np.concatenate([[0.0], np.cumsum(np.diff(notes.start) * inc[:-1])])  # unwrapped (detune scales it)
        phase = per_sample(inc, spans)  # (n,) table positions: phi0 + t_on * inc
        phase *= t_on
        phase += per_sample(phi0, spans)
        out += table[_wrap(phase, mask)]
        if detune_cents:
            phase *= 2.0 ** (detune_cents / 1200.0)
            phase += TABLE_SIZE // 3
            out += table[_wrap(phase, mask)]
    if detune_cents:
        out *= 0.5
    out *= env
    return out


@lru_cache(maxsize=8)
def _arange(n: int) -> np.ndarray:
    """0..n-1 (int64, read-only, cached: every voice of a clip needs it)."""
    a = np.arange(n, dtype=np.int64)
    a.flags.writeable = False
    return a


def _wrap(phase: np.ndarray, mask: int) -> np.ndarray:
    """Table indices of non-negative phases: floor, then wrap with a bit mask (table size is a power of two)."""
    idx = phase.astype(np.int64)
    idx &= mask
    return idx


# ------------------------------------------------------------------ drum one-shots


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def _fft_band(x: np.ndarray, sr: int, lo: float, hi: float) -> np.ndarray:
    """Brick-wall band-pass of a short buffer through its FFT (fine for one-shots: no streaming)."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / sr)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    peak = float(np.abs(x).max())
    return (x / peak).astype(np.float32) if peak > 0 else x.astype(np.float32)


def kick_oneshot(sr: int, f_start: float, f_end: float, sweep_s: float, decay_s: float, click: float) -> np.ndarray:
    """A sine kick: pitch sweeps exponentially from f_start to f_end; exponential amplitude decay; short click."""
    n = int(sr * min(0.6, 6 * decay_s))
    t = np.arange(n) / sr
    # phase = integral of f(t) = f_end*t + (f_start-f_end)*sweep*(1-exp(-t/sweep))
    phase = f_end * t + (f_start - f_end) * sweep_s * (1 - np.exp(-t / sweep_s))
    body = np.sin(2 * np.pi * phase) * np.exp(-t / decay_s)
    clk = click * np.exp(-t / 0.002) * np.sin(2 * np.pi * min(3000.0, 0.4 * sr) * t)
    out = body + clk
    out[-int(0.005 * sr) - 1:] *= np.linspace(1, 0, int(0.005 * sr) + 1)  # no click at the cut
    return _normalise(out)


def snare_oneshot(sr: int, rng: np.random.Generator, tone_hz: float, decay_s: float, clap: bool) -> np.ndarray:
    """Snare (band-passed noise + a short tone body) or clap (three noise bursts then a tail)."""
    n = int(sr * min(0.5, 6 * decay_s))
    t = np.arange(n) / sr
    noise = _fft_band(_noise(rng, n), sr, 1200.0, min(9000.0, 0.45 * sr))
    if clap:
        env = np.zeros(n)
        for k, off in enumerate((0.0, 0.011, 0.022)):
            tt = t - off
            env += np.where(tt >= 0, np.exp(-np.maximum(tt, 0) / (0.004 if k < 2 else decay_s)), 0.0)
        out = noise * env
    else:
        body = 0.6 * np.sin(2 * np.pi * tone_hz * t) * np.exp(-t / 0.04)
        out = noise * np.exp(-t / decay_s) + body
    out[-int(0.005 * sr) - 1:] *= np.linspace(1, 0, int(0.005 * sr) + 1)
    return _normalise(out)


def hat_oneshot(sr: int, rng: np.random.Generator, decay_s: float) -> np.ndarray:
    """Hi-hat: high-passed noise with a fast exponential decay (open hats: a longer decay)."""
    n = int(sr * min(0.5, 6 * decay_s))
    t = np.arange(n) / sr
    out = _fft_band(_noise(rng, n), sr, min(6000.0, 0.3 * sr), 0.49 * sr) * np.exp(-t / decay_s)
    out[-int(0.003 * sr) - 1:] *= np.linspace(1, 0, int(0.003 * sr) + 1)
    return _normalise(out)


def place_oneshots(n: int, oneshot: np.ndarray, onsets: np.ndarray, vel: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Add ``vel[j] * oneshot`` at sample ``onsets[j]`` into a float32 [n] buffer (onsets may be negative or past n)."""
    buf = np.zeros(n, np.float32) if out is None else out
    length = len(oneshot)
    for s, v in zip(onsets.tolist(), vel.tolist()):
        a, b = max(s, 0), min(s + length, n)
        if a < b:
            buf[a:b] += v * oneshot[a - s:b - s]
    return buf
