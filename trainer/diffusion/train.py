"""The diffusion training loop behind ``trainer diffusion`` (reads top to bottom).

``train(cfg, run_dir, make_batches, val_batches, ...)`` is the loop itself, over any source of snippet
batches (docs/INTERFACES.md); :func:`run_from_latents` wires it to latent shards, the latent manifest and
the VAE the latents came from. Run layout (ARCHITECTURE.md, "Paths")::

    RUN/config.yaml  RUN/ckpt/step-*/{model,ema,optim}.safetensors + state.json  RUN/latest
    RUN/metrics.jsonl  RUN/tb/  RUN/summary.json
    RUN/vae/config.yaml  RUN/vae/ckpt/step-*/ema.safetensors  RUN/vae/latest   (the VAE trained against)

Exact resume: the loss's random draws at step s on rank r come from a generator seeded by (run.seed, r, s),
so they need no saved state; model, EMA, optimizer and the global RNGs are restored from the checkpoint,
and ``make_batches(start_step)`` must yield the batches of steps start_step, start_step + 1, ... . With the
synthetic source in tests that is exact; with streaming shards the resumed stream is a fresh one seeded by
the start step (statistically the same, not the same samples: streaming shards cannot seek).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from shared.config import Config, ConfigError
from shared.seeding import derive_seed
from trainer import checkpoint as ckpt
from trainer import runtime as rt
from trainer.data import target_variant_mix
from trainer.diffusion.losses import diffusion_loss, val_losses
from trainer.diffusion.model import Denoiser, count_parameters

SECTIONS = ("diffusion", "timeline", "vae")  # shape-deciding sections (latent shape, audio channels, model)
LOGGED_EVERY_STEP = ("loss", "L_diff", "L_good", "L_bad", "gap", "hinge", "hinge_active_frac", "shuffle_applied",
                     "style_kl", "frame_proxy", "silence_motion", "audio_drop_frac")


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only: biases, null embeddings and position tables are not shrunk toward 0."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def loss_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The generator for one step's noise, timesteps, dropouts and negatives: a pure function of its place."""
    return torch.Generator().manual_seed(derive_seed(seed, rank, step))


def evaluate(model: nn.Module, val_batches: list[dict], cfg: Config, dist: rt.Dist, device: torch.device) -> dict[str, float]:
    """Val loss with true vs shuffled audio, averaged over the val batches and the ranks (fixed noise per batch)."""
    was_training = model.training
    model.eval()
    sums = {"val_L_good": 0.0, "val_L_bad": 0.0}
    with rt.autocast(cfg.run, device):
        for i, batch in enumerate(val_batches):
            out = val_losses(model, to_device(batch, device), cfg, loss_generator(cfg.run.seed + 1, dist.rank, i))
            for k in sums:
                sums[k] += out[k] / max(1, len(val_batches))
    model.train(was_training)
    good, bad = rt.all_reduce_mean([sums["val_L_good"], sums["val_L_bad"]], dist)
    return {"val_L_good": good, "val_L_bad": bad, "val_gap": bad - good}


