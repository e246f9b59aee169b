"""Argument parsing shared by the `datagen` and `trainer` commands.

Every command takes ``--config FILE.yaml`` (repeatable, later files win),
``--dry-run`` (print the resolved config and exit 0) and dotted overrides
``section.key=value``; short flags map onto dotted keys. ``--help`` lists every
flag with its default, and the epilog lists every config key.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Callable

from shared.config import SECTIONS, Config, ConfigError, build_config, to_yaml
from shared.errors import SynestheteError, one_line


@dataclass(frozen=True)
class ShortFlag:
    """A user-facing flag that sets one dotted config key."""

    flag: str
    key: str
    type: Callable[[str], Any]
    help: str


def _default_of(key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(Config(), section), name)


def config_keys_epilog(sections: tuple[str, ...] = SECTIONS) -> str:
    cfg = Config()
    lines = ["config keys (set with section.key=value; defaults shown):"]
    for section in sections:
        model = type(getattr(cfg, section))
        for name, info in model.model_fields.items():
            default = getattr(getattr(cfg, section), name)
            desc = (info.description or "").split(". ")[0]
            lines.append(f"  {section}.{name}={default!r}  {desc}")
    return "\n".join(lines)


def _default_text(key: str, model_defaults: dict[str, Any] | None, source: str | None) -> str:
    """A short flag's default as the command will really run it: the model's saved value where it has one."""
    schema = _default_of(key)
    if model_defaults and key in model_defaults and source:
        own = model_defaults[key]
        return f"{own!r}, from {source}" + ("" if own == schema else f"; schema default {schema!r}")
    return repr(schema)


def add_config_args(parser: argparse.ArgumentParser, short_flags: list[ShortFlag] = (),
                    model_defaults: dict[str, Any] | None = None, source: str | None = None) -> None:
    """``--config``, ``--dry-run``, the short flags and the dotted overrides. ``model_defaults`` (dotted key -> value)
    are the settings saved with the model the command will run (``source`` names it): the help shows those."""
    parser.add_argument("--config", action="append", default=[], metavar="FILE.yaml",
                        help="YAML config layer over the defaults (repeatable; later files win). Default: none.")
    parser.add_argument("--dry-run", action="store_true",
                        help="Print the resolved config as YAML and exit 0 without doing any work.")
    for sf in short_flags:
        parser.add_argument(sf.flag, dest=f"flag__{sf.key}", type=sf.type, default=None, metavar=sf.key.split(".")[1].upper(),
                            help=f"{sf.help} Sets {sf.key} (default: {_default_text(sf.key, model_defaults, source)}).")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="Dotted config overrides, applied last (e.g. diffusion.audio_shuffle_loss_weight=0.5).")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ((parser.epilog + "\n\n") if parser.epilog else "") + config_keys_epilog()


def video_size(text: str) -> int | str:
    """``--size``: a side in pixels (16 to 4096) or ``native``; anything else is argparse's one-line error."""
    if text == "native":
        return text
    try:
        px = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in px or 'native'") from None
    if not 16 <= px <= 4096:
        raise argparse.ArgumentTypeError(f"{px} px is outside 16..4096")
    return px


def add_size_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--size PX|native`` for a command that writes a model's video (``what`` names the file)."""
    from shared.video import VIEW_PX  # the default's one definition (here: shared.cli needs no ffmpeg-python)

    parser.add_argument("--size", type=video_size, default=None, metavar="PX|native",
                        help=f"Side of {what} in pixels: the model's frames are scaled up in the encoder (Lanczos). "
                             f"'native' keeps the model's own size. Default: {VIEW_PX}, or the model's size if larger.")


def resolve_config(args: argparse.Namespace, base: dict[str, Any] | None = None) -> Config:
    flags = {k[len("flag__"):]: v for k, v in vars(args).items() if k.startswith("flag__")}
    return build_config(args.config, flags, args.overrides, base=base)


def fail(message: str, code: int = 2) -> "NoReturn":  # noqa: F821
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def config_or_exit(args: argparse.Namespace, base: dict[str, Any] | None = None,
                   plan: Callable[[Config], list[str]] | None = None) -> Config:
    """Resolve the config; on error print the message naming the field and exit 2; on --dry-run print and exit 0
    (with ``plan``, its lines follow the config as YAML comments, so the output still loads as YAML)."""
    try:
        cfg = resolve_config(args, base=base)
    except ConfigError as e:
        fail(str(e))
    if getattr(args, "dry_run", False):
        sys.stdout.write(to_yaml(cfg))
        sys.stdout.flush()
        if plan is not None:
            sys.stdout.write("".join(f"# {line}\n" for line in ["plan:", *("  " + x for x in plan(cfg))]))
        raise SystemExit(0)
    return cfg


def resolved_or_exit(args: argparse.Namespace, resolve: Callable[[], Any]) -> Any:
    """``resolve()`` (e.g. finding the checkpoint), or on bad input one line and exit 2; with --dry-run the
    resolved config is printed (exit 0) even when the thing to resolve is missing."""
    try:
        return resolve()
    except SynestheteError as e:
        if getattr(args, "dry_run", False):
            config_or_exit(args)
        fail(one_line(e))
