"""Stage 2 of the evaluation: generate video for the chosen clips, batched over clips.

With one style latent ``z_k`` (from the prior, seed ``base * 7919 + 1000 k``) and noise seed ``base + k``
shared by every clip:

* ``own[k]``   G(a_i, z_k): each clip's own audio, for k < max(eval.seeds, eval.n_style_samples);
* ``floor[k]`` G(a_p(i), z_k): the floor partner's audio (:func:`trainer.eval.clips.floor_partners`, always
  different audio) with the same style and noise, for k < eval.seeds.

So own[k] and floor[k] differ only in their audio; own[0] vs own[1] differ only in style and noise (the
output-sensitivity pair and the style-diversity samples). The noise generator restarts at the group's
seed for every chunk of ``eval.batch_clips`` clips, so two groups with the same seed draw identical noise
for the clip in the same chunk position (with batch_clips = 1, every clip gets the same noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trainer.conditioning import ConditioningSpec
from trainer.eval.clips import Clip
from trainer.runtime import autocast
from trainer.sample import SamplingModel, style_from_prior
from trainer.sample_core import StreamSpec, latent_stream


@dataclass
class Generated:
    own: list[np.ndarray]       # per style/seed k: uint8 (N, T, H, W, 3)
    floor: list[np.ndarray]     # per seed k: uint8 (N, T, H, W, 3); rows of clips without a partner are own audio
    own_latents: list[np.ndarray]    # per k: (N, T, C, h, w)
    floor_latents: list[np.ndarray]
    seconds: float


def conditioning(model: SamplingModel, clips: list[Clip]) -> tuple[np.ndarray, np.ndarray]:
    """(windows (N, T, k+1+f, Ch), is_silent (N, T)) exactly as the training loader builds them
    (:meth:`trainer.conditioning.ConditioningSpec.model_audio`)."""
    spec = ConditioningSpec.from_config(model.cfg)
    pairs = [spec.model_audio(c.timeline, c.names) for c in clips]
    return np.stack([w for w, _ in pairs]), np.stack([s for _, s in pairs]).astype(np.float32)


@torch.no_grad()
def generate_group(model: SamplingModel, spec: StreamSpec, windows: np.ndarray, silent: np.ndarray,
                   style_z: torch.Tensor, noise_seed: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Generate B streams in chunks of ``batch``: ``(frames uint8 (B, T, H, W, 3), latents (B, T, C, h, w))``."""
    frames_out, lat_out = [], []
    for i in range(0, len(windows), batch):
        gen = torch.Generator().manual_seed(int(noise_seed) * 1_000_003)
        a = torch.from_numpy(np.ascontiguousarray(windows[i:i + batch]))
        s = torch.from_numpy(np.ascontiguousarray(silent[i:i + batch]))
        z = style_z.expand(len(a), -1).to(model.device)
        with autocast(model.cfg.run, model.device):  # bf16 on CUDA (run.precision=auto)
            chunks = [lat.float() for _, lat in latent_stream(model.denoiser, spec, a, s, z, gen, model.device)]
        lat = torch.cat(chunks, dim=1)  # (b, T, C, h, w)
        frames_out.append(np.stack([model.decode(clip_lat) for clip_lat in lat]))  # per clip: bounded memory
        lat_out.append(lat.float().cpu().numpy())
    return np.concatenate(frames_out), np.concatenate(lat_out)


def style_latent(style_dim: int, k: int, base_seed: int) -> torch.Tensor:
    """Style latent k (1, style_dim) from the prior, shared by every clip."""
    return style_from_prior(style_dim, base_seed * 7919 + 1000 * k)


def generate_all(model: SamplingModel, clips: list[Clip], partners: list[int | None], seed: int, log=print
                 ) -> Generated:
    import time

    from trainer.sample import SampleSettings, stream_spec

    cfg = model.cfg
    ev = cfg.eval
    windows, silent = conditioning(model, clips)
    idx = np.array([i if p is None else p for i, p in enumerate(partners)])
    spec = stream_spec(model, SampleSettings())
    batch = ev.batch_clips
    sd = cfg.diffusion.style_dim
    t0 = time.perf_counter()
    own, floor, own_l, floor_l = [], [], [], []
    for k in range(max(ev.seeds, ev.n_style_samples)):
        z = style_latent(sd, k, seed)
        f, lat = generate_group(model, spec, windows, silent, z, seed + k, batch)
        own.append(f)
        own_l.append(lat)
        if k < ev.seeds:
            f, lat = generate_group(model, spec, windows[idx], silent[idx], z, seed + k, batch)
            floor.append(f)
            floor_l.append(lat)
        log(f"eval: generated style/seed {k}: {len(clips)} clips x {'2' if k < ev.seeds else '1'} in "
            f"{time.perf_counter() - t0:.1f} s")
    return Generated(own, floor, own_l, floor_l, time.perf_counter() - t0)


@torch.no_grad()
def val_loss(model: SamplingModel, clips: list[Clip], latents: list[np.ndarray], seed: int,
             snippets_per_clip: int = 4) -> dict[str, float] | None:
    """Val diffusion loss with true vs wrong audio (``trainer.diffusion.losses.val_losses``, the wrong audio
    drawn among the same clips' snippets) on ``snippets_per_clip`` evenly spaced snippets of each clip, the
    clips encoded by the run's VAE. None with fewer than 2 snippets."""
    from shared import shards as S
    from trainer.data import SnippetSpec, make_snippet
    from trainer.diffusion.losses import val_losses

    cfg = model.cfg
    spec = SnippetSpec(cfg, latent_scale=model.latent_scale)
    rng = np.random.default_rng(seed)
    items = []
    for clip, lat in zip(clips, latents):
        sample = {"__key__": clip.key, "meta": clip.meta, S.TIMELINE: S.encode_timeline(clip.timeline),
                  S.LATENTS: S.encode_npy((lat / model.latent_scale).astype(np.float16))}
        last = min(len(lat), len(clip.timeline)) - cfg.diffusion.snippet_frames
        if last < 0:
            continue
        for start in np.unique(np.linspace(0, last, snippets_per_clip).round().astype(int)):
            items.append(make_snippet(sample, spec, "latents", rng, start=int(start)))
    if len(items) < 2:
        return None
    batch = {k: torch.as_tensor(np.stack([it[k] for it in items])).to(model.device) for k in items[0] if k != "key"}
    batch["key"] = [it["key"] for it in items]
    out = val_losses(model.denoiser, batch, cfg, torch.Generator().manual_seed(seed))
    out["snippets"] = len(items)
    return out
