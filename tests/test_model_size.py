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


def test_generated_sections_name_the_commit_they_were_measured_on(tmp_path):
    """bench/RESULTS.md sections are written by shared.markdown.replace_section: each carries the commit."""
    from shared.markdown import replace_section
    from shared.provenance import code_commit

    md = tmp_path / "RESULTS.md"
    md.write_text("# Benchmark results\n\n## Other\n\nkept\n")
    r = {"width": 32, "depth": 1, "heads": 2, "params_M": 0.01, "tokens_per_snippet": 51, "batch_size": 8,
         "gflop_forward_per_snippet": 0.001, "gflop_train_per_snippet": 0.007, "activation_GiB_per_snippet": 0.0001,
         "activation_GiB_at_batch": 0.0008, "activation_share_by_dtype": {"bfloat16": 0.7, "bool": 0.0, "float32": 0.3}}
    replace_section(md, model_size.SECTION, model_size.section_text([model_size.table_row("small", r)]))
    text = md.read_text()
    assert "## Other\n\nkept\n" in text
    section = text[text.index(model_size.SECTION):]
    assert f"Measured on commit `{code_commit()}`" in section.splitlines()[2]
    assert "| small | 32 x 1 blocks, 2 heads | 0.01 M | 51 |" in section and "bfloat16 70%, float32 30% |" in section
    replace_section(md, model_size.SECTION, model_size.section_text([]), commit="abc123")
    assert md.read_text().count("Measured on commit") == 1 and "`abc123`" in md.read_text()
