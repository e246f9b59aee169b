"""Samplers over a denoiser callable, with scheduled audio classifier-free guidance.

A *denoiser callable* maps ``(x_t (B, ...), t: float) -> prediction`` in the model's parametrisation,
where ``t`` is the step's time in [0, 1] (1 = noise) as a host float: the samplers' time grid lives on
the host, so no step reads a value back from the device (no host sync inside the sampling loop).
:func:`guided_denoiser` builds one from a :class:`~trainer.diffusion.model.Denoiser` and its conditioning,
applying audio CFG (Ho & Salimans 2022): ``pred = uncond + w (cond - uncond)``, where ``uncond`` is the
same conditioning with the learned null audio (``audio_null``) and ``w = w(tau)`` follows
``inference.audio_guidance_schedule`` over the sampler's normalised time tau = t (:func:`guidance_weight`).
A step with ``w = 1`` is the conditional prediction and skips the unconditional pass.

The conditioning is encoded once per snippet: a model with ``encode_cond`` and ``denoise`` (the
:class:`~trainer.diffusion.model.Denoiser`, or a :class:`SamplingNet` around it, which can compile the
per-step part with CUDA graphs) gets ``encode_cond(cond)`` once and ``denoise(x_t, t, enc)`` at every step;
any other callable is called as ``model(x_t, t, cond)``.

- ``ddim``: deterministic DDIM (Song et al. 2021, eq. 12 with eta = 0) on the time grid t_i = 1 - i/steps.
- ``heun``: Heun's 2nd-order method on the probability-flow ODE (Karras et al. 2022, "EDM", Alg. 1),
  in the variable ``y = x / alpha`` with noise level ``s = sigma / alpha``, where ``dy/ds = eps_hat``
  (Euler in these variables is DDIM, so Heun costs ~2x the network calls of DDIM per step).
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Callable

import torch

from shared.config import GuidanceSchedule, SamplerName
from trainer.conditioning import Cond
from trainer.diffusion import schedule as S
from trainer.runtime import unwrap

Denoise = Callable[[torch.Tensor, float], torch.Tensor]
SAMPLERS = typing.get_args(SamplerName)  # the options inference.sampler validates
GUIDANCE_SCHEDULES = typing.get_args(GuidanceSchedule)


# ------------------------------------------------------------------ guidance


def apply_guidance(cond_pred: torch.Tensor, uncond_pred: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6): ``uncond + scale * (cond - uncond)``."""
    return uncond_pred + scale * (cond_pred - uncond_pred)


def compose_guidance(cond_pred: torch.Tensor, audio_uncond: torch.Tensor | None, style_uncond: torch.Tensor,
                     audio_scale: float, style_scale: float) -> torch.Tensor:
    """Audio and style classifier-free guidance together (Liu et al. 2022, "Compositional Visual Generation with
    Composable Diffusion Models", eq. 10: the conjunction of two conditions, each against its own unconditional):
    ``cond + (w_a - 1)(cond - audio_uncond) + (w_s - 1)(cond - style_uncond)``. With ``w_s = 1`` it is
    :func:`apply_guidance` up to rounding; ``audio_uncond`` may be None where ``w_a = 1``."""
    out = cond_pred + (style_scale - 1.0) * (cond_pred - style_uncond)
    if audio_uncond is not None:
        out = out + (audio_scale - 1.0) * (cond_pred - audio_uncond)
    return out


