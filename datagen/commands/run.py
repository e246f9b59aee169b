"""`datagen run`: generate pixel shards (procedural audio -> timeline -> visualizers -> WebDataset tars)."""

from __future__ import annotations

import argparse
import json
import sys

from shared.cli import ShortFlag, add_config_args, config_or_exit, fail

NAME = "run"
HELP = ("Generate train/val WebDataset shards into --out (resumable; Ray by default, "
        "--executor processes|local without it).")

SHORT_FLAGS = [
    ShortFlag("--shards", "data.train_shards", int, "Number of train shards."),
    ShortFlag("--val-shards", "data.val_shards", int, "Number of val shards (null: max(1, shards // 100))."),
    ShortFlag("--samples-per-shard", "data.samples_per_shard", int, "Clips per shard."),
    ShortFlag("--silence-mix", "data.audio_silence_mix_prob", float, "Fraction of silence/track-dropout clips."),
    ShortFlag("--address", "run.address", str, "Ray cluster address to join (e.g. 10.0.0.1:6379); none starts an embedded one."),
    ShortFlag("--executor", "run.executor", str, "ray, processes (spawn pool) or local (serial)."),
    ShortFlag("--workers", "run.workers", int, "Render workers (one GL context each)."),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="data/pixels", metavar="DIR",
                        help="Output dir (local or shared filesystem): DIR/train, DIR/val, DIR/manifest.json, DIR/summary.json "
                             "(default: data/pixels).")
    parser.add_argument("--force", action="store_true",
                        help="Regenerate every shard, also when DIR was made with a different data/timeline/render config "
                             "(then the old set's shards beyond the new count are removed too; default: refuse such a DIR).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    add_config_args(parser, SHORT_FLAGS)


def dry_run_plan(cfg) -> list[str]:
    """--dry-run's plan: clips per variant, frames, size on disk and time here (:mod:`datagen.plan`)."""
    from datagen.plan import build_plan, plan_lines

    return plan_lines(build_plan(cfg))


def run(args: argparse.Namespace) -> int:
    cfg = config_or_exit(args, plan=dry_run_plan)
    from datagen.run import run_datagen
    from shared.errors import SynestheteError

    try:
        code, summary = run_datagen(cfg, args.out, force=args.force, progress=not args.no_progress)
    except SynestheteError as e:  # bad --out, another run holds it, a different config, a full disk, ...
        fail(str(e))
    brief = {k: summary[k] for k in ("out", "executor", "shards_total", "shards_skipped", "shards_removed", "shards_written",
                                     "shards_failed", "retries", "lost_workers", "gl_contexts", "samples_written",
                                     "frames_written", "seconds", "samples_per_s", "frames_per_s", "variants")}
    json.dump(brief, sys.stdout, indent=1)
    print()
    if code:
        for f in summary["shards_failed"]:
            print(f"error: {f['split']} shard {f['index']} ({f['path']}) failed: {f['error']}", file=sys.stderr)
    return code
