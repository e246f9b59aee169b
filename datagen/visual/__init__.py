"""GPU-shaded procedural visualizers (moderngl, headless EGL) driven by the audio timeline.

- :data:`PRIMITIVES`, :data:`DEBUG_PRIMITIVES`: visualizer names (one shader each under ``shaders/``).
- :func:`sample_visual_plan`: every random choice about a clip's look, drawn from the seed.
- :class:`Renderer`: one EGL context per process; ``render(...)`` streams uint8 frame chunks.

Importing this package creates no GL context (safe before a fork); construct the Renderer in the
process that renders.
"""

from datagen.visual.plan import (DEBUG_PRIMITIVES, PRIMITIVES, describe, sample_visual_plan, single_plan,
                                 style_vector, visual_meta)
from datagen.visual.renderer import EGLContextError, Renderer
from datagen.visual.shaders import ShaderError

__all__ = ["PRIMITIVES", "DEBUG_PRIMITIVES", "sample_visual_plan", "single_plan", "style_vector", "visual_meta",
           "describe", "Renderer", "EGLContextError", "ShaderError"]
