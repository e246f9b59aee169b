"""Shuffle pressure (postmortem §2, Principle A and "next steps" 1, 2, 5): wrong-audio negatives and the penalties.

If the model ignores audio, its loss with another clip's audio (``L_bad``) equals the loss with the true
audio (``L_good``). The hinge ``weight * relu(margin + L_good - L_bad)`` makes that solution expensive;
InfoNCE (van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding", eq. 4)
over [true audio, K negatives] with logits ``-error / temperature`` asks that the true audio explain the
frames best among K + 1 candidates.

Negatives (``diffusion.audio_shuffle_negatives``), K per snippet (:func:`draw_negatives`):

- ``derange``: K distinct other clips of the batch, uniformly at random (no clip keeps its own audio);
- ``hard``: the K other clips whose audio features are the most dissimilar;
- ``loudness_matched``: the K other clips whose log-RMS curves are the most similar (right dynamics, wrong
  music: the model must read more than loudness);
- ``timeshift``: the same clip's audio shifted by an offset that is not a whole number of bars
  (``batch["audio_timeshift"]``, cut by the loader; K = 1), so rhythm-aligned features really differ;
- ``band_permuted``: the same clip's audio with its band channels permuted by a random n-cycle (every band
  moves): the right loudness, the wrong spectrum, so the bands must be used.

**Every negative is different audio.** A candidate pair (snippet i, audio a) is valid only when

1. a comes from other audio than i: for batch kinds, ``audio_id`` differs (:func:`batch_audio_ids`; the
   loader's content hash, :func:`trainer.conditioning.audio_content_id` of the clip's timeline, so neither another snippet of the same clip nor a copy
   of the same debug clip counts as different);
2. the two snippets' audio tensors are not identical (a transform of the own clip can be a no-op: bands
   of silence permute to themselves);
3. they are not both entirely silent (silence is silence, whatever the beat estimate says).

A snippet left with no valid negative (e.g. a batch of copies of one debug clip, or of silent clips only)
sits the pressure out: its hinge / InfoNCE term is dropped from the mean, exactly like a snippet whose
audio was dropped for CFG, and ``neg_valid_frac`` in the metrics says how often that happened. With no
valid pair in the whole batch, the pressure term of that step is 0 and the step trains the denoising
loss only. A wrong negative would be worse than none: it asks the model to tell apart identical audio.

Everything here is a pure function of tensors (and a ``torch.Generator`` where random), with no host
sync: masks instead of data-dependent branches.
"""

from __future__ import annotations

import typing
import zlib
from dataclasses import dataclass
from typing import Callable

import torch

from shared.config import NegativeKind
from trainer.conditioning import ChannelLayout, SnippetBatch

NEGATIVE_KINDS = typing.get_args(NegativeKind)  # the options diffusion.audio_shuffle_negatives validates
BATCH_KINDS = ("derange", "hard", "loudness_matched")  # negatives borrowed from other clips of the batch
OWN_CLIP_KINDS = tuple(k for k in NEGATIVE_KINDS if k not in BATCH_KINDS)  # made from the snippet's own clip


# ------------------------------------------------------------------ audio identity


def batch_audio_ids(batch: SnippetBatch) -> torch.Tensor:
    """(B,) int64 audio ids: ``batch["audio_id"]`` (the loader's content hash), else derived from ``batch["key"]``.

    The key fallback tells snippets of one clip apart from other clips, but not copies of the same debug
    clip (those have different keys): the guarantee needs the loader's ``audio_id``.
    """
    device = batch["audio"].device
    if "audio_id" in batch:
        return torch.as_tensor(batch["audio_id"], dtype=torch.int64).to(device)
    if "key" not in batch:
        raise KeyError("shuffle negatives need batch['audio_id'] (or at least batch['key']) to know which snippets "
                       "share audio")
    keys = batch["key"]
    return torch.tensor([zlib.crc32(str(k).encode()) for k in keys], dtype=torch.int64).to(device)


# ------------------------------------------------------------------ which pairs are valid


def all_silent(is_silent: torch.Tensor) -> torch.Tensor:
    """(..., F) per-frame silence flags -> (...) bool: every frame of the snippet is silent."""
    return (is_silent > 0.5).all(dim=-1)


