"""Convolutional frame VAE: GroupNorm + SiLU residual blocks, stride-2 downsampling, nearest upsampling.

Widths: stage i has ``min(base_channels * 2**i, max_channels)`` channels; ``log2(downsample)``
stages. The encoder outputs a diagonal Gaussian posterior (mean, log-variance) with
``latent_channels`` channels at ``resolution / downsample``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn


def group_count(channels: int, max_groups: int = 32) -> int:
    """The largest divisor of ``channels`` that is at most ``max_groups`` (GroupNorm needs a divisor)."""
    return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


def stage_widths(base: int, cap: int, n_stages: int) -> list[int]:
    """Channels per resolution level, finest first: ``min(base * 2**i, cap)`` for i = 0..n_stages."""
    return [min(base * 2 ** i, cap) for i in range(n_stages + 1)]


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(group_count(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(group_count(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.act = nn.SiLU()
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = self.conv2(self.act(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    def __init__(self, widths: list[int], latent_channels: int):
        super().__init__()
        self.conv_in = nn.Conv2d(3, widths[0], 3, padding=1)
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [ResBlock(cin, cin), nn.Conv2d(cin, cout, 3, stride=2, padding=1)]
        layers += [ResBlock(widths[-1], widths[-1]), ResBlock(widths[-1], widths[-1])]
        self.body = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(group_count(widths[-1]), widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], 2 * latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.conv_in(x))
        return self.conv_out(nn.functional.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, widths: list[int], latent_channels: int):
        super().__init__()
        self.conv_in = nn.Conv2d(latent_channels, widths[-1], 3, padding=1)
        layers: list[nn.Module] = [ResBlock(widths[-1], widths[-1]), ResBlock(widths[-1], widths[-1])]
        rev = widths[::-1]
        for cin, cout in zip(rev[:-1], rev[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1),
                       ResBlock(cout, cout)]
        self.body = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(group_count(widths[0]), widths[0])
        self.conv_out = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.body(self.conv_in(z))
        return self.conv_out(nn.functional.silu(self.norm_out(h)))


class FrameVAE(nn.Module):
    """``encode(x (B, 3, H, W)) -> mean, logvar (B, C, H/d, W/d)``; ``decode(z) -> (B, 3, H, W)``."""

    def __init__(self, vcfg: Any):
        super().__init__()
        self.downsample = int(vcfg.downsample)
        self.latent_channels = int(vcfg.latent_channels)
        n_stages = int(round(math.log2(self.downsample)))
        if 2 ** n_stages != self.downsample:
            raise ValueError(f"vae.downsample must be a power of two (got {vcfg.downsample})")
        widths = stage_widths(vcfg.base_channels, vcfg.max_channels, n_stages)
        self.encoder = Encoder(widths, self.latent_channels)
        self.decoder = Decoder(widths, self.latent_channels)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-1] % self.downsample or x.shape[-2] % self.downsample:
            raise ValueError(f"frame size {tuple(x.shape[-2:])} is not divisible by vae.downsample={self.downsample}")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct through a posterior sample ``mean + std * noise`` (the mean when noise is None)."""
        mean, logvar = self.encode(x)
        z = mean if noise is None else mean + (0.5 * logvar).exp() * noise.to(mean.dtype)
        return self.decode(z), mean, logvar


def load_vae(path: str | os.PathLike, device: str | torch.device = "cpu", weights: str = "ema"
             ) -> tuple[FrameVAE, Any, Path]:
    """A trained VAE from a run dir (its ``latest``) or a step dir: ``(model in eval mode, Config, step dir)``.

    The architecture comes from the run's saved ``config.yaml``; the weights (EMA by default) from
    safetensors only.
    """
    from shared.config import build_config
    from shared.errors import CheckpointError
    from trainer.checkpoint import read_checkpoint, read_run_config

    ckpt = read_checkpoint(path, names=[weights])
    if ckpt is None:
        raise CheckpointError(f"no VAE checkpoint under {path} (expected RUN/latest or a ckpt/step-* dir)")
    step_dir = ckpt.step_dir
    run_dir = step_dir.resolve().parent.parent if step_dir.resolve().parent.name == "ckpt" else Path(path)
    saved = read_run_config(run_dir)
    if saved is None:
        raise CheckpointError(f"{run_dir}/config.yaml is missing: cannot tell the VAE's architecture")
    cfg = build_config(base=saved)
    model = FrameVAE(cfg.vae)
    model.load_state_dict(ckpt.tensors[weights])
    return model.to(device).eval(), cfg, step_dir
