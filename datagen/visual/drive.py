"""From a raw audio timeline to the per-frame values the shaders draw with ("drive").

Two steps, both deterministic and CPU-only (numpy):

1. **Fixed normalisation** (:func:`normalize_features`): raw timeline values are mapped to [0, 1] with
   fixed formulas, never per-clip statistics, so a quiet clip looks quiet and silence looks like silence.
2. **State integration** (:class:`DriveIntegrator`): envelopes with fast attack and short release,
   and clocks that advance at a speed set by loudness. Silence therefore freezes motion (the clocks stop)
   and darkens everything (the envelopes fall to 0 within ~0.3 s).

Loudness comes first (issue "the teacher teaches the music"): a viewer should see louder music as
faster, brighter and bigger, so the three follow the loudness envelope over a wide range with a fixed
reference (:func:`loudness_to_unit`, -55..-10 dBFS): the motion clock doubles its speed per
:data:`SPEED_DOUBLING_DB` (:func:`clock_speed`) and the picture's gain grows with the square of the
loudness unit (:func:`brightness_gain`). Onsets make *events* (a flash scaled by the loudness, particle
bursts) but do not kick the clocks, so drums do not swamp the loudness response. Bands shape each
primitive and, the same way for every primitive, the whole picture: low bands make it bigger
(:func:`size_factor`) and warmer, high bands cooler (:func:`warmth`).

The integrator is stepped chunk by chunk with its state carried over, so memory is O(chunk) for
audio of any length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

# Version of the visualizers' content: bump it whenever a timeline's frames change (drive or shaders; it is
# part of the shards' content fingerprint, datagen/manifest.py). 1: loudness^1.5 clocks with an onset kick;
# 2: loudness first (exponential-in-dB clocks, loudness gain, size and warmth from the bands, onset punch; b7be8d6);
# 3: the clock doubles per 9 dB (not 6), gain up to 1.4, the tint smoothed, luma-preserving and silent in silence.
VISUAL_VERSION = 3

# Bands are resampled to this many values for the shaders (``uniform float u_bands[8]``).
SHADER_BANDS = 8

# Band amplitudes: dB range mapped to [0, 1]: -60 dBFS (the silence threshold's default) -> 0, 0 dBFS -> 1.
DB_FLOOR = -60.0
# Loudness (the frame's RMS, dBFS) mapped to [0, 1]: LOUD_FLOOR_DB -> 0, LOUD_FULL_DB -> 1. Music sits around
# -20 dBFS (0.78), a quiet passage at -35 (0.44), a loud chorus at -14 (0.91). A fixed reference: a quiet clip
# stays dark and slow.
LOUD_FLOOR_DB = -55.0
LOUD_FULL_DB = -10.0
# Motion clock: CLOCK_RATE units/s (times the style speed) at SPEED_REF_DB, doubling per SPEED_DOUBLING_DB, at most
# SPEED_MAX. Steeper (x2 per 6 dB) saturated the frame difference at 8 fps on real recordings' note attacks.
SPEED_REF_DB = -20.0
SPEED_DOUBLING_DB = 9.0
SPEED_MAX = 4.0
CLOCK_RATE = 0.7
# Picture gain: GAIN_MIN + (GAIN_MAX - GAIN_MIN) * loudness_unit ** GAIN_POWER: 0.88 at -20 dBFS (typical music,
# about the brightness of the visualizers before issue 29), 1.17 at -14, 0.34 at -35 (x2.6 from -35 to -20 dBFS).
GAIN_MIN = 0.08
GAIN_MAX = 1.4
GAIN_POWER = 2.0
# Size: the picture is scaled by SIZE_MIN + SIZE_RANGE * (low-band level); warmth: low minus high bands.
SIZE_MIN = 0.8
SIZE_RANGE = 0.45
# Onset punch: the picture grows by this fraction of the flash envelope (an event the optical flow sees).
PUNCH = 0.25
LOW_BANDS = (0, 1, 2)
HIGH_BANDS = (5, 6, 7)
WARMTH_SCALE = 4.0
WARMTH_CENTRE = 0.28  # a typical low-minus-high balance of music in band units: neutral colour
WARMTH_SMOOTH_S = 0.25  # the colour temperature follows the band balance this slowly (no per-note flicker)
# Spectral flux (mean half-wave-rectified dB increase per bin, shared/timeline.py) mapped to [0, 1]:
# steady music sits around 1-3 dB, drum hits give 10-40 dB; ONSET_FLOOR -> 0, ONSET_FULL -> 1.
ONSET_FLOOR = 3.0
ONSET_FULL = 15.0
# Release time constants (seconds). Short enough that everything rests within 0.5 s of silence.
LEVEL_RELEASE_S = 0.08
BAND_RELEASE_S = 0.12
FLASH_RELEASE_S = 0.07
DOWNBEAT_RELEASE_S = 0.12
CENTROID_SMOOTH_S = 0.15
# A new particle burst needs an onset at least this strong and this long since the previous one.
BURST_ONSET = 0.5
BURST_MIN_GAP_S = 0.12

REQUIRED_CHANNELS = ("log_rms", "onset", "centroid")

# Names of the per-frame drive values, in the order of the [n, D] arrays the integrator returns.
DRIVE_SCALARS = ("level", "flash", "centroid", "pulse", "downbeat", "phase", "spin", "burst_age",
                 "burst_count", "dominant", "gain", "size", "warmth")
DRIVE_NAMES = DRIVE_SCALARS + tuple(f"band{i}" for i in range(SHADER_BANDS))


def db_to_unit(db: np.ndarray) -> np.ndarray:
    """Map dBFS to [0, 1]: ``clip((db - DB_FLOOR) / -DB_FLOOR, 0, 1)`` (-60 dB -> 0, 0 dB -> 1)."""
    return np.clip((db - DB_FLOOR) / -DB_FLOOR, 0.0, 1.0)


def loudness_to_unit(db: np.ndarray) -> np.ndarray:
    """Map a frame's loudness (RMS, dBFS) to [0, 1]: ``clip((db - LOUD_FLOOR_DB) / (LOUD_FULL_DB - LOUD_FLOOR_DB))``."""
    return np.clip((db - LOUD_FLOOR_DB) / (LOUD_FULL_DB - LOUD_FLOOR_DB), 0.0, 1.0)


