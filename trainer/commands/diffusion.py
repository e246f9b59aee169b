"""`trainer diffusion`: train the audio-conditioned latent denoiser with shuffle pressure (resumes from `latest`)."""

from __future__ import annotations

import argparse

from shared.cli import ShortFlag, add_config_args, config_or_exit, fail
from shared.errors import SynestheteError

NAME = "diffusion"
HELP = ("Train the audio-conditioned latent diffusion model with shuffle pressure (data/latents -> runs/diffusion); "
        "re-running with the same --out resumes; works under torchrun (DDP).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--latents", default="data/latents",
                        help="Latent shards from `trainer cache-latents`: a dir with train/, val/ and manifest.json.")
    parser.add_argument("--out", default="runs/diffusion",
                        help="Run dir (config.yaml, ckpt/, latest, vae/, metrics.jsonl, tb/, summary.json).")
    parser.add_argument("--force", action="store_true",
                        help="Start over in --out even if its saved model shape differs (old checkpoints are moved aside).")
    add_config_args(parser, [
        ShortFlag("--shuffle-weight", "diffusion.audio_shuffle_loss_weight", float,
                  "Weight of the shuffle-pressure hinge (0 turns the pressure off)."),
        ShortFlag("--steps", "diffusion.steps", int, "Total training steps."),
    ])


def run(args: argparse.Namespace) -> int:
    cfg = config_or_exit(args)
    from trainer.diffusion.train import run_from_latents  # here: torch costs ~1.8 s, `trainer --help` 0.3 s
    from trainer.loop import done_word

    try:
        summary = run_from_latents(cfg, args.latents, args.out, force=args.force)
    except SynestheteError as e:  # bad input: one line, exit 2; anything else keeps its traceback
        fail(str(e))
    val = summary.get("val") or {}
    if val:
        rate = summary.get("samples_per_s")
        print(f"diffusion: {done_word(summary)} at step {summary.get('steps')}; val gap (L_bad - L_good) "
              f"{val.get('val_gap', float('nan')):+.4f}, EMA {val.get('val_ema_gap', float('nan')):+.4f}"
              + (f"; {rate} samples/s" if rate and not summary.get("already_finished") else ""))
    return 0
