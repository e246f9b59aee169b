"""`datagen visualizers`: list the visualizer primitives, one line each (name and what drives what)."""

from __future__ import annotations

import argparse

NAME = "visualizers"
HELP = "List the visualizer primitives, one line each: name and which audio features drive what."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="Also list the debug visualizers (used by debug clips).")


def run(args: argparse.Namespace) -> int:
    from datagen.visual import DEBUG_PRIMITIVES, PRIMITIVES, describe

    names = PRIMITIVES + (DEBUG_PRIMITIVES if args.debug else ())
    width = max(len(n) for n in names)
    for name in names:
        text = describe(name)
        text = text.split(":", 1)[1].strip() if text.startswith(name + ":") else text
        print(f"{name:<{width}}  {text}")
    return 0