def same_audio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise-identical snippet audio: a, b (..., F, 2k+1, Ch) -> (...) bool."""
    return (a != b).flatten(-3).any(dim=-1).logical_not()


def candidate_mask(audio: torch.Tensor, is_silent: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: may snippet j's audio serve as a negative for snippet i (the module docstring's three rules)?"""
    flat = audio.float().flatten(1)
    identical = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist") == 0  # exact for copies
    silent = all_silent(is_silent)
    return (ids[:, None] != ids[None, :]) & ~identical & ~(silent[:, None] & silent[None, :])


def pick_best(scores: torch.Tensor, valid: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The K highest-scoring valid columns per row: scores, valid (B, B) -> (idx (B, K), ok (B, K) bool).

    Rows with fewer than K valid columns get their remaining slots marked not ok (index 0 as a placeholder).
    """
    b = scores.shape[0]
    kk = min(k, b)
    top = scores.float().masked_fill(~valid, float("-inf")).topk(kk, dim=1)
    idx, ok = top.indices, valid.gather(1, top.indices)
    if kk < k:
        pad = k - kk
        idx = torch.cat([idx, idx.new_zeros(b, pad)], 1)
        ok = torch.cat([ok, ok.new_zeros(b, pad)], 1)
    return idx, ok


def clip_audio_summary(audio: torch.Tensor, row: int) -> torch.Tensor:
    """(B, F, W, Ch) windows -> (B, F*Ch) each frame's own features (window row ``row``, :meth:`trainer.conditioning.ChannelLayout.row`),
    standardised per column over the batch.

    Standardising makes channels with large raw ranges (log RMS in dB) not dominate the distance.
    """
    centre = torch.asinh(audio[:, :, row, :].float()).flatten(1)  # (B, F*Ch)
    return (centre - centre.mean(0)) / (centre.std(0, unbiased=False) + 1e-6)


def loudness_distance(audio: torch.Tensor, log_rms: int, row: int) -> torch.Tensor:
    """(B, B) Euclidean distance between the snippets' log-RMS curves (dB, each frame's own window row ``row``)."""
    curve = audio[:, :, row, log_rms].float()  # (B, F)
    return torch.cdist(curve, curve, compute_mode="donot_use_mm_for_euclid_dist")


def random_cycles(n_rows: int, n: int, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """(n_rows, n) uniformly random n-cycles: permutations where every element moves (n >= 2).

    Conjugating the cycle 0 -> 1 -> ... -> n-1 -> 0 by a uniform permutation pi gives a uniform n-cycle:
    sigma[pi[j]] = pi[(j + 1) % n]. No rejection loop, so no data-dependent host sync.
    """
    if n < 2:
        raise ValueError(f"a permutation that moves every band needs at least 2 bands, got {n}")
    gdev = generator.device if generator is not None else "cpu"
    pi = torch.rand(n_rows, n, generator=generator, device=gdev).argsort(dim=1).to(device)  # (R, n)
    sigma = torch.empty_like(pi)
    sigma.scatter_(1, pi, pi.roll(-1, dims=1))
    return sigma


def band_permuted(audio: torch.Tensor, bands: tuple[int, ...], k: int, generator: torch.Generator | None
                  ) -> torch.Tensor:
    """K band-permuted copies of each snippet: (B, F, W, Ch) -> (B, K, F, W, Ch); other channels untouched.

    One permutation per (snippet, negative), the same for every frame and window position: a consistent
    wrong spectrum with the true loudness, onsets, silence and beats.
    """
    b, ch = audio.shape[0], audio.shape[-1]
    band_idx = torch.as_tensor(bands, device=audio.device)
    sigma = random_cycles(b * k, len(bands), generator, audio.device)  # (B*K, n_bands)
    chan = torch.arange(ch, device=audio.device).repeat(b * k, 1)  # (B*K, Ch) source channel per output channel
    chan[:, band_idx] = band_idx[sigma]
    src = audio.repeat_interleave(k, dim=0)  # (B*K, F, W, Ch)
    out = src.gather(-1, chan[:, None, None, :].expand_as(src))
    return out.reshape(b, k, *audio.shape[1:])


@dataclass
class Negatives:
    """K wrong-audio candidates per snippet, with the is_silent that travels with each, and which are valid."""

    audio: torch.Tensor      # (B, K, F, 2k+1, Ch)
    is_silent: torch.Tensor  # (B, K, F)
    valid: torch.Tensor      # (B, K) bool


def draw_negatives(batch: SnippetBatch, kind: str, k: int, generator: torch.Generator | None, layout: ChannelLayout
                   ) -> Negatives:
    """K negatives per snippet of the configured kind (module docstring), each checked to be different audio.

    ``batch`` needs ``audio`` (B, F, 2k+1, Ch), ``is_silent`` (B, F), ``audio_id`` (or ``key``) for the batch
    kinds and ``audio_timeshift`` for timeshift. Random kinds draw from ``generator`` only.
    """
    audio, silent = batch["audio"], batch["is_silent"].float()
    if k < 1:
        raise ValueError(f"diffusion.audio_contrastive_negatives must be >= 1, got {k}")
    if kind in BATCH_KINDS:
        valid = candidate_mask(audio, silent, batch_audio_ids(batch))  # (B, B)
        if kind == "derange":  # the top-K of iid uniforms: a uniform K-subset of the valid clips
            gdev = generator.device if generator is not None else "cpu"
            scores = torch.rand(valid.shape, generator=generator, device=gdev).to(audio.device)
        elif kind == "hard":
            z = clip_audio_summary(audio, layout.row(audio))
            scores = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")
        else:  # loudness_matched: the most similar curves score highest
            scores = -loudness_distance(audio, layout.log_rms, layout.row(audio))
        idx, ok = pick_best(scores, valid, k)
        return Negatives(audio[idx], silent[idx], ok)
    if kind == "timeshift":
        if "audio_timeshift" not in batch:
            raise KeyError("audio_shuffle_negatives=timeshift needs batch['audio_timeshift'] from the loader")
        if k != 1:
            raise ValueError(f"timeshift negatives come one per snippet, asked for {k}")
        shifted = batch["audio_timeshift"]
        c = layout.row(shifted)
        neg_audio = shifted[:, None]
        neg_silent = shifted[:, None, :, c, layout.is_silent].float()
    elif kind == "band_permuted":
        neg_audio = band_permuted(audio, layout.bands, k, generator)
        neg_silent = silent[:, None].expand(-1, k, -1)
    else:
        raise ValueError(f"diffusion.audio_shuffle_negatives must be one of {NEGATIVE_KINDS}, got {kind!r}")
    ok = ~same_audio(neg_audio, audio[:, None]) & ~(all_silent(neg_silent) & all_silent(silent)[:, None])
    return Negatives(neg_audio, neg_silent, ok)


# ------------------------------------------------------------------ the penalties


def hinge(l_good: torch.Tensor, l_bad: torch.Tensor, margin: float) -> torch.Tensor:
    """Per-sample shuffle hinge ``relu(margin + L_good - L_bad)``: zero once L_bad >= L_good + margin."""
    return torch.relu(margin + l_good - l_bad)


def shuffle_penalty(l_good: torch.Tensor, l_bad: torch.Tensor, keep: torch.Tensor, weight: float, margin: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight * mean_keep relu(margin + L_good - L_bad)`` over the kept samples, and the active fraction.

    ``keep`` (B,) bool leaves out samples whose audio was dropped for CFG (their L_bad equals L_good by
    construction) and samples without a valid negative. With nothing kept the penalty is 0.
    """
    h = hinge(l_good, l_bad, margin)
    k = keep.float()
    n = k.sum().clamp(min=1.0)
    penalty = weight * (h * k).sum() / n
    active = ((h > 0).float() * k).sum() / n
    return penalty, active


