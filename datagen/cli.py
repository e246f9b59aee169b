"""`datagen`: procedural audio + GPU-shaded visualizers -> WebDataset shards."""

from __future__ import annotations

import os
import sys

# OpenMP threads that spin while waiting made small CPU convolutions 2-25x slower on a busy 2-core box;
# passive waiting costs nothing on a quiet one. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from shared.command_line import run_cli


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli("datagen", "datagen.commands", __doc__, argv))
