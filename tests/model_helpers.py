"""Helpers shared by the diffusion model tests."""

from __future__ import annotations

import torch


def wake(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give the zero-initialised (adaLN-Zero) layers random values so conditioning paths show in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model
