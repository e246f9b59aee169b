"""bench/model_size.py: the figures in DiffusionConfig's docstring come from it; checked on small shapes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shared.config import build_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import model_size  # noqa: E402

SMALL = ["diffusion.width=32", "diffusion.depth=1", "diffusion.heads=2", "diffusion.snippet_frames=2",
         "diffusion.audio_context_frames=1", "diffusion.style_dim=4", "render.resolution=32", "vae.downsample=4",
         "diffusion.batch_size=8"]


@pytest.mark.usefixtures("one_torch_thread")
def test_model_size_counts_flops_and_activations():
    r = model_size.model_size(build_config([], overrides=SMALL))
    assert r["tokens_per_snippet"] == (1 + 2) * (1 + 4 * 4)  # (prev + snippet frames) x (cond token + patches)
    # a trained snippet: two forwards (true and wrong audio), their backwards (~2x a forward each) and, at this
    # tiny width a visible share, the style encoder
    assert 6.0 < r["gflop_train_per_snippet"] / r["gflop_forward_per_snippet"] < 8.0
    assert r["activation_GiB_per_snippet"] > 0
    assert r["activation_GiB_at_batch"] == pytest.approx(8 * r["activation_GiB_per_snippet"], rel=0.05, abs=0.1)


def test_the_default_model_has_the_docstrings_figures():
    new = model_size.model_size(build_config([]), activations=False)
    assert (new["width"], new["depth"], new["heads"], new["tokens_per_snippet"]) == (768, 12, 12, 2313)
    assert new["params_M"] == pytest.approx(183.6, abs=0.1)
    assert new["gflop_forward_per_snippet"] == pytest.approx(546.8, abs=0.5)  # the docstring's figures
    assert new["gflop_train_per_snippet"] == pytest.approx(3281, abs=1)
    assert 5.9 < new["gflop_train_per_snippet"] / new["gflop_forward_per_snippet"] < 6.1  # 2 x (forward + 2 x forward)
