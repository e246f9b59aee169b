"""The style input of the denoiser, by ``diffusion.style_source`` (shared/config.py): one place that knows both.

* ``posterior``: a ``style_dim`` latent; training feeds the style encoder's posterior (trainer/diffusion/losses.py),
  sampling a draw from its N(0, I) prior with the style seed (:func:`style_from_prior`).
* ``plan``: the teacher's visual plan of the clip as ``shared.style_features.plan_style_features``; training reads
  the plan recorded in the clip's meta.json (trainer/data.py), sampling asks the teacher's own plan sampler
  (``datagen.visual.plan.sample_visual_plan``, a pure function of the render config and the seed) for the plan
  of the style seed, so ``--style-seed N`` gives the palette and primitives the teacher draws for seed N.
"""

from __future__ import annotations

import numpy as np
import torch

from shared.style_features import PLAN_STYLE_DIM, plan_style_features


def style_input_dim(cfg) -> int:
    """Width of the style input the denoiser takes."""
    return PLAN_STYLE_DIM if cfg.diffusion.style_source == "plan" else cfg.diffusion.style_dim


def style_from_prior(style_dim: int, seed: int) -> torch.Tensor:
    """A style latent (1, style_dim) drawn from its N(0, I) prior with its own seed."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(1, style_dim, generator=g)


def teacher_plan(cfg, seed: int) -> dict:
    """The visual plan the teacher draws for a normal clip of ``seed`` under the model's render config."""
    from datagen.visual.plan import sample_visual_plan  # the teacher's sampler (pure; no GL)
    return sample_visual_plan(cfg, int(seed), "normal")


def style_for_seed(cfg, seed: int) -> torch.Tensor:
    """The style input (1, style_input_dim) that ``--style-seed seed`` means for a model of this config."""
    if cfg.diffusion.style_source == "plan":
        return torch.from_numpy(plan_style_features(teacher_plan(cfg, seed)))[None]
    return style_from_prior(cfg.diffusion.style_dim, seed)


def plan_features_of(meta: dict, key: str = "?") -> np.ndarray:
    """The plan features (PLAN_STYLE_DIM,) of a clip's meta.json; a clip without a plan is a ValueError naming it."""
    plan = meta.get("visual_plan")
    if not isinstance(plan, dict):
        raise ValueError(f"sample {key}: meta.json has no visual_plan, which diffusion.style_source=plan needs "
                         "(shards from datagen record it; re-cache the latents from such shards)")
    try:
        return plan_style_features(plan)
    except ValueError as e:
        raise ValueError(f"sample {key}: {e}") from e
