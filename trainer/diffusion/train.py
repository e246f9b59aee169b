"""`trainer diffusion`: the audio-conditioned denoiser as a task of the training loop (trainer/loop.py owns
the loop, resume and checkpoints).

What is the denoiser's own: the model and optimizer (weight decay on matrices only), snippet batches
from latent shards, the per-step loss (``trainer.diffusion.losses.diffusion_loss``: denoising + shuffle
pressure, with L_good, L_bad and the gap logged every step), val losses with true vs shuffled audio, and
a preview grid of EMA samples decoded by the VAE. :func:`run_from_latents` wires it to latent shards,
the latent manifest and the VAE the latents came from. Run layout (ARCHITECTURE.md, "Paths")::

    RUN/config.yaml  RUN/ckpt/step-*/{model,ema,optim}.safetensors + state.json  RUN/latest
    RUN/metrics.jsonl  RUN/tb/  RUN/summary.json  RUN/samples/step-*.png
    RUN/vae/config.yaml  RUN/vae/ckpt/step-*/ema.safetensors  RUN/vae/latest   (the VAE trained against)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from shared.config import Config
from shared.errors import CheckpointError, ConfigError, DataError
from shared.fsutil import atomic_path
from shared.seeding import derive_seed
from shared.timeline import channel_names
from trainer import checkpoint as ckpt
from trainer import runtime as rt
from trainer.conditioning import ConditioningSpec
from trainer.data import first_meta, snippet_loader, stored_channel_names, unit_to_frame
from trainer.diffusion.losses import diffusion_loss, shuffle_layout, style_posterior, val_losses
from trainer.diffusion.model import Denoiser
from trainer.diffusion.sampler import sample_snippet
from trainer import loop
from trainer.loop import Hyper, Task, to_device
from trainer.variant_mix import target_variant_mix
from trainer.vae.model import load_vae

SECTIONS = ("diffusion", "timeline", "vae")  # shape-deciding sections (latent shape, audio channels, model)
_VAL_STAGE = 31  # derive_seed path id of the val losses' generators


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only: biases, null embeddings and position tables are not shrunk toward 0."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def evaluate(model: nn.Module, val_batches: list[dict], cfg: Config, dist: rt.Dist) -> dict[str, float]:
    """Val loss with true vs shuffled audio, averaged over the val batches and the ranks (fixed noise per batch)."""
    was_training = model.training
    model.eval()
    sums = {"val_L_good": 0.0, "val_L_bad": 0.0}
    with rt.autocast(cfg.run, dist.device):
        for i, batch in enumerate(val_batches):
            gen = torch.Generator().manual_seed(derive_seed(cfg.run.seed, _VAL_STAGE, dist.rank, i))
            out = val_losses(model, to_device(batch, dist.device), cfg, gen)
            for k in sums:
                sums[k] += out[k] / max(1, len(val_batches))
    model.train(was_training)
    good, bad = rt.all_reduce_mean([sums["val_L_good"], sums["val_L_bad"]], dist)
    return {"val_L_good": good, "val_L_bad": bad, "val_gap": bad - good}


@torch.no_grad()
def sample_grid(model: Denoiser, batch: dict, cfg: Config, decoder: Callable[[torch.Tensor], torch.Tensor],
                device: torch.device, n_clips: int = 4) -> np.ndarray:
    """Sample val snippets with ``model`` (the EMA weights): per clip, the decoded true latents above the
    decoded sample, frames left to right, as one uint8 image (H, W, 3)."""
    b = {k: v[:n_clips] for k, v in to_device(batch, device).items()}
    mu, _ = style_posterior(model, b, cfg)
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
    return pairs.transpose(0, 1, 3, 2, 4, 5).reshape(n * two * h, f * w, 3)


class DiffusionTask(Task):
    """The denoiser on any source of snippet batches: ``make_batches(start_step)`` must yield the batches of
    steps start_step, start_step + 1, ... (docs/INTERFACES.md) as a pure function of start_step."""

    name = "diffusion"
    shape_sections = SECTIONS

    def __init__(self, cfg: Config, make_batches: Callable[[int], Iterator[dict]], val_batches: list[dict], *,
                 latent_channels: int, latent_size: int, n_audio_channels: int, dist: rt.Dist,
                 decoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 preview_decoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 extra_state: dict[str, Any] | None = None,
                 setup_run_dir: Callable[[Path], None] | None = None):
        d = cfg.diffusion
        if d.batch_size < 2 and d.audio_shuffle_negatives in ("derange", "hard"):
            raise ConfigError(f"diffusion.batch_size={d.batch_size}: {d.audio_shuffle_negatives} negatives borrow "
                              "another clip's audio, so a step needs at least 2 snippets per rank")
        self.cfg, self.dist = cfg, dist
        self.make_batches, self.val_batches = make_batches, val_batches
        self.model_kwargs = {"latent_channels": latent_channels, "latent_size": latent_size,
                             "n_audio_channels": n_audio_channels}
        self.decoder, self.preview_decoder = decoder, preview_decoder
        self.extra_state = dict(extra_state or {})
        self._setup_run_dir = setup_run_dir
        self.hyper = Hyper(steps=d.steps, lr=d.lr, warmup_steps=d.warmup_steps, grad_clip=d.grad_clip,
                           ema_decay=d.ema_decay, batch_size=d.batch_size, compile=d.compile)
        self.val_every = d.val_every

    def setup_run_dir(self, run_dir: Path) -> None:
        if self._setup_run_dir is not None:
            self._setup_run_dir(run_dir)

    def run_config_extra(self) -> dict[str, Any]:
        return {"model_kwargs": self.model_kwargs, **self.extra_state}

    def build_model(self) -> nn.Module:
        return Denoiser(self.cfg, **self.model_kwargs)

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        d = self.cfg.diffusion
        return torch.optim.AdamW(param_groups(model, d.weight_decay), lr=d.lr, betas=(0.9, 0.99),
                                 fused=self.dist.device.type == "cuda")

    def batches(self, start_step: int) -> Iterator[dict]:
        return self.make_batches(start_step)

    def loss(self, net: nn.Module, batch: dict, generator: torch.Generator, step: int
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return diffusion_loss(net, batch, self.cfg, generator, self.decoder)

    def host_metrics(self, step: int) -> dict[str, float]:
        mix = target_variant_mix(self.cfg.data, step)  # the curriculum's debug fraction the loader draws toward
        return {} if mix is None else {"debug_mix": mix["debug"]}

    def validate(self, model: nn.Module, ema_model: nn.Module, step: int) -> dict[str, float]:
        raw = evaluate(model, self.val_batches, self.cfg, self.dist)
        ema = evaluate(ema_model, self.val_batches, self.cfg, self.dist)
        return {**raw, **{k.replace("val_", "val_ema_"): v for k, v in ema.items()}}

    def preview(self, ema_model: nn.Module, step: int) -> tuple[str, np.ndarray] | None:
        if self.preview_decoder is None:
            return None
        grid = sample_grid(ema_model, self.val_batches[0], self.cfg, self.preview_decoder, self.dist.device)
        return f"{ckpt.step_dir_name(step)}.png", grid

    def state(self) -> dict[str, Any]:
        return {"model_kwargs": self.model_kwargs, **self.extra_state}


def train(cfg: Config, run_dir: str | Path, make_batches: Callable[[int], Iterator[dict]], val_batches: list[dict], *,
          latent_channels: int, latent_size: int, n_audio_channels: int, dist: rt.Dist | None = None,
          decoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
          preview_decoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
          extra_state: dict[str, Any] | None = None, force: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the denoiser in ``run_dir`` on any batch source, up to ``diffusion.steps``; the summary."""
    dist = dist or rt.setup_distributed(cfg.run.device)
    task = DiffusionTask(cfg, make_batches, val_batches, latent_channels=latent_channels, latent_size=latent_size,
                         n_audio_channels=n_audio_channels, dist=dist, decoder=decoder, preview_decoder=preview_decoder,
                         extra_state=extra_state)
    return loop.train(task, cfg, run_dir, dist=dist, force=force, show_progress=show_progress)