def clock_speed(level: float) -> float:
    """Motion-clock speed (units/s, before the style speed) for a loudness unit ``level``.

    Exponential in dB (loudness is perceived on a log scale, Stevens 1957): ``2 ** ((db - SPEED_REF_DB) /
    SPEED_DOUBLING_DB)``, capped at SPEED_MAX, faded to 0 over the lowest tenth of the range so that the
    clocks stop in silence (level 0) without a jump.
    """
    db = LOUD_FLOOR_DB + level * (LOUD_FULL_DB - LOUD_FLOOR_DB)
    fade = min(1.0, level / 0.1)
    return CLOCK_RATE * min(SPEED_MAX, 2.0 ** ((db - SPEED_REF_DB) / SPEED_DOUBLING_DB)) * fade * fade


def brightness_gain(level: float) -> float:
    """Picture gain in [GAIN_MIN, GAIN_MAX] for a loudness unit: ``GAIN_MIN + (GAIN_MAX - GAIN_MIN) * level **
    GAIN_POWER``."""
    return GAIN_MIN + (GAIN_MAX - GAIN_MIN) * level ** GAIN_POWER


def _mean(values: Sequence[float], idx: tuple[int, ...]) -> float:
    return sum(values[i] for i in idx) / len(idx)


def size_factor(bands: Sequence[float], flash: float) -> float:
    """Scale of the picture: SIZE_MIN + SIZE_RANGE x the low bands' mean envelope (units), punched up by
    ``1 + PUNCH * flash`` on onsets. (Plain floats: this runs once per frame.)"""
    return (SIZE_MIN + SIZE_RANGE * _mean(bands, LOW_BANDS)) * (1.0 + PUNCH * flash)


def warmth(bands: Sequence[float]) -> float:
    """Colour temperature in [-1, 1] (> 0: warm): WARMTH_SCALE x (mean low band - mean high band - WARMTH_CENTRE),
    band units; 0 when every band is 0 (silence). The integrator smooths it (WARMTH_SMOOTH_S) and fades it with
    :func:`sound_gate`, so a silent picture keeps its own colours."""
    if max(bands) <= 0:
        return 0.0
    tilt = _mean(bands, LOW_BANDS) - _mean(bands, HIGH_BANDS) - WARMTH_CENTRE
    return min(1.0, max(-1.0, WARMTH_SCALE * tilt))


