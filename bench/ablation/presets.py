"""The ablation's scales: one config tree per preset, the calibration run's length, the seeds, and the resolved
config (WORK/ablation.yaml) that every step of a run reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

# Each preset is one config tree (the sections of shared/config.py). The data is generated with a debug share of
# 0.2 (so that the curriculum has debug clips to draw) and a silence share of 0.3; the arms set the loader's mix.

_COMMON_RUN = {"num_workers": 0, "sample_every": 100000, "keep_checkpoints": 1, "executor": "processes"}

PRESETS: dict[str, dict[str, Any]] = {
    # CI: seconds in all, proves the plumbing only (the numbers mean nothing).
    "smoke": {
        "data": {"sample_rate": 8000, "clip_seconds": 2.0, "train_shards": 2, "val_shards": 3, "samples_per_shard": 6,
                 "val_style_siblings": 1, "debug_set_size": 2, "audio_debug_mix_prob": 0.2,
                 "audio_silence_mix_prob": 0.3},
        "timeline": {"n_bands": 4, "n_fft": 256},
        "render": {"resolution": 16, "fps": 8.0, "chunk_frames": 16, "max_layers": 1},
        "vae": {"downsample": 4, "base_channels": 4, "max_channels": 8, "batch_size": 4, "steps": 2,
                "warmup_steps": 0, "ema_decay": 0.5},
        "diffusion": {"snippet_frames": 2, "audio_context_frames": 1, "width": 8, "depth": 1, "heads": 2,
                      "patch_size": 2, "style_dim": 2, "batch_size": 4, "steps": 3, "warmup_steps": 0,
                      "ema_decay": 0.5, "compile": False, "val_every": 1000},
        "inference": {"steps": 2, "batch_snippets": 4},
        "eval": {"clips_per_variant": 2, "n_style_samples": 2, "bootstrap": 50, "write_videos": False},
        "run": {**_COMMON_RUN, "log_every": 1, "checkpoint_every": 1000, "workers": 1, "executor": "local",
                "device": "cpu"},
    },
    # The 2-core CPU box at the shipped tiny model's scale (issue 13's ablation, docs/RESULTS.md; called "cpu" until
    # issue 24 gave that name to the study preset below). 6 val shards: datagen forces two of every four val slots to
    # silence and debug clips, and the eval wants 8 distinct normal-music clips.
    "tiny": {
        "data": {"sample_rate": 16000, "clip_seconds": 4.0, "train_shards": 6, "val_shards": 6, "samples_per_shard": 8,
                 "debug_set_size": 4, "audio_debug_mix_prob": 0.2, "audio_silence_mix_prob": 0.3},
        "timeline": {"n_bands": 8, "n_fft": 512},
        "render": {"resolution": 32, "fps": 12.0, "chunk_frames": 16},  # issue 29's choice (was 8)
        "vae": {"downsample": 4, "base_channels": 16, "max_channels": 32, "batch_size": 16, "steps": 1200,
                "warmup_steps": 50, "lr": 1e-3, "ema_decay": 0.99},
        # free bits: without them the style posterior collapses and --style-seed changes nothing (issue 23,
        # docs/results/style/README.md: style-only diversity 0.01-0.03 -> 0.09-0.19, loudness -> motion unchanged)
        "diffusion": {"snippet_frames": 4, "audio_context_frames": 2, "width": 64, "depth": 2, "heads": 4,
                      "patch_size": 2, "style_dim": 8, "style_kl_free_bits": 0.5, "batch_size": 16, "steps": 600,
                      "warmup_steps": 50, "lr": 1e-3, "ema_decay": 0.99, "compile": False, "val_every": 200},
        "inference": {"steps": 10, "batch_snippets": 4},
        "eval": {"clips_per_variant": 8, "n_style_samples": 2},
        "run": {**_COMMON_RUN, "log_every": 50, "checkpoint_every": 300, "workers": 2, "device": "cpu"},
    },
    # The 2-core CPU box with statistical power (issue 24, the evidence study): 64 px at the teacher's 12 fps;
    # 1,024 training clips, so that a 2 M-parameter denoiser cannot memorise them; 40 val shards of 8 = 320 clips, of
    # which slots 0 and 1 of every 4 are forced to silence and debug and the rest follow the mix (normal 0.5): about
    # 80 normal-music clips for the eval's 72 (loudness -> motion resolved to about +-0.05: docs/results/study/power.json)
    # and far more than 16 silence / dropout clips. VAE: 16x16x8 latents (with 4 channels it reached only 27.0 dB val
    # PSNR: docs/results/study/vae_lc4_s7500.json); denoiser: width 128, depth 4 (2.0 M parameters, 0.69 s/step at
    # batch 16 measured by the issue); arms get equal steps by calibration. Every arm keeps its style latent with free
    # bits 0.5 (without, the posterior collapses and --style-seed does nothing: docs/results/style/README.md).
    "cpu": {
        "data": {"sample_rate": 16000, "clip_seconds": 4.0, "train_shards": 128, "val_shards": 40,
                 "samples_per_shard": 8, "debug_set_size": 8, "audio_debug_mix_prob": 0.2,
                 "audio_silence_mix_prob": 0.3},
        "timeline": {"n_bands": 8, "n_fft": 512},
        "render": {"resolution": 64, "fps": 12.0, "chunk_frames": 16},
        "vae": {"downsample": 4, "latent_channels": 8, "base_channels": 24, "max_channels": 48, "batch_size": 32,
                "steps": 6000, "warmup_steps": 200, "lr": 1e-3, "ema_decay": 0.995},
        "diffusion": {"snippet_frames": 4, "audio_context_frames": 2, "width": 128, "depth": 4, "heads": 4,
                      "patch_size": 2, "style_dim": 8, "style_kl_free_bits": 0.5, "batch_size": 16, "steps": 1300,
                      "warmup_steps": 100, "lr": 1e-3, "ema_decay": 0.995, "compile": False, "val_every": 400},
        "inference": {"steps": 10, "batch_snippets": 8},
        "eval": {"clips_per_variant": 72, "n_style_samples": 2},
        "run": {**_COMMON_RUN, "log_every": 50, "checkpoint_every": 400, "workers": 2, "device": "cpu"},
    },
    # One H100 (16 cores): data and VAE once, each arm a few minutes of training; every command < 10 min.
    "h100": {
        "data": {"sample_rate": 22050, "clip_seconds": 8.0, "train_shards": 32, "val_shards": 1,
                 "samples_per_shard": 32, "debug_set_size": 16, "audio_debug_mix_prob": 0.2,
                 "audio_silence_mix_prob": 0.3},
        "timeline": {"n_bands": 8, "n_fft": 2048},
        "render": {"resolution": 128, "fps": 12.0, "chunk_frames": 64},
        "vae": {"downsample": 8, "base_channels": 64, "max_channels": 256, "batch_size": 64, "steps": 4000,
                "warmup_steps": 200, "lr": 4e-4, "ema_decay": 0.995},
        "diffusion": {"snippet_frames": 8, "audio_context_frames": 4, "width": 256, "depth": 8, "heads": 4,
                      "patch_size": 2, "style_dim": 16, "batch_size": 64, "steps": 3000, "warmup_steps": 200,
                      "lr": 5e-4, "ema_decay": 0.999, "compile": True, "val_every": 1000},
        "inference": {"steps": 25, "batch_snippets": 16},
        "eval": {"clips_per_variant": 8, "n_style_samples": 4},
        "run": {**_COMMON_RUN, "num_workers": 4, "log_every": 100, "checkpoint_every": 2000, "workers": 8,
                "device": "auto"},
    },
}
CALIBRATION_STEPS = {"smoke": 2, "tiny": 40, "cpu": 40, "h100": 200}  # short run per recipe; s/step from its second half
SEEDS = (0, 1)
FINAL_DEBUG_PROB = 0.05


def resolved_config(preset: str, extra: list[str], out: Path) -> Path:
    """Write WORK/ablation.yaml: the preset tree with the extra YAML layers merged over it (sections only)."""
    tree = json.loads(json.dumps(PRESETS[preset]))
    for f in extra:
        layer = yaml.safe_load(Path(f).read_text()) or {}
        for section, body in layer.items():
            tree.setdefault(section, {}).update(body or {})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return out
