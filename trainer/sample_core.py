"""Autoregressive snippet generation: the pure planning math and the batched latent stream.

A video of T frames is generated snippet by snippet (``F = diffusion.snippet_frames`` frames each).
Snippet j starts at ``j * (F - o)``, where ``o = inference.snippet_overlap`` frames overlap the previous
snippet, and is conditioned on the last ``P = diffusion.prev_frames`` *final* latents before its start
(the previous-frame conditioning the model was trained with). The o overlapping latents are cross-faded
linearly from the old snippet to the new one, so a border is never a hard cut: both the previous-frame
conditioning and the blend tie snippets together. ``o = 0`` gives back-to-back snippets.

Latents leave the stream as soon as they are final (everything before the current snippet's overlap
tail), so memory stays bounded for audio of any length: only the last P latents and the tail are kept.
The stream is batched over B independent streams (clips, seeds, or audio variants of one clip: what
evaluation runs in parallel); classifier-free guidance batches the conditional and unconditional passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from trainer.diffusion.sampler import Guidance, sample_snippet
from trainer.runtime import unwrap


def snippet_starts(n_frames: int, snippet_frames: int, overlap: int) -> list[int]:
    """Start frames of the snippets covering ``n_frames`` frames with ``overlap`` frames shared by neighbours.

    The last snippet may run past the end (its extra frames are dropped). Zero frames -> no snippets.
    """
    if not 0 <= overlap < snippet_frames:
        raise ValueError(f"snippet overlap must be in [0, {snippet_frames - 1}] for {snippet_frames}-frame "
                         f"snippets, got {overlap}")
    if n_frames <= 0:
        return []
    stride = snippet_frames - overlap
    starts = [0]
    while starts[-1] + snippet_frames < n_frames:
        starts.append(starts[-1] + stride)
    return starts


def crossfade_weights(overlap: int) -> np.ndarray:
    """Weights of the *new* snippet on the ``overlap`` shared frames: ``(i + 1) / (overlap + 1)``, a linear ramp."""
    return (np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)) if overlap > 0 else np.zeros(0, np.float32)


def frame_index_for(start: int, snippet_frames: int, prev_frames: int, clip_frames: int) -> np.ndarray:
    """Frame-index conditioning (F,) of a snippet starting at absolute frame ``start``.

    Training clips have ``clip_frames`` frames, so the model only knows indices below that. Inside the
    first clip-length the index is the absolute frame; past it, snippet starts cycle through
    ``[P, clip_frames - F]`` (mid-clip positions with valid previous frames, as in training).
    """
    if start + snippet_frames <= clip_frames or clip_frames < snippet_frames:
        first = start
    else:
        lo = min(prev_frames, clip_frames - snippet_frames)
        span = clip_frames - snippet_frames - lo + 1
        first = lo + (start - lo) % span
    return np.arange(first, first + snippet_frames, dtype=np.int64)


def pad_to(x: np.ndarray, n: int) -> np.ndarray:
    """First axis cut or edge-padded (repeat the last row) to length ``n``; ``x`` must be non-empty."""
    if len(x) >= n:
        return x[:n]
    return np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)], axis=0)


@dataclass
class StreamSpec:
    """What the latent stream needs to know about the model and the sampling settings."""

    snippet_frames: int
    prev_frames: int
    latent_shape: tuple[int, int, int]  # (C, h, w)
    clip_frames: int                    # frames of a training clip (frame-index range)
    overlap: int
    steps: int
    guidance: float                     # audio CFG scale g: the peak of the schedule
    sampler: str
    guidance_schedule: str = "constant"  # inference.audio_guidance_schedule (sampler.guidance_weight)
    guidance_interval: tuple[float, float] = (0.0, 1.0)  # inference.audio_guidance_interval
    style_guidance: float = 1.0         # inference.style_guidance_scale (1 = off)

    def guidance_rule(self) -> Guidance:
        return Guidance(self.guidance, self.guidance_schedule, tuple(self.guidance_interval), self.style_guidance)


def latent_stream(model: Callable, spec: StreamSpec, audio: torch.Tensor, is_silent: torch.Tensor,
                  style_z: torch.Tensor | None, generator: torch.Generator, device: torch.device | str,
                  on_snippet: Callable[[int], None] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(first_frame, latents (B, n, C, h, w))`` chunks of final latents, in order, covering all T frames.

    ``audio`` (B, T, 2k+1, Ch) timeline windows and ``is_silent`` (B, T) on any device (snippets are cut
    and moved one at a time); ``style_z`` (B, style_dim) or None for the learned null style.
    ``model`` is a :class:`~trainer.diffusion.model.Denoiser` or a :class:`~trainer.diffusion.sampler.SamplingNet`
    (its ``make_cond`` builds the conditioning). Nothing in the loop reads a device value, and nothing but
    the first move of ``audio`` and ``is_silent`` copies from the host, so on CUDA the host queues snippet
    after snippet without waiting (pass a ``generator`` on ``device`` for the noise: no copy either).
    """
    b, n_frames = audio.shape[:2]
    f, p, o = spec.snippet_frames, spec.prev_frames, spec.overlap
    net = unwrap(model)
    # moved once: a copy from the host per snippet would wait for the device each time (a host sync)
    audio, is_silent = audio.to(device).float(), is_silent.to(device).float()
    weights = torch.as_tensor(crossfade_weights(o), device=device).view(1, o, 1, 1, 1)
    history: torch.Tensor | None = None  # (B, <=P, C, h, w) the last final latents
    tail: torch.Tensor | None = None     # (B, o, C, h, w) the previous snippet's overlap, not yet final
    emitted = 0
    starts = snippet_starts(n_frames, f, o)
    guidance = spec.guidance_rule()  # checked once, before the first snippet
    for j, s in enumerate(starts):
        a, sil = audio[:, s:s + f], is_silent[:, s:s + f]  # frames past the end repeat the last audio
        if a.shape[1] < f:
            a = torch.cat([a, audio[:, -1:].expand(b, f - a.shape[1], *audio.shape[2:])], dim=1)  # (B, F, 2k+1, Ch)
            sil = torch.cat([sil, is_silent[:, -1:].expand(b, f - sil.shape[1])], dim=1)  # (B, F)
        first = int(frame_index_for(s, f, p, spec.clip_frames)[0])
        fidx = torch.arange(first, first + f, device=device).expand(b, f)
        prev = prev_valid = None
        if p and history is not None:
            have = history.shape[1]
            prev = torch.zeros((b, p) + tuple(spec.latent_shape), device=device)
            prev[:, p - have:] = history
            prev_valid = torch.zeros(b, p, dtype=torch.bool, device=device)
            prev_valid[:, p - have:] = True
        cond = net.make_cond(a, sil, fidx, prev=prev, prev_valid=prev_valid, style_z=style_z)
        x = sample_snippet(model, cond, (b, f) + tuple(spec.latent_shape), spec.steps, guidance, generator,
                           spec.sampler, device).float()  # (B, F, C, h, w)
        if tail is not None and o:
            x[:, :o] = (1 - weights) * tail + weights * x[:, :o]
        last = j == len(starts) - 1
        keep = x if last else x[:, : f - o]  # final latents of this snippet
        keep = keep[:, : max(0, n_frames - emitted)]
        tail = None if last else x[:, f - o:]
        if keep.shape[1]:
            history = keep[:, -p:] if history is None or keep.shape[1] >= p else torch.cat([history, keep], 1)[:, -p:]
            yield emitted, keep
            emitted += keep.shape[1]
        if on_snippet is not None:
            on_snippet(keep.shape[1])
