"""The Denoiser: shapes, adaLN-Zero start, every conditioning input reaching the output, CFG wrapper, sampling."""

from __future__ import annotations

import pytest
import torch

from shared.config import build_config
from trainer.diffusion.model import Denoiser, patchify, style_kl, unpatchify
from trainer.diffusion.sampler import guided_denoiser, sample_snippet
from trainer.diffusion.synthetic import n_audio_channels, synthetic_batch
from model_helpers import wake

C, H = 2, 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture
def cfg(micro_cfg):
    return build_config(base=micro_cfg.model_dump(mode="json"), overrides=[
        "diffusion.snippet_frames=3", "diffusion.audio_context_frames=1", "diffusion.width=32", "diffusion.depth=2",
        "diffusion.heads=2", "diffusion.style_dim=4", "diffusion.prev_frames=1"])


def _setup(cfg):
    torch.manual_seed(0)
    model = Denoiser(cfg, C, H, n_audio_channels(cfg)).eval()
    batch = synthetic_batch(cfg, 3, C, H, torch.Generator().manual_seed(1))
    mu, _ = model.encode_style(batch["style"])
    cond = model.make_cond(batch["audio"], batch["is_silent"], batch["frame_index"], batch["prev"], batch["prev_valid"],
                           style_z=mu)
    x_t = torch.randn(batch["x"].shape, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.2, 0.5, 0.9])
    return model, batch, cond, x_t, t


def test_patchify_round_trip():
    x = torch.randn(2, 3, 4, 8, 6)
    tok = patchify(x, 2)
    assert tok.shape == (2, 3, 12, 16)
    torch.testing.assert_close(unpatchify(tok, 2, 4, 8, 6), x)


def test_shapes_and_adaln_zero_start(cfg):
    model, batch, cond, x_t, t = _setup(cfg)
    out = model(x_t, t, cond)
    assert out.shape == x_t.shape
    assert out.abs().max().item() == 0.0  # adaLN-Zero: the untrained network predicts 0
    wake(model)
    assert model(x_t, t, cond).abs().max().item() > 0


def test_bad_inputs_name_what_is_wrong(cfg):
    model, batch, cond, x_t, t = _setup(cfg)
    with pytest.raises(ValueError, match="x_t must be"):
        model(x_t[:, :2], t, cond)
    with pytest.raises(ValueError, match=r"cond\['audio'\]"):
        model(x_t, t, {**cond, "audio": cond["audio"][..., :3]})
    with pytest.raises(ValueError, match="missing"):
        model(x_t, t, {k: v for k, v in cond.items() if k != "style_z"})
    with pytest.raises(ValueError, match="patch_size"):
        Denoiser(cfg, C, 5, n_audio_channels(cfg))


def _changes(model, x_t, t, cond, **swap) -> float:
    return (model(x_t, t, cond) - model(x_t, t, {**cond, **swap})).abs().max().item()


def test_every_conditioning_input_reaches_the_output(cfg):
    model, batch, cond, x_t, t = _setup(cfg)
    wake(model)
    with torch.no_grad():
        assert _changes(model, x_t, t, cond, audio=cond["audio"].flip(0)) > 1e-4
        assert _changes(model, x_t, t, cond, is_silent=1 - cond["is_silent"]) > 1e-4
        assert _changes(model, x_t, t, cond, frame_index=cond["frame_index"] + 5) > 1e-4
        assert _changes(model, x_t, t, cond, prev=cond["prev"] + 1) > 1e-4
        assert _changes(model, x_t, t, cond, style_z=cond["style_z"] + 1) > 1e-4
        assert (model(x_t, t, cond) - model(x_t, t + 0.1, cond)).abs().max().item() > 1e-4


def test_nulls_remove_what_they_replace(cfg):
    model, batch, cond, x_t, t = _setup(cfg)
    wake(model)
    ones = torch.ones(3, dtype=torch.bool)
    with torch.no_grad():
        no_audio = {**cond, "audio_null": ones}
        assert _changes(model, x_t, t, no_audio, audio=cond["audio"].flip(0), is_silent=1 - cond["is_silent"]) == 0.0
        assert _changes(model, x_t, t, cond, audio_null=ones) > 1e-4
        no_style = {**cond, "style_null": ones}
        assert _changes(model, x_t, t, no_style, style_z=cond["style_z"] + 3) == 0.0
        no_prev = {**cond, "prev_valid": torch.zeros_like(cond["prev_valid"])}
        assert _changes(model, x_t, t, no_prev, prev=cond["prev"] + 3) == 0.0


def test_attention_spans_the_snippet_and_samples_are_independent(cfg):
    model, batch, cond, x_t, t = _setup(cfg)
    wake(model)
    with torch.no_grad():
        base = model(x_t, t, cond)
        x2 = x_t.clone()
        x2[:, 0] += 1.0  # change frame 0 only
        out = model(x2, t, cond)
        assert (out[:, 2] - base[:, 2]).abs().max().item() > 1e-5  # frame 2 sees frame 0 (temporal attention)
        x3 = x_t.clone()
        x3[0] += 1.0  # change sample 0 only
        torch.testing.assert_close(model(x3, t, cond)[1:], base[1:])


def test_every_parameter_gets_a_gradient(cfg):
    """DDP without find_unused_parameters needs every parameter in the graph on every step."""
    model, batch, cond, x_t, t = _setup(cfg)
    wake(model).train()
    mu, logvar = model.encode_style(batch["style"])
    cond = {**cond, "style_z": mu + logvar.exp()}
    model(x_t, t, cond).pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_style_kl():
    assert style_kl(torch.zeros(2, 4), torch.zeros(2, 4)).tolist() == [0.0, 0.0]
    kl = style_kl(torch.ones(1, 4), torch.zeros(1, 4))
    assert kl.item() == pytest.approx(2.0)


def test_guidance_one_reproduces_the_conditional_prediction(cfg):
    model, batch, cond, x_t, _ = _setup(cfg)
    wake(model)
    t = torch.full((3,), 0.5)  # the sampler hands the denoiser its step's time as a host float
    with torch.no_grad():
        c = model(x_t, t, cond)
        u = model(x_t, t, {**cond, "audio_null": torch.ones(3, dtype=torch.bool)})
        torch.testing.assert_close(guided_denoiser(model, cond, 1.0)(x_t, 0.5), c)
        torch.testing.assert_close(guided_denoiser(model, cond, 2.5)(x_t, 0.5), u + 2.5 * (c - u), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sampler", ["ddim", "heun"])
def test_sample_snippet(cfg, sampler):
    model, batch, cond, x_t, t = _setup(cfg)
    wake(model)
    shape = tuple(batch["x"].shape)
    a = sample_snippet(model, cond, shape, 3, 2.0, torch.Generator().manual_seed(0), sampler)
    b = sample_snippet(model, cond, shape, 3, 2.0, torch.Generator().manual_seed(0), sampler)
    c = sample_snippet(model, cond, shape, 3, 1.0, torch.Generator().manual_seed(0), sampler)
    assert a.shape == shape and torch.isfinite(a).all()
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max().item() > 1e-5  # guidance changes the sample
    with pytest.raises(ValueError, match="sampler"):
        sample_snippet(model, cond, shape, 3, 1.0, None, "euler")
