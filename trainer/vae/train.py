"""`trainer vae`: the frame VAE as a task of the training loop (trainer/loop.py owns the loop, resume and
checkpoints). What is the VAE's own: the model and optimizer, frame batches from pixel shards, the loss on a
posterior sample, PSNR on fixed val frames and a reconstruction grid.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from shared.config import Config
from shared.errors import DataError
from shared.seeding import derive_seed
from trainer import runtime as rt
from trainer.data import ShardDataset, frame_loader, resolve_shards, unit_to_frame
from trainer.loop import Hyper, Task, done_word, train
from trainer.vae.loss import psnr, vae_loss
from trainer.vae.model import FrameVAE

SHAPE_SECTIONS = ("vae",)
VAL_FRAMES = 32  # fixed val frames for PSNR and the reconstruction grid
GRID_COLUMNS = 8
_LOADER_STAGE = 12  # derive_seed path id


def val_frames(data: str, cfg: Config, n: int) -> torch.Tensor:
    """A fixed set of val frames ``(n, 3, H, W)`` (falls back to train when there is no val split)."""
    try:
        urls = resolve_shards(data, "val")
    except DataError:
        urls = resolve_shards(data, "train")
    ds = ShardDataset(urls, cfg, "frames", seed=cfg.run.seed, resampled=False, shardshuffle=False,
                      frames_per_clip=2, shuffle=1)
    frames = []
    for s in ds:
        frames.append(torch.from_numpy(s["frame"]))
        if len(frames) == n:
            break
    if not frames:
        raise DataError(f"no readable val frames in {data}")
    return torch.stack(frames)


def recon_grid(originals: torch.Tensor, recons: torch.Tensor, columns: int = GRID_COLUMNS) -> np.ndarray:
    """uint8 image: pairs of rows, originals above their reconstructions."""
    n = min(columns, len(originals))
    top = unit_to_frame(originals[:n])  # (n, H, W, 3)
    bottom = unit_to_frame(recons[:n])
    return np.concatenate([np.concatenate(list(top), axis=1), np.concatenate(list(bottom), axis=1)], axis=0)


@torch.no_grad()
def evaluate(model: torch.nn.Module, frames: torch.Tensor, device: torch.device, cfg: Config
             ) -> tuple[float, torch.Tensor]:
    """PSNR of posterior-mean reconstructions of ``frames``, and the reconstructions."""
    was_training = model.training
    model.eval()
    outs = []
    for chunk in frames.split(cfg.vae.batch_size):
        with rt.autocast(cfg.run, device):
            recon, _, _ = model(chunk.to(device))
        outs.append(recon.float().clamp(-1, 1).cpu())
    model.train(was_training)
    recon = torch.cat(outs)
    return psnr(recon, frames), recon


class VaeTask(Task):
    name = "vae"
    shape_sections = SHAPE_SECTIONS

    def __init__(self, cfg: Config, data: str, dist: rt.Dist):
        vc = cfg.vae
        self.cfg, self.data, self.dist = cfg, str(data), dist
        self.hyper = Hyper(steps=vc.steps, lr=vc.lr, warmup_steps=vc.warmup_steps, grad_clip=vc.grad_clip,
                           ema_decay=vc.ema_decay, batch_size=vc.batch_size, compile=vc.compile)
        self.val_every = cfg.run.sample_every  # PSNR with every reconstruction grid
        self.val = val_frames(self.data, cfg, VAL_FRAMES) if dist.is_main else None

    def run_config_extra(self) -> dict[str, Any]:
        return {"command": "vae", "data": self.data}

    def build_model(self) -> torch.nn.Module:
        return FrameVAE(self.cfg.vae)

    def make_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        # No weight decay: the VAE is small next to its data and decay only fights the reconstruction.
        return torch.optim.AdamW(model.parameters(), lr=self.cfg.vae.lr, betas=(0.9, 0.99), weight_decay=0.0)

    def batches(self, start_step: int) -> Iterator[dict]:
        cfg, d = self.cfg, self.dist
        return iter(frame_loader(self.data, cfg, "train", cfg.vae.batch_size,
                                 seed=derive_seed(cfg.run.seed, _LOADER_STAGE, start_step), rank=d.rank,
                                 world_size=d.world_size, num_workers=cfg.run.num_workers, start_step=start_step,
                                 pin_memory=d.device.type == "cuda"))

    def loss(self, net: torch.nn.Module, batch: dict, generator: torch.Generator, step: int
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        vc = self.cfg.vae
        x = batch["frame"]  # (B, 3, H, W)
        h = x.shape[-1] // vc.downsample
        noise = torch.randn((x.shape[0], vc.latent_channels, h, h), generator=generator).to(x.device)
        recon, mean, logvar = net(x, noise)
        return vae_loss(recon, x, mean, logvar, vc)

    def validate(self, model: torch.nn.Module, ema_model: torch.nn.Module, step: int) -> dict[str, float]:
        if self.val is None:  # the main rank validates alone
            return {}
        device = self.dist.device
        val_psnr, _ = evaluate(model, self.val, device, self.cfg)
        val_psnr_ema, _ = evaluate(ema_model, self.val, device, self.cfg)
        return {"psnr": val_psnr, "psnr_ema": val_psnr_ema}

    def preview(self, ema_model: torch.nn.Module, step: int) -> tuple[str, np.ndarray] | None:
        if self.val is None:
            return None
        _, recon = evaluate(ema_model, self.val, self.dist.device, self.cfg)
        return f"recon-{step:08d}.png", recon_grid(self.val, recon)


def train_vae(cfg: Config, data: str, out: str, force: bool = False) -> dict[str, Any]:
    """``trainer vae``: pixel shards -> a trained (or resumed) VAE run in ``out``; returns the summary."""
    with rt.distributed_world(cfg.run.device) as dist:
        resolve_shards(data, "train")  # a missing or empty --data fails here, before the run dir is touched
        summary = train(VaeTask(cfg, data, dist), cfg, out, dist=dist, force=force)
        if dist.is_main:
            sk = summary["skipped"]
            print(f"vae: {done_word(summary)} at step {summary['steps']}; val PSNR (EMA) {summary['val'].get('psnr_ema', float('nan')):.2f}"
                  f" dB; skipped {sk['corrupt_samples']} corrupt samples, {sk['unreadable_shards']} unreadable shards; "
                  f"run dir {out}")
        return summary
