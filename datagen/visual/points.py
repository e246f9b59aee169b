"""Per-frame point sets integrated on the CPU (numpy) for point-based primitives (``u_points``).

Pure functions of the frame's drive values and the layer's plan seed: deterministic, no clock,
frozen when the motion clock is frozen (silence).
"""

from __future__ import annotations

import numpy as np

from datagen.visual.drive import DRIVE_NAMES, DRIVE_SCALARS, SHADER_BANDS, smoothstep

N_SPARKS = 32  # fountain sparks; as many burst sparks follow them in u_points
_D = {n: i for i, n in enumerate(DRIVE_NAMES)}


def mix32(x: np.ndarray) -> np.ndarray:
    """Avalanche mix of uint32 words (same constants as common.glsl's mix32)."""
    x = np.asarray(x, np.uint32).copy()
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def hash01(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A uniform value in [0, 1) from two integer arrays."""
    a = np.asarray(a, np.int64).astype(np.uint32)
    b = np.asarray(b, np.int64).astype(np.uint32)
    return mix32(mix32(a) ^ mix32(b + np.uint32(0x3C6EF372))).astype(np.float64) / 2.0 ** 32


def particle_points(row: np.ndarray, seed: float, line_width: float) -> np.ndarray:
    """Sparks for the ``particles`` primitive: float32 [2*N_SPARKS, 4] = (x, y, size, intensity).

    Fountain sparks live on their own cycle of the motion clock (``0.8 * phase`` plus a per-spark
    offset): they fly out from the centre to a distance set by their band, in a new direction each
    cycle. Burst sparks leave the centre at the last strong onset (``burst_count`` picks new
    directions) and slow down and fade with ``burst_age`` (motion-clock time since the burst).
    """
    k = np.arange(N_SPARKS)
    bands = row[len(DRIVE_SCALARS):len(DRIVE_SCALARS) + SHADER_BANDS].astype(np.float64)
    b = bands[k % SHADER_BANDS]
    seed_i = int(seed * 1_000_003)
    cyc = 0.8 * float(row[_D["phase"]]) + hash01(k, seed_i)
    life, gen = np.modf(cyc)
    ang = 2 * np.pi * hash01(k + 7919 * gen.astype(np.int64), seed_i + 1)
    dist = 0.1 + life * (0.5 + 0.8 * b)
    fountain = np.stack([dist * np.cos(ang), dist * np.sin(ang), (0.02 + 0.07 * b) * line_width,
                         smoothstep(0.0, 0.25, life) * (1.0 - life) * (0.1 + 2.0 * b)], axis=1)
    age, count = float(row[_D["burst_age"]]), int(row[_D["burst_count"]])
    ang2 = 2 * np.pi * hash01(k + 1000, count)
    rad = (1.0 - np.exp(-4.0 * age)) * (0.5 + 0.5 * hash01(k + 7, count))
    burst = np.stack([rad * np.cos(ang2), rad * np.sin(ang2), (0.02 + 0.05 * b) * line_width,
                      np.exp(-2.5 * age) * (0.1 + 1.4 * b)], axis=1)
    return np.concatenate([fountain, burst]).astype(np.float32)  # (2N, 4)


# Primitive name -> (uniform name, function(row, layer seed, line width) -> float32 array).
POINT_UNIFORMS = {"particles": ("u_points", particle_points)}
