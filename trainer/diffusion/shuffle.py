"""Shuffle pressure (postmortem §2 and "next steps" 1, 2, 5): wrong-audio negatives and the penalties.

If the model ignores audio, its loss with another clip's audio (``L_bad``) equals the loss with the true
audio (``L_good``). The hinge ``weight * relu(margin + L_good - L_bad)`` makes that solution expensive.

Negatives (``diffusion.audio_shuffle_negatives``):

- ``derange``: a uniformly random permutation of the batch with no fixed points (no clip keeps its audio);
- ``hard``: for each clip, the batch clip whose audio features are the most dissimilar;
- ``timeshift``: the same clip's audio shifted by an offset that is not a whole number of bars
  (``batch["audio_timeshift"]``, cut by the loader), so rhythm-aligned features really differ.

Everything here is a pure function of tensors (and a ``torch.Generator`` where random).
"""

from __future__ import annotations

from typing import Callable

import torch

NEGATIVE_KINDS = ("derange", "hard", "timeshift")


def derangement(n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """A uniformly random permutation of ``range(n)`` with no fixed points (rejection sampling).

    A random permutation is a derangement with probability ~1/e, so this takes ~2.7 draws on average.
    Needs n >= 2 (a single clip has no other clip to borrow audio from).
    """
    if n < 2:
        raise ValueError(f"a derangement needs a batch of at least 2 clips, got {n}")
    ar = torch.arange(n)
    while True:
        perm = torch.randperm(n, generator=generator)
        if not bool((perm == ar).any()):
            return perm.to(device)


def clip_audio_summary(audio: torch.Tensor) -> torch.Tensor:
    """(B, F, 2k+1, Ch) windows -> (B, F*Ch) the per-frame centre features, standardised per column over the batch.

    Standardising makes channels with large raw ranges (log RMS in dB) not dominate the distance.
    """
    k = audio.shape[2] // 2
    centre = torch.asinh(audio[:, :, k, :].float()).flatten(1)  # (B, F*Ch)
    return (centre - centre.mean(0)) / (centre.std(0, unbiased=False) + 1e-6)


def hardest_negatives(audio: torch.Tensor) -> torch.Tensor:
    """For each clip, the index of the *other* batch clip whose audio features are farthest (Euclidean)."""
    b = audio.shape[0]
    if b < 2:
        raise ValueError(f"hard negatives need a batch of at least 2 clips, got {b}")
    z = clip_audio_summary(audio)
    dist = torch.cdist(z, z)  # (B, B)
    dist.fill_diagonal_(-1.0)  # never pick yourself (distances are >= 0)
    return dist.argmax(dim=1)


def negative_audio(batch: dict, kind: str, generator: torch.Generator | None = None,
                   silent_channel: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrong audio for each clip of the batch: (audio (B, F, 2k+1, Ch), is_silent (B, F)).

    ``is_silent`` travels with the audio it belongs to: permuted for derange / hard, and for timeshift
    read from the shifted windows' centre at ``silent_channel`` (the timeline's is_silent channel).
    """
    audio, silent = batch["audio"], batch["is_silent"]
    if kind == "derange":
        idx = derangement(audio.shape[0], generator, audio.device)
        return audio[idx], silent[idx]
    if kind == "hard":
        idx = hardest_negatives(audio)
        return audio[idx], silent[idx]
    if kind == "timeshift":
        if "audio_timeshift" not in batch:
            raise KeyError("audio_shuffle_negatives=timeshift needs batch['audio_timeshift'] from the loader")
        shifted = batch["audio_timeshift"]
        if silent_channel is None:
            raise ValueError("timeshift negatives need the timeline's is_silent channel index")
        k = shifted.shape[2] // 2
        return shifted, shifted[:, :, k, silent_channel].float()
    raise ValueError(f"diffusion.audio_shuffle_negatives must be one of {NEGATIVE_KINDS}, got {kind!r}")


def hinge(l_good: torch.Tensor, l_bad: torch.Tensor, margin: float) -> torch.Tensor:
    """Per-sample shuffle hinge ``relu(margin + L_good - L_bad)``: zero once L_bad >= L_good + margin."""
    return torch.relu(margin + l_good - l_bad)


def shuffle_penalty(l_good: torch.Tensor, l_bad: torch.Tensor, keep: torch.Tensor, weight: float, margin: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight * mean_keep relu(margin + L_good - L_bad)`` over the kept samples, and the active fraction.

    ``keep`` (B,) bool leaves out samples whose audio was dropped for CFG (their L_bad equals L_good by
    construction). With nothing kept the penalty is 0.
    """
    h = hinge(l_good, l_bad, margin)
    k = keep.float()
    n = k.sum().clamp(min=1.0)
    penalty = weight * (h * k).sum() / n
    active = ((h > 0).float() * k).sum() / n
    return penalty, active


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
