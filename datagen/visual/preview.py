"""The ``visual`` view of ``datagen preview``: the clip's ground-truth visualizers, as `datagen run` draws them.

``datagen visualize --composite`` renders an audio file through the same :func:`visual_view`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np


def lazy_render(size: int, frames: Callable[[Any], Iterator[np.ndarray]],
                gpu_index: int | None = None) -> Iterator[np.ndarray]:
    """The chunks of ``frames(renderer)`` from a ``size``-pixel Renderer that is created on the first chunk (so
    that its GL errors surface where frames are consumed, after the caller has said what it renders) and
    released after the last."""
    from datagen.visual import Renderer

    renderer = Renderer(size, gpu_index=gpu_index)
    try:
        yield from frames(renderer)
    finally:
        renderer.release()


def visual_view(cfg, seed: int, variant: str, clip, features: np.ndarray,
                names: list[str], gpu_index: int | None = None) -> tuple[Iterator[np.ndarray], dict[str, Any]]:
    """Frames of the seed's visual plan (the same plan a shard sample with this clip seed gets, rendered by the
    same ``Renderer.render`` call as :func:`datagen.shard_job.render_chunks`) and the plan's metadata for the
    sidecar (``visualizers``, ``visual_plan``, ``style_vector``). ``clip`` is not used (a view's signature)."""
    from datagen.visual import sample_visual_plan, visual_meta

    plan = sample_visual_plan(cfg, seed, variant)
    rcfg = cfg.render
    chunks = lazy_render(rcfg.resolution, lambda r: r.render(features, names, plan, rcfg.fps, rcfg.chunk_frames),
                         gpu_index)  # (n, R, R, 3) uint8 each
    return chunks, visual_meta(plan)
