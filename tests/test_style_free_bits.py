"""Free bits on the style KL (Kingma et al. 2016): the oracle values, the gradient under the floor, the training
loss's wiring (the logged style_kl stays the true KL), and the style probe bench end to end on the shipped model."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.config import build_config
from trainer.diffusion.losses import diffusion_loss
from trainer.diffusion.model import Denoiser, style_kl, style_kl_free_bits
from trainer.diffusion.synthetic import n_audio_channels, synthetic_batch
from bench_scripts import load_bench
from model_helpers import wake

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


# ---------------------------------------------------------------- the pure function


def test_free_bits_oracle_values():
    # logvar = 0: KL of a dimension is mu^2 / 2. Per sample and dimension [[2, 0.125], [0, 0.125]];
    # the batch means per dimension are [1.0, 0.125].
    mu = torch.tensor([[2.0, 0.5], [0.0, 0.5]])
    logvar = torch.zeros(2, 2)
    assert style_kl_free_bits(mu, logvar, 0.0).item() == pytest.approx(1.125)
    assert style_kl_free_bits(mu, logvar, 0.5).item() == pytest.approx(1.0 + 0.5)  # the second dimension floored
    assert style_kl_free_bits(mu, logvar, 0.1).item() == pytest.approx(1.125)      # both above the floor
    assert style_kl_free_bits(mu, logvar, 2.0).item() == pytest.approx(4.0)        # both floored: 2 * lambda
    # the floor acts on the batch mean per dimension, not per sample (per sample it would be (2.5 + 1.0) / 2)
    assert style_kl_free_bits(mu, logvar, 0.5).item() != pytest.approx(1.75)
    # a variance term: mu = 0, var = 2 -> 0.5 * (2 - 1 - ln 2) nats
    one = style_kl_free_bits(torch.zeros(1, 1), torch.full((1, 1), math.log(2.0)), 0.0).item()
    assert one == pytest.approx(0.5 * (1.0 - math.log(2.0)))
    assert style_kl_free_bits(torch.zeros(1, 1), torch.full((1, 1), math.log(2.0)), 0.2).item() == pytest.approx(0.2)


def test_zero_free_bits_is_the_plain_kl_exactly():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    a_mu, a_lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    b_mu, b_lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    fb = style_kl_free_bits(a_mu, a_lv, 0.0)
    plain = style_kl(b_mu, b_lv).mean()
    assert torch.equal(fb, plain)
    fb.backward()
    plain.backward()
    assert torch.equal(a_mu.grad, b_mu.grad) and torch.equal(a_lv.grad, b_lv.grad)


def test_no_gradient_under_the_floor():
    mu = torch.tensor([[2.0, 0.5, 0.1], [0.0, 0.5, -0.1]], requires_grad=True)
    logvar = torch.tensor([[0.0, 0.0, 0.3], [0.0, 0.0, -0.3]], requires_grad=True)
    style_kl_free_bits(mu, logvar, 0.5).backward()  # batch-mean KLs: [1.0, 0.125, ~0.03]: only dim 0 over 0.5
    assert torch.all(mu.grad[:, 1:] == 0) and torch.all(logvar.grad[:, 1:] == 0)
    # dimension 0 keeps the plain gradient of the batch mean: d/dmu (mu^2 / 2) / B = mu / B
    assert mu.grad[:, 0].tolist() == pytest.approx([1.0, 0.0])
    assert logvar.grad[:, 0].tolist() == pytest.approx([0.0, 0.0])  # d/dlogvar 0.5 (e^lv - 1 - lv) = 0 at lv = 0


def test_negative_free_bits_is_refused():
    with pytest.raises(ValueError, match="free_bits"):
        style_kl_free_bits(torch.zeros(1, 2), torch.zeros(1, 2), -0.1)
    with pytest.raises(ValueError):
        build_config(overrides=["diffusion.style_kl_free_bits=-1"])


# ---------------------------------------------------------------- the training loss

SMALL = ["diffusion.snippet_frames=4", "diffusion.audio_context_frames=1", "diffusion.width=32", "diffusion.depth=1",
         "diffusion.heads=2", "diffusion.style_dim=4", "diffusion.p_style_drop=0", "diffusion.p_audio_drop=0",
         "diffusion.p_prev_drop=0", "render.resolution=32", "timeline.n_bands=4", "diffusion.style_kl_weight=0.5"]
C, H = 2, 4


def _loss_and_style_grads(cfg, model, batch):
    model.zero_grad()
    loss, m = diffusion_loss(model, batch, cfg, torch.Generator().manual_seed(7))
    loss.backward()
    grads = [p.grad.clone() for p in model.style_encoder.parameters()]
    return loss.item(), {k: float(v) for k, v in m.items()}, grads


def test_the_loss_uses_the_floored_kl_and_logs_the_true_one():
    base = build_config([], overrides=SMALL)
    torch.manual_seed(0)
    model = wake(Denoiser(base, C, H, n_audio_channels(base)))
    batch = synthetic_batch(base, 6, C, H, torch.Generator().manual_seed(3))
    loss0, m0, g0 = _loss_and_style_grads(base, model, batch)
    assert m0["style_kl_term"] == m0["style_kl"] > 0  # free bits 0: the plain KL

    lam = 10.0  # far above any dimension's KL: every dimension floored
    fb = build_config(base=base.model_dump(mode="json"), overrides=[f"diffusion.style_kl_free_bits={lam}"])
    loss1, m1, g1 = _loss_and_style_grads(fb, model, batch)
    assert m1["style_kl"] == pytest.approx(m0["style_kl"], rel=1e-6)  # logged: still the true KL
    assert m1["style_kl_term"] == pytest.approx(lam * 4)               # optimised: style_dim * lambda
    w = base.diffusion.style_kl_weight
    assert loss1 - loss0 == pytest.approx(w * (lam * 4 - m0["style_kl"]), rel=1e-4)

    # every dimension under the floor: the KL no longer reaches the style encoder, only the denoising loss does
    none = build_config(base=base.model_dump(mode="json"), overrides=["diffusion.style_kl_weight=0"])
    _, _, g_none = _loss_and_style_grads(none, model, batch)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(g1, g_none))
    assert not all(torch.allclose(a, b, atol=1e-7) for a, b in zip(g0, g_none))  # with the plain KL it does


# ---------------------------------------------------------------- bench/style_probe.py


def test_style_probe_on_the_shipped_model(tmp_path):
    style_probe = load_bench("style_probe")
    out = tmp_path / "probe.json"
    audio = str(ROOT / "tests" / "data" / "real_audio" / "speech_gettysburg.wav")
    assert style_probe.main(["--checkpoint", str(ROOT / "models" / "synesthete-tiny"), "--audio", audio,
                             "--k", "2", "--seconds", "1.5", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    (f,) = rep["files"]
    assert f["frames"] == 12  # 1.5 s at the model's 8 fps
    for kind in ("style_only", "noise_only"):
        assert f[kind]["psnr"]["pairs"] == 1 and f[kind]["style_diversity"] >= 0
    # the noise seed changes the video; the summary is the mean of the one file
    assert f["noise_only"]["psnr"]["identical_pairs"] == 0 and f["noise_only"]["style_diversity"] > 0
    assert rep["summary"]["noise_only"]["mean_psnr_db"] == pytest.approx(f["noise_only"]["psnr"]["mean_db"])
    assert rep["trained"]["style_kl"] == pytest.approx(0.0018405294977128506)
    assert rep["trained"]["style_dim"] == 8 and rep["posterior"] is None


def test_style_probe_videos_follow_the_seeds():
    """The same seeds give the same video; another style seed at the same noise seed is another video."""
    style_probe = load_bench("style_probe")
    from trainer.sample import SampleSettings, load_sampling_model, read_item

    model = load_sampling_model(ROOT / "models" / "synesthete-tiny")
    item = read_item(0, ROOT / "tests" / "data" / "real_audio" / "speech_gettysburg.wav", os.devnull, model.cfg)
    s = SampleSettings()
    a = style_probe.sample_video(model, item, 6, 0, 0, s)
    assert a.shape == (6, 32, 32, 3) and a.dtype.name == "uint8"
    assert (a == style_probe.sample_video(model, item, 6, 0, 0, s)).all()
    assert not (a == style_probe.sample_video(model, item, 6, 1, 0, s)).all()
    assert not (a == style_probe.sample_video(model, item, 6, 0, 1, s)).all()
    p = style_probe.pairwise_psnr([a, a.copy(), 255 - a])
    assert p["pairs"] == 3 and p["identical_pairs"] == 1 and p["mean_db"] is not None


def test_style_probe_posterior_of_the_shipped_model_is_the_prior(tmp_path):
    """The posterior over latent shards (written as tests/test_diffusion_train.py writes them, at the shipped model's
    latent shape): the shipped model's has collapsed, KL ~ 0, the same mean for every clip, sigma ~ 1."""
    from shared.config import build_config
    from trainer.sample import load_sampling_model
    from test_diffusion_train import _write_latent_dataset

    style_probe = load_bench("style_probe")
    model = load_sampling_model(ROOT / "models" / "synesthete-tiny")
    # the shards hold debug clips only: draw what they hold (no curriculum reweighting)
    model.cfg = build_config(base=model.cfg.model_dump(mode="json"), overrides=["data.audio_debug_mix_schedule_steps=0"])
    _write_latent_dataset(tmp_path, model.cfg, tmp_path / "vae")
    post = style_probe.posterior_stats(model, str(tmp_path), "val", 2, batch_size=4)
    assert post["snippets"] == 8 and len(post["kl_per_dim"]) == len(post["mu_spread_per_dim"]) == 8
    assert post["kl_per_clip"] == pytest.approx(sum(post["kl_per_dim"]), abs=1e-4)
    assert post["kl_per_clip"] < 0.02 and max(post["mu_spread_per_dim"]) < 0.02
    assert post["mean_posterior_std"] == pytest.approx(1.0, abs=0.05)
    # the aggregate of a collapsed posterior is the prior itself
    mean, std = (torch.tensor(post["aggregate_mean"]), torch.tensor(post["aggregate_std"]))
    assert mean.abs().max() < 0.02 and (std - 1).abs().max() < 0.05


