"""Shuffle pressure: negatives, the hinge and its gradient, every loss knob live, and that it works."""

from __future__ import annotations

import pytest
import torch

from shared.config import build_config
from trainer.diffusion import shuffle as Sh
from trainer.diffusion.losses import diffusion_loss, silent_channel, val_losses
from trainer.diffusion.model import Denoiser
from trainer.diffusion.synthetic import n_audio_channels, synthetic_batch
from model_helpers import wake

C, H = 2, 4
SMALL = ["diffusion.snippet_frames=4", "diffusion.audio_context_frames=1", "diffusion.width=32", "diffusion.depth=1",
         "diffusion.heads=2", "diffusion.style_dim=4"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def small_cfg(base, *overrides):
    return build_config(base=base.model_dump(mode="json"), overrides=SMALL + list(overrides))


# ---------------------------------------------------------------- negatives


@pytest.mark.parametrize("n", [2, 3, 4, 7, 16])
def test_derangement_never_has_a_fixed_point(n):
    g = torch.Generator().manual_seed(n)
    seen = set()
    for _ in range(200):
        perm = Sh.derangement(n, g)
        assert sorted(perm.tolist()) == list(range(n))
        assert not (perm == torch.arange(n)).any()
        seen.add(tuple(perm.tolist()))
    if n == 2:
        assert seen == {(1, 0)}
    if n == 3:
        assert seen == {(1, 2, 0), (2, 0, 1)}  # both derangements of 3 occur


def test_derangement_needs_two():
    with pytest.raises(ValueError, match="at least 2"):
        Sh.derangement(1)


def test_hard_negative_is_the_most_dissimilar_other_clip():
    audio = torch.zeros(4, 2, 3, 5)
    audio[1] += 0.1  # close to clip 0
    audio[2] += 5.0  # far from everything
    audio[3] += 1.0
    idx = Sh.hardest_negatives(audio)
    assert idx[0].item() == 2 and idx[1].item() == 2 and idx[3].item() == 2
    assert idx[2].item() == 0  # the farthest from clip 2
    assert not (idx == torch.arange(4)).any()
    same = Sh.hardest_negatives(torch.ones(3, 2, 3, 5))  # identical clips: still never itself
    assert not (same == torch.arange(3)).any()


def test_negative_audio_kinds(micro_cfg):
    cfg = small_cfg(micro_cfg)
    batch = synthetic_batch(cfg, 4, C, H, torch.Generator().manual_seed(0))
    ch = silent_channel(cfg)
    a, s = Sh.negative_audio(batch, "derange", torch.Generator().manual_seed(0))
    assert not any(torch.equal(a[i], batch["audio"][i]) for i in range(4))
    for kind in ("derange", "hard"):  # is_silent travels with its audio
        a, s = Sh.negative_audio(batch, kind, torch.Generator().manual_seed(0))
        torch.testing.assert_close(s, a[:, :, 1, ch])
    a, s = Sh.negative_audio(batch, "timeshift", None, ch)
    assert torch.equal(a, batch["audio_timeshift"]) and not torch.equal(a, batch["audio"])
    torch.testing.assert_close(s, batch["audio_timeshift"][:, :, 1, ch])
    with pytest.raises(KeyError, match="audio_timeshift"):
        Sh.negative_audio({k: v for k, v in batch.items() if k != "audio_timeshift"}, "timeshift", None, ch)
    with pytest.raises(ValueError, match="audio_shuffle_negatives"):
        Sh.negative_audio(batch, "random", None)


# ---------------------------------------------------------------- hinge


def test_hinge_is_zero_past_the_margin():
    good = torch.tensor([1.0, 1.0, 1.0])
    bad = torch.tensor([1.2, 1.05, 0.9])
    h = Sh.hinge(good, bad, 0.1)
    assert h[0].item() == 0.0  # L_bad >= L_good + margin
    assert h[1].item() == pytest.approx(0.05, abs=1e-6) and h[2].item() == pytest.approx(0.2, abs=1e-6)
    pen, active = Sh.shuffle_penalty(good, bad, torch.tensor([True, True, False]), 2.0, 0.1)
    assert pen.item() == pytest.approx(2.0 * 0.05 / 2, abs=1e-6) and active.item() == pytest.approx(0.5)
    pen, active = Sh.shuffle_penalty(good, bad, torch.zeros(3, dtype=torch.bool), 2.0, 0.1)
    assert pen.item() == 0.0 and active.item() == 0.0


def test_hinge_gradient_widens_the_gap():
    good = torch.tensor([1.0, 0.5], requires_grad=True)
    bad = torch.tensor([1.0, 0.4], requires_grad=True)
    pen, _ = Sh.shuffle_penalty(good, bad, torch.ones(2, dtype=torch.bool), 1.0, 0.1)
    pen.backward()
    assert (good.grad > 0).all() and (bad.grad < 0).all()  # descent lowers L_good and raises L_bad
    with torch.no_grad():
        gap_after = (bad - 0.1 * bad.grad) - (good - 0.1 * good.grad)
    assert (gap_after > (bad - good).detach()).all()
    done = torch.tensor([1.0], requires_grad=True)
    Sh.shuffle_penalty(done, torch.tensor([2.0]), torch.ones(1, dtype=torch.bool), 1.0, 0.1)[0].backward()
    assert done.grad.item() == 0.0  # satisfied samples get no push


# ---------------------------------------------------------------- proxies


def test_frame_statistics_and_motion():
    frames = torch.zeros(1, 3, 3, 4, 4)
    frames[0, 1] = 1.0  # frame 1 white, others black
    st = Sh.frame_statistics(frames)
    assert st.shape == (1, 3, 5)
    assert st[0, :, 0].tolist() == pytest.approx([0.0, 1.0, 0.0])  # brightness
    assert st[0, :, 4].tolist() == pytest.approx([0.0, 1.0, 1.0])  # motion energy
    x0 = torch.zeros(2, 4, 1, 2, 2)
    x0[0, 2:] = 1.0  # sample 0 moves between frames 1 and 2
    silent = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    keep = torch.ones(2, dtype=torch.bool)
    assert Sh.silence_motion_loss(x0, silent, keep).item() == pytest.approx(1.0 / 6)
    assert Sh.silence_motion_loss(x0, torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0] * 4]), keep).item() == 0.0
    assert Sh.silence_motion_loss(x0, silent, torch.tensor([False, True])).item() == 0.0


