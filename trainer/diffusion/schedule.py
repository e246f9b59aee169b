"""Noise schedule and parametrisation: small pure functions on tensors.

Choices (and why):

- **Variance-preserving cosine schedule in log-SNR form.** The cosine schedule of Nichol & Dhariwal
  (2021, "Improved DDPM", eq. 17) written as ``logsnr(t) = -2 log tan(pi t / 2)`` (Kingma et al. 2021
  "Variational Diffusion Models"; Hoogeboom et al. 2023 "simple diffusion", §2), truncated to
  ``[LOGSNR_MIN, LOGSNR_MAX]`` so both ends are finite. ``alpha^2 = sigmoid(logsnr)``,
  ``sigma^2 = sigmoid(-logsnr)``, ``x_t = alpha x0 + sigma eps``. Time is continuous, ``t`` in [0, 1]:
  t = 0 is (almost) clean data, t = 1 (almost) pure noise.
- **v-prediction** (Salimans & Ho 2022, "Progressive Distillation", §4 / appendix D):
  ``v = alpha eps - sigma x0``. Unlike eps-prediction it stays well conditioned at both ends of the
  schedule (at high noise an eps-model must divide by a vanishing alpha to get x0; a v-model does
  not), which matters here because audio conditioning matters most at high noise, where the x0
  prediction is decided.
- **Min-SNR-gamma loss weighting** (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
  Weighting Strategy", eq. 8-9): weight the x0-space error by ``min(SNR, gamma)``; it balances the
  conflicting gradients of low- and high-noise steps and converges faster. Expressed on the v-space
  MSE this is ``min(SNR, gamma) / (SNR + 1)``; on the eps-space MSE ``min(SNR, gamma) / SNR``.
"""

from __future__ import annotations

import math

import torch

LOGSNR_MIN = -15.0  # t = 1: alpha ~ 5.5e-4, so x_1 is noise to within float precision
LOGSNR_MAX = 15.0  # t = 0: sigma ~ 5.5e-4, so x_0 is data to within the latent's own noise


def _t_bounds(logsnr_min: float, logsnr_max: float) -> tuple[float, float]:
    """The angles at which the untruncated cosine schedule reaches logsnr_max and logsnr_min."""
    return math.atan(math.exp(-0.5 * logsnr_max)), math.atan(math.exp(-0.5 * logsnr_min))


def logsnr_cosine(t: torch.Tensor, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX) -> torch.Tensor:
    """Truncated cosine schedule: log SNR as a function of t in [0, 1] (Kingma et al. 2021, Nichol & Dhariwal 2021).

    ``logsnr(t) = -2 log tan(a + t (b - a))`` with a, b chosen so logsnr(0) = logsnr_max and
    logsnr(1) = logsnr_min; monotonically decreasing in t.
    """
    a, b = _t_bounds(logsnr_min, logsnr_max)
    return -2.0 * torch.log(torch.tan(a + t.clamp(0, 1) * (b - a)))


def t_from_logsnr(logsnr: torch.Tensor, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX) -> torch.Tensor:
    """Inverse of :func:`logsnr_cosine`."""
    a, b = _t_bounds(logsnr_min, logsnr_max)
    return (torch.atan(torch.exp(-0.5 * logsnr)) - a) / (b - a)


def alpha_sigma(logsnr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Variance-preserving signal and noise scales: alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr)."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample vector (B,) to broadcast against ``like`` (B, ...)."""
    return v.reshape(v.shape[0], *([1] * (like.dim() - 1)))


def q_sample(x0: torch.Tensor, eps: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """Forward process: ``x_t = alpha x0 + sigma eps`` (per-sample logsnr (B,))."""
    a, s = alpha_sigma(logsnr)
    return bcast(a, x0) * x0 + bcast(s, x0) * eps


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """Salimans & Ho 2022, eq. in §4: ``v = alpha eps - sigma x0``."""
    a, s = alpha_sigma(logsnr)
    return bcast(a, x0) * eps - bcast(s, x0) * x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """``x0 = alpha x_t - sigma v`` (exact for a VP schedule since alpha^2 + sigma^2 = 1)."""
    a, s = alpha_sigma(logsnr)
    return bcast(a, x_t) * x_t - bcast(s, x_t) * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """``eps = sigma x_t + alpha v``."""
    a, s = alpha_sigma(logsnr)
    return bcast(s, x_t) * x_t + bcast(a, x_t) * v


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """``x0 = (x_t - sigma eps) / alpha`` (ill-conditioned as alpha -> 0: why v is the default)."""
    a, s = alpha_sigma(logsnr)
    return (x_t - bcast(s, x_t) * eps) / bcast(a, x_t)


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """``eps = (x_t - alpha x0) / sigma``."""
    a, s = alpha_sigma(logsnr)
    return (x_t - bcast(a, x_t) * x0) / bcast(s, x_t)


def v_from_eps(x_t: torch.Tensor, eps: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """``v = alpha eps - sigma x0`` with x0 recovered from eps."""
    return v_from_x0_eps(x0_from_eps(x_t, eps, logsnr), eps, logsnr)


def pred_to_x0_eps(pred: torch.Tensor, x_t: torch.Tensor, logsnr: torch.Tensor, prediction: str
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Network output in its parametrisation ("v" or "eps") -> (x0_hat, eps_hat)."""
    if prediction == "v":
        return x0_from_v(x_t, pred, logsnr), eps_from_v(x_t, pred, logsnr)
    if prediction == "eps":
        return x0_from_eps(x_t, pred, logsnr), pred
    raise ValueError(f"diffusion.prediction must be 'v' or 'eps', got {prediction!r}")


def target_for(x0: torch.Tensor, eps: torch.Tensor, logsnr: torch.Tensor, prediction: str) -> torch.Tensor:
    """The regression target of the network: v (Salimans & Ho 2022) or eps (Ho et al. 2020)."""
    if prediction == "v":
        return v_from_x0_eps(x0, eps, logsnr)
    if prediction == "eps":
        return eps
    raise ValueError(f"diffusion.prediction must be 'v' or 'eps', got {prediction!r}")


def min_snr_weight(logsnr: torch.Tensor, gamma: float, prediction: str) -> torch.Tensor:
    """Min-SNR-gamma weight (Hang et al. 2023, eq. 8-9) for an MSE in the given prediction space.

    The x0-space weight ``min(SNR, gamma)`` rewritten for the space the loss is taken in:
    v: ``min(SNR, gamma) / (SNR + 1)``; eps: ``min(SNR, gamma) / SNR``. ``gamma = 0`` disables it (weight 1).
    """
    if gamma <= 0:
        return torch.ones_like(logsnr)
    snr = torch.exp(logsnr)
    clipped = torch.clamp(snr, max=gamma)
    if prediction == "v":
        return clipped / (snr + 1.0)
    if prediction == "eps":
        return clipped / snr
    raise ValueError(f"diffusion.prediction must be 'v' or 'eps', got {prediction!r}")
