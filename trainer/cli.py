"""`trainer`: frame VAE, latent caches, audio-conditioned latent diffusion, sampling and evaluation."""

from __future__ import annotations

import sys

from shared.command_line import run_cli


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli("trainer", "trainer.commands", __doc__, argv))
