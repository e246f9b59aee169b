"""Shared fixtures: tiny configs (ARCHITECTURE.md: 32x32 frames, 8 kHz, a few frames, width 8, two steps)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_YAML = ROOT / "configs" / "tiny.yaml"

# Keep BLAS/torch from oversubscribing the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP waits slow small convs badly when cores are shared

from shared.config import Config, build_config  # noqa: E402


@pytest.fixture
def tiny_cfg() -> Config:
    """configs/tiny.yaml, as the demo uses it."""
    return build_config([TINY_YAML])


@pytest.fixture
def micro_cfg() -> Config:
    """Smaller than tiny: 32 px, 8 kHz, 2 s clips, for unit tests."""
    return build_config([TINY_YAML], overrides=[
        "data.sample_rate=8000", "data.clip_seconds=2.0", "render.resolution=32", "render.fps=8",
        "data.samples_per_shard=4", "timeline.n_fft=256",
    ])


@pytest.fixture(autouse=True)
def _grad_mode_is_restored():
    """A test (or the code it calls in-process) must not leave torch's global grad mode switched off."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None and not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("torch grad mode was left disabled (use a scoped torch.no_grad())")


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core box: one torch thread is much faster; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
