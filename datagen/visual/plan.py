"""Visual plans: every random choice about a clip's look, drawn once from the seed (no randomness in render).

A plan is a JSON-serialisable dict::

    {"version": 1, "variant": "normal" | "silence" | "debug",
     "layers":  [{"visualizer": "rings", "blend": "alpha", "opacity": 1.0, "hue_offset": 0.1, "seed": 0.37}, ...],
     "style":   {"palette": {"a": [r,g,b], "b": [...], "c": [...], "d": [...]}, "background": [r,g,b],
                 "symmetry": 6, "line_width": 1.0, "speed": 1.0, "detail": 1.0},
     "augment": {"hue_rotation_deg": 0.0, "flip_x": false, "flip_y": false, "zoom": 1.0,
                 "rotation_deg": 0.0, "spin_coupling": 0.0, "trail_tau_s": 0.0}}

The first layer is drawn over the background with ``alpha``; later layers use add/screen/multiply/alpha.
``style_vector(plan)`` flattens the continuous style into a fixed-order list of floats (for meta.json).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from shared.shards import VARIANTS
from shared.style_features import DEBUG_PRIMITIVES, PRIMITIVES  # noqa: F401 - the names live beside the features

SHADER_DIR = Path(__file__).resolve().parent / "shaders"

BLEND_MODES = ("alpha", "add", "screen", "multiply")
PLAN_VERSION = 1

# Trails: release time constants (s) drawn when trails are on; short, so silence still rests within 0.5 s.
TRAIL_TAU_RANGE = (0.04, 0.12)
TRAIL_PROB = 0.5

STYLE_KEYS = ("palette.a", "palette.b", "palette.c", "palette.d", "background", "symmetry", "line_width",
              "speed", "detail")


def describe(name: str) -> str:
    """One-line description of a primitive: the first ``//`` comment of its shader file."""
    path = SHADER_DIR / f"{name}.glsl"
    if not path.is_file():
        raise ValueError(f"unknown visualizer '{name}': no shader {path}")
    for line in path.read_text().splitlines():
        if line.startswith("//"):
            return line.lstrip("/ ").strip()
    return ""


def resolve_visualizers(names: list[str]) -> list[str]:
    """``['all']`` -> PRIMITIVES; otherwise check every name (debug primitives allowed) and keep order."""
    if list(names) == ["all"]:
        return list(PRIMITIVES)
    unknown = [n for n in names if n not in PRIMITIVES + DEBUG_PRIMITIVES]
    if unknown or not names:
        raise ValueError(f"render.visualizers: unknown visualizer(s) {unknown or names}; "
                         f"choose from {', '.join(PRIMITIVES + DEBUG_PRIMITIVES)} or ['all']")
    return list(names)


def _rng(seed: int) -> np.random.Generator:
    # A stream of its own, so that adding draws elsewhere (audio) never changes the visuals of a seed.
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0x5715]))


def sample_style(rng: np.random.Generator) -> dict:
    """The clip-level continuous style: a cosine palette, a dark background and shape/speed knobs."""
    return {
        "palette": {
            "a": rng.uniform(0.45, 0.6, 3).round(4).tolist(),
            "b": rng.uniform(0.35, 0.5, 3).round(4).tolist(),
            "c": rng.uniform(0.5, 1.5, 3).round(4).tolist(),
            "d": rng.uniform(0.0, 1.0, 3).round(4).tolist(),
        },
        "background": (rng.uniform(0.0, 0.18) * rng.dirichlet([2, 2, 2]) * 3).clip(0, 0.3).round(4).tolist(),
        "symmetry": int(rng.integers(3, 13)),
        "line_width": round(float(rng.uniform(0.6, 1.8)), 4),
        "speed": round(float(math.exp(rng.uniform(math.log(0.6), math.log(1.8)))), 4),
        "detail": round(float(rng.uniform(0.7, 1.5)), 4),
    }


def sample_augment(rng: np.random.Generator, enabled: bool) -> dict:
    """Hue rotation, flips, static zoom/rotation, rotation coupled to the spin clock, feedback trails."""
    if not enabled:
        return neutral_augment()
    trails = rng.random() < TRAIL_PROB
    return {
        "hue_rotation_deg": round(float(rng.uniform(0, 360)), 3),
        "flip_x": bool(rng.random() < 0.5),
        "flip_y": bool(rng.random() < 0.5),
        "zoom": round(float(rng.uniform(0.8, 1.3)), 4),
        "rotation_deg": round(float(rng.uniform(-180, 180)), 3),
        "spin_coupling": round(float(rng.choice([0.0, rng.uniform(-0.5, 0.5)])), 4),
        "trail_tau_s": round(float(rng.uniform(*TRAIL_TAU_RANGE)), 4) if trails else 0.0,
    }


def neutral_augment() -> dict:
    return {"hue_rotation_deg": 0.0, "flip_x": False, "flip_y": False, "zoom": 1.0, "rotation_deg": 0.0,
            "spin_coupling": 0.0, "trail_tau_s": 0.0}