@torch.no_grad()
def write_sample_grid(model: Denoiser, batch: dict, cfg: Config, decoder: Callable[[torch.Tensor], torch.Tensor],
                      path: Path, device: torch.device, n_clips: int = 4) -> Any:
    """Sample val snippets with ``model`` (the EMA weights) and write a PNG: per clip, the decoded true latents
    above the decoded sample, frames left to right. Returns the grid (H, W, 3) uint8."""
    import matplotlib.image
    import numpy as np

    from trainer.data import unit_to_frame
    from trainer.diffusion.sampler import sample_snippet

    b = {k: v[:n_clips] for k, v in to_device(batch, device).items()}
    mu, _ = model.encode_style(b["style"].float())
    cond = model.make_cond(b["audio"].float(), b["is_silent"], b["frame_index"], prev=b["prev"].float(),
                           prev_valid=b["prev_valid"], style_z=mu)
    inf = cfg.inference
    x0 = sample_snippet(model, cond, tuple(b["x"].shape), inf.steps, inf.audio_guidance_scale,
                        torch.Generator().manual_seed(inf.seed), inf.sampler, device)  # (n, F, C, h, w)
    rows = []
    for lat in (b["x"].float(), x0):
        frames = decoder(lat.flatten(0, 1))  # (n*F, 3, H, W)
        frames = frames.reshape(*lat.shape[:2], *frames.shape[1:])
        rows.append(unit_to_frame(frames.clamp(-1, 1)))  # (n, F, H, W, 3)
    pairs = np.stack(rows, axis=1)  # (n, 2, F, H, W, 3)
    n, two, f, h, w, _ = pairs.shape
    grid = pairs.transpose(0, 1, 3, 2, 4, 5).reshape(n * two * h, f * w, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(path, grid)
    return grid


def train(cfg: Config, run_dir: str | Path, make_batches: Callable[[int], Iterator[dict]], val_batches: list[dict], *,
          latent_channels: int, latent_size: int, n_audio_channels: int, dist: rt.Dist | None = None,
          decoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
          preview_decoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
          extra_state: dict[str, Any] | None = None, force: bool = False, show_progress: bool = True,
          skip_counter: Any = None) -> dict[str, Any]:
    """Train (or resume) the denoiser in ``run_dir`` up to ``cfg.diffusion.steps``; return the summary.

    ``decoder`` (VAE decode of scaled latents) feeds the decoded-frame proxy when its weight is > 0;
    ``preview_decoder`` (usually the same) turns EMA samples into ``samples/step-*.png`` every
    ``run.sample_every`` steps.
    """
    d, run = cfg.diffusion, cfg.run
    if d.batch_size < 2 and d.audio_shuffle_negatives in ("derange", "hard"):
        raise ConfigError(f"diffusion.batch_size={d.batch_size}: {d.audio_shuffle_negatives} negatives borrow another "
                         "clip's audio, so a step needs at least 2 snippets per rank")
    dist = dist or rt.setup_distributed(run.device)
    device = dist.device
    run_dir = Path(run_dir)

    # --- the run directory: refuse a different model shape (unless force), write config.yaml
    model_kwargs = {"latent_channels": latent_channels, "latent_size": latent_size, "n_audio_channels": n_audio_channels}
    if dist.is_main:
        ckpt.prepare_run_dir(run_dir, cfg, SECTIONS, force, extra={"model_kwargs": model_kwargs, **(extra_state or {})})
    rt.barrier(dist)

    # --- model, EMA, optimizer (same init on every rank; DDP also broadcasts rank 0's weights)
    rt.seed_everything(run.seed)
    model = Denoiser(cfg, **model_kwargs).to(device)
    ema = rt.EMA(model, d.ema_decay)
    opt = torch.optim.AdamW(param_groups(model, d.weight_decay), lr=d.lr, betas=(0.9, 0.99),
                            fused=device.type == "cuda")

    # --- resume from RUN/latest when there is one
    start_step = 0
    loaded = ckpt.load_checkpoint(run_dir, map_location=device)
    if loaded is not None:
        start_step, tensors, state = loaded
        model.load_state_dict(tensors["model"])
        ema.load_state_dict(tensors["ema"])
        opt.load_state_dict(tensors["optim"])
        rt.restore_rng_state(state["rng"])
        if dist.is_main:
            print(f"resuming {run_dir} from step {start_step}")
    if start_step >= d.steps:
        if dist.is_main:
            print(f"{run_dir} is already at step {start_step} >= diffusion.steps={d.steps}: nothing to do")
        return json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}

    # --- compile (CUDA only: on the CPU it costs start-up and gives nothing at our sizes), DDP
    net: nn.Module = model
    if d.compile and device.type == "cuda":
        net = torch.compile(net)
    if dist.distributed:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    eval_model = Denoiser(cfg, **model_kwargs).to(device).eval()  # holds the EMA weights for val
    for p in eval_model.parameters():
        p.requires_grad_(False)

    logger = rt.MetricsLogger(run_dir, enabled=dist.is_main, resume_step=start_step if loaded else None)
    bar = rt.progress(d.steps, start_step, "diffusion", disable=not (dist.is_main and show_progress))
    rate = rt.RateMeter()
    batches = make_batches(start_step)
    last: dict[str, float] = {}
    val: dict[str, float] = {}
    t_start = time.perf_counter()
    samples_per_step = d.batch_size * dist.world_size

    def save(step: int) -> None:
        state = {"rng": rt.capture_rng_state(), "model_kwargs": model_kwargs, "metrics": last, "val": val,
                 **(extra_state or {})}
        if dist.is_main:
            ckpt.save_checkpoint(run_dir, step, {"model": model.state_dict(), "ema": ema.state_dict(),
                                                 "optim": opt.state_dict()}, state, run.keep_checkpoints)
        rt.barrier(dist)

    model.train()
    for step in range(start_step, d.steps):
        # one optimisation step
        for g in opt.param_groups:
            g["lr"] = rt.lr_at(step, d.lr, d.warmup_steps)
        batch = to_device(next(batches), device)
        with rt.autocast(run, device):
            loss, metrics = diffusion_loss(net, batch, cfg, loss_generator(run.seed, dist.rank, step), decoder)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), d.grad_clip)
        opt.step()
        ema.decay = rt.ema_decay_at(step, d.ema_decay)
        ema.update(model)
        rate.add(samples_per_step)

        # L_good, L_bad, gap and the hinge fraction every step (means over ranks)
        names = list(LOGGED_EVERY_STEP)
        local = torch.stack([metrics[k].float().to(device) for k in names] + [grad_norm.float()]).tolist()  # one sync
        values = rt.all_reduce_mean(local, dist)
        if not all(math.isfinite(v) for v in values):
            raise FloatingPointError(f"non-finite loss at step {step + 1}: {dict(zip(names, values))}")
        last = dict(zip(names + ["grad_norm"], values))
        last["lr"] = opt.param_groups[0]["lr"]
        mix = target_variant_mix(cfg.data, step)  # the curriculum's debug fraction the loader draws toward
        if mix is not None:
            last["debug_mix"] = mix["debug"]
        if (step + 1) % run.log_every == 0 or step == start_step:
            last["samples_per_s"] = rate.read()
        logger.log(step + 1, last, prefix="train/")
        bar.update(1)
        bar.set_postfix(loss=f"{last['loss']:.4f}", gap=f"{last['gap']:+.4f}", hinge=f"{last['hinge_active_frac']:.2f}")

        # periodic val loss with true vs shuffled audio (raw weights and the EMA weights used for sampling)
        if (step + 1) % d.val_every == 0 or step + 1 == d.steps:
            ema.copy_to(eval_model)
            val = {**evaluate(model, val_batches, cfg, dist, device),
                   **{k.replace("val_", "val_ema_"): v for k, v in evaluate(eval_model, val_batches, cfg, dist, device).items()}}
            logger.log(step + 1, val, prefix="val/")
            if dist.is_main:
                bar.write(f"step {step + 1}: val gap {val['val_gap']:+.4f} (L_good {val['val_L_good']:.4f}, "
                          f"L_bad {val['val_L_bad']:.4f}); EMA gap {val['val_ema_gap']:+.4f}")

        if preview_decoder is not None and dist.is_main and ((step + 1) % run.sample_every == 0 or step + 1 == d.steps):
            ema.copy_to(eval_model)
            grid = write_sample_grid(eval_model, val_batches[0], cfg, preview_decoder,
                                     run_dir / "samples" / f"{ckpt.step_dir_name(step + 1)}.png", device)
            logger.log_image(step + 1, "samples/true_over_sampled", grid)

        if (step + 1) % run.checkpoint_every == 0 or step + 1 == d.steps:
            save(step + 1)

    bar.close()
    logger.close()
    summary = {
        "steps": d.steps, "resumed_from": start_step if loaded else None, "world_size": dist.world_size,
        "device": str(device), "parameters": count_parameters(model), "model_kwargs": model_kwargs,
        "seconds": round(time.perf_counter() - t_start, 3),
        "samples_per_s": round((d.steps - start_step) * samples_per_step / max(time.perf_counter() - t_start, 1e-9), 2),
        "train": last, "val": val,
        "skipped": skip_counter.as_dict() if skip_counter is not None else None, **(extra_state or {}),
    }
    if dist.is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    rt.barrier(dist)
    return summary