def smoothstep(e0: float, e1: float, x):
    """GLSL's ``smoothstep`` (Hermite 3t^2 - 2t^3 of t = clip((x - e0) / (e1 - e0), 0, 1)), on floats or arrays."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def sound_gate(level: float) -> float:
    """How much of the picture is lit at a loudness unit: ``smoothstep(0, 0.12, level)``, as layer_main.glsl gates
    every layer (0 in silence, 1 from about -50 dBFS)."""
    return float(smoothstep(0.0, 0.12, level))


def amplitude_to_unit(amp: np.ndarray) -> np.ndarray:
    """Linear RMS amplitude -> dBFS -> [0, 1] with :func:`db_to_unit` (0 amplitude -> 0)."""
    db = 20.0 * np.log10(np.maximum(amp, 1e-10))
    return db_to_unit(db)


def onset_to_unit(flux_db: np.ndarray) -> np.ndarray:
    """Spectral flux (dB) -> [0, 1]: ``clip((flux - ONSET_FLOOR) / (ONSET_FULL - ONSET_FLOOR), 0, 1)``."""
    return np.clip((flux_db - ONSET_FLOOR) / (ONSET_FULL - ONSET_FLOOR), 0.0, 1.0)


def resample_bands(bands: np.ndarray, n_out: int = SHADER_BANDS) -> np.ndarray:
    """Linear interpolation over the band index: ``[T, n_in] -> [T, n_out]`` (low to high)."""
    t, n_in = bands.shape
    if n_in == n_out:
        return bands.copy()
    if n_in == 1:
        return np.repeat(bands, n_out, axis=1)
    src = np.linspace(0.0, 1.0, n_in)
    dst = np.linspace(0.0, 1.0, n_out)
    return np.stack([np.interp(dst, src, row) for row in bands]) if t else np.zeros((0, n_out), bands.dtype)


def band_columns(names: list[str]) -> list[int]:
    """Indices of the ``band_NN`` channels, in band order."""
    cols = [(int(n.split("_")[1]), i) for i, n in enumerate(names) if n.startswith("band_")]
    return [i for _, i in sorted(cols)]


def check_timeline(features: np.ndarray, names: list[str]) -> None:
    """Raise ValueError naming what is wrong with a timeline ``[T, C]`` and its channel names."""
    if not isinstance(features, np.ndarray) or features.ndim != 2:
        raise ValueError(f"timeline features must be a 2-D array [T, C], got shape {getattr(features, 'shape', None)}")
    if features.shape[1] != len(names):
        raise ValueError(f"timeline has {features.shape[1]} channels but {len(names)} channel names")
    missing = [c for c in REQUIRED_CHANNELS if c not in names]
    if missing:
        raise ValueError(f"timeline lacks channel(s) {missing}; got {names}")
    if not band_columns(names):
        raise ValueError(f"timeline has no band_NN channels; got {names}")
    if not np.all(np.isfinite(features)):
        raise ValueError("timeline features contain NaN or inf")


def normalize_features(features: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Fixed mappings from raw timeline channels to [0, 1] (no per-clip statistics).

    Returns per-frame arrays: ``level`` [T] (:func:`loudness_to_unit` of log_rms, 0 where ``is_silent``),
    ``bands`` [T, 8] (band amplitudes on the same dB scale, resampled to 8), ``onset`` [T]
    (:func:`onset_to_unit`), ``centroid`` [T], ``beat_phase`` [T] or None, ``downbeat`` [T] or None.
    """
    col = {n: i for i, n in enumerate(names)}
    f = features.astype(np.float64)
    gate = 1.0 - f[:, col["is_silent"]] if "is_silent" in col else np.ones(len(f))
    level = loudness_to_unit(f[:, col["log_rms"]]) * gate
    bands = resample_bands(amplitude_to_unit(f[:, band_columns(names)])) * gate[:, None]
    onset = onset_to_unit(f[:, col["onset"]]) * (level > 0)
    centroid = np.clip(f[:, col["centroid"]], 0.0, 1.0)
    beat = f[:, col["beat_phase"]] % 1.0 if "beat_phase" in col else None
    down = np.clip(f[:, col["downbeat"]], 0.0, 1.0) if "downbeat" in col else None
    return {"level": level, "bands": bands, "onset": onset, "centroid": centroid, "beat_phase": beat, "downbeat": down}


def release_coeff(fps: float, tau_s: float) -> float:
    """Per-frame decay factor of an exponential release with time constant ``tau_s``."""
    return math.exp(-1.0 / (fps * tau_s)) if tau_s > 0 else 0.0


def follow(x: float, env: float, release: float) -> float:
    """Envelope follower: instant attack, exponential release toward ``x``."""
    return x if x >= env else x + (env - x) * release