# ------------------------------------------------------------------ wiring to latent shards and the VAE


def read_latent_manifest(latents_dir: str | Path) -> dict[str, Any]:
    """``LATENTS/manifest.json`` (written by ``trainer cache-latents``); a clear error when absent."""
    p = Path(latents_dir) / "manifest.json"
    if not p.is_file():
        raise DataError(f"{p} not found: run `trainer cache-latents` first (or pass --latents DIR)")
    try:
        return json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{p}: unreadable latent manifest ({type(e).__name__}: {e})") from e


PIXEL_SECTIONS = ("data", "timeline", "render")  # what decides the pixel shards' bytes (datagen/manifest.py)


def pixel_record(manifest: dict[str, Any], latents_dir: Path) -> dict[str, Any]:
    """What the run's training shards were made from, for remaking them later (the eval's memorisation check):
    ``pixel_content_id`` (the latent manifest's) and ``pixel_config``, the data, timeline and render sections of the
    pixel set's own manifest (``datagen run``'s flags included) when that set is still readable; else {}."""
    out: dict[str, Any] = {"pixel_content_id": manifest.get("pixel_content_id")}
    src = manifest.get("source")
    for root in ([Path(src), latents_dir / src] if src else []):
        try:
            cfg = json.loads((root / "manifest.json").read_text()).get("config") or {}
        except (OSError, ValueError):
            continue
        out["pixel_config"] = {sec: cfg[sec] for sec in PIXEL_SECTIONS if sec in cfg}
        break
    return out


