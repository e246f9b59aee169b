"""Builds a console script from a package of subcommand modules (see datagen/commands/__init__.py)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType


def _subcommand_modules(package: str) -> list[ModuleType]:
    pkg = importlib.import_module(package)
    mods = [importlib.import_module(f"{package}.{m.name}") for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]
    return sorted(mods, key=lambda m: m.NAME)


def build_parser(prog: str, package: str, description: str) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    mods: dict[str, ModuleType] = {}
    for mod in _subcommand_modules(package):
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(p)
        mods[mod.NAME] = mod
    return parser, mods


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``COMMAND [ARGS...]`` -> the namespace of COMMAND's parser, parsed intermixed: positionals (the
    ``section.key=value`` overrides) may stand anywhere among the options, not only in one run at the end.

    argparse's intermixed parsing refuses a parser with subcommands, so the command's own parser parses its
    arguments; anything else (no command, an unknown one, ``--help`` before it) goes to ``parser`` as usual.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if not argv or argv[0] not in commands:
        return parser.parse_args(argv)
    args = commands[argv[0]].parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args


def run_cli(prog: str, package: str, description: str, argv: list[str] | None = None) -> int:
    parser, mods = build_parser(prog, package, description)
    args = parse_command_line(parser, argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(mods[args.command].run(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog} {args.command}: interrupted", file=sys.stderr)
        return 130
