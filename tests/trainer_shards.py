"""Tiny pixel and latent shards for the trainer tests, written with shared.shards (no datagen, no GL).

Frames are structured (a coloured disc on a gradient, its radius and brightness following the
audio RMS) so that a tiny VAE can learn them in a few dozen steps.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Callable

import numpy as np

from shared import shards as S
from shared.config import Config
from shared.timeline import channel_names, compute_audio_timeline

VARIANT_CYCLE = ("normal", "silence", "debug")


def clip_wave(sr: int, seconds: float, variant: str, rng: np.random.Generator) -> np.ndarray:
    """A pulsing tone; the silence variant is silent over its middle third."""
    t = np.arange(int(sr * seconds)) / sr
    freq = rng.uniform(110, 880)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t) ** 2
    wave = (0.4 * env * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if variant == "silence":
        n = len(wave)
        wave[n // 3: 2 * n // 3] = 0.0
    return S.quantize_pcm16(wave)


def clip_frames(n_frames: int, res: int, level: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (T, res, res, 3): a disc whose radius follows ``level`` in [0, 1], on a two-colour gradient."""
    yy, xx = np.mgrid[0:res, 0:res].astype(np.float32) / max(res - 1, 1)
    c0, c1, disc = rng.uniform(0, 255, (3, 3))
    cx, cy = rng.uniform(0.3, 0.7, 2)
    base = (c0 * (1 - xx[..., None]) + c1 * xx[..., None])  # (res, res, 3)
    out = np.empty((n_frames, res, res, 3), np.uint8)
    for t in range(n_frames):
        r = 0.1 + 0.3 * float(level[t])
        inside = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
        img = base.copy()
        img[inside] = disc
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def write_pixel_shards(root: str | Path, cfg: Config, train_shards: int = 2, val_shards: int = 1,
                       samples_per_shard: int = 3, seed: int = 0) -> dict[str, list[str]]:
    """Write ``root/{train,val}/shard-NNNNNN.tar``; return the keys per split."""
    root = Path(root)
    sr, fps, res = cfg.data.sample_rate, cfg.render.fps, cfg.render.resolution
    names = channel_names(cfg.timeline)
    keys: dict[str, list[str]] = {"train": [], "val": []}
    for split, n_shards in (("train", train_shards), ("val", val_shards)):
        for shard in range(n_shards):
            with S.ShardWriter(root / split / S.shard_name(shard)) as w:
                for i in range(samples_per_shard):
                    rng = np.random.default_rng([seed, split == "val", shard, i])
                    variant = VARIANT_CYCLE[(shard * samples_per_shard + i) % 3]
                    wave = clip_wave(sr, cfg.data.clip_seconds, variant, rng)
                    feats, _ = compute_audio_timeline(wave, sr, fps, cfg.timeline)  # (T, C)
                    rms = feats[:, names.index("rms")]
                    level = rms / max(float(rms.max()), 1e-6)
                    frames = clip_frames(len(feats), res, level, rng)
                    key = S.sample_key(shard, i)
                    meta = {"schema_version": S.SCHEMA_VERSION, "key": key, "split": split, "shard": shard,
                            "sample": i, "seed": int(rng.integers(1 << 30)), "variant": variant, "tempo": 120.0,
                            "fps": fps, "resolution": res, "n_frames": len(feats), "timeline_channels": names}
                    jpegs = [S.encode_jpeg(f, cfg.render.jpeg_quality) for f in frames]
                    w.add_sample(key, S.pixel_members(wave, sr, feats, jpegs, meta))
                    keys[split].append(key)
    return keys


def write_index_latent_shard(path: str | Path, cfg: Config, n_clips: int, n_frames: int,
                             variants: list[str] | None = None, channels: int = 4, size: int = 2) -> list[str]:
    """A latent shard whose values name their frame: ``latents[t] = t`` and timeline row t = t + 1000*c.

    Lets tests check that snippets are contiguous and aligned with their timeline rows.
    """
    names = channel_names(cfg.timeline)
    keys = []
    with S.ShardWriter(path) as w:
        for i in range(n_clips):
            t = np.arange(n_frames, dtype=np.float32)
            lat = np.broadcast_to(t[:, None, None, None], (n_frames, channels, size, size))  # (T, C, h, w)
            feats = t[:, None] + 1000.0 * np.arange(len(names), dtype=np.float32)[None, :]  # (T, Ch)
            feats[:, names.index("is_silent")] = (np.arange(n_frames) % 2).astype(np.float32)
            variant = (variants or ["normal"])[i % len(variants or ["normal"])]
            key = S.sample_key(S.shard_index(path), i)
            meta = {"variant": variant, "tempo": 120.0, "fps": cfg.render.fps, "n_frames": n_frames,
                    "timeline_channels": names, "key": key}
            w.add_sample(key, S.latent_members(lat, np.ones_like(lat), feats, meta))
            keys.append(key)
    return keys


def rewrite_member(src: str | Path, dst: str | Path, name: str, damage: Callable[[bytes], bytes]) -> None:
    """Copy the tar ``src`` to ``dst`` with the bytes of member ``name`` replaced by ``damage(bytes)``
    (a corrupt sample for the skip-and-count tests)."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.USTAR_FORMAT) as tout:
        for info in tin:
            data = tin.extractfile(info).read()
            if info.name == name:
                data = damage(data)
                info.size = len(data)
            tout.addfile(info, io.BytesIO(data))


TINY_LATENT_OVERRIDES = ["data.sample_rate=8000", "data.clip_seconds=2.0", "render.resolution=16", "render.fps=8",
                         "timeline.n_fft=256", "vae.base_channels=8", "vae.max_channels=8", "vae.latent_channels=2"]


def tiny_latent_config_and_vae(root: Path):
    """``(cfg, vae_run)``: configs/tiny.yaml at 16 px with 2 latent channels, and a randomly initialised frame VAE
    saved as a run at step 5 under ``root/vae_run`` (what latent shards' manifests and diffusion runs point at)."""
    import torch

    from shared.config import build_config
    from shared.provenance import write_resolved_config
    from trainer import checkpoint as ckpt
    from trainer.vae.model import FrameVAE

    cfg = build_config([Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"], overrides=TINY_LATENT_OVERRIDES)
    vae_run = root / "vae_run"
    torch.manual_seed(0)
    sd = FrameVAE(cfg.vae).state_dict()
    write_resolved_config(vae_run / "config.yaml", cfg)
    ckpt.save_checkpoint(vae_run, 5, {"model": sd, "ema": sd}, {}, keep=1)
    return cfg, vae_run