def latent_scale_of(manifest: dict[str, Any]) -> float:
    """The latent scale factor (latents are multiplied by it for diffusion, divided before decoding)."""
    if "latent_scale" in manifest:
        return float(manifest["latent_scale"])
    raise DataError(f"latent manifest has no 'latent_scale' (keys: {sorted(manifest)})")


def vae_path_of(manifest: dict[str, Any], latents_dir: Path) -> Path:
    """The VAE checkpoint the latents were encoded with, as the latent manifest records it (``vae``: a path,
    or ``{"checkpoint": step dir, "run": run dir, ...}`` as ``trainer cache-latents`` writes it)."""
    ref = manifest.get("vae")
    refs = [ref.get(k) for k in ("checkpoint", "step_dir", "run", "path")] if isinstance(ref, dict) else [ref]
    refs = [Path(r) for r in refs if r]
    if not refs:
        raise DataError(f"latent manifest in {latents_dir} does not record the VAE ('vae'): cannot record "
                       "which VAE this diffusion run is trained against")
    for r in refs:
        for cand in (r, latents_dir / r):
            if ckpt.find_checkpoint(cand) is not None:
                return cand
    raise DataError(f"the VAE recorded in {latents_dir}/manifest.json is gone: "
                            f"no checkpoint at {', '.join(map(str, refs))}")


def record_vae(run_dir: Path, vae_path: Path, latent_scale: float, force: bool = False) -> Path:
    """Copy the VAE's resolved config and EMA weights into ``RUN/vae/`` (loadable by ``load_vae``).

    A run already trained against another VAE (or latent scale) refuses to switch unless ``force``.
    """
    step_dir = ckpt.find_checkpoint(vae_path)
    if step_dir is None:
        raise CheckpointError(f"no VAE checkpoint under {vae_path}")
    previous = ckpt.load_checkpoint(run_dir / "vae") if (run_dir / "vae").exists() else None
    if previous is not None and not force:
        old = previous[2]
        if old.get("source") != str(step_dir.resolve()) or old.get("latent_scale") != latent_scale:
            raise CheckpointError(
                f"{run_dir} was trained against the VAE {old.get('source')} (latent scale {old.get('latent_scale')}), "
                f"these latents come from {step_dir.resolve()} (scale {latent_scale}); use another --out, or --force")
    vae_run = step_dir.parent.parent if step_dir.parent.name == ckpt.CKPT_DIR else vae_path
    step, tensors, _ = ckpt.load_checkpoint(step_dir)
    if "ema" not in tensors:
        raise CheckpointError(f"{step_dir} has no EMA weights (has {sorted(tensors)})")
    dest = run_dir / "vae"
    dest.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest / ckpt.CONFIG_FILE) as tmp:
        shutil.copyfile(vae_run / ckpt.CONFIG_FILE, tmp)
    ckpt.save_checkpoint(dest, step, {"ema": tensors["ema"]},
                         {"source": str(step_dir.resolve()), "latent_scale": latent_scale}, keep=1)
    return dest


