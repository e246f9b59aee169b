"""The sampler driven one snippet at a time, as audio arrives.

Offline sampling (:func:`trainer.sample_core.latent_stream`) walks over an audio tensor whose length it
knows; live, the audio ends when the stream does. :class:`SnippetGenerator` takes one snippet's audio
windows at a time and keeps the state between snippets: the last ``P = diffusion.prev_frames`` final
latents (previous-latent conditioning, as the model was trained). Snippets are back to back (no
overlap): a cross-faded overlap would keep each snippet's last frames unfinished until the next one,
one more snippet of latency.

Look-ahead. The audio window of frame t spans timeline frames ``t-k .. t+f`` (``k =
diffusion.audio_context_frames``, ``f`` = the future context, :func:`future_frames`), and a snippet of
F frames is denoised jointly, so its first frame waits for ``F - 1 + f`` frames of audio after its own:
:func:`lookahead_frames`. For ``models/synesthete-tiny`` (F = 4, k = f = 2, 8 fps) that is 5 frames, 625 ms
before compute; a live model (F = 1, f = 0) needs none.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from trainer.conditioning import future_frames
from trainer.diffusion.sampler import sample_snippet
from trainer.sample_core import StreamSpec, frame_index_for


def lookahead_frames(snippet_frames: int, future: int) -> int:
    """Frames of audio after a snippet's first frame that must arrive before the snippet can start."""
    return snippet_frames - 1 + future


def window_indices(t: int, past: int, future: int, n_rows: int) -> np.ndarray:
    """Timeline rows of frame t's audio window, ``t-past .. t+future`` clipped to ``[0, n_rows-1]`` (int64).

    Clipping repeats the first row before the start and the last row past the end, as the offline
    :func:`shared.timeline.context_windows` does; live, ``n_rows`` is the final frame count once the stream
    has ended (before that the scheduler waits until ``t + future`` exists).
    """
    return np.clip(np.arange(t - past, t + future + 1), 0, n_rows - 1)


@dataclass
class SnippetTimings:
    sample_s: float  # the denoising steps
    decode_s: float  # VAE decode (and the conditioning): the cost that does not scale with steps


class SnippetGenerator:
    """``generate(start, windows, silent, steps) -> (uint8 frames (F, H, W, 3), timings)`` for a SamplingModel.

    ``windows`` (F, k+1+f, Ch) are the snippet's audio windows, ``silent`` (F,) its is_silent flags.
    """

    def __init__(self, model, spec: StreamSpec, style_z: torch.Tensor | None, seed: int):
        self.model = model
        self.spec = spec
        d = model.cfg.diffusion
        self.snippet_frames = spec.snippet_frames
        self.past = d.audio_context_frames
        self.future = future_frames(d)
        self.lookahead = lookahead_frames(self.snippet_frames, self.future)
        self.full_steps = spec.steps
        self.style_z = None if style_z is None else style_z.to(model.device)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.history: torch.Tensor | None = None  # (1, <=P, C, h, w) last final latents
        self.resolution = model.cfg.render.resolution

    def _prev(self):
        p, dev = self.spec.prev_frames, self.model.device
        if not p or self.history is None:
            return None, None
        have = self.history.shape[1]
        prev = torch.zeros((1, p) + tuple(self.spec.latent_shape), device=dev)
        prev[:, p - have:] = self.history
        valid = torch.zeros(1, p, dtype=torch.bool, device=dev)
        valid[:, p - have:] = True
        return prev, valid

    @torch.no_grad()
    def generate(self, start: int, windows: np.ndarray, silent: np.ndarray, steps: int):
        from trainer.runtime import autocast

        f, dev = self.snippet_frames, self.model.device
        net = getattr(self.model.denoiser, "_orig_mod", self.model.denoiser)
        t0 = time.perf_counter()
        with autocast(self.model.cfg.run, dev):
            a = torch.from_numpy(np.ascontiguousarray(windows, np.float32))[None].to(dev)  # (1, F, win, Ch)
            sil = torch.from_numpy(np.ascontiguousarray(silent, np.float32))[None].to(dev)  # (1, F)
            fidx = torch.as_tensor(frame_index_for(start, f, self.spec.prev_frames, self.spec.clip_frames),
                                   device=dev)[None]
            prev, valid = self._prev()
            cond = net.make_cond(a, sil, fidx, prev=prev, prev_valid=valid, style_z=self.style_z)
            t1 = time.perf_counter()
            x = sample_snippet(self.model.denoiser, cond, (1, f) + tuple(self.spec.latent_shape), int(steps),
                               self.spec.guidance, self.generator, self.spec.sampler, dev).float()
            t2 = time.perf_counter()
            p = self.spec.prev_frames
            if p:
                self.history = x[:, -p:] if self.history is None or f >= p else torch.cat([self.history, x], 1)[:, -p:]
            frames = self.model.decode(x[0])  # (F, H, W, 3) uint8
        t3 = time.perf_counter()
        return frames, SnippetTimings(sample_s=t2 - t1, decode_s=(t1 - t0) + (t3 - t2))

    def warm_up(self) -> SnippetTimings:
        """One snippet on silence (first-call costs paid before the audio starts); the state is reset after."""
        n_ch = self.model.denoiser.n_audio_channels
        win = np.full((self.snippet_frames, self.past + 1 + self.future, n_ch), 0.0, np.float32)
        _, timings = self.generate(0, win, np.ones(self.snippet_frames, np.float32), self.full_steps)
        self.history = None
        self.generator.manual_seed(int(self.generator.initial_seed()))
        return timings


def live_spec(model, steps: int | None = None, guidance: float | None = None, sampler: str | None = None) -> StreamSpec:
    """The stream spec of live sampling: the model's snippet shape, no overlap, the configured sampling settings."""
    cfg = model.cfg
    inf = cfg.inference
    return StreamSpec(snippet_frames=cfg.diffusion.snippet_frames, prev_frames=cfg.diffusion.prev_frames,
                      latent_shape=model.latent_shape,
                      clip_frames=max(1, int(math.floor(cfg.data.clip_seconds * cfg.render.fps))),
                      overlap=0, steps=int(steps or inf.steps),
                      guidance=inf.audio_guidance_scale if guidance is None else float(guidance),
                      sampler=sampler or inf.sampler)
