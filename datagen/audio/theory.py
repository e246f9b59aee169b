"""Music theory for the procedural synth: keys, scales, chords in a key, MIDI pitch.

Everything here is pure and tiny; the renderer turns the notes into sound.
Pitches are MIDI note numbers (69 = A4 = 440 Hz); pitch classes are 0..11 with 0 = C.
"""

from __future__ import annotations

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# Semitone offsets of each scale degree from the root.
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "pentatonic_major": (0, 2, 4, 7, 9),
    "pentatonic_minor": (0, 3, 5, 7, 10),
}

# Chord progressions as 0-based scale degrees, one chord per harmonic unit (1 or 2 bars).
# Seven-note scales get the usual pop/EDM/jazz moves; five-note scales stack their own degrees.
PROGRESSIONS_7: tuple[tuple[int, ...], ...] = (
    (0, 4, 5, 3),  # I V vi IV
    (0, 5, 3, 4),  # I vi IV V
    (5, 3, 0, 4),  # vi IV I V
    (0, 3, 4, 3),  # I IV V IV
    (1, 4, 0, 0),  # ii V I I
    (0, 6, 5, 4),  # i VII VI v (natural-minor descent)
    (0, 3, 0, 4),  # i iv i v
    (0, 2, 3, 4),
)
PROGRESSIONS_5: tuple[tuple[int, ...], ...] = (
    (0, 3, 1, 2),
    (0, 2, 3, 0),
    (0, 4, 3, 1),
    (0, 1, 3, 2),
)


def midi_to_hz(midi: np.ndarray | float) -> np.ndarray | float:
    """Equal temperament, A4 (MIDI 69) = 440 Hz."""
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def hz_to_midi(hz: np.ndarray | float) -> np.ndarray | float:
    """Inverse of :func:`midi_to_hz` (fractional MIDI numbers)."""
    return 69.0 + 12.0 * np.log2(np.asarray(hz, dtype=np.float64) / 440.0)


def scale_pitch_classes(root: int, scale: str) -> frozenset[int]:
    """Pitch classes (0..11) of ``scale`` on ``root``."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale '{scale}'; known: {', '.join(SCALES)}")
    return frozenset((root + s) % 12 for s in SCALES[scale])


def degree_to_midi(root: int, scale: str, degree: int, octave_base: int) -> int:
    """MIDI pitch of a (possibly negative or > len(scale)) scale degree above ``octave_base + root``.

    Degrees wrap into octaves: degree len(scale) is the root one octave up.
    """
    steps = SCALES[scale]
    octave, idx = divmod(int(degree), len(steps))
    return int(octave_base + root + 12 * octave + steps[idx])


def chord_degrees(degree: int, size: int) -> list[int]:
    """Scale degrees of a chord built by stacking every other degree (thirds in a 7-note scale)."""
    return [degree + 2 * i for i in range(size)]


def voice_chord(root: int, scale: str, degree: int, size: int, low: int, high: int) -> list[int]:
    """MIDI pitches of the chord on ``degree`` folded into [low, high] (closest voicing, sorted).

    Every pitch is in the scale by construction; folding by octaves keeps the pitch class.
    """
    out = []
    for d in chord_degrees(degree, size):
        m = degree_to_midi(root, scale, d, 0)
        while m < low:
            m += 12
        while m > high:
            m -= 12
        out.append(m)
    return sorted(out)


def progressions_for(scale: str) -> tuple[tuple[int, ...], ...]:
    return PROGRESSIONS_7 if len(SCALES[scale]) == 7 else PROGRESSIONS_5


def key_name(root: int, scale: str) -> str:
    """Human-readable key, e.g. ``"F# dorian"``."""
    return f"{NOTE_NAMES[root % 12]} {scale}"
