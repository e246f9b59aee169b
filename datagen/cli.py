"""`datagen`: procedural audio + GPU-shaded visualizers -> WebDataset shards."""

from __future__ import annotations

import sys

from shared.command_line import run_cli


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli("datagen", "datagen.commands", __doc__, argv))