def debug_style() -> dict:
    """Fixed, maximally legible style for debug clips (independent of the seed)."""
    return {"palette": {"a": [0.5, 0.5, 0.5], "b": [0.5, 0.5, 0.5], "c": [1.0, 1.0, 1.0], "d": [0.0, 0.33, 0.67]},
            "background": [0.0, 0.0, 0.0], "symmetry": 6, "line_width": 1.0, "speed": 1.0, "detail": 1.0}


def layer(name: str, blend: str = "alpha", opacity: float = 1.0, hue_offset: float = 0.0, seed: float = 0.0) -> dict:
    return {"visualizer": name, "blend": blend, "opacity": opacity, "hue_offset": hue_offset, "seed": seed}


def sample_visual_plan(cfg, seed: int, variant: str) -> dict:
    """Draw a clip's plan from ``cfg.render`` and the seed (pure function of both).

    ``normal`` and ``silence`` clips: ``render.min_layers..max_layers`` distinct primitives from
    ``render.visualizers``, blend modes, the style vector and (if ``render.augment``) augmentation.
    ``debug`` clips: the debug disc with the onset flash added, fixed style, no augmentation.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant '{variant}'; expected one of {VARIANTS}")
    rcfg = cfg.render
    if variant == "debug":
        return {"version": PLAN_VERSION, "variant": variant,
                "layers": [layer("debug_disc"), layer("debug_flash", "add")],
                "style": debug_style(), "augment": neutral_augment()}
    rng = _rng(seed)
    pool = resolve_visualizers(rcfg.visualizers)
    hi = min(rcfg.max_layers, len(pool))
    n = int(rng.integers(min(rcfg.min_layers, hi), hi + 1))
    names = [pool[i] for i in rng.permutation(len(pool))[:n]]
    layers = []
    for i, name in enumerate(names):
        blend = "alpha" if i == 0 else str(rng.choice(BLEND_MODES))
        layers.append(layer(name, blend, round(float(rng.uniform(0.7, 1.0) if i else 1.0), 4),
                            round(float(rng.uniform(0, 1)), 4), round(float(rng.uniform(0, 1)), 4)))
    return {"version": PLAN_VERSION, "variant": variant, "layers": layers, "style": sample_style(rng),
            "augment": sample_augment(rng, rcfg.augment)}


def single_plan(name: str, seed: int = 0, augment: bool = False) -> dict:
    """A plan with one primitive (``datagen visualize --visualizer NAME``, tests, benchmarks)."""
    if name not in PRIMITIVES + DEBUG_PRIMITIVES:
        raise ValueError(f"unknown visualizer '{name}'; choose from {', '.join(PRIMITIVES + DEBUG_PRIMITIVES)}")
    rng = _rng(seed)
    style = debug_style() if name in DEBUG_PRIMITIVES else sample_style(rng)
    return {"version": PLAN_VERSION, "variant": "normal", "layers": [layer(name)], "style": style,
            "augment": sample_augment(rng, augment)}


def validate_plan(plan: dict) -> None:
    """Raise ValueError naming the first bad field of a plan."""
    for key in ("layers", "style", "augment"):
        if key not in plan:
            raise ValueError(f"visual plan lacks '{key}'")
    if not plan["layers"]:
        raise ValueError("visual plan has no layers")
    for i, lay in enumerate(plan["layers"]):
        if lay.get("visualizer") not in PRIMITIVES + DEBUG_PRIMITIVES:
            raise ValueError(f"visual plan layer {i}: unknown visualizer {lay.get('visualizer')!r}")
        if lay.get("blend") not in BLEND_MODES:
            raise ValueError(f"visual plan layer {i}: unknown blend mode {lay.get('blend')!r}; expected {BLEND_MODES}")
    style = plan["style"]
    missing = [k for k in ("palette", "background", "symmetry", "line_width", "speed", "detail") if k not in style]
    missing += [f"palette.{k}" for k in "abcd" if k not in style.get("palette", {})]
    if missing:
        raise ValueError(f"visual plan style lacks {', '.join(missing)}")
    if plan["augment"].get("trail_tau_s", 0.0) < 0:
        raise ValueError("visual plan augment.trail_tau_s must be >= 0")


def style_vector(plan: dict) -> list[float]:
    """The continuous style as a fixed-order float list (STYLE_KEYS; palette a,b,c,d and background are RGB)."""
    st = plan["style"]
    pal = st["palette"]
    return [float(v) for v in (*pal["a"], *pal["b"], *pal["c"], *pal["d"], *st["background"],
                               st["symmetry"], st["line_width"], st["speed"], st["detail"])]


def visual_meta(plan: dict) -> dict:
    """What a sample's meta.json / preview sidecar records about the visuals."""
    return {"visualizers": [lay["visualizer"] for lay in plan["layers"]], "visual_plan": plan,
            "style_vector": style_vector(plan)}
