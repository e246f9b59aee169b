"""`trainer vae`: train the frame VAE on pixel shards. Reads top to bottom.

Exact resume: the data stream is cut into segments that start at multiples of
``run.checkpoint_every``; a segment's loader is seeded by (run.seed, segment start), and the
posterior noise of step s is drawn from a generator seeded by (run.seed, s, rank). Resuming from
any checkpoint rebuilds the segment's loader and skips the batches already consumed, so an
interrupted and resumed run sees exactly the batches, noise and updates of an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.config import Config
from shared.seeding import derive_seed
from trainer import runtime as rt
from trainer.checkpoint import load_checkpoint, prepare_run_dir, save_checkpoint
from trainer.data import ShardDataset, SkipCounter, frame_loader, make_loader, resolve_shards, unit_to_frame
from trainer.vae.loss import psnr, vae_loss
from trainer.vae.model import FrameVAE

SHAPE_SECTIONS = ("vae",)
GRAD_CLIP = 1.0  # the VAE has no grad-clip knob: 1.0 only bites in the first, noisy steps
VAL_FRAMES = 32  # fixed val frames for PSNR and the reconstruction grid
GRID_COLUMNS = 8
_NOISE_STAGE, _LOADER_STAGE = 11, 12  # derive_seed path ids


def segment_start(step: int, every: int) -> int:
    """The first step of the loader segment that holds ``step`` (segments start at checkpoint steps)."""
    return (step // every) * every


def val_frames(data: str, cfg: Config, n: int) -> torch.Tensor:
    """A fixed set of val frames ``(n, 3, H, W)`` (falls back to train when there is no val split)."""
    try:
        urls = resolve_shards(data, "val")
    except FileNotFoundError:
        urls = resolve_shards(data, "train")
    ds = ShardDataset(urls, cfg, "frames", seed=cfg.run.seed, resampled=False, shardshuffle=False,
                      frames_per_clip=2, shuffle=1)
    frames = []
    for s in ds:
        frames.append(torch.from_numpy(s["frame"]))
        if len(frames) == n:
            break
    if not frames:
        raise RuntimeError(f"no readable val frames in {data}")
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
    model.eval()
    outs = []
    for chunk in frames.split(cfg.vae.batch_size):
        with rt.autocast(cfg.run, device):
            recon, _, _ = model(chunk.to(device))
        outs.append(recon.float().clamp(-1, 1).cpu())
    model.train()
    recon = torch.cat(outs)
    return psnr(recon, frames), recon


def train_vae(cfg: Config, data: str, out: str, force: bool = False) -> dict[str, Any]:
    dist = rt.setup_distributed(cfg.run.device)
    device = dist.device
    run = Path(out)
    vc = cfg.vae

    resolve_shards(data, "train")  # a missing or empty --data fails here, before the run dir is touched
    # --- run dir: refuse a different model shape (unless --force), write config.yaml
    if dist.is_main:
        prepare_run_dir(run, cfg, SHAPE_SECTIONS, force, extra={"command": "vae", "data": str(data)})
    rt.barrier(dist)

    # --- model, optimizer, EMA (same init on every rank; DDP also broadcasts it)
    rt.seed_everything(cfg.run.seed)
    model = FrameVAE(vc).to(device)
    # No weight decay: the VAE is small next to its data and decay only fights the reconstruction.
    opt = torch.optim.AdamW(model.parameters(), lr=vc.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ema = rt.EMA(model, vc.ema_decay)
    step = 0
    last_metrics: dict[str, float] = {}
    skips_before = {"corrupt_samples": 0, "unreadable_shards": 0}
    samples_seen = 0
    ckpt = load_checkpoint(run)
    if ckpt is not None:
        step, tensors, state = ckpt
        model.load_state_dict(tensors["model"])
        ema.load_state_dict(tensors["ema"])
        ema.num_updates = state.get("ema_updates", step)
        opt.load_state_dict(tensors["optim"])
        rt.restore_rng_state(state["rng"])
        skips_before = state.get("skipped", skips_before)
        samples_seen = state.get("samples_seen", 0)
        last_metrics = state.get("metrics", {})
        if dist.is_main:
            print(f"vae: resuming {run} from step {step}")
    if step >= vc.steps and dist.is_main:
        print(f"vae: {run} is already at step {step} >= vae.steps={vc.steps}; writing the summary only")

    net: torch.nn.Module = model
    if dist.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if vc.compile:
        net = torch.compile(net)

    logger = rt.MetricsLogger(run, enabled=dist.is_main, resume_step=step if ckpt else None)
    val = val_frames(data, cfg, VAL_FRAMES) if dist.is_main else None
    ema_model = copy.deepcopy(model).eval()
    counter = SkipCounter()
    noise_gen = torch.Generator(device=device)

    def make_segment_loader(start: int):
        return iter(frame_loader(data, cfg, "train", vc.batch_size, seed=derive_seed(cfg.run.seed, _LOADER_STAGE, start),
                                 rank=dist.rank, world_size=dist.world_size, num_workers=cfg.run.num_workers,
                                 counter=counter, start_step=start, pin_memory=device.type == "cuda"))

    if step < vc.steps:
        seg = segment_start(step, cfg.run.checkpoint_every)
        batches = make_segment_loader(seg)
        for _ in range(step - seg):  # resuming mid-segment: skip what the interrupted run consumed
            next(batches)
        counter.reset()  # those skips were counted by the interrupted run (skips_before)

    bar = rt.progress(vc.steps, step, "vae", disable=not dist.is_main)
    rate = rt.RateMeter()
    acc: dict[str, float] = {}
    n_acc = 0
    last: dict[str, float] = dict(last_metrics)
    t_start = time.time()
    while step < vc.steps:
        x = next(batches)["frame"].to(device, non_blocking=True)  # (B, 3, H, W)
        for g in opt.param_groups:
            g["lr"] = rt.lr_at(step, vc.lr, vc.warmup_steps)
        noise_gen.manual_seed(derive_seed(cfg.run.seed, _NOISE_STAGE, step, dist.rank))
        h = x.shape[-1] // vc.downsample
        noise = torch.randn((x.shape[0], vc.latent_channels, h, h), generator=noise_gen, device=device)
        with rt.autocast(cfg.run, device):
            recon, mean, logvar = net(x, noise)
        loss, terms = vae_loss(recon, x, mean, logvar, vc)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        ema.decay = rt.ema_decay_at(step, vc.ema_decay)
        ema.update(model)
        step += 1
        samples_seen += x.shape[0] * dist.world_size
        rate.add(x.shape[0] * dist.world_size)
        bar.update(1)
        for k, v in {"loss": loss, "grad_norm": grad_norm, **terms}.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        n_acc += 1

        if step % cfg.run.log_every == 0 or step == vc.steps:
            names = sorted(acc)
            means = rt.all_reduce_mean([acc[k] / n_acc for k in names], dist)
            last = dict(zip(names, means))
            last["lr"] = opt.param_groups[0]["lr"]
            last["samples_per_s"] = rate.read()
            last["skipped"] = rt.all_reduce_sum([counter.value], dist)[0] + sum(skips_before.values())
            logger.log(step, {f"train/{k}": v for k, v in last.items()})
            bar.set_postfix(loss=f"{last['loss']:.4f}", samples_s=f"{last['samples_per_s']:.0f}")
            acc, n_acc = {}, 0

        if dist.is_main and (step % cfg.run.sample_every == 0 or step == vc.steps):
            ema.copy_to(ema_model)
            val_psnr, _ = evaluate(model, val, device, cfg)
            val_psnr_ema, recon = evaluate(ema_model, val, device, cfg)
            last.update(val_psnr=val_psnr, val_psnr_ema=val_psnr_ema)
            logger.log(step, {"val/psnr": val_psnr, "val/psnr_ema": val_psnr_ema})
            grid = recon_grid(val, recon)
            (run / "samples").mkdir(exist_ok=True)
            import matplotlib.image

            matplotlib.image.imsave(run / "samples" / f"recon-{step:08d}.png", grid)
            logger.log_image(step, "val/recon", grid)

        if step % cfg.run.checkpoint_every == 0 or step == vc.steps:
            skipped = rt.all_reduce_sum([counter.samples, counter.shards], dist)
            if dist.is_main:
                state = {"rng": rt.capture_rng_state(), "ema_updates": ema.num_updates, "samples_seen": samples_seen,
                         "skipped": {"corrupt_samples": skips_before["corrupt_samples"] + int(skipped[0]),
                                     "unreadable_shards": skips_before["unreadable_shards"] + int(skipped[1])},
                         "metrics": last}
                save_checkpoint(run, step, {"model": model.state_dict(), "ema": ema.state_dict(),
                                            "optim": opt.state_dict()}, state, cfg.run.keep_checkpoints)
            rt.barrier(dist)
            if step % cfg.run.checkpoint_every == 0 and step < vc.steps:
                batches = make_segment_loader(step)  # a new segment starts at every checkpoint step
    bar.close()

    skipped = rt.all_reduce_sum([counter.samples, counter.shards], dist)
    summary = {
        "command": "vae",
        "steps": step,
        "final": {k: v for k, v in last.items() if isinstance(v, float) and math.isfinite(v)},
        "corrupt_samples": skips_before["corrupt_samples"] + int(skipped[0]),
        "unreadable_shards": skips_before["unreadable_shards"] + int(skipped[1]),
        "samples_seen": samples_seen,
        "wall_s_this_session": round(time.time() - t_start, 3),
        "device": str(device),
        "world_size": dist.world_size,
        "precision": str(rt.autocast_dtype(cfg.run, device) or "fp32"),
    }
    if dist.is_main:
        (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        logger.close()
        print(f"vae: done at step {step}; val PSNR (EMA) {summary['final'].get('val_psnr_ema', float('nan')):.2f} dB; "
              f"skipped {summary['corrupt_samples']} corrupt samples, {summary['unreadable_shards']} unreadable shards; "
              f"run dir {run}")
    rt.barrier(dist)
    rt.cleanup_distributed()
    return summary
