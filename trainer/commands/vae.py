"""`trainer vae`: train the frame VAE on pixel shards (resumes from the run dir's `latest`)."""

from __future__ import annotations

import argparse

from shared.cli import ShortFlag, add_config_args, config_or_exit, fail
from shared.errors import SynestheteError

NAME = "vae"
HELP = "Train the frame VAE on pixel shards (data/pixels -> runs/vae); re-running with the same --out resumes."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="data/pixels",
                        help="Pixel shards: a dir with train/ and val/, a glob, a brace pattern or a URL. Default: data/pixels.")
    parser.add_argument("--out", default="runs/vae",
                        help="Run dir (config.yaml, ckpt/, latest, metrics, samples). Default: runs/vae.")
    parser.add_argument("--force", action="store_true",
                        help="Start over in --out even if its saved model shape differs (old checkpoints are moved aside).")
    add_config_args(parser, [ShortFlag("--steps", "vae.steps", int, "Total training steps.")])


def run(args: argparse.Namespace) -> int:
    cfg = config_or_exit(args)
    from trainer.vae.train import train_vae  # here: torch costs ~1.8 s, `trainer --help` 0.3 s

    try:
        train_vae(cfg, args.data, args.out, force=args.force)
    except SynestheteError as e:  # bad input: one line, exit 2; anything else keeps its traceback
        fail(str(e))
    return 0
