"""Pure diffusion math: schedule, parametrisation, min-SNR weights, samplers, guidance, oracle loss."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.diffusion import schedule as S
from trainer.diffusion.losses import comparison_loss, denoising_loss
from trainer.diffusion.sampler import (Guidance, apply_guidance, compose_guidance, ddim, guidance_weight, guided_denoiser,
                                      heun, time_grid)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_cosine_schedule_endpoints_and_monotone():
    t = torch.linspace(0, 1, 101)
    ls = S.logsnr_cosine(t)
    assert ls[0].item() == pytest.approx(S.LOGSNR_MAX, abs=1e-3)
    assert ls[-1].item() == pytest.approx(S.LOGSNR_MIN, abs=1e-3)
    assert bool((ls[1:] < ls[:-1]).all())
    # midpoint of the untruncated cosine schedule is logsnr ~ 0 (alpha = sigma)
    assert S.logsnr_cosine(torch.tensor([0.5])).abs().item() < 0.05
    # out-of-range t is clamped, not extrapolated
    assert S.logsnr_cosine(torch.tensor([-1.0, 2.0])).tolist() == pytest.approx([S.LOGSNR_MAX, S.LOGSNR_MIN], abs=1e-3)
    torch.testing.assert_close(S.t_from_logsnr(ls), t, atol=1e-5, rtol=0)


def test_variance_preserving_limits():
    ls = S.logsnr_cosine(torch.tensor([0.0, 0.5, 1.0]))
    a, s = S.alpha_sigma(ls)
    torch.testing.assert_close(a ** 2 + s ** 2, torch.ones(3))
    assert a[0] > 0.9999 and s[0] < 1e-3  # t = 0: data
    assert a[2] < 1e-3 and s[2] > 0.9999  # t = 1: noise


@pytest.mark.parametrize("t", [0.0, 0.3, 0.7, 1.0])
def test_parametrisation_round_trips(t):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 2, 4, generator=g), torch.randn(3, 2, 4, generator=g)
    ls = S.logsnr_cosine(torch.full((3,), t))
    x_t = S.q_sample(x0, eps, ls)
    v = S.v_from_x0_eps(x0, eps, ls)
    torch.testing.assert_close(S.x0_from_v(x_t, v, ls), x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(S.eps_from_v(x_t, v, ls), eps, atol=1e-5, rtol=0)
    torch.testing.assert_close(S.pred_to_x0_eps(v, x_t, ls, "v")[0], x0, atol=1e-5, rtol=0)
    if 0 < t < 1:  # eps -> x0 divides by alpha: only well conditioned away from t = 1 (why v is the default)
        torch.testing.assert_close(S.x0_from_eps(x_t, eps, ls), x0, atol=1e-4, rtol=0)
        torch.testing.assert_close(S.v_from_eps(x_t, eps, ls), v, atol=1e-4, rtol=0)
        torch.testing.assert_close(S.eps_from_x0(x_t, x0, ls), eps, atol=1e-4, rtol=0)


def test_v_at_the_limits():
    """At t = 0, v ~ eps and x_t ~ x0; at t = 1, v ~ -x0 and x_t ~ eps (Salimans & Ho 2022)."""
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    for t, v_like, x_like in ((0.0, eps, x0), (1.0, -x0, eps)):
        ls = S.logsnr_cosine(torch.full((2,), t))
        torch.testing.assert_close(S.v_from_x0_eps(x0, eps, ls), v_like, atol=3e-3, rtol=0)
        torch.testing.assert_close(S.q_sample(x0, eps, ls), x_like, atol=3e-3, rtol=0)


def test_min_snr_weights():
    ls = torch.tensor([-10.0, 0.0, math.log(5.0), 10.0])
    snr = ls.exp()
    wv = S.min_snr_weight(ls, 5.0, "v")
    we = S.min_snr_weight(ls, 5.0, "eps")
    torch.testing.assert_close(wv, torch.minimum(snr, torch.tensor(5.0)) / (snr + 1))
    torch.testing.assert_close(we, torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert we[0].item() == pytest.approx(1.0) and we[-1].item() < 1e-3  # eps: 1 at high noise, gamma/snr when clean
    assert wv[-1].item() < 1e-3 and wv[0].item() < 1e-4  # v: vanishes at both ends in v-space terms
    assert S.min_snr_weight(ls, 0.0, "v").tolist() == [1.0] * 4  # gamma = 0 disables
    with pytest.raises(ValueError, match="prediction"):
        S.min_snr_weight(ls, 5.0, "x")


@pytest.mark.parametrize("prediction", ["v", "eps"])
@pytest.mark.parametrize("space", ["pred", "x0"])
def test_oracle_denoiser_gives_zero_loss(prediction, space):
    """A denoiser that returns the true target scores ~0; a wrong one does not."""
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(6, 2, 3, 4, 4, generator=g), torch.randn(6, 2, 3, 4, 4, generator=g)
    ls = S.logsnr_cosine(torch.rand(6, generator=g) * 0.98 + 0.01)
    x_t = S.q_sample(x0, eps, ls)

    def oracle(x, logsnr):  # knows x0; recovers eps from x_t, then the target
        e = S.eps_from_x0(x, x0, logsnr)
        return S.v_from_x0_eps(x0, e, logsnr) if prediction == "v" else e

    pred = oracle(x_t, ls)
    assert denoising_loss(pred, x0, eps, ls, prediction, 5.0).max().item() < 1e-8
    assert comparison_loss(pred, x_t, x0, eps, ls, prediction, 5.0, space).max().item() < 1e-6
    assert comparison_loss(torch.zeros_like(pred), x_t, x0, eps, ls, prediction, 5.0, space).min().item() > 1e-3


def test_guidance_scale_one_is_conditional():
    g = torch.Generator().manual_seed(3)
    c, u = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    torch.testing.assert_close(apply_guidance(c, u, 1.0), c)
    torch.testing.assert_close(apply_guidance(c, u, 0.0), u)
    torch.testing.assert_close(apply_guidance(c, u, 3.0), u + 3 * (c - u))


@pytest.mark.parametrize("schedule, tau, want", [
    ("constant", 1.0, 3.0), ("constant", 0.0, 3.0),
    ("linear", 1.0, 1.0), ("linear", 0.0, 3.0), ("linear", 0.75, 1.5), ("linear", 0.5, 2.0),
    ("cosine", 1.0, 1.0), ("cosine", 0.0, 3.0), ("cosine", 0.5, 2.0),
    ("cosine", 0.75, 1.0 + 2.0 * (1 - math.sqrt(0.5)) / 2),  # (1 - cos(pi/4)) / 2 of the way to g
    ("interval", 0.2, 3.0), ("interval", 0.6, 3.0), ("interval", 0.4, 3.0),  # closed interval [0.2, 0.6]
    ("interval", 0.1, 1.0), ("interval", 0.61, 1.0), ("interval", 1.0, 1.0),
])
def test_guidance_schedule_oracle(schedule, tau, want):
    assert guidance_weight(tau, 3.0, schedule, (0.2, 0.6)) == pytest.approx(want, abs=1e-12)


def test_guidance_schedules_ramp_monotonically_from_one_to_g():
    taus = [1 - i / 20 for i in range(21)]  # from pure noise to clean, as the sampler runs
    for schedule in ("linear", "cosine"):
        w = [guidance_weight(t, 4.0, schedule) for t in taus]
        assert all(a <= b for a, b in zip(w, w[1:]))
        assert w[0] == 1.0 and w[-1] == pytest.approx(4.0)  # exactly 1 at pure noise: that step skips the uncond pass
    # the cosine easing stays closer to 1 near the noise end and closer to g near the clean end than linear
    assert guidance_weight(0.9, 4.0, "cosine") < guidance_weight(0.9, 4.0, "linear")
    assert guidance_weight(0.1, 4.0, "cosine") > guidance_weight(0.1, 4.0, "linear")


def test_guidance_rule_refuses_bad_input():
    with pytest.raises(ValueError, match="audio_guidance_schedule"):
        guidance_weight(0.5, 2.0, "exponential")
    with pytest.raises(ValueError, match="audio_guidance_schedule"):
        Guidance(2.0, "exponential")
    for bad in ((0.5, 0.5), (0.6, 0.2), (-0.1, 0.5), (0.2, 1.5)):
        with pytest.raises(ValueError, match="audio_guidance_interval"):
            Guidance(2.0, "interval", bad)


class CountingDenoiser:
    """Records the batch size of every call; predicts cond-dependent values so guidance is visible."""

    def __init__(self):
        self.rows: list[int] = []

    def __call__(self, x_t, t, cond):
        self.rows.append(x_t.shape[0])
        null = cond["audio_null"].float().view(-1, *([1] * (x_t.dim() - 1)))
        return 0.5 * x_t + (1 - null) * cond["audio"].mean() + t.view(-1, *([1] * (x_t.dim() - 1)))


@pytest.mark.parametrize("schedule, sampler, doubled", [
    # ddim, 4 steps: tau = 1, 0.75, 0.5, 0.25
    ("constant", ddim, [True, True, True, True]),
    ("linear", ddim, [False, True, True, True]),  # w(1) = 1: the first step is conditional only
    ("cosine", ddim, [False, True, True, True]),
    ("interval", ddim, [False, False, True, False]),  # only tau = 0.5 lies in [0.3, 0.6]
    # heun, 4 steps: step 0 at tau = 1 (Euler), steps 1-2 at (0.75, 0.5) and (0.5, 0.25), step 3 at 0.25 (Euler)
    ("interval", heun, [False, False, True, True, False, False]),
])
def test_steps_with_weight_one_skip_the_unconditional_pass(schedule, sampler, doubled):
    b = 3
    cond = {"audio": torch.ones(b, 2), "audio_null": torch.zeros(b, dtype=torch.bool)}
    model = CountingDenoiser()
    rule = Guidance(2.5, schedule, (0.3, 0.6))
    sampler(guided_denoiser(model, cond, rule), torch.zeros(b, 4), 4)
    assert model.rows == [2 * b if d else b for d in doubled]


def test_guided_denoiser_applies_the_weight_of_its_step():
    b = 2
    cond = {"audio": torch.ones(b, 2) * 3.0, "audio_null": torch.zeros(b, dtype=torch.bool)}
    model = CountingDenoiser()
    x = torch.randn(b, 4, generator=torch.Generator().manual_seed(0))
    denoise = guided_denoiser(model, cond, Guidance(4.0, "linear"))
    for tau in (1.0, 0.5, 0.0):
        tt = torch.full((b,), tau)
        c = model(x, tt, cond)
        u = model(x, tt, {**cond, "audio_null": torch.ones(b, dtype=torch.bool)})
        torch.testing.assert_close(denoise(x, tau), apply_guidance(c, u, 1.0 + 3.0 * (1 - tau)))


class StyleDenoiser(CountingDenoiser):
    """As CountingDenoiser, plus a term the style moves (zero under the null style)."""

    def __call__(self, x_t, t, cond):
        shape = (-1, *([1] * (x_t.dim() - 1)))
        keep = (1 - cond["style_null"].float()).view(shape)
        return super().__call__(x_t, t, cond) + keep * cond["style_z"].sum(dim=1).view(shape)


def test_composed_guidance_oracle():
    c, ua, us = torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([0.25])
    # c + (w_a - 1)(c - ua) + (w_s - 1)(c - us) = 1 + 1 * 0.5 + 2 * 0.75
    assert compose_guidance(c, ua, us, 2.0, 3.0).item() == pytest.approx(3.0)
    assert compose_guidance(c, None, us, 2.0, 3.0).item() == pytest.approx(2.5)  # no audio pass: w_a = 1
    torch.testing.assert_close(compose_guidance(c, ua, us, 2.5, 1.0), apply_guidance(c, ua, 2.5))
    with pytest.raises(ValueError, match="style_guidance_scale"):
        Guidance(2.0, style=-1.0)


def test_style_guidance_adds_a_pass_and_moves_along_the_style():
    b = 2
    cond = {"audio": torch.ones(b, 2) * 3.0, "audio_null": torch.zeros(b, dtype=torch.bool),
            "style_z": torch.tensor([[1.0, 2.0], [-1.0, 0.5]]), "style_null": torch.zeros(b, dtype=torch.bool)}
    x = torch.randn(b, 4, generator=torch.Generator().manual_seed(0))
    model = StyleDenoiser()
    denoise = guided_denoiser(model, cond, Guidance(4.0, "linear", style=3.0))
    for tau in (1.0, 0.5):
        w = 1.0 + 3.0 * (1 - tau)
        tt = torch.full((b,), tau)
        c = model(x, tt, cond)
        ua = model(x, tt, {**cond, "audio_null": torch.ones(b, dtype=torch.bool)})
        us = model(x, tt, {**cond, "style_null": torch.ones(b, dtype=torch.bool)})
        model.rows.clear()
        torch.testing.assert_close(denoise(x, tau), compose_guidance(c, ua if w != 1 else None, us, w, 3.0))
        assert model.rows == [2 * b if w == 1 else 3 * b]  # tau = 1: w = 1, only the style's null pass is added
    # style guidance 1 is the audio guidance alone, with its two passes
    plain = StyleDenoiser()
    same = guided_denoiser(plain, cond, Guidance(4.0, "linear", style=1.0))(x, 0.5)
    assert plain.rows == [2 * b]
    torch.testing.assert_close(same, guided_denoiser(StyleDenoiser(), cond, Guidance(4.0, "linear"))(x, 0.5))


@pytest.mark.parametrize("sampler", [ddim, heun])
@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_samplers_recover_a_point_mass(sampler, prediction):
    """With data = one known point, the exact denoiser's ODE ends on that point from any noise."""
    target = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(4))

    def exact(x, t):
        ls = S.logsnr_cosine(torch.full((x.shape[0],), t))
        x0 = target.expand_as(x)
        e = S.eps_from_x0(x, x0, ls)
        return S.v_from_x0_eps(x0, e, ls) if prediction == "v" else e

    noise = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(5))
    out = sampler(exact, noise, 8, prediction)
    torch.testing.assert_close(out, target, atol=1e-2, rtol=0)


