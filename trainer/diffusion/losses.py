"""The full training loss: denoising + style KL + shuffle pressure (+ frame proxy, + silence motion).

``diffusion_loss(model, batch, cfg, generator, decoder=None) -> (loss, metrics)``. Every random draw
comes from ``generator`` in a fixed order, so a fixed batch and seed give a fixed loss, and changing one
knob changes only what that knob controls.

Per sample i (t_i ~ U[0, 1], eps_i ~ N(0, I), x_t = alpha x0 + sigma eps, schedule.py):

- ``L_good_i``: the loss with the true audio; ``L_bad_ik``: the same x_t, t, eps, style and previous
  frames, but the k-th wrong audio (shuffle.py: K = ``audio_contrastive_negatives`` for InfoNCE, 1 for
  the hinge; each checked to be different audio). In ``pred`` space both are the min-SNR-weighted MSE of
  the network output against its target (the training loss itself); in ``x0`` space both are the plain
  MSE of the x0 prediction, which weighs high-noise steps most: the steps where the audio must decide
  what the frame becomes. One forward over the (K+1)·B rows [true audio; negative 1; ...; negative K].
- total = mean_i L_diff_i + style_kl_weight * KL_fb + [applied] pressure
  + [applied] proxy_weight * mean_use relu(m + Lf_good - Lf_bad) + silence_motion_loss_weight * M, with
  pressure = weight * mean_use relu(m + L_good - L_bad_1) (``hinge``) or
  weight * mean_use InfoNCE(-L_good / T, -L_bad_1 / T, ..., -L_bad_K / T) (``infonce``).
  The pressure is applied on a step with probability ``audio_shuffle_loss_prob``; ``use`` leaves out
  samples whose audio was dropped for CFG and those without a valid negative. The negatives are still
  computed (without gradient) on other steps so that L_good, L_bad and the gap are logged every step.
  KL_fb is the style KL with ``style_kl_free_bits`` nats free per dimension (model.style_kl_free_bits; the plain
  batch-mean KL at 0); the metric ``style_kl`` stays the true KL and ``style_kl_term`` is KL_fb.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import torch

from shared.config import Config
from shared.errors import ConfigError
from shared.seeding import derive_seed
from trainer.diffusion import schedule as S
from trainer.diffusion import shuffle as Sh
from trainer.diffusion.model import style_kl, style_kl_free_bits
from trainer.conditioning import ChannelLayout, Cond, ConditioningSpec, SnippetBatch, cond_rows
from trainer.runtime import unwrap

_APPLY = 41  # derive_seed path id of the per-step shuffle-pressure coin


def per_sample_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all but the batch axis: (B, ...) -> (B,)."""
    return (a.float() - b.float()).pow(2).flatten(1).mean(dim=1)


def denoising_loss(pred: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, logsnr: torch.Tensor,
                   prediction: str, gamma: float) -> torch.Tensor:
    """Per-sample min-SNR-weighted MSE in the prediction space (B,) (Salimans & Ho 2022; Hang et al. 2023)."""
    target = S.target_for(x0, eps, logsnr, prediction)
    return S.min_snr_weight(logsnr, gamma, prediction) * per_sample_mse(pred, target)


def comparison_loss(pred: torch.Tensor, x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, logsnr: torch.Tensor,
                    prediction: str, gamma: float, space: str) -> torch.Tensor:
    """Per-sample loss used for L_good / L_bad: the training loss ("pred") or the plain x0-space MSE ("x0")."""
    if space == "pred":
        return denoising_loss(pred, x0, eps, logsnr, prediction, gamma)
    if space == "x0":
        x0_hat, _ = S.pred_to_x0_eps(pred, x_t, logsnr, prediction)
        return per_sample_mse(x0_hat, x0)
    raise ValueError(f"diffusion.audio_shuffle_loss_space must be 'pred' or 'x0', got {space!r}")


