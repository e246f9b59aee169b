"""A tiny diffusion checkpoint for the sampling and evaluation tests, built with the real trainer modules.

The VAE is a freshly initialised :class:`FrameVAE` saved as a run (the sampler only decodes with it);
the denoiser is trained for a few dozen steps by the real loop (``trainer.diffusion.train.train``) on
synthetic snippet batches whose latents follow the audio, and the VAE is recorded into RUN/vae/ by the
same function ``trainer diffusion`` uses. No datagen, no GL, no mocks.
"""

from __future__ import annotations

from pathlib import Path

import torch

from shared.config import Config, build_config
from trainer.checkpoint import prepare_run_dir, save_checkpoint
from trainer.diffusion.synthetic import n_audio_channels, synthetic_batch

ROOT = Path(__file__).resolve().parents[1]

# 32 px frames, 8 fps, 16 kHz audio, 4x downsampling -> 8x8x4 latents; 4-frame snippets, 4 sampling steps.
TINY_OVERRIDES = [
    "render.resolution=32", "render.fps=8", "data.sample_rate=16000", "data.clip_seconds=4.0",
    "timeline.n_fft=256", "vae.downsample=4", "vae.base_channels=8", "vae.max_channels=16",
    "diffusion.width=32", "diffusion.depth=2", "diffusion.heads=2", "diffusion.batch_size=8",
    "diffusion.warmup_steps=5", "diffusion.val_every=1000", "diffusion.lr=1e-3",
    "inference.steps=4", "inference.audio_guidance_scale=2.0", "run.device=cpu", "run.num_workers=0",
    "eval.n_clips=3", "eval.n_style_samples=2",
]


def tiny_config(steps: int, extra: list[str] = ()) -> Config:
    return build_config([ROOT / "configs" / "tiny.yaml"],
                        overrides=TINY_OVERRIDES + [f"diffusion.steps={steps}", f"run.checkpoint_every={steps}",
                                                    "run.log_every=1000"] + list(extra))


def build_tiny_checkpoint(root: Path, steps: int = 30, extra: list[str] = ()) -> Path:
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
            yield synthetic_batch(cfg, cfg.diffusion.batch_size, c, size, g)

    val = [synthetic_batch(cfg, 4, c, size, torch.Generator().manual_seed(7))]
    train(cfg, run_dir, batches, val, latent_channels=c, latent_size=size, n_audio_channels=n_audio_channels(cfg),
          extra_state={"latent_scale": scale, "vae": "vae"}, show_progress=False)
    return run_dir