# ------------------------------------------------------------------ wiring to latent shards and the VAE


def read_latent_manifest(latents_dir: str | Path) -> dict[str, Any]:
    """``LATENTS/manifest.json`` (written by ``trainer cache-latents``); a clear error when absent."""
    p = Path(latents_dir) / "manifest.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: run `trainer cache-latents` first (or pass --latents DIR)")
    return json.loads(p.read_text())


def latent_scale_of(manifest: dict[str, Any]) -> float:
    """The latent scale factor (latents are multiplied by it for diffusion, divided before decoding)."""
    if "latent_scale" in manifest:
        return float(manifest["latent_scale"])
    raise KeyError(f"latent manifest has no 'latent_scale' (keys: {sorted(manifest)})")


def vae_path_of(manifest: dict[str, Any], latents_dir: Path) -> Path:
    """The VAE checkpoint the latents were encoded with, as the latent manifest records it (``vae``: a path,
    or ``{"checkpoint": step dir, "run": run dir, ...}`` as ``trainer cache-latents`` writes it)."""
    ref = manifest.get("vae")
    refs = [ref.get(k) for k in ("checkpoint", "step_dir", "run", "path")] if isinstance(ref, dict) else [ref]
    refs = [Path(r) for r in refs if r]
    if not refs:
        raise KeyError(f"latent manifest in {latents_dir} does not record the VAE ('vae'): cannot record "
                       "which VAE this diffusion run is trained against")
    for r in refs:
        for cand in (r, latents_dir / r):
            if ckpt.find_checkpoint(cand) is not None:
                return cand
    raise FileNotFoundError(f"the VAE recorded in {latents_dir}/manifest.json is gone: "
                            f"no checkpoint at {', '.join(map(str, refs))}")


