"""Seeding. Every random draw of a training step is a pure function of (run seed, rank, step), so a resumed
run needs no saved RNG state to draw what an uninterrupted one draws."""

from __future__ import annotations

import random

import numpy as np
import torch

from shared.seeding import derive_seed

_GLOBAL, _STEP = 21, 22  # derive_seed path ids


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's legacy global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def seed_step(seed: int, rank: int, step: int) -> None:
    """Re-seed the global RNGs for one step (anything that draws from them, e.g. a dropout layer)."""
    seed_everything(derive_seed(seed, _GLOBAL, rank, step))


def step_generator(seed: int, rank: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator for one step's noise, timesteps, dropouts and negatives, on ``device``.

    On the training device the draws need no host work and no host-to-device copy (on CUDA: Philox in
    the kernels that fill the tensors). The stream of numbers differs between devices (a CUDA generator is
    not the CPU's Mersenne Twister), so a run resumes exactly on the device type it started on.
    """
    g = torch.Generator(device=torch.device(device))
    return g.manual_seed(derive_seed(seed, _STEP, rank, step))