def guidance_weight(tau: float, scale: float, schedule: str = "constant",
                    interval: tuple[float, float] = (0.0, 1.0)) -> float:
    """The audio-CFG weight at sampler time ``tau`` (1 = pure noise, 0 = clean) with peak ``scale`` = g.

    - ``constant``: g at every step (Ho & Salimans 2022);
    - ``linear``: ``1 + (g - 1)(1 - tau)``: no guidance at pure noise, g at the clean end;
    - ``cosine``: the same ramp with a cosine easing, ``1 + (g - 1)(1 - cos(pi (1 - tau))) / 2``;
    - ``interval``: g for tau in ``[lo, hi]``, 1 outside (guidance in a limited interval, Kynkaenniemi et al.
      2024, "Applying Guidance in a Limited Interval Improves Sample and Distribution Quality").
    """
    if schedule == "constant":
        return float(scale)
    if schedule == "linear":
        return 1.0 + (scale - 1.0) * (1.0 - tau)
    if schedule == "cosine":
        return 1.0 + (scale - 1.0) * 0.5 * (1.0 - math.cos(math.pi * (1.0 - tau)))
    if schedule == "interval":
        lo, hi = interval
        return float(scale) if lo <= tau <= hi else 1.0
    raise ValueError(f"inference.audio_guidance_schedule must be one of {GUIDANCE_SCHEDULES}, got {schedule!r}")


@dataclass(frozen=True)
class Guidance:
    """Audio CFG as the sampler applies it: peak ``scale`` g, a schedule over tau, and its interval."""

    scale: float
    schedule: str = "constant"
    interval: tuple[float, float] = (0.0, 1.0)
    style: float = 1.0  # style CFG scale s (inference.style_guidance_scale), constant; 1 = off

    def __post_init__(self) -> None:
        if self.style < 0:
            raise ValueError(f"inference.style_guidance_scale must be >= 0, got {self.style}")
        if self.schedule not in GUIDANCE_SCHEDULES:
            raise ValueError(f"inference.audio_guidance_schedule must be one of {GUIDANCE_SCHEDULES}, "
                             f"got {self.schedule!r}")
        lo, hi = self.interval
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"inference.audio_guidance_interval must satisfy 0 <= lo < hi <= 1, got {list(self.interval)}")

    def weight(self, tau: float) -> float:
        return guidance_weight(tau, self.scale, self.schedule, self.interval)

    @classmethod
    def from_config(cls, inference, scale: float | None = None) -> "Guidance":
        """From ``cfg.inference`` (an explicit ``scale``, e.g. ``--guidance``, replaces the configured peak)."""
        g = inference.audio_guidance_scale if scale is None else float(scale)
        return cls(g, inference.audio_guidance_schedule, tuple(inference.audio_guidance_interval),
                   float(inference.style_guidance_scale))


def as_guidance(guidance: "float | Guidance") -> Guidance:
    """A plain number means constant guidance at that scale."""
    return guidance if isinstance(guidance, Guidance) else Guidance(float(guidance))