# ---------------------------------------------------------------- every knob is live


def _decoder(seed: int = 0) -> torch.nn.Module:
    """A small fixed conv decoder (latents -> RGB in [-1, 1]) standing in for the frame VAE's decoder."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.ConvTranspose2d(C, 3, 4, stride=2, padding=1), torch.nn.Tanh())


def _loss(cfg, model, batch, decoder=None) -> tuple[float, dict]:
    loss, m = diffusion_loss(model, batch, cfg, torch.Generator().manual_seed(7), decoder)
    return loss.item(), {k: float(v) for k, v in m.items()}


BASE = ["diffusion.p_style_drop=0", "diffusion.p_audio_drop=0", "diffusion.p_prev_drop=0"]


@pytest.fixture(scope="module")
def fixed():
    cfg = build_config([], overrides=SMALL + BASE + ["render.resolution=32", "timeline.n_bands=4"])
    torch.manual_seed(0)
    model = wake(Denoiser(cfg, C, H, n_audio_channels(cfg)))
    batch = synthetic_batch(cfg, 6, C, H, torch.Generator().manual_seed(3))
    batch["is_silent"][:, :] = torch.tensor([1.0, 1.0, 1.0, 0.0])  # consecutive silent frames for the motion loss
    return cfg, model, batch


@pytest.mark.parametrize("knob", [
    "diffusion.p_style_drop=1", "diffusion.p_audio_drop=0.5", "diffusion.p_prev_drop=1", "diffusion.prev_noise_aug=0.5",
    "diffusion.audio_shuffle_negatives=hard", "diffusion.audio_shuffle_negatives=timeshift",
    "diffusion.audio_shuffle_loss_space=x0", "diffusion.silence_motion_loss_weight=1.0",
    "diffusion.audio_shuffle_loss_weight=5.0", "diffusion.audio_shuffle_loss_margin=1.0",
    "diffusion.audio_shuffle_loss_prob=0", "diffusion.style_kl_weight=1.0", "diffusion.min_snr_gamma=0",
    "diffusion.prediction=eps",
])
def test_every_knob_changes_the_loss(fixed, knob):
    cfg, model, batch = fixed
    base_loss, base_m = _loss(cfg, model, batch)
    assert base_loss == _loss(cfg, model, batch)[0]  # fixed batch and seed: deterministic
    changed = build_config(base=cfg.model_dump(mode="json"), overrides=[knob])
    loss, m = _loss(changed, model, batch)
    assert loss != pytest.approx(base_loss, rel=1e-6, abs=1e-9)


def test_negative_kinds_and_spaces_change_l_bad(fixed):
    cfg, model, batch = fixed
    seen = set()
    for kind in ("derange", "hard", "timeshift"):
        for space in ("pred", "x0"):
            c = build_config(base=cfg.model_dump(mode="json"),
                             overrides=[f"diffusion.audio_shuffle_negatives={kind}", f"diffusion.audio_shuffle_loss_space={space}"])
            seen.add(round(_loss(c, model, batch)[1]["L_bad"], 7))
    assert len(seen) == 6


def test_frame_proxy_is_live_and_needs_a_decoder(fixed):
    cfg, model, batch = fixed
    dec = _decoder()
    base, _ = _loss(cfg, model, batch, dec)
    c = build_config(base=cfg.model_dump(mode="json"), overrides=["diffusion.audio_shuffle_frame_proxy_weight=10"])
    loss, m = _loss(c, model, batch, dec)
    assert m["frame_proxy"] > 0 and loss == pytest.approx(base + m["frame_proxy"], rel=1e-5)
    with pytest.raises(ValueError, match="decoder"):
        _loss(c, model, batch, None)


def test_audio_dropped_samples_are_left_out_of_the_hinge(fixed):
    cfg, model, batch = fixed
    c = build_config(base=cfg.model_dump(mode="json"), overrides=["diffusion.p_audio_drop=1"])
    loss, m = _loss(c, model, batch)
    assert m["audio_drop_frac"] == 1.0 and m["hinge"] == 0.0 and m["hinge_active_frac"] == 0.0


# ---------------------------------------------------------------- it works


def _train(cfg, steps: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = Denoiser(cfg, C, H, n_audio_channels(cfg))
    g = torch.Generator().manual_seed(seed)
    data = [synthetic_batch(cfg, 16, C, H, g) for _ in range(10)]
    val = synthetic_batch(cfg, 32, C, H, torch.Generator().manual_seed(99))  # unseen clips
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    lg = torch.Generator().manual_seed(seed + 1)
    for step in range(steps):
        loss, _ = diffusion_loss(model, data[step % len(data)], cfg, lg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return val_losses(model, val, cfg, torch.Generator().manual_seed(5))


def test_shuffle_pressure_opens_a_val_gap(tiny_cfg):
    """Few hundred steps on debug-like clips: pressure gives a positive val gap, larger than without."""
    common = ["diffusion.snippet_frames=2", "diffusion.audio_shuffle_loss_margin=0.3"]
    with_p = _train(small_cfg(tiny_cfg, *common, "diffusion.audio_shuffle_loss_weight=1.0"), 200)
    without = _train(small_cfg(tiny_cfg, *common, "diffusion.audio_shuffle_loss_weight=0"), 200)
    print(f"val gap with pressure {with_p['val_gap']:.4f}, without {without['val_gap']:.4f}")
    assert with_p["val_gap"] > 0
    assert with_p["val_gap"] > without["val_gap"] + 0.05
