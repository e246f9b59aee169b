"""The teacher's look of a clip as a fixed-length vector: what a plan-conditioned denoiser is told about style.

A visual plan (``datagen.visual.plan``: layers, style, augment; recorded in every sample's ``meta.json`` as
``visual_plan``) fixes a clip's look: which primitives are drawn, its cosine palette, background, shape knobs,
hue rotation and trails. :func:`plan_style_features` maps it to ``PLAN_STYLE_DIM`` floats of order 1, as the
renderer would show them, so that a network reads colours rather than palette coefficients:

* the palette's colour at ``t`` in PALETTE_POINTS (``a + b cos(2 pi (c t + d))``, Quilez's cosine palette, the
  shaders' ``palette()`` in common.glsl), rotated about the grey axis by ``augment.hue_rotation_deg`` (the post
  pass, post.glsl), centred at 0.5 and doubled: 4 x RGB;
* the background colour, rotated the same way (the framebuffer is cleared to it before the post pass), x 5: RGB;
* the shape knobs, centred on their sampling ranges (``datagen.visual.plan.sample_style`` / ``sample_augment``):
  symmetry, line width, log speed, detail, zoom, trail time constant;
* which primitives are drawn: one slot per name of VISUALIZERS (1 if a layer draws it).

Pure functions: datagen owns the plan format and the names (it imports them from here); the trainer reads the
plans recorded in the shards, and draws new ones with the teacher's own plan sampler (``trainer.style``).
"""

from __future__ import annotations

import math

import numpy as np

PRIMITIVES = ("rings", "bars_linear", "bars_radial", "particles", "tunnel", "kaleidoscope", "plasma",
              "ribbon", "metaballs", "lissajous", "starfield", "gridwarp")
DEBUG_PRIMITIVES = ("debug_disc", "debug_flash")
VISUALIZERS = PRIMITIVES + DEBUG_PRIMITIVES

PALETTE_POINTS = (0.0, 0.25, 0.5, 0.75)
KNOBS = ("symmetry", "line_width", "log_speed", "detail", "zoom", "trail_tau")
PLAN_STYLE_DIM = 3 * len(PALETTE_POINTS) + 3 + len(KNOBS) + len(VISUALIZERS)


def hue_rotation_matrix(degrees: float) -> np.ndarray:
    """3x3 rotation about the grey axis (1, 1, 1)/sqrt(3) by ``degrees`` (Rodrigues' formula)."""
    th = math.radians(degrees)
    k = np.full(3, 1.0 / math.sqrt(3.0))
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) * math.cos(th) + math.sin(th) * kx + (1 - math.cos(th)) * np.outer(k, k)


def cosine_palette(t: float, a, b, c, d) -> np.ndarray:
    """``a + b cos(2 pi (c t + d))`` per RGB channel (I. Quilez, "Palettes", 1999; the shaders' ``palette()``)."""
    a, b, c, d = (np.asarray(v, dtype=np.float64) for v in (a, b, c, d))
    return a + b * np.cos(2.0 * math.pi * (c * t + d))


def plan_style_features(plan: dict) -> np.ndarray:
    """A visual plan -> float32 (PLAN_STYLE_DIM,) (module docstring). A plan lacking a field is a ValueError
    naming it."""
    try:
        st, aug, layers = plan["style"], plan.get("augment", {}), plan["layers"]
        pal = st["palette"]
        rot = hue_rotation_matrix(float(aug.get("hue_rotation_deg", 0.0)))
        colours = [rot @ cosine_palette(t, pal["a"], pal["b"], pal["c"], pal["d"]) for t in PALETTE_POINTS]
        background = rot @ np.asarray(st["background"], dtype=np.float64)
        knobs = [(float(st["symmetry"]) - 7.5) / 4.5, float(st["line_width"]) - 1.2, math.log(float(st["speed"])),
                 float(st["detail"]) - 1.1, float(aug.get("zoom", 1.0)) - 1.05, float(aug.get("trail_tau_s", 0.0)) / 0.12]
        drawn = {lay["visualizer"] for lay in layers}
    except (KeyError, TypeError) as e:
        raise ValueError(f"visual plan lacks {e} (needs layers, style.palette, style.background and the knobs)") from e
    unknown = drawn - set(VISUALIZERS)
    if unknown:
        raise ValueError(f"visual plan draws unknown visualizer(s) {sorted(unknown)}")
    onehot = [1.0 if name in drawn else 0.0 for name in VISUALIZERS]
    out = np.concatenate([2.0 * (np.concatenate(colours) - 0.5), 5.0 * background, knobs, onehot])
    return out.astype(np.float32)