def _uniform(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Drawn on the generator's device (the training device in the loop: no copy), then moved if it differs."""
    return torch.rand(n, generator=generator, device=generator.device).to(device)


def _normal(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def shuffle_applied(generator: torch.Generator, prob: float) -> bool:
    """Whether this step applies the shuffle pressure: a host-side coin with probability ``prob``.

    Decided on the host without reading the (device) generator's numbers, which would be a device sync: the
    coin is seeded by the generator's seed, itself a pure function of (run seed, rank, step) in the loop.
    """
    return random.Random(derive_seed(generator.initial_seed(), _APPLY)).random() < prob


@dataclass(frozen=True)
class Draw:
    """One step's random draws and what follows from them (:func:`_core`), shared by the training and val losses."""

    x0: torch.Tensor          # (B, F, C, h, w) the clean latents, float32
    t: torch.Tensor           # (B,) the timesteps
    eps: torch.Tensor         # (B, F, C, h, w) the noise
    logsnr: torch.Tensor      # (B,)
    x_t: torch.Tensor         # (B, F, C, h, w) the noisy latents
    cond: Cond                # the true-audio conditioning
    mu: torch.Tensor          # (B, D) the style posterior mean (style_source=plan: the plan features)
    logvar: torch.Tensor      # (B, D) (plan: zeros, unused)
    audio_null: torch.Tensor  # (B,) bool: the snippets whose audio was dropped for CFG


def style_posterior(net, batch: SnippetBatch, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's style input as ``(mu, logvar)``, each (B, D): the style encoder's posterior over the clip's style
    frames, or for ``diffusion.style_source=plan`` the clip's plan features, known exactly (logvar 0, no KL)."""
    if cfg.diffusion.style_source == "plan":  # the teacher's plan features (trainer/style.py)
        mu = batch["style_plan"].float()
        return mu, torch.zeros_like(mu)
    return net.encode_style(batch["style"].float())


def _core(model: Callable, batch: SnippetBatch, cfg: Config, generator: torch.Generator, *, train: bool) -> Draw:
    """Draw noise/timesteps/dropouts and build the true-audio conditioning (shared by train and val)."""
    d = cfg.diffusion
    net = unwrap(model)  # under DDP and/or torch.compile
    x0 = batch["x"].float()  # (B, F, C, h, w)
    b, dev = x0.shape[0], x0.device

    t = _uniform(b, generator, dev)  # (B,)
    eps = _normal(tuple(x0.shape), generator, dev)
    u_audio, u_style, u_prev = (_uniform(b, generator, dev) for _ in range(3))
    prev_noise = _normal(tuple(batch["prev"].shape), generator, dev)
    style_noise = _normal((b, d.style_dim), generator, dev)

    logsnr = S.logsnr_cosine(t)
    x_t = S.q_sample(x0, eps, logsnr)

    p_audio, p_style, p_prev, aug = (d.p_audio_drop, d.p_style_drop, d.p_prev_drop, d.prev_noise_aug) if train \
        else (0.0, 0.0, 0.0, 0.0)
    audio_null = u_audio < p_audio
    style_null = u_style < p_style
    prev_valid = batch["prev_valid"].bool() & ~(u_prev < p_prev)[:, None]
    prev = batch["prev"].float() + aug * prev_noise

    mu, logvar = style_posterior(net, batch, cfg)
    style_z = mu + (0.5 * logvar).exp() * style_noise if train and d.style_source == "posterior" else mu
    cond = net.make_cond(batch["audio"].float(), batch["is_silent"], batch["frame_index"], prev=prev,
                         prev_valid=prev_valid, style_z=style_z, style_null=style_null, audio_null=audio_null)
    return Draw(x0=x0, t=t, eps=eps, logsnr=logsnr, x_t=x_t, cond=cond, mu=mu, logvar=logvar, audio_null=audio_null)


def shuffle_layout(cfg: Config) -> ChannelLayout:
    """The negatives' channel layout in the model's audio windows (:meth:`ConditioningSpec.layout`). A negative
    kind whose channel the selection lacks is a ConfigError."""
    d = cfg.diffusion
    layout = ConditioningSpec.from_config(cfg).layout()
    kind = d.audio_shuffle_negatives
    needs = {"loudness_matched": ("log_rms", layout.log_rms >= 0), "timeshift": ("is_silent", layout.is_silent >= 0),
             "band_permuted": ("two band_ channels", len(layout.bands) >= 2)}
    if d.audio_shuffle_loss_weight > 0 and kind in needs and not needs[kind][1]:
        raise ConfigError(f"diffusion.audio_shuffle_negatives={kind} needs {needs[kind][0]} among "
                          f"diffusion.audio_channels {d.audio_channels}")
    return layout


def negatives_for(batch: SnippetBatch, cfg: Config, generator: torch.Generator, k: int) -> Sh.Negatives:
    """K negatives per snippet of the configured kind (shuffle.py), in the model's channel layout."""
    return Sh.draw_negatives(batch, cfg.diffusion.audio_shuffle_negatives, k, generator, shuffle_layout(cfg))


def candidates_cond(cond: Cond, neg: Sh.Negatives) -> Cond:
    """The (K+1)·B-row conditioning [true audio; negative 1; ...; negative K]: only audio and is_silent change."""
    k = neg.audio.shape[1]
    wrong = {"audio": torch.cat([cond["audio"], neg.audio.transpose(0, 1).flatten(0, 1).to(cond["audio"].dtype)], 0),
             "is_silent": torch.cat([cond["is_silent"], neg.is_silent.transpose(0, 1).flatten(0, 1).float()], 0)}
    # the other entries repeated K+1 times (audio and is_silent are not: they were concatenated then replaced)
    return {key: wrong[key] if key in wrong else torch.cat([v] * (k + 1), dim=0) for key, v in cond.items()}


def n_negatives(cfg: Config) -> int:
    """Negatives per snippet: K for InfoNCE, one for the hinge."""
    d = cfg.diffusion
    return d.audio_contrastive_negatives if d.audio_shuffle_loss_type == "infonce" else 1


def diffusion_loss(model: Callable, batch: SnippetBatch, cfg: Config, generator: torch.Generator,
                   decoder: Callable[[torch.Tensor], torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One training loss on a snippet batch (docs/INTERFACES.md) -> (scalar loss, metrics of detached scalars)."""
    d = cfg.diffusion
    if d.audio_shuffle_frame_proxy_weight > 0 and decoder is None:
        raise ValueError("diffusion.audio_shuffle_frame_proxy_weight > 0 needs a VAE decoder callable")
    core = _core(model, batch, cfg, generator, train=True)
    x0, eps, logsnr, x_t, t = core.x0, core.eps, core.logsnr, core.x_t, core.t
    b = x0.shape[0]

    apply = d.audio_shuffle_loss_weight > 0 and shuffle_applied(generator, d.audio_shuffle_loss_prob)
    k = n_negatives(cfg)
    neg = negatives_for(batch, cfg, generator, k)
    # samples whose audio was dropped carry no audio to shuffle; those without a valid negative sit out
    use = ~core.audio_null & neg.valid.any(dim=1)  # (B,)

    rep = k + 1
    big_x, big_t, big_cond = torch.cat([x_t] * rep), torch.cat([t] * rep), candidates_cond(core.cond, neg)
    if apply:  # one forward over [true audio; K wrong audios] (one DDP forward per backward)
        preds = model(big_x, big_t, big_cond)
        pred, pred_bad = preds[:b], preds[b:]
    else:
        pred = model(x_t, t, core.cond)
        with torch.no_grad():
            pred_bad = model(big_x[b:], big_t[b:], cond_rows(big_cond, slice(b, None)))

    args = (x0, eps, logsnr, d.prediction, d.min_snr_gamma)
    l_diff = denoising_loss(pred, *args)  # (B,)
    space = d.audio_shuffle_loss_space
    l_good = comparison_loss(pred, x_t, x0, eps, logsnr, d.prediction, d.min_snr_gamma, space)  # (B,)
    l_bad_all = comparison_loss(pred_bad, big_x[b:], *(torch.cat([v] * k) for v in (x0, eps, logsnr)),
                                d.prediction, d.min_snr_gamma, space).reshape(k, b).T  # (B, K)
    l_bad = l_bad_all[:, 0]
    hinge_pen, active = Sh.shuffle_penalty(l_good, l_bad, use & neg.valid[:, 0], d.audio_shuffle_loss_weight,
                                           d.audio_shuffle_loss_margin)
    nce_pen, nce, nce_acc = Sh.contrastive_penalty(l_good, l_bad_all, neg.valid, ~core.audio_null,
                                                   d.audio_shuffle_loss_weight, d.audio_contrastive_temperature)
    penalty = nce_pen if d.audio_shuffle_loss_type == "infonce" else hinge_pen
    if d.style_source == "plan":  # no posterior, no KL
        kl = kl_term = torch.zeros((), device=x0.device)
    else:
        kl = style_kl(core.mu, core.logvar).mean()  # the true KL (logged)
        kl_term = style_kl_free_bits(core.mu, core.logvar, d.style_kl_free_bits)  # what is optimised (= kl at 0)

    loss = l_diff.mean() + d.style_kl_weight * kl_term
    if apply:
        loss = loss + penalty

    x0_hat = None
    proxy = torch.zeros((), device=x0.device)
    if apply and d.audio_shuffle_frame_proxy_weight > 0:
        x0_hat, _ = S.pred_to_x0_eps(pred, x_t, logsnr, d.prediction)
        x0_bad, _ = S.pred_to_x0_eps(pred_bad[:b], x_t, logsnr, d.prediction)  # the first negative
        lf_good, lf_bad = Sh.frame_proxy_losses(decoder, x0, x0_hat, x0_bad)
        proxy, _ = Sh.shuffle_penalty(lf_good, lf_bad, use & neg.valid[:, 0], d.audio_shuffle_frame_proxy_weight,
                                      d.audio_shuffle_loss_margin)
        loss = loss + proxy

    silence = torch.zeros((), device=x0.device)
    if d.silence_motion_loss_weight > 0:
        if x0_hat is None:
            x0_hat, _ = S.pred_to_x0_eps(pred, x_t, logsnr, d.prediction)
        silence = Sh.silence_motion_loss(x0_hat, batch["is_silent"].float(), ~core.audio_null)
        loss = loss + d.silence_motion_loss_weight * silence

    pairs = (neg.valid & use[:, None]).float()  # (B, K) the (sample, negative) pairs that count
    g = (l_good.detach() * use).sum() / use.float().sum().clamp(min=1.0)
    bd = (l_bad_all.detach() * pairs).sum() / pairs.sum().clamp(min=1.0)
    kept = ~core.audio_null
    metrics = {
        "loss": loss.detach(), "L_diff": l_diff.detach().mean(), "L_good": g, "L_bad": bd, "gap": bd - g,
        "hinge": hinge_pen.detach(), "hinge_active_frac": active.detach(), "infonce": nce.detach(),
        "infonce_acc": nce_acc.detach(), "pressure": penalty.detach(), "shuffle_applied": torch.full((), float(apply), device=x0.device),
        "neg_valid_frac": (neg.valid & kept[:, None]).float().sum() / (kept.float().sum() * k).clamp(min=1.0),
        "style_kl": kl.detach(), "style_kl_term": kl_term.detach(), "frame_proxy": proxy.detach(), "silence_motion": silence.detach(),
        "audio_drop_frac": core.audio_null.float().mean(),
    }
    return loss, metrics


@torch.no_grad()
def val_losses(model: Callable, batch: SnippetBatch, cfg: Config, generator: torch.Generator) -> dict[str, float]:
    """Val loss with the true vs the wrong audio: no dropouts, style = posterior mean, same noise for both.

    Returns the means of the denoising loss with true audio (``val_L_good``) and with one negative of the
    configured kind (``val_L_bad``) over the snippets that have a valid negative, and
    ``val_gap = val_L_bad - val_L_good`` (all 0 when no snippet has one).
    """
    d = cfg.diffusion
    core = _core(model, batch, cfg, generator, train=False)
    neg = negatives_for(batch, cfg, generator, 1)
    b = core.x0.shape[0]
    pred2 = model(torch.cat([core.x_t] * 2), torch.cat([core.t] * 2), candidates_cond(core.cond, neg))
    args = (core.x0, core.eps, core.logsnr, d.prediction, d.min_snr_gamma)
    use = neg.valid[:, 0].float()
    n = use.sum().clamp(min=1.0)
    good = ((denoising_loss(pred2[:b], *args) * use).sum() / n).item()
    bad = ((denoising_loss(pred2[b:], *args) * use).sum() / n).item()
    return {"val_L_good": good, "val_L_bad": bad, "val_gap": bad - good}