def test_heun_beats_euler_on_a_gaussian():
    """For N(0, c^2) data the exact denoiser is linear; Heun's endpoint is closer to the exact ODE solution."""
    c = 0.5

    def exact(x, t):  # E[x0 | x_t] for x0 ~ N(0, c^2): x0_hat = alpha c^2 / (alpha^2 c^2 + sigma^2) x_t
        a, s = S.alpha_sigma(S.logsnr_cosine(torch.full((x.shape[0],), t)))
        a, s = a[:, None], s[:, None]
        x0 = a * c * c / (a * a * c * c + s * s) * x
        e = (x - a * x0) / s
        return a * e - s * x0

    noise = torch.randn(512, 1, generator=torch.Generator().manual_seed(6))
    # exact probability-flow solution: y = x/alpha scales as sqrt(c^2 + s^2); at the end y = c * x_1 / sqrt(c^2 a^2 + s^2)
    a1, s1 = S.alpha_sigma(S.logsnr_cosine(torch.tensor(1.0)))
    a0, s0 = S.alpha_sigma(S.logsnr_cosine(torch.tensor(0.0)))
    exact_end = noise / a1 * math.sqrt(c * c + (s0 / a0) ** 2) / torch.sqrt(c * c + (s1 / a1) ** 2)
    err_heun = (heun(exact, noise, 10) - exact_end).abs().mean()
    err_ddim = (ddim(exact, noise, 10) - exact_end).abs().mean()
    assert err_heun < 0.02
    assert err_heun < err_ddim / 3
    assert (heun(exact, noise, 40) - exact_end).abs().mean() < err_heun / 4  # converges with the step count


def test_time_grid():
    ts = time_grid(4)
    assert ts.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    with pytest.raises(ValueError, match="at least 1 step"):
        time_grid(0)
