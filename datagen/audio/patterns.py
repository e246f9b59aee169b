"""Rhythm and note patterns on a 16-step-per-bar grid (4/4), and their expansion over a clip.

Drum patterns are strings of 16 characters: ``X`` accent, ``x`` normal hit, ``g`` ghost,
``O`` open hi-hat, ``-`` rest. Every kick pattern hits all four beats (variation comes
from the extra syncopated kicks), so the tempo is always audible in the kick stem.
Fills replace the snare (and hi-hat) bar at the end of each phrase; the kick never
changes in a fill.
"""

from __future__ import annotations

import numpy as np

STEPS_PER_BAR = 16
STEPS_PER_BEAT = 4

VELOCITY = {"X": 1.0, "x": 0.75, "g": 0.38, "O": 0.8}

KICK_PATTERNS = (
    "X---x---X---x---",  # four on the floor
    "X---x---X---x-x-",  # + pickup on the and of 4
    "X---x--gX---x---",  # + ghost on the a of 2
    "X---x---X-x-x---",  # + and of 3
    "X--gx---X---x--g",  # 16th ghosts
)
SNARE_PATTERNS = (
    "----X-------X---",
    "----X-------X--g",
    "----X--g----X---",
    "----X-----g-X-g-",
    "----X-------X-g-",
)
HAT_PATTERNS = (
    "x-x-x-x-x-x-x-x-",  # 8ths
    "--O---O---O---O-",  # offbeat open hats (house)
    "xgxgxgxgxgxgxgxg",  # 16ths
    "x-xgx-xgx-xgx-xg",
    "x-x-x-x-x-x-x-O-",
)
FILLS = (  # (snare bar, hat bar)
    ("----X-------xxXX", "x-x-x-x-x-x-----"),
    ("----X---x-x-xxxx", "x-x-x-x---------"),
    ("----X-----x-XxXx", "x-x-x-x-x-x-x-O-"),
    ("----X-------XXXX", "xgxgxgxgxgxg----"),
    ("----X---xgxgxgXX", "x-x-x-x---------"),
)

# Bass patterns: (step, length in steps, chord tone) with tone 0 root, 1 fifth, 2 octave up.
BASS_PATTERNS: tuple[tuple[tuple[int, int, int], ...], ...] = (
    ((0, 3, 0), (4, 3, 0), (8, 3, 0), (12, 3, 0)),  # root quarters
    tuple((s, 2, 0) for s in range(0, 16, 2)),  # root eighths
    tuple((s, 2, 2 if (s // 2) % 2 else 0) for s in range(0, 16, 2)),  # octave eighths
    ((0, 3, 0), (3, 3, 0), (6, 3, 1), (10, 2, 0), (12, 4, 2)),  # syncopated
    ((0, 8, 0), (8, 8, 1)),  # long notes
    ((2, 2, 0), (6, 2, 0), (10, 2, 0), (14, 2, 0)),  # offbeat (house)
)

# Chord rhythms: (step, length in steps) within one bar.
CHORD_RHYTHMS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, 16),),  # sustained pad
    ((0, 8), (8, 8)),  # half notes
    ((0, 3), (3, 3), (6, 4), (10, 3), (13, 3)),  # syncopated stabs
    ((2, 2), (6, 2), (10, 2), (14, 2)),  # offbeat stabs
)

ARP_MODES = ("up", "down", "updown", "random", "melody")


def parse_drum_bar(pattern: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 16-char pattern -> (steps int [k], velocities float32 [k], open flags bool [k])."""
    if len(pattern) != STEPS_PER_BAR or set(pattern) - set(VELOCITY) - {"-"}:
        raise ValueError(f"bad drum pattern {pattern!r}: need 16 chars from 'Xxg O-'")
    steps = np.array([i for i, c in enumerate(pattern) if c != "-"], dtype=np.int64)
    vel = np.array([VELOCITY[pattern[i]] for i in steps], dtype=np.float32)
    opened = np.array([pattern[i] == "O" for i in steps], dtype=bool)
    return steps, vel, opened


def tile_bars(bars: list[str], n_bars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate one pattern string per bar into song-step arrays (steps, velocities, open flags)."""
    steps, vels, opens = [], [], []
    for b, pat in enumerate(bars[:n_bars]):
        s, v, o = parse_drum_bar(pat)
        steps.append(s + b * STEPS_PER_BAR)
        vels.append(v)
        opens.append(o)
    return np.concatenate(steps), np.concatenate(vels), np.concatenate(opens)


def drum_bars(base: str, fill: str | None, n_bars: int, phrase_bars: int) -> list[str]:
    """The per-bar pattern list: ``base`` everywhere, ``fill`` on the last bar of each phrase."""
    return [fill if fill is not None and (b % phrase_bars) == phrase_bars - 1 else base for b in range(n_bars)]


def chord_unit_per_bar(n_bars: int, progression: tuple[int, ...], bars_per_chord: int) -> np.ndarray:
    """Scale degree of the chord in each bar (int [n_bars]), cycling through the progression."""
    unit = np.arange(n_bars) // bars_per_chord
    return np.asarray(progression, dtype=np.int64)[unit % len(progression)]


def arp_sequence(chord_pitches: list[int], mode: str, length: int, rng: np.random.Generator) -> list[int]:
    """``length`` pitches walking over a chord spread across two octaves, in one of ARP_MODES (not 'melody')."""
    pool = sorted(chord_pitches + [p + 12 for p in chord_pitches])
    if mode == "up":
        seq = pool
    elif mode == "down":
        seq = pool[::-1]
    elif mode == "updown":
        seq = pool + pool[-2:0:-1]
    elif mode == "random":
        seq = list(rng.choice(pool, size=len(pool)))
    else:
        raise ValueError(f"unknown arpeggio mode '{mode}'")
    return [int(seq[i % len(seq)]) for i in range(length)]


def melody_motif(n_steps: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """A two-bar motif: (step, length, scale-degree offset) with 8th and quarter notes and a few rests.

    Degrees follow a bounded random walk (small steps, occasional leaps), the way simple
    hooks move; the motif repeats every two bars so the lead sounds composed.
    """
    out, step, degree = [], 0, 0
    while step < n_steps:
        length = int(rng.choice([2, 2, 2, 4, 4, 1, 1]) if step % 2 == 0 else 1)
        if rng.random() > 0.15:  # else a rest
            out.append((step, length, degree))
        step += length
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]), -3, 7))
    return out
