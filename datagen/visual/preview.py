"""The ``visual`` view of ``datagen preview``: the clip's ground-truth visualizers, as `datagen run` draws them."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np


def visual_view(cfg, seed: int, variant: str, clip, features: np.ndarray,
                names: list[str]) -> tuple[Iterator[np.ndarray], dict[str, Any]]:
    """Frames of the seed's visual plan (the same plan a shard sample with this clip seed gets) and the
    plan's metadata for the sidecar (``visualizers``, ``visual_plan``, ``style_vector``)."""
    from datagen.visual import Renderer, sample_visual_plan, visual_meta

    plan = sample_visual_plan(cfg, seed, variant)

    def chunks() -> Iterator[np.ndarray]:
        # The GL context is created on the first chunk, so that its errors surface where frames are consumed.
        renderer = Renderer(cfg.render.resolution)
        try:
            yield from renderer.render(features, names, plan, cfg.render.fps, cfg.render.chunk_frames)  # (n, R, R, 3)
        finally:
            renderer.release()

    return chunks(), visual_meta(plan)
