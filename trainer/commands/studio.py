"""`trainer studio`: a local page to audition models on your own songs (issue 25)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from shared.cli import add_config_args, config_or_exit, fail, resolve_config
from shared.errors import SynestheteError

NAME = "studio"
HELP = ("A local page (127.0.0.1) to audition models on a folder of songs: pick a song, a shipped model or a run's "
        "checkpoint (two for A/B), guidance and style seed; watch the video beside the teacher's over the song's "
        "timeline (loudness, bands, onsets, beats, silence, motion, brightness), with its AV offset and eval rows.")
DEFAULT_PORT = 8770
DEFAULT_OUT = "runs/studio"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audio-dir", required=True, metavar="DIR",
                        help="The folder of songs the page lists (its audio files; nothing outside it is served).")
    parser.add_argument("--runs", default=None, metavar="DIR",
                        help="A folder of training runs (each RUN/ckpt/step-*): the page offers each run and its "
                             "checkpoints besides the shipped models. Default: shipped models only.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="P",
                        help=f"Port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free port).")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"The studio's output folder: the generated and teacher mp4s (default {DEFAULT_OUT}).")
    parser.add_argument("--max-upload-mb", type=float, default=64.0, metavar="MB",
                        help="The largest song the page accepts as an upload (kept under --out/uploads; default 64).")
    parser.add_argument("--no-teacher", action="store_true",
                        help="Do not render the ground-truth visualizers beside the generated video.")
    add_config_args(parser)  # layered over each model's saved config when the page loads it


def file_teacher(cfg, path: Path):
    """The teacher's frames of an audio file: :func:`trainer.teacher.file_ground_truth` (``datagen visualize
    --composite``'s plan); passed to the worker from here, so trainer.studio depends on no teacher code."""
    from trainer.teacher import file_ground_truth

    return file_ground_truth(cfg, path).frames


def build(audio_dir: str, runs: str | None, out: str, port: int, teacher: bool = True, log=print,
          max_upload_mb: float = 64.0, overrides=None):
    """The catalog, worker and (not yet started) server; a bad folder or port raises a one-line SynestheteError."""
    from trainer.eval.clips import list_audio_files
    from trainer.live.server import ServeError
    from trainer.studio.catalog import Catalog
    from trainer.studio.server import StudioServer
    from trainer.studio.worker import Worker

    list_audio_files(audio_dir)  # AudioError: missing, not a folder, no audio
    if runs is not None and not Path(runs).is_dir():
        raise ServeError(f"--runs {runs}: not a directory")
    if not max_upload_mb > 0:
        raise ServeError(f"--max-upload-mb {max_upload_mb:g}: must be > 0")
    if not 0 <= port <= 65535:
        raise ServeError(f"--port {port}: out of range 0-65535")
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ServeError(f"--out {out}: cannot be created ({e.strerror or e})") from None
    catalog = Catalog(Path(audio_dir), Path(runs) if runs else None, Path(out), int(max_upload_mb * 2 ** 20))
    worker = Worker(catalog, file_teacher if teacher else None, log, overrides)
    return StudioServer("127.0.0.1", port, worker)


def run(args: argparse.Namespace) -> int:
    config_or_exit(args)  # a bad --config or override: one line, exit 2 (--dry-run: print it, exit 0)
    try:
        server = build(args.audio_dir, args.runs, args.out, args.port, not args.no_teacher,
                       log=lambda m: print(m, file=sys.stderr), max_upload_mb=args.max_upload_mb,
                       overrides=lambda saved: resolve_config(args, base=saved))
    except SynestheteError as e:
        fail(str(e).splitlines()[0])
    server.start()
    print(f"studio: serving {server.url} (songs from {args.audio_dir}, videos into {args.out}; Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    server.shutdown()
    return 0