def record_vae(run_dir: Path, vae_path: Path, latent_scale: float, force: bool = False) -> Path:
    """Copy the VAE's resolved config and EMA weights into ``RUN/vae/`` (loadable by ``load_vae``).

    A run already trained against another VAE (or latent scale) refuses to switch unless ``force``.
    """
    step_dir = ckpt.find_checkpoint(vae_path)
    if step_dir is None:
        raise FileNotFoundError(f"no VAE checkpoint under {vae_path}")
    previous = ckpt.load_checkpoint(run_dir / "vae") if (run_dir / "vae").exists() else None
    if previous is not None and not force:
        old = previous[2]
        if old.get("source") != str(step_dir.resolve()) or old.get("latent_scale") != latent_scale:
            raise ckpt.CheckpointError(
                f"{run_dir} was trained against the VAE {old.get('source')} (latent scale {old.get('latent_scale')}), "
                f"these latents come from {step_dir.resolve()} (scale {latent_scale}); use another --out, or --force")
    vae_run = step_dir.parent.parent if step_dir.parent.name == ckpt.CKPT_DIR else vae_path
    step, tensors, _ = ckpt.load_checkpoint(step_dir)
    if "ema" not in tensors:
        raise KeyError(f"{step_dir} has no EMA weights (has {sorted(tensors)})")
    dest = run_dir / "vae"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(vae_run / ckpt.CONFIG_FILE, dest / ckpt.CONFIG_FILE)
    ckpt.save_checkpoint(dest, step, {"ema": tensors["ema"]},
                         {"source": str(step_dir.resolve()), "latent_scale": latent_scale}, keep=1)
    return dest


def make_decoder(vae_dir: Path, latent_scale: float, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Frozen VAE decoder on scaled latents: ``frames = vae.decode(z / latent_scale)`` in [-1, 1]."""
    from trainer.vae.model import load_vae

    vae, _, _ = load_vae(vae_dir, device)
    for p in vae.parameters():
        p.requires_grad_(False)
    return lambda z: vae.decode(z / latent_scale)


def run_from_latents(cfg: Config, latents_dir: str | Path, out: str | Path, force: bool = False,
                     val_batches_n: int = 4) -> dict[str, Any]:
    """``trainer diffusion``: latent shards + manifest -> a trained run in ``out``."""
    from trainer.data import SkipCounter, snippet_loader
    from shared.timeline import channel_names

    dist = rt.setup_distributed(cfg.run.device)
    latents_dir, run_dir = Path(latents_dir), Path(out)
    manifest = read_latent_manifest(latents_dir)
    scale = latent_scale_of(manifest)
    vae_src = vae_path_of(manifest, latents_dir)
    if dist.is_main:
        ckpt.check_run_config(run_dir, cfg, SECTIONS, force)  # refuse (or move aside) before touching RUN/vae
        run_dir.mkdir(parents=True, exist_ok=True)
        record_vae(run_dir, vae_src, scale, force)
    rt.barrier(dist)

    counter = SkipCounter()

    def loader(split: str, seed: int, start_step: int) -> Iterator[dict]:
        return iter(snippet_loader(str(latents_dir), cfg, split, cfg.diffusion.batch_size, seed=seed, rank=dist.rank,
                                   world_size=dist.world_size, num_workers=cfg.run.num_workers, counter=counter,
                                   latent_scale=scale, start_step=start_step, pin_memory=dist.device.type == "cuda"))

    def make_batches(start_step: int) -> Iterator[dict]:
        # A fresh stream per (seed, start step): the stream after a resume is not the one before it.
        return loader("train", derive_seed(cfg.run.seed, "train", start_step), start_step)

    val_iter = loader("val", derive_seed(cfg.run.seed, "val"), 0)
    val_batches = [next(val_iter) for _ in range(val_batches_n)]
    del val_iter  # stops its loader workers: the val batches stay in memory for the whole run
    first = val_batches[0]
    _, _, c, h, w = first["x"].shape
    if h != w:
        raise ValueError(f"latents must be square, got {h}x{w}")
    n_audio = first["audio"].shape[-1]
    if n_audio != len(channel_names(cfg.timeline)):
        raise ValueError(f"latent shards have {n_audio} timeline channels, the config's timeline has "
                         f"{len(channel_names(cfg.timeline))}")
    vae_decoder = make_decoder(run_dir / "vae", scale, dist.device)
    decoder = vae_decoder if cfg.diffusion.audio_shuffle_frame_proxy_weight > 0 else None
    extra = {"latent_scale": scale, "latents": str(latents_dir.resolve()), "vae_source": str(vae_src),
             "vae": "vae"}
    try:
        return train(cfg, run_dir, make_batches, val_batches, latent_channels=c, latent_size=h, n_audio_channels=n_audio,
                     dist=dist, decoder=decoder, preview_decoder=vae_decoder, extra_state=extra, force=force, skip_counter=counter)
    finally:
        rt.cleanup_distributed()
