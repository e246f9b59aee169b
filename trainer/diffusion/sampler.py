"""Samplers over a denoiser callable, with audio classifier-free guidance.

A *denoiser callable* maps ``(x_t (B, ...), t (B,)) -> prediction`` in the model's parametrisation.
:func:`guided_denoiser` builds one from a :class:`~trainer.diffusion.model.Denoiser` and its conditioning,
applying audio CFG (Ho & Salimans 2022): ``pred = uncond + g (cond - uncond)``, where ``uncond`` is the
same conditioning with the learned null audio (``audio_null``). ``g = 1`` is the conditional prediction.

- ``ddim``: deterministic DDIM (Song et al. 2021, eq. 12 with eta = 0) on the time grid t_i = 1 - i/steps.
- ``heun``: Heun's 2nd-order method on the probability-flow ODE (Karras et al. 2022, "EDM", Alg. 1),
  in the variable ``y = x / alpha`` with noise level ``s = sigma / alpha``, where ``dy/ds = eps_hat``
  (Euler in these variables is DDIM, so Heun costs ~2x the network calls of DDIM per step).
"""

from __future__ import annotations

from typing import Callable

import torch

from trainer.diffusion import schedule as S
from trainer.runtime import unwrap

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SAMPLERS = ("ddim", "heun")


def apply_guidance(cond_pred: torch.Tensor, uncond_pred: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6): ``uncond + scale * (cond - uncond)``."""
    return uncond_pred + scale * (cond_pred - uncond_pred)


def guided_denoiser(model: Callable, cond: dict[str, torch.Tensor], guidance: float) -> Denoise:
    """A denoiser callable with audio CFG. At ``guidance == 1`` the unconditional pass is skipped."""
    uncond = {**cond, "audio_null": torch.ones_like(cond["audio_null"], dtype=torch.bool)}

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if guidance == 1.0:
            return model(x_t, t, cond)
        b = x_t.shape[0]
        both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), {k: torch.cat([cond[k], uncond[k]]) for k in cond})
        return apply_guidance(both[:b], both[b:], guidance)

    return denoise


def time_grid(steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``steps + 1`` times from 1 (noise) to 0 (data), uniform in t (the cosine schedule spaces the SNRs)."""
    if steps < 1:
        raise ValueError(f"sampling needs at least 1 step, got {steps}")
    return torch.linspace(1.0, 0.0, steps + 1, device=device)


def _x0_eps(denoise: Denoise, x: torch.Tensor, t: float, prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
    tt = torch.full((x.shape[0],), float(t), device=x.device)
    pred = denoise(x, tt).float()
    return S.pred_to_x0_eps(pred, x, S.logsnr_cosine(tt), prediction)


def _alpha_sigma_at(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return S.alpha_sigma(S.logsnr_cosine(t))


@torch.no_grad()
def ddim(denoise: Denoise, noise: torch.Tensor, steps: int, prediction: str = "v") -> torch.Tensor:
    """Deterministic DDIM: ``x_{s} = alpha_s x0_hat + sigma_s eps_hat`` from t = 1 to t = 0; returns x0."""
    ts = time_grid(steps, noise.device)
    x = noise
    for i in range(steps):
        x0_hat, eps_hat = _x0_eps(denoise, x, ts[i].item(), prediction)
        if i < steps - 1:
            a, s = _alpha_sigma_at(ts[i + 1])
            x = a * x0_hat + s * eps_hat
    return x0_hat  # the last step's data prediction (x itself is within sigma(0) ~ 5e-4 of it)


@torch.no_grad()
def heun(denoise: Denoise, noise: torch.Tensor, steps: int, prediction: str = "v") -> torch.Tensor:
    """Heun (EDM Alg. 1, no churn) in ``y = x / alpha``, ``s = sigma / alpha``: ``dy/ds = eps_hat``; returns x0."""
    ts = time_grid(steps, noise.device)
    y = noise / _alpha_sigma_at(ts[0])[0]
    for i in range(steps):
        a_i, sg_i = _alpha_sigma_at(ts[i])
        a_n, sg_n = _alpha_sigma_at(ts[i + 1])
        s_i, s_n = sg_i / a_i, sg_n / a_n
        _, eps1 = _x0_eps(denoise, y * a_i, ts[i].item(), prediction)
        y_euler = y + (s_n - s_i) * eps1
        # The 2nd-order correction, except on the last step (to s ~ 0, as in EDM Alg. 1) and on the first: it
        # jumps from s ~ 1800 (logsnr -15) where y ~ s, and the trapezoid rule's error on that huge step is
        # far larger than Euler's (EDM avoids it with sigma_max = 80). Euler in (y, s) is exactly DDIM.
        if 0 < i < steps - 1:
            _, eps2 = _x0_eps(denoise, y_euler * a_n, ts[i + 1].item(), prediction)
            y = y + (s_n - s_i) * 0.5 * (eps1 + eps2)
        else:
            y = y_euler
    return y  # at t = 0, s ~ 5e-4: y is the data estimate up to that residual noise


def sample_snippet(model: Callable, cond: dict[str, torch.Tensor], shape: tuple[int, ...], steps: int,
                   guidance: float, generator: torch.Generator | None, sampler: str = "ddim",
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Sample one batch of snippets: noise (shape) from ``generator``, audio CFG at ``guidance``; returns x0.

    ``model`` is a :class:`Denoiser` (EMA weights for sampling) and ``cond`` its :meth:`make_cond` dict.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"inference.sampler must be one of {SAMPLERS}, got {sampler!r}")
    dev = torch.device(device) if device is not None else cond["audio"].device
    noise = torch.randn(shape, generator=generator).to(dev)
    net = unwrap(model)
    prediction = getattr(net, "prediction", "v")
    denoise = guided_denoiser(model, cond, guidance)
    return (ddim if sampler == "ddim" else heun)(denoise, noise, steps, prediction)