class SamplingNet:
    """A denoiser as the sampler runs it: ``encode_cond`` once per snippet, then ``denoise`` at every step.

    ``compile_mode`` (CUDA; ``inference.compile``): the per-step ``denoise`` goes through ``torch.compile``
    with that mode; ``"reduce-overhead"`` records CUDA graphs, one per sampling shape (B and 2B rows with
    CFG), so a step replays a graph instead of launching every kernel from Python. CUDA-graph outputs live in
    memory the next replay overwrites, hence ``cudagraph_mark_step_begin`` before and a copy after each call.
    A compile that fails at its first call (no C compiler for TorchInductor, pytorch#116696) is reported once
    and the net runs eagerly. A failure of a later call (out of memory, a wrong shape) is not the environment: it
    raises, as the eager net would.
    """

    def __init__(self, net: torch.nn.Module, compile_mode: str | None = None):
        self.net = unwrap(net)
        self.prediction = getattr(self.net, "prediction", "v")
        self.compile_mode = compile_mode
        self._compiled = torch.compile(self.net.denoise, mode=compile_mode, dynamic=False) if compile_mode else None
        self._compiled_ran = False  # a compiled call has succeeded: later failures are errors, not the environment

    def make_cond(self, *args, **kwargs) -> Cond:
        return self.net.make_cond(*args, **kwargs)

    def encode_cond(self, cond: Cond) -> dict[str, torch.Tensor]:
        return self.net.encode_cond(cond)

    def _call_compiled(self, x_t: torch.Tensor, t: torch.Tensor, enc: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        return self._compiled(x_t, t, enc).clone()

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, enc: dict[str, torch.Tensor]) -> torch.Tensor:
        if self._compiled is None:
            return self.net.denoise(x_t, t, enc)
        if self._compiled_ran:
            return self._call_compiled(x_t, t, enc)
        try:
            out = self._call_compiled(x_t, t, enc)
        except Exception as e:  # noqa: BLE001 - the first call: an environment without a working compiler
            print(f"warning: inference.compile: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                  "sampling eagerly")
            self._compiled = None
            return self.net.denoise(x_t, t, enc)
        self._compiled_ran = True
        return out

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        return self.denoise(x_t, t, self.encode_cond(cond))


def _split_model(model: Callable):
    """``(encode_cond, denoise, check)`` of a model that has the first two (maybe under DDP / torch.compile
    wrappers), else None; ``check(x_t, t, cond)`` is the Denoiser's input check (or None)."""
    for m in (model, unwrap(model)):
        if hasattr(m, "encode_cond") and hasattr(m, "denoise"):
            net = getattr(m, "net", m)  # a SamplingNet's Denoiser
            return m.encode_cond, m.denoise, getattr(net, "_check", None)
    return None


def guided_denoiser(model: Callable, cond: Cond, guidance: "float | Guidance") -> Denoise:
    """A denoiser callable with scheduled audio CFG; steps where the weight is 1 skip the unconditional pass.

    The conditioning (and the doubled [cond; uncond] one, on the first guided step) is built and, for a
    model with ``encode_cond``, encoded once, then reused by every later step of the snippet.
    """
    g = as_guidance(guidance)
    split = _split_model(model)
    cache: dict[str, dict] = {}
    # (rows that already have the null style get cond - style_uncond = 0: a wasted pass, not a wrong one; checking
    # would read a device value, a host sync per snippet)
    style_on = g.style != 1.0 and "style_null" in cond
    null = {"a": {"audio_null": torch.ones_like(cond["audio_null"], dtype=torch.bool)}}
    if style_on:
        null["s"] = {"style_null": torch.ones_like(cond["style_null"], dtype=torch.bool)}

    def conditioning(which: str) -> dict:
        """``cond`` (which = "cond") or the rows [cond; cond with each null named in ``which``]: "a" = audio,
        "s" = style, "as" = audio then style."""
        if which not in cache:
            c = cond
            if which != "cond":
                parts = [cond] + [{**cond, **null[n]} for n in which]
                c = {k: torch.cat([p[k] for p in parts]) if isinstance(v, torch.Tensor) else v for k, v in cond.items()}
            cache[which] = c if split is None else split[0](c)
        return cache[which]

    def run(x: torch.Tensor, t: torch.Tensor, which: str) -> torch.Tensor:
        return model(x, t, conditioning(which)) if split is None else split[1](x, t, conditioning(which))

    def denoise(x_t: torch.Tensor, t: float) -> torch.Tensor:
        b = x_t.shape[0]
        tt = torch.full((b,), float(t), device=x_t.device)
        if split is not None and split[2] is not None and not cache:  # checked once per snippet, as forward does
            split[2](x_t, tt, cond)
        w = g.weight(float(t))
        if style_on:
            which = "as" if w != 1.0 else "s"
            n = len(which) + 1
            out = run(torch.cat([x_t] * n), torch.cat([tt] * n), which).float()
            return compose_guidance(out[:b], out[b:2 * b] if which == "as" else None, out[-b:], w, g.style)
        if w == 1.0:
            return run(x_t, tt, "cond")
        out = run(torch.cat([x_t, x_t]), torch.cat([tt, tt]), "a").float()
        return apply_guidance(out[:b], out[b:], w)

    return denoise


# ------------------------------------------------------------------ samplers


def time_grid(steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``steps + 1`` times from 1 (noise) to 0 (data), uniform in t (the cosine schedule spaces the SNRs)."""
    if steps < 1:
        raise ValueError(f"sampling needs at least 1 step, got {steps}")
    return torch.linspace(1.0, 0.0, steps + 1, device=device)


def _grid(steps: int) -> tuple[list[float], list[float], list[float]]:
    """Host-side (t_i, alpha_i, sigma_i) lists: every per-step coefficient known before the loop starts."""
    ts = time_grid(steps)
    alpha, sigma = S.alpha_sigma(S.logsnr_cosine(ts))
    return ts.tolist(), alpha.tolist(), sigma.tolist()


def _x0_eps(denoise: Denoise, x: torch.Tensor, t: float, prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
    pred = denoise(x, t).float()
    logsnr = S.logsnr_cosine(torch.full((x.shape[0],), float(t), device=x.device))
    return S.pred_to_x0_eps(pred, x, logsnr, prediction)


@torch.no_grad()
def ddim(denoise: Denoise, noise: torch.Tensor, steps: int, prediction: str = "v") -> torch.Tensor:
    """Deterministic DDIM: ``x_{s} = alpha_s x0_hat + sigma_s eps_hat`` from t = 1 to t = 0; returns x0."""
    ts, alpha, sigma = _grid(steps)
    x = noise
    for i in range(steps):
        x0_hat, eps_hat = _x0_eps(denoise, x, ts[i], prediction)
        if i < steps - 1:
            x = alpha[i + 1] * x0_hat + sigma[i + 1] * eps_hat
    return x0_hat  # the last step's data prediction (x itself is within sigma(0) ~ 5e-4 of it)


@torch.no_grad()
def heun(denoise: Denoise, noise: torch.Tensor, steps: int, prediction: str = "v") -> torch.Tensor:
    """Heun (EDM Alg. 1, no churn) in ``y = x / alpha``, ``s = sigma / alpha``: ``dy/ds = eps_hat``; returns x0."""
    ts, alpha, sigma = _grid(steps)
    y = noise / alpha[0]
    for i in range(steps):
        s_i, s_n = sigma[i] / alpha[i], sigma[i + 1] / alpha[i + 1]
        _, eps1 = _x0_eps(denoise, y * alpha[i], ts[i], prediction)
        y_euler = y + (s_n - s_i) * eps1
        # The 2nd-order correction, except on the last step (to s ~ 0, as in EDM Alg. 1) and on the first: it
        # jumps from s ~ 1800 (logsnr -15) where y ~ s, and the trapezoid rule's error on that huge step is
        # far larger than Euler's (EDM avoids it with sigma_max = 80). Euler in (y, s) is exactly DDIM.
        if 0 < i < steps - 1:
            _, eps2 = _x0_eps(denoise, y_euler * alpha[i + 1], ts[i + 1], prediction)
            y = y + (s_n - s_i) * 0.5 * (eps1 + eps2)
        else:
            y = y_euler
    return y  # at t = 0, s ~ 5e-4: y is the data estimate up to that residual noise


def sample_snippet(model: Callable, cond: Cond, shape: tuple[int, ...], steps: int,
                   guidance: "float | Guidance", generator: torch.Generator | None, sampler: str = "ddim",
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Sample one batch of snippets: noise (shape) from ``generator``, audio CFG per ``guidance``; returns x0.

    ``model`` is a :class:`Denoiser` (EMA weights for sampling) and ``cond`` its :meth:`make_cond` dict;
    ``guidance`` a :class:`Guidance` (``Guidance.from_config(cfg.inference)``) or a number (constant scale).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"inference.sampler must be one of {SAMPLERS}, got {sampler!r}")
    dev = torch.device(device) if device is not None else cond["audio"].device
    gdev = generator.device if generator is not None else "cpu"
    noise = torch.randn(shape, generator=generator, device=gdev).to(dev)  # a generator on dev: no copy
    net = unwrap(model)
    prediction = getattr(net, "prediction", "v")
    denoise = guided_denoiser(model, cond, guidance)
    return (ddim if sampler == "ddim" else heun)(denoise, noise, steps, prediction)