def infonce(err_pos: torch.Tensor, err_neg: torch.Tensor, valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample InfoNCE (van den Oord et al. 2018, eq. 4) with the true audio as the positive at index 0.

    ``err_pos`` (B,) the error with the true audio, ``err_neg`` (B, K) with each negative, ``valid`` (B, K)
    which negatives take part. Logits ``-error / temperature``: lower error, higher score, so the
    cross-entropy ``-log softmax(logits)[0]`` is small only when the true audio explains the frames best.
    A sample with no valid negative gets 0 (a softmax over the positive alone).
    """
    if temperature <= 0:
        raise ValueError(f"diffusion.audio_contrastive_temperature must be > 0, got {temperature}")
    logits = torch.cat([-err_pos[:, None], -err_neg], dim=1).float() / temperature  # (B, K+1)
    mask = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)
    logits = logits.masked_fill(~mask, float("-inf"))
    return -torch.log_softmax(logits, dim=1)[:, 0]


def contrastive_penalty(err_pos: torch.Tensor, err_neg: torch.Tensor, valid: torch.Tensor, keep: torch.Tensor,
                        weight: float, temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``weight * mean_used infonce``, the mean InfoNCE itself and the top-1 accuracy of the true audio.

    Used samples: ``keep`` (audio not dropped for CFG) and at least one valid negative. Accuracy: the true
    audio's error is lower than every valid negative's (retrieval top-1 among the K + 1 candidates).
    """
    use = (keep & valid.any(dim=1)).float()
    n = use.sum().clamp(min=1.0)
    ce = infonce(err_pos, err_neg, valid, temperature)
    mean = (ce * use).sum() / n
    beaten = ((err_neg <= err_pos[:, None]) & valid).any(dim=1)
    acc = ((~beaten).float() * use).sum() / n
    return weight * mean, mean, acc


# ------------------------------------------------------------------ decoded-frame proxy (next step 2)


def frame_statistics(frames: torch.Tensor) -> torch.Tensor:
    """Cheap per-frame statistics of decoded frames (B, F, 3, H, W) in [-1, 1] -> (B, F, 5).

    [brightness (mean Rec.601 luma), R mean, G mean, B mean, motion energy (mean |frame - previous
    frame|, 0 for the first)]: what a viewer notices first when audio drives a visual.
    """
    rgb = frames.float()
    means = rgb.mean(dim=(3, 4))  # (B, F, 3)
    luma = (0.299 * means[..., 0] + 0.587 * means[..., 1] + 0.114 * means[..., 2])[..., None]
    motion = (rgb[:, 1:] - rgb[:, :-1]).abs().mean(dim=(2, 3, 4))  # (B, F-1)
    motion = torch.cat([torch.zeros_like(motion[:, :1]), motion], dim=1)[..., None]
    return torch.cat([luma, means, motion], dim=-1)


def decode_snippets(decoder: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor) -> torch.Tensor:
    """Decode latents (B, F, C, h, w) with a VAE decoder callable on (N, C, h, w) -> frames (B, F, 3, H, W)."""
    b, f = x0.shape[:2]
    frames = decoder(x0.flatten(0, 1))
    if frames.dim() != 4 or frames.shape[0] != b * f:
        raise ValueError(f"decoder must map (N, C, h, w) latents to (N, 3, H, W) frames, got {tuple(frames.shape)}")
    return frames.reshape(b, f, *frames.shape[1:])


def frame_proxy_losses(decoder: Callable[[torch.Tensor], torch.Tensor], x0_true: torch.Tensor,
                       x0_good: torch.Tensor, x0_bad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample MSE between the frame statistics of decoded x0 predictions and of the decoded true latents.

    Returns (L_good_frames, L_bad_frames), each (B,): the same comparison as the main hinge, but on what a
    viewer sees. The target frames get no gradient; the predictions do (through the frozen decoder).
    """
    with torch.no_grad():
        target = frame_statistics(decode_snippets(decoder, x0_true))
    good = frame_statistics(decode_snippets(decoder, x0_good))
    bad = frame_statistics(decode_snippets(decoder, x0_bad))
    return (good - target).pow(2).mean(dim=(1, 2)), (bad - target).pow(2).mean(dim=(1, 2))


# ------------------------------------------------------------------ silence motion (next step 5)


def latent_motion_energy(x0: torch.Tensor) -> torch.Tensor:
    """Mean squared change between consecutive frames: (B, F, C, h, w) -> (B, F-1)."""
    return (x0[:, 1:] - x0[:, :-1]).pow(2).mean(dim=(2, 3, 4))


def silence_motion_loss(x0_pred: torch.Tensor, is_silent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Motion energy of the predicted x0 across consecutive frames that are both silent, averaged over them.

    Visuals should settle in silence (postmortem §1); this pushes the predicted motion there toward 0.
    ``keep`` (B,) leaves out samples whose audio (hence is_silent) was dropped for CFG.
    """
    both = (is_silent[:, 1:] > 0.5) & (is_silent[:, :-1] > 0.5) & keep[:, None]  # (B, F-1)
    m = both.float()
    return (latent_motion_energy(x0_pred) * m).sum() / m.sum().clamp(min=1.0)