def beat_pulse(beat_phase: float) -> float:
    """A sharp periodic event: 1 at the beat (phase 0), decaying over the beat as ``(1 - phase)^4``."""
    return (1.0 - beat_phase) ** 4


@dataclass
class DriveState:
    """What the integrator carries from one frame (and one chunk) to the next."""

    level: float = 0.0
    bands: np.ndarray = field(default_factory=lambda: np.zeros(SHADER_BANDS))
    flash: float = 0.0
    centroid: float = 0.3
    warmth: float = 0.0
    downbeat: float = 0.0
    phase: float = 0.0
    spin: float = 0.0
    burst_age: float = 10.0
    burst_count: float = 0.0
    since_burst_s: float = 1e9


class DriveIntegrator:
    """Integrates the drive values frame by frame, deterministically, carrying state across chunks.

    ``speed`` (the style's speed scale) multiplies every clock; clocks advance at :func:`clock_speed` of
    the loudness envelope, so silence freezes all motion.
    """

    def __init__(self, fps: float, speed: float = 1.0):
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.fps = float(fps)
        self.dt = 1.0 / self.fps
        self.speed = float(speed)
        self.r_level = release_coeff(fps, LEVEL_RELEASE_S)
        self.r_bands = release_coeff(fps, BAND_RELEASE_S)
        self.r_flash = release_coeff(fps, FLASH_RELEASE_S)
        self.r_down = release_coeff(fps, DOWNBEAT_RELEASE_S)
        self.k_centroid = 1.0 - release_coeff(fps, CENTROID_SMOOTH_S)
        self.k_warmth = 1.0 - release_coeff(fps, WARMTH_SMOOTH_S)
        self.state = DriveState()

    def step_chunk(self, features: np.ndarray, names: list[str]) -> np.ndarray:
        """Raw timeline rows ``[n, C]`` -> drive values ``[n, len(DRIVE_NAMES)]`` (float32)."""
        nf = normalize_features(features, names)
        n = len(features)
        out = np.zeros((n, len(DRIVE_NAMES)), np.float32)
        s, dt, sp = self.state, self.dt, self.speed
        for t in range(n):
            x = float(nf["level"][t])
            s.level = follow(x, s.level, self.r_level)
            s.bands = np.where(nf["bands"][t] >= s.bands, nf["bands"][t],
                               nf["bands"][t] + (s.bands - nf["bands"][t]) * self.r_bands)
            onset = float(nf["onset"][t])
            s.flash = max(onset * s.level, s.flash * self.r_flash)  # an event, as strong as the music is loud
            # Hue follows the centroid only while there is sound: it holds still in silence.
            s.centroid += (float(nf["centroid"][t]) - s.centroid) * self.k_centroid * min(1.0, 4.0 * x)
            pulse = beat_pulse(float(nf["beat_phase"][t])) * s.level if nf["beat_phase"] is not None else s.flash
            down = float(nf["downbeat"][t]) * s.level if nf["downbeat"] is not None else 0.0
            s.downbeat = max(down, s.downbeat * self.r_down)
            # Clocks: exponential in the loudness envelope's dB, times the style speed; zero in silence.
            drive = clock_speed(s.level) * sp * dt
            s.phase += drive
            s.spin += drive * (0.4 + 1.2 * s.centroid)
            s.burst_age += drive
            s.since_burst_s += dt
            if onset >= BURST_ONSET and s.since_burst_s >= BURST_MIN_GAP_S:
                s.burst_age, s.since_burst_s, s.burst_count = 0.0, 0.0, s.burst_count + 1.0
            bands = s.bands.tolist()
            s.warmth += (warmth(bands) - s.warmth) * self.k_warmth
            loudest = max(bands)
            dominant = bands.index(loudest) / (SHADER_BANDS - 1) if loudest > 0 else 0.0
            out[t, :len(DRIVE_SCALARS)] = (s.level, s.flash, s.centroid, pulse, s.downbeat, s.phase, s.spin,
                                           s.burst_age, s.burst_count, dominant, brightness_gain(s.level),
                                           size_factor(bands, s.flash), s.warmth * sound_gate(s.level))
            out[t, len(DRIVE_SCALARS):] = s.bands
        return out


def integrate_drive(features: np.ndarray, names: list[str], fps: float, speed: float = 1.0) -> np.ndarray:
    """The whole clip at once (for analysis and tests): ``[T, C] -> [T, len(DRIVE_NAMES)]``."""
    check_timeline(features, names)
    return DriveIntegrator(fps, speed).step_chunk(features, names)
