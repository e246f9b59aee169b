"""From a raw audio timeline to the per-frame values the shaders draw with ("drive").

Two steps, both deterministic and CPU-only (numpy):

1. **Fixed normalisation** (:func:`normalize_features`): raw timeline values are mapped to [0, 1] with
   fixed formulas, never per-clip statistics, so a quiet clip looks quiet and silence looks like silence.
2. **State integration** (:class:`DriveIntegrator`): envelopes with fast attack and short release,
   and clocks that advance by ``loudness * dt``. Silence therefore freezes motion (the clocks stop)
   and dims everything (the envelopes fall to 0 within ~0.3 s); loudness speeds motion up.

The integrator is stepped chunk by chunk with its state carried over, so memory is O(chunk) for
audio of any length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Bands are resampled to this many values for the shaders (``uniform float u_bands[8]``).
SHADER_BANDS = 8

# dB range mapped to [0, 1]: -60 dBFS (the silence threshold's default) -> 0, 0 dBFS -> 1.
DB_FLOOR = -60.0
# Spectral flux (mean half-wave-rectified dB increase per bin, shared/timeline.py) mapped to [0, 1]:
# steady music sits around 1-3 dB, drum hits give 10-40 dB; ONSET_FLOOR -> 0, ONSET_FULL -> 1.
ONSET_FLOOR = 3.0
ONSET_FULL = 15.0
# Release time constants (seconds). Short enough that everything rests within 0.5 s of silence.
LEVEL_RELEASE_S = 0.08
FLASH_RELEASE_S = 0.07
DOWNBEAT_RELEASE_S = 0.12
CENTROID_SMOOTH_S = 0.15
# A new particle burst needs an onset at least this strong and this long since the previous one.
BURST_ONSET = 0.5
BURST_MIN_GAP_S = 0.12

REQUIRED_CHANNELS = ("log_rms", "onset", "centroid")

# Names of the per-frame drive values, in the order of the [n, D] arrays the integrator returns.
DRIVE_SCALARS = ("level", "flash", "centroid", "pulse", "downbeat", "phase", "spin", "burst_age",
                 "burst_count", "dominant")
DRIVE_NAMES = DRIVE_SCALARS + tuple(f"band{i}" for i in range(SHADER_BANDS))


def db_to_unit(db: np.ndarray) -> np.ndarray:
    """Map dBFS to [0, 1]: ``clip((db - DB_FLOOR) / -DB_FLOOR, 0, 1)`` (-60 dB -> 0, 0 dB -> 1)."""
    return np.clip((db - DB_FLOOR) / -DB_FLOOR, 0.0, 1.0)


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

    Returns per-frame arrays: ``level`` [T] (loudness from log_rms, forced to 0 where ``is_silent``),
    ``bands`` [T, 8] (band amplitudes on the same dB scale, resampled to 8), ``onset`` [T]
    (:func:`onset_to_unit`), ``centroid`` [T], ``beat_phase`` [T] or None, ``downbeat`` [T] or None.
    """
    col = {n: i for i, n in enumerate(names)}
    f = features.astype(np.float64)
    gate = 1.0 - f[:, col["is_silent"]] if "is_silent" in col else np.ones(len(f))
    level = db_to_unit(f[:, col["log_rms"]]) * gate
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
    downbeat: float = 0.0
    phase: float = 0.0
    spin: float = 0.0
    burst_age: float = 10.0
    burst_count: float = 0.0
    since_burst_s: float = 1e9


class DriveIntegrator:
    """Integrates the drive values frame by frame, deterministically, carrying state across chunks.

    ``speed`` (the style's speed scale) multiplies every clock; clocks advance only by loudness, so
    silence freezes all motion.
    """

    def __init__(self, fps: float, speed: float = 1.0):
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.fps = float(fps)
        self.dt = 1.0 / self.fps
        self.speed = float(speed)
        self.r_level = release_coeff(fps, LEVEL_RELEASE_S)
        self.r_flash = release_coeff(fps, FLASH_RELEASE_S)
        self.r_down = release_coeff(fps, DOWNBEAT_RELEASE_S)
        self.k_centroid = 1.0 - release_coeff(fps, CENTROID_SMOOTH_S)
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
                               nf["bands"][t] + (s.bands - nf["bands"][t]) * self.r_level)
            onset = float(nf["onset"][t])
            s.flash = max(onset, s.flash * self.r_flash)
            # Hue follows the centroid only while there is sound: it holds still in silence.
            s.centroid += (float(nf["centroid"][t]) - s.centroid) * self.k_centroid * min(1.0, 4.0 * x)
            pulse = beat_pulse(float(nf["beat_phase"][t])) * s.level if nf["beat_phase"] is not None else s.flash
            down = float(nf["downbeat"][t]) * s.level if nf["downbeat"] is not None else 0.0
            s.downbeat = max(down, s.downbeat * self.r_down)
            # Clocks: loudness^1.5 (plus a kick from onsets) times the style speed; zero in silence.
            drive = 1.3 * s.level ** 1.5 * (1.0 + 0.5 * s.flash) * sp * dt
            s.phase += drive
            s.spin += drive * (0.4 + 1.2 * s.centroid)
            s.burst_age += drive
            s.since_burst_s += dt
            if onset >= BURST_ONSET and s.since_burst_s >= BURST_MIN_GAP_S:
                s.burst_age, s.since_burst_s, s.burst_count = 0.0, 0.0, s.burst_count + 1.0
            dominant = float(np.argmax(s.bands)) / (SHADER_BANDS - 1) if s.bands.max() > 0 else 0.0
            out[t, :len(DRIVE_SCALARS)] = (s.level, s.flash, s.centroid, pulse, s.downbeat, s.phase, s.spin,
                                           s.burst_age, s.burst_count, dominant)
            out[t, len(DRIVE_SCALARS):] = s.bands
        return out


def integrate_drive(features: np.ndarray, names: list[str], fps: float, speed: float = 1.0) -> np.ndarray:
    """The whole clip at once (for analysis and tests): ``[T, C] -> [T, len(DRIVE_NAMES)]``."""
    check_timeline(features, names)
    return DriveIntegrator(fps, speed).step_chunk(features, names)