def make_decoder(vae_dir: Path, latent_scale: float, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Frozen VAE decoder on scaled latents: ``frames = vae.decode(z / latent_scale)`` in [-1, 1]."""
    vae, _, _ = load_vae(vae_dir, device)
    for p in vae.parameters():
        p.requires_grad_(False)
    return lambda z: vae.decode(z / latent_scale)


def audio_channel_count(cfg: Config, latents_dir: Path) -> int:
    """Channels the denoiser takes: ``diffusion.audio_channels`` checked against the shards' stored channel names
    (the first val sample's meta, or the config's timeline for shards that cannot be peeked at). A wrong name is a
    ConfigError naming the field; a timeline of another width than the config's is a DataError."""
    names = channel_names(cfg.timeline)
    stored = stored_channel_names(str(latents_dir), "val") or names
    if len(stored) != len(names):
        raise DataError(f"latent shards in {latents_dir} have {len(stored)} timeline channels, the config's timeline "
                        f"has {len(names)}")
    picked = ConditioningSpec.from_config(cfg).columns(stored)
    shuffle_layout(cfg)  # a negative kind that needs a channel the selection lacks
    return len(stored) if picked is None else len(picked)


def check_style_source(cfg: Config, latents_dir: Path) -> None:
    """``diffusion.style_source=plan`` reads each clip's ``visual_plan`` from its meta.json: shards whose first val
    sample has none are a DataError before any step (every clip would be skipped as corrupt)."""
    if cfg.diffusion.style_source != "plan":
        return
    meta = first_meta(str(latents_dir), "val")
    if meta is not None and "visual_plan" not in meta:
        raise DataError(f"latent shards in {latents_dir} record no visual_plan in meta.json, which "
                        "diffusion.style_source=plan needs (cache the latents from datagen shards, or use posterior)")


def run_from_latents(cfg: Config, latents_dir: str | Path, out: str | Path, force: bool = False,
                     val_batches_n: int = 4) -> dict[str, Any]:
    """``trainer diffusion``: latent shards + manifest -> a trained run in ``out``."""
    with rt.distributed_world(cfg.run.device) as dist:
        return _run_from_latents(cfg, Path(latents_dir), Path(out), force, val_batches_n, dist)


def _run_from_latents(cfg: Config, latents_dir: Path, run_dir: Path, force: bool, val_batches_n: int,
                      dist: rt.Dist) -> dict[str, Any]:
    manifest = read_latent_manifest(latents_dir)
    scale = latent_scale_of(manifest)
    vae_src = vae_path_of(manifest, latents_dir)
    n_want = audio_channel_count(cfg, latents_dir)  # a bad diffusion.audio_channels fails here, before any step
    check_style_source(cfg, latents_dir)

    def loader(split: str, seed: int, start_step: int) -> Iterator[dict]:
        return iter(snippet_loader(str(latents_dir), cfg, split, cfg.diffusion.batch_size, seed=seed, rank=dist.rank,
                                   world_size=dist.world_size, num_workers=cfg.run.num_workers,
                                   latent_scale=scale, start_step=start_step, pin_memory=dist.device.type == "cuda"))

    def make_batches(start_step: int) -> Iterator[dict]:
        return loader("train", derive_seed(cfg.run.seed, "train", start_step), start_step)

    val_iter = loader("val", derive_seed(cfg.run.seed, "val"), 0)
    val_batches = [next(val_iter) for _ in range(val_batches_n)]
    del val_iter  # stops its loader workers: the val batches stay in memory for the whole run
    first = val_batches[0]
    _, _, c, h, w = first["x"].shape
    if h != w:
        raise DataError(f"latents in {latents_dir} must be square, got {h}x{w}")
    n_audio = first["audio"].shape[-1]
    if n_audio != n_want:
        raise DataError(f"the loader gave {n_audio} audio channels from {latents_dir}, the config selects {n_want}")
    decoders: dict[str, Callable] = {}

    def decoder(z: torch.Tensor) -> torch.Tensor:  # the VAE copy in RUN/vae, loaded once it is recorded
        if "vae" not in decoders:
            decoders["vae"] = make_decoder(run_dir / "vae", scale, dist.device)
        return decoders["vae"](z)

    extra = {"latent_scale": scale, "latents": str(latents_dir.resolve()), "vae_source": str(vae_src), "vae": "vae",
             **pixel_record(manifest, latents_dir)}
    task = DiffusionTask(cfg, make_batches, val_batches, latent_channels=c, latent_size=h, n_audio_channels=n_audio,
                         dist=dist, decoder=decoder if cfg.diffusion.audio_shuffle_frame_proxy_weight > 0 else None,
                         preview_decoder=decoder, extra_state=extra,
                         setup_run_dir=lambda run: record_vae(run, vae_src, scale, force))
    return loop.train(task, cfg, run_dir, dist=dist, force=force)
