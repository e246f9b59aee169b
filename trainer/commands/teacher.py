"""`trainer teacher`: the ground-truth visualizers of N fresh clips scored with the eval's metrics (issue 29).

    trainer teacher --clips 32 --out runs/teacher render.resolution=64
    trainer teacher --config configs/tiny.yaml --fps 24 --seconds 8 --clips 8 --variants normal silence --seed 0
    trainer teacher --clips 8 --audio-dir tests/data/real_audio --out runs/teacher

Writes report.json, report.md and contact_sheet.png into --out (see :mod:`trainer.teacher_report`); the
implementation is :mod:`trainer.teacher`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from shared.shards import VARIANTS
from shared.cli import ShortFlag, add_config_args, config_or_exit, fail

NAME = "teacher"
HELP = ("Measure the ground truth (the procedural visualizers) of N freshly synthesized clips per variant with the "
        "eval's metrics: loudness -> motion/brightness/size, bands -> colour, AV-Align, beat score, retrieval, "
        "settle, style diversity, each with a 95 percent bootstrap CI over clips, plus each clip's loudness range; "
        "optionally on a folder of real audio. Writes report.json, report.md and contact_sheet.png.")
MIN_CLIPS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", type=int, default=16, metavar="N",
                        help=f"Clips per variant (>= {MIN_CLIPS}; the first N seeds of each variant; default: 16).")
    parser.add_argument("--variants", nargs="+", default=["normal", "silence"], metavar="VARIANT",
                        help=f"Variants to measure, from {' '.join(VARIANTS)} (default: normal silence).")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="First clip seed (variant k's clip i has seed S + k * 1000000 + i) and bootstrap seed "
                             "(default: 0).")
    parser.add_argument("--out", default="runs/teacher", metavar="DIR", help="Report folder (default: runs/teacher).")
    parser.add_argument("--audio-dir", default=None, metavar="DIR",
                        help="Also measure the visualizers on every audio file in DIR (plans seeded by the file name).")
    parser.add_argument("--file-plans", type=int, default=4, metavar="K",
                        help="Visual plans per --audio-dir file; its figures are the mean over them (default: 4).")
    parser.add_argument("--no-sheet", action="store_true", help="Skip the contact sheet PNG.")
    add_config_args(parser, [
        ShortFlag("--fps", "render.fps", float, "Video frame rate."),
        ShortFlag("--seconds", "data.clip_seconds", float, "Clip length in seconds."),
        ShortFlag("--resolution", "render.resolution", int, "Frame size in pixels."),
    ])


def check_args(args: argparse.Namespace) -> list[Path]:
    """Bad input -> one line and exit 2; returns the audio files of --audio-dir (none without it)."""
    if args.clips < MIN_CLIPS:
        fail(f"--clips must be >= {MIN_CLIPS} (CIs and pooled metrics need two clips), got {args.clips}")
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        fail(f"--variants: unknown variant {bad[0]!r} (expected some of {', '.join(VARIANTS)})")
    if len(set(args.variants)) != len(args.variants):
        fail(f"--variants: a variant is named twice ({' '.join(args.variants)})")
    if args.seed < 0:
        fail(f"--seed must be >= 0, got {args.seed}")
    if args.file_plans < 1:
        fail(f"--file-plans must be >= 1, got {args.file_plans}")
    if not args.audio_dir:
        return []
    from shared.errors import SynestheteError, one_line
    from trainer.eval.clips import list_audio_files

    try:
        return list_audio_files(args.audio_dir)
    except SynestheteError as e:
        fail(one_line(e))


def run(args: argparse.Namespace) -> int:
    cfg = config_or_exit(args)
    files = check_args(args)
    from datagen.visual import EGLContextError, ShaderError
    from shared.errors import SynestheteError, one_line
    from trainer.teacher import measure_teacher, measure_teacher_files, renderer_scope
    from trainer.teacher_report import headline, write_outputs

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    try:
        with renderer_scope(None, cfg.render.resolution) as r:
            rep = measure_teacher(cfg, args.clips, tuple(args.variants), args.seed, progress, r)
            if files:
                rep["real_audio"] = measure_teacher_files(cfg, files, args.seed, progress, r, args.file_plans)
        rep["info"]["wall_s"] = round(time.perf_counter() - t0, 3)
        paths = write_outputs(args.out, cfg, rep, sheet=not args.no_sheet)
    except (EGLContextError, ShaderError) as e:
        fail(one_line(e), code=1)
    except (SynestheteError, ValueError) as e:  # unreadable audio, a config the synthesizer refuses
        fail(one_line(e))
    print(f"teacher: wrote {', '.join(str(p) for p in paths.values())} ({rep['info']['wall_s']:.1f} s, "
          f"{args.clips} clips x {len(args.variants)} variants" + (f" + {len(files)} files" if files else "")
          + f", {cfg.render.fps:g} fps, {cfg.render.resolution} px, {cfg.data.clip_seconds:g} s)", file=sys.stderr)
    print("\n".join(headline(rep)))
    return 0
