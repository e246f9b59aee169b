"""`trainer cache-latents`: encode every pixel clip with the EMA VAE into latent shards (resumable per shard)."""

from __future__ import annotations

import argparse

from shared.cli import add_config_args, config_or_exit, fail

NAME = "cache-latents"
HELP = "Encode pixel shards with the trained VAE's EMA weights into latent shards (data/pixels -> data/latents)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="data/pixels",
                        help="Pixel shards (a dir with train/ and val/, a glob, ...). Default: data/pixels.")
    parser.add_argument("--vae", default="runs/vae",
                        help="VAE run dir (its latest checkpoint) or a ckpt/step-* dir. Default: runs/vae.")
    parser.add_argument("--out", default="data/latents",
                        help="Latent shard dir: train/, val/, manifest.json. Default: data/latents.")
    parser.add_argument("--force", action="store_true",
                        help="Encode every shard again (default: keep finished latent shards whose pixel shard and VAE "
                             "weights are unchanged).")
    add_config_args(parser)


def run(args: argparse.Namespace) -> int:
    cfg = config_or_exit(args)
    from shared.errors import SynestheteError
    from trainer.latents import cache_latents

    try:
        cache_latents(cfg, args.data, args.vae, args.out, force=args.force)
    except (FileNotFoundError, SynestheteError) as e:  # missing inputs, a held lock, mixed shards, a full disk
        fail(str(e))
    return 0