def test_aggregate_gaussian_matches_sampling_the_mixture():
    """Oracle: draw many samples from the mixture of the posteriors (pick a component, then sample it) with numpy;
    their mean and std are the moment-matched Gaussian's."""
    style_probe = load_bench("style_probe")
    rng = np.random.default_rng(0)
    mu = rng.normal(0.5, 0.7, size=(5, 3))
    logvar = rng.normal(-1.0, 0.5, size=(5, 3))
    comp = rng.integers(0, 5, size=400_000)
    x = mu[comp] + np.exp(0.5 * logvar[comp]) * rng.standard_normal((400_000, 3))
    mean, std = style_probe.aggregate_gaussian(torch.tensor(mu), torch.tensor(logvar))
    np.testing.assert_allclose(mean.numpy(), x.mean(axis=0), atol=5e-3)
    np.testing.assert_allclose(std.numpy(), x.std(axis=0), rtol=5e-3)


def test_style_draws_prior_aggregate_and_one_posterior():
    style_probe = load_bench("style_probe")
    from trainer.sample import style_from_prior

    cfg = build_config(overrides=["diffusion.style_dim=2"])
    mu = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    logvar = torch.log(torch.tensor([[0.25, 1.0], [0.25, 1.0]]))
    eps = style_from_prior(2, 7)
    assert torch.equal(style_probe.style_draw("prior", 7, cfg), eps)  # what trainer sample --style-seed 7 draws
    mean, std = torch.tensor([2.0, -1.0]), torch.sqrt(torch.tensor([1.0 + 0.25, 1.0 + 1.0]))
    torch.testing.assert_close(style_probe.style_draw("aggregate", 7, cfg, (mu, logvar)), mean[None] + std[None] * eps)
    i = 7 * 13 % 2  # snippet 1
    torch.testing.assert_close(style_probe.style_draw("posterior", 7, cfg, (mu, logvar)),
                               mu[i][None] + torch.tensor([0.5, 1.0])[None] * eps)
    with pytest.raises(ValueError, match="--latents"):
        style_probe.style_draw("aggregate", 7, cfg)
    # a plan model: the prior draw is the teacher's plan of the seed; it has no posterior to draw from
    plan_cfg = build_config(overrides=["diffusion.style_source=plan"])
    from trainer.style import style_for_seed
    assert torch.equal(style_probe.style_draw("prior", 7, plan_cfg), style_for_seed(plan_cfg, 7))
    with pytest.raises(ValueError, match="style_source=posterior"):
        style_probe.style_draw("aggregate", 7, plan_cfg, (mu, logvar))
