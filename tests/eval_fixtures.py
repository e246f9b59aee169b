"""A tiny diffusion checkpoint for the sampling and evaluation tests, built with the real trainer modules.

The VAE is a freshly initialised :class:`FrameVAE` saved as a run (the sampler only decodes with it);
the denoiser is trained for a few dozen steps by the real loop (``trainer.diffusion.train.train``) on
synthetic snippet batches whose latents follow the audio, and the VAE is recorded into RUN/vae/ by the
same function ``trainer diffusion`` uses. No datagen, no GL, no mocks.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from shared.config import Config, build_config
from trainer.checkpoint import prepare_run_dir, save_checkpoint
from shared.timeline import channel_index, channel_names
from trainer.diffusion.synthetic import n_audio_channels, synthetic_timeline, windows

ROOT = Path(__file__).resolve().parents[1]

# 32 px frames, 8 fps, 16 kHz audio, 4x downsampling -> 8x8x4 latents; 4-frame snippets, 4 sampling steps.
TINY_OVERRIDES = [
    "render.resolution=32", "render.fps=8", "data.sample_rate=16000", "data.clip_seconds=4.0",
    "timeline.n_fft=256", "vae.downsample=4", "vae.base_channels=8", "vae.max_channels=16",
    "diffusion.width=32", "diffusion.depth=2", "diffusion.heads=2", "diffusion.batch_size=8",
    "diffusion.warmup_steps=5", "diffusion.val_every=1000", "diffusion.lr=1e-3",
    "inference.steps=4", "inference.audio_guidance_scale=2.0", "run.device=cpu", "run.num_workers=0",
    "eval.clips_per_variant=3", "eval.n_style_samples=2", "eval.bootstrap=200",
]


def tiny_config(steps: int, extra: list[str] = ()) -> Config:
    return build_config([ROOT / "configs" / "tiny.yaml"],
                        overrides=TINY_OVERRIDES + [f"diffusion.steps={steps}", f"run.checkpoint_every={steps}",
                                                    "run.log_every=1000"] + list(extra))


def smooth_batch(cfg: Config, batch_size: int, channels: int, size: int, g: torch.Generator) -> dict:
    """Snippet batches (docs/INTERFACES.md keys) of temporally smooth clips: a clip-level latent offset (its
    style) plus a fixed spatial pattern scaled by the audio RMS, which is a slow sinusoid. A model that
    learns them makes frames that change smoothly, so a seam at a snippet border would stand out."""
    d = cfg.diffusion
    names = channel_names(cfg.timeline)
    f, p, k = d.snippet_frames, d.prev_frames, d.audio_context_frames
    n_frames = 32
    pattern = torch.randn(channels, size, size, generator=torch.Generator().manual_seed(99))
    rms_i, sil_i = channel_index(names, "rms"), channel_index(names, "is_silent")
    out: dict[str, list] = {key: [] for key in ("x", "prev", "prev_valid", "audio", "audio_timeshift", "frame_index",
                                                "is_silent", "style", "variant")}
    for _ in range(batch_size):
        feats = synthetic_timeline(n_frames, names, g)  # (T, Ch), smooth RMS with a silent stretch
        offset = torch.randn(channels, 1, 1, generator=g)
        lat = offset[None] + 4.0 * feats[:, rms_i, None, None, None] * pattern[None]  # (T, C, h, w)
        s = int(torch.randint(0, n_frames - f + 1, (1,), generator=g))
        win = windows(feats, k)
        prev_idx = torch.arange(s - p, s)
        valid = prev_idx >= 0
        prev = lat[prev_idx.clamp(min=0)] * valid[:, None, None, None]
        out["x"].append(lat[s:s + f])
        out["prev"].append(prev)
        out["prev_valid"].append(valid)
        out["audio"].append(win[s:s + f])
        out["audio_timeshift"].append(win[(torch.arange(s, s + f) + 11) % n_frames])
        out["frame_index"].append(torch.arange(s, s + f))
        out["is_silent"].append(feats[s:s + f, sil_i])
        out["style"].append(lat[torch.randint(0, n_frames, (2,), generator=g)])
        out["variant"].append(torch.tensor(1))
    batch = {key: torch.stack(v) for key, v in out.items()}
    batch["key"] = [f"smooth-{i}" for i in range(batch_size)]
    return batch


def shared_tiny_checkpoint(tmp_path_factory) -> Path:
    """One tiny checkpoint per pytest session (built on first use, under the session's base temp dir)."""
    root = tmp_path_factory.getbasetemp() / "tiny_diffusion_checkpoint"
    run = root / "diffusion"
    if not (run / "latest").exists():
        build_tiny_checkpoint(root)
    return run


@contextlib.contextmanager
def torch_threads(n: int):
    """Run with ``n`` torch threads (tiny models on a shared 2-core box are fastest single-threaded)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_tiny_checkpoint(root: Path, steps: int = 40, extra: list[str] = ("diffusion.lr=3e-3",)) -> Path:
    """Write ``root/vae`` and ``root/diffusion`` (a complete diffusion run); return the diffusion run dir."""
    from trainer.diffusion.train import record_vae, train
    from trainer.vae.model import FrameVAE

    cfg = tiny_config(steps, extra)
    torch.manual_seed(0)
    vae_dir = root / "vae"
    prepare_run_dir(vae_dir, cfg, ("vae",))
    vae = FrameVAE(cfg.vae)
    save_checkpoint(vae_dir, 1, {"model": vae.state_dict(), "ema": vae.state_dict()}, {}, keep=1)

    c, size = cfg.vae.latent_channels, cfg.render.resolution // cfg.vae.downsample
    run_dir = root / "diffusion"
    scale = 1.0
    record_vae(run_dir, vae_dir, scale)

    def batches(start_step: int):
        g = torch.Generator().manual_seed(1000 + start_step)
        while True:
            yield smooth_batch(cfg, cfg.diffusion.batch_size, c, size, g)

    val = [smooth_batch(cfg, 4, c, size, torch.Generator().manual_seed(7))]
    train(cfg, run_dir, batches, val, latent_channels=c, latent_size=size, n_audio_channels=n_audio_channels(cfg),
          extra_state={"latent_scale": scale, "vae": "vae"}, show_progress=False)
    return run_dir


def write_val_pixel_shards(root: Path, cfg: Config, n_clips: int = 4,
                           variants: tuple[str, ...] = ("normal", "silence", "debug"),
                           audio_of: dict[int, int] | None = None, sibling_groups: int = 0) -> Path:
    """``root/val/shard-000000.tar`` (and one train shard) of ground-truth clips that follow their audio:
    a disc whose radius follows the RMS and which flashes on loudness steps. Clip i has variant
    ``variants[i % len(variants)]``; ``silence`` clips have a labelled silent segment (meta ``segments``)
    during which the picture stands still, ``normal`` clips a labelled track-dropout segment (quieter audio).
    ``audio_of`` maps a clip to the clip whose audio (and picture) it copies, like the repeated debug clips.
    ``sibling_groups``: that many shards in ``val_siblings/`` (datagen's ``data.val_style_siblings`` layout), each
    3 normal clips sharing one audio with different pictures (disc colour and background)."""
    from shared import shards as S
    from shared.timeline import compute_audio_timeline

    import numpy as np

    sr, fps, res = cfg.data.sample_rate, cfg.render.fps, cfg.render.resolution
    names = channel_names(cfg.timeline)
    jobs = [("val", 0, n_clips), ("train", 0, 1)] + [("val_siblings", g, 3) for g in range(sibling_groups)]
    for split, shard, count in jobs:
        with S.ShardWriter(root / split / S.shard_name(shard)) as w:
            for i in range(count):
                if split == "val_siblings":
                    src = 100 + shard  # one audio per sibling group
                else:
                    src = (audio_of or {}).get(i, i) if split == "val" else i
                rng = np.random.default_rng([src, split == "val"])
                variant = "normal" if split == "val_siblings" else variants[i % len(variants)]
                n = int(sr * cfg.data.clip_seconds)
                t = np.arange(n) / sr
                env = np.repeat(rng.uniform(0.1, 1.0, 64), sr // 4)[:n]
                segments = []
                if variant == "silence":
                    a, b = int(1.25 * fps), int(2.75 * fps)
                    env[int(a / fps * sr):int(b / fps * sr)] = 0.0
                    segments.append({"kind": "silence", "tracks": [], "start_s": a / fps, "end_s": b / fps,
                                     "start_frame": a, "end_frame": b})
                if variant == "normal":
                    a, b = int(1.0 * fps), int(2.0 * fps)
                    env[int(a / fps * sr):int(b / fps * sr)] *= 0.3
                    segments.append({"kind": "dropout", "tracks": ["lead"], "start_s": a / fps, "end_s": b / fps,
                                     "start_frame": a, "end_frame": b})
                wave = S.quantize_pcm16((0.4 * env * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
                feats, _ = compute_audio_timeline(wave, sr, fps, cfg.timeline)  # (T, C)
                rms = feats[:, names.index("rms")]
                level = rms / max(float(rms.max()), 1e-6)
                yy, xx = np.mgrid[0:res, 0:res] / (res - 1)
                frames = []
                for f in range(len(feats)):
                    radius = 0.1 + 0.35 * level[f]
                    look = i if split == "val_siblings" else src  # siblings: same audio, their own look
                    img = np.full((res, res, 3), 30 + 40 * (look % 3) * (split == "val_siblings"), np.uint8)
                    img[(xx - 0.5) ** 2 + (yy - 0.5) ** 2 < radius ** 2] = (220, 120 + 40 * (look % 3), 60)
                    frames.append(S.encode_jpeg(img, 90))
                key = S.sample_key(shard, i)
                meta = {"schema_version": S.SCHEMA_VERSION, "seed": src, "shard": shard, "sample": i, "variant": variant,
                        "tempo": 120.0, "segments": segments, "fps": fps, "resolution": res, "n_frames": len(feats),
                        "timeline_channels": names}
                w.add_sample(key, S.pixel_members(wave, sr, feats, frames, meta))
    return root
