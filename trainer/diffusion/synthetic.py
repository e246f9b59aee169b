"""Synthetic snippet batches (docs/INTERFACES.md layout) whose latents are a known function of the audio.

For tests and the throughput benchmark, not for training real models. A "debug-like" clip: a random
loudness envelope with a silent segment, band energies that follow it, and latents that are a fixed
(seeded) linear map of the frame's audio features plus a clip-level style offset. A model can only
predict such latents well by reading the audio, so shuffle pressure has something to find.
"""

from __future__ import annotations

import math

import torch

from shared.config import Config
from shared.timeline import channel_index, channel_names
from trainer.style import style_for_seed


def synthetic_timeline(n_frames: int, names: list[str], g: torch.Generator) -> torch.Tensor:
    """A plausible raw timeline (T, Ch): smooth random loudness, one silent segment, bands and flags."""
    t = torch.arange(n_frames, dtype=torch.float32)
    phase, freq = torch.rand(2, generator=g)
    rms = 0.05 + 0.3 * (0.5 + 0.5 * torch.sin(2 * math.pi * (0.05 + 0.3 * freq) * t + 6.28 * phase))
    start = int(torch.randint(0, max(1, n_frames - 4), (1,), generator=g))
    silent = torch.zeros(n_frames)
    silent[start:start + max(2, n_frames // 4)] = 1.0
    rms = rms * (1 - silent)
    n_bands = sum(n.startswith("band_") for n in names)
    profile = torch.rand(n_bands, generator=g) + 0.2
    wobble = torch.rand(n_frames, n_bands, generator=g)
    cols = {
        "log_rms": 20 * torch.log10(rms.clamp(min=1e-5)), "rms": rms,
        "onset": torch.relu(torch.diff(rms, prepend=rms[:1])) * 10, "centroid": (0.3 + 0.2 * wobble[:, 0]) * (rms > 0),
        "is_silent": silent, "beat_phase": (t * 0.25) % 1.0, "downbeat": ((t % 8) == 0).float(),
    }
    bands = rms[:, None] * profile * (0.5 + wobble)  # (T, n_bands)
    out = torch.zeros(n_frames, len(names))
    for i, name in enumerate(names):
        out[:, i] = bands[:, int(name[5:])] if name.startswith("band_") else cols[name]
    return out


def windows(features: torch.Tensor, k: int) -> torch.Tensor:
    """(T, Ch) -> (T, 2k+1, Ch) edge-padded context windows (as shared.timeline.context_windows)."""
    idx = (torch.arange(features.shape[0])[:, None] + torch.arange(-k, k + 1)[None, :]).clamp(0, features.shape[0] - 1)
    return features[idx]


def audio_to_latent_map(n_in: int, latent_channels: int, latent_size: int, seed: int = 1234) -> torch.Tensor:
    """The fixed linear map (C*h*w, n_in) from a frame's audio features to its latent."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(latent_channels * latent_size * latent_size, n_in, generator=g) * 2.0


def synthetic_batch(cfg: Config, batch_size: int, latent_channels: int, latent_size: int,
                    generator: torch.Generator, style_latents: int = 2) -> dict:
    """A snippet batch with the INTERFACES.md keys; latents are a deterministic function of the audio."""
    d = cfg.diffusion
    names = channel_names(cfg.timeline)
    f, p, k = d.snippet_frames, d.prev_frames, d.audio_context_frames
    n_frames = p + f + 8
    in_names = ["rms"] + [n for n in names if n.startswith("band_")]
    cols = [channel_index(names, n) for n in in_names]
    w = audio_to_latent_map(len(cols), latent_channels, latent_size)
    shift = 3  # frames: not a whole bar at 8 frames a bar
    keys = ("x", "prev", "prev_valid", "audio", "audio_timeshift", "frame_index", "is_silent", "style", "variant")
    out: dict[str, list] = {key: [] for key in keys}
    out["key"] = []
    for i in range(batch_size):
        feats = synthetic_timeline(n_frames, names, generator)  # (T, Ch)
        style = torch.randn(latent_channels, generator=generator) * 0.5
        lat = (feats[:, cols] * 4.0 - 0.5) @ w.T  # (T, C*h*w)
        lat = torch.tanh(lat).reshape(n_frames, latent_channels, latent_size, latent_size) + style[None, :, None, None]
        s = p + int(torch.randint(0, n_frames - p - f + 1, (1,), generator=generator))
        win = windows(feats, k)
        win_shift = windows(torch.roll(feats, shift, dims=0), k)
        out["x"].append(lat[s:s + f])
        out["prev"].append(lat[s - p:s])
        out["prev_valid"].append(torch.ones(p, dtype=torch.bool))
        out["audio"].append(win[s:s + f])
        out["audio_timeshift"].append(win_shift[s:s + f])
        out["frame_index"].append(torch.arange(s, s + f))
        out["is_silent"].append(feats[s:s + f, channel_index(names, "is_silent")])
        pick = torch.randint(0, n_frames, (style_latents,), generator=generator)
        out["style"].append(lat[pick])
        out["variant"].append(torch.tensor(2))
        out["key"].append(f"synthetic-{i:05d}")
    batch = {key: torch.stack(out[key]) for key in keys}
    batch["key"] = out["key"]
    if d.style_source == "plan":  # the teacher's plans of seeds 0..B-1 (trainer.style), like a shard's clips
        batch["style_plan"] = torch.cat([style_for_seed(cfg, i) for i in range(batch_size)])
    return batch


def n_audio_channels(cfg: Config) -> int:
    return len(channel_names(cfg.timeline))
