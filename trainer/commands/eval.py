"""`trainer eval`: audio-responsiveness report of a diffusion run on the val clips, beside the ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.cli import ShortFlag, add_config_args, config_or_exit, fail, resolved_or_exit
from shared.errors import SynestheteError
from trainer.models import add_model_arguments, model_defaults, resolve_model

NAME = "eval"
HELP = ("Evaluate a diffusion run on the val pixel shards, per variant (normal music first): silence settle, "
        "loudness -> motion/brightness/size, bands -> colour/geometry, AV-Align and beat alignment, audio retrieval, "
        "style diversity, each beside a shuffled-audio floor and the ground-truth ceiling with a bootstrap CI; plus "
        "the VAE diagnostic. Writes report.json, report.md, plots and side-by-side mp4s.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default = add_model_arguments(parser)
    parser.add_argument("--data", default="data/pixels", metavar="PIXEL_DIR",
                        help="Pixel shards with a val/ split (ground truth frames, timelines, audio, meta).")
    parser.add_argument("--audio-dir", default=None, metavar="DIR",
                        help="Instead of the val shards: sample every audio file in DIR (wav/flac/mp3/..., any rate) "
                             "and score what needs no ground truth (settle, loudness-motion, AV-Align, beat score, "
                             "retrieval, shift test). Default --out: CHECKPOINT_RUN/eval/audio_dir (runs/eval-NAME/audio_dir for "
                             "the shipped model).")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="Report dir. Default: CHECKPOINT_RUN/eval (runs/diffusion/eval for the default run; runs/eval-NAME for a "
                             "shipped model, whose folder stays untouched).")
    parser.add_argument("--skip-current", action="store_true",
                        help="Do nothing when the report dir already holds report.json, .md and .html written after "
                             "every file of the checkpoint, the data (--data's val splits or --audio-dir) and the eval "
                             "code (a re-run of `make demo`); other flags are not compared. Default: always evaluate.")
    add_config_args(parser, [
        ShortFlag("--n", "eval.clips_per_variant", int, "Val clips evaluated per variant (distinct audio)."),
        ShortFlag("--seed", "inference.seed", int, "Noise seed."),
        ShortFlag("--guidance", "inference.audio_guidance_scale", float, "Audio classifier-free guidance scale."),
        ShortFlag("--steps", "inference.steps", int, "Sampling steps per snippet."),
    ], model_defaults=model_defaults(default) if default else None, source=default)


def default_out(checkpoint: Path) -> Path:
    """RUN/eval; for a step dir (or RUN/latest, which points at one) RUN/eval/step-N; for a shipped model
    (models/NAME) runs/eval-NAME, so the shipped model's folder stays untouched."""
    from trainer.eval.scalars import eval_run_dir

    step = checkpoint.resolve()
    if eval_run_dir(step) is None:
        return Path("runs") / f"eval-{step.name}"
    if (step / "state.json").is_file() and step.parent.name == "ckpt":
        return step.parent.parent / "eval" / step.name
    return checkpoint / "eval"


REPORT_FILES = ("report.json", "report.md", "report.html")


def _newest(path: Path, pattern: str = "*") -> int:
    """The newest modification time (ns) of ``path`` itself when it is a file, else of the files below it that
    match ``pattern`` (0 for none)."""
    if path.is_file():
        return path.stat().st_mtime_ns
    return max((p.stat().st_mtime_ns for p in path.rglob(pattern) if p.is_file()), default=0)


def eval_inputs(args: argparse.Namespace) -> list[Path]:
    """What the evaluation reads besides the checkpoint: the audio folder, or the val splits of the pixel data
    (val/, val_siblings/; not the manifest or summary, which every `datagen run` rewrites). [] when unknown."""
    if args.audio_dir:
        return [Path(args.audio_dir)] if Path(args.audio_dir).is_dir() else []
    return sorted(Path(args.data).glob("val*")) if Path(args.data).is_dir() else []


def report_is_current(out: Path, checkpoint: Path, inputs: list[Path]) -> bool:
    """Whether ``out`` holds a whole report (:data:`REPORT_FILES`) written after every file of the checkpoint's
    step dir, of ``inputs`` (:func:`eval_inputs`) and of the eval code (trainer/eval, this command); False when
    any of them is missing or unreadable."""
    import trainer.eval
    from trainer.checkpoint import find_checkpoint

    step = find_checkpoint(checkpoint)
    if step is None or not inputs:
        return False
    try:
        written = min((out / name).stat().st_mtime_ns for name in REPORT_FILES)
        newest = max(_newest(step), *(_newest(p) for p in inputs),
                     _newest(Path(trainer.eval.__file__).parent, "*.py"), _newest(Path(__file__)))
    except (OSError, ValueError):  # a missing report file; nothing to compare with
        return False
    return written > newest


def run(args: argparse.Namespace) -> int:
    from trainer.eval.evaluate import evaluate
    from trainer.eval.report import HEADLINE, fmt_entry
    from trainer.eval.scalars import log_eval_scalars
    from trainer.sample import load_sampling_model, one_line

    ckpt = resolved_or_exit(args, lambda: resolve_model(args.checkpoint, args.model))
    if not ckpt.exists():
        if args.dry_run:
            config_or_exit(args)
        fail(f"checkpoint {str(ckpt)!r}: not found (train one with `trainer diffusion` or pass --checkpoint RUN)")
    out = Path(args.out) if args.out else default_out(ckpt) / ("audio_dir" if args.audio_dir else "")
    if args.skip_current and not args.dry_run and report_is_current(out, ckpt, eval_inputs(args)):
        print(f"eval: kept {out / 'report.html'} (and .json, .md): written after every file of {ckpt}, "
              f"{args.audio_dir or args.data} and the eval code, so there is nothing to evaluate again "
              "(--skip-current; without it eval runs)", file=sys.stderr)
        return 0
    if args.audio_dir:
        return run_audio_dir(args, ckpt, out)
    try:
        import torch

        from trainer.runtime import pick_device

        model = load_sampling_model(ckpt, "cpu", overrides=lambda saved: config_or_exit(args, base=saved))
        model.to(pick_device(model.cfg.run.device))
        with torch.no_grad():  # scoped: tests call run() in-process
            rep, pj, pm = evaluate(model, args.data, out, log=lambda m: print(m, file=sys.stderr))
        tb = log_eval_scalars(rep, model.step_dir, model.step)
    except SynestheteError as e:  # bad input: one line, exit 2; anything else keeps its traceback
        fail(one_line(e))
    if tb is not None:
        print(f"eval: scalars in {tb} (TensorBoard)", file=sys.stderr)
    print(f"eval: wrote {pm}, {pj.name} and report.html ({rep['info']['clips']} clips; "
          + ", ".join(f"{v['n_clips']} {name}" for name, v in rep["variants"].items()) + ")", file=sys.stderr)
    head = rep["variants"][HEADLINE]
    print(f"{HEADLINE} music ({head['n_clips']} clips): floor | generated | ceiling, 95% CI")
    for name, row in head["metrics"].items():
        print(f"  {name:32s} {fmt_entry(row['floor']):>24s} | {fmt_entry(row['generated']):>24s} | "
              f"{fmt_entry(row['ceiling']):>24s}")
    return 0


def run_audio_dir(args: argparse.Namespace, checkpoint: Path, out: Path) -> int:
    """``trainer eval --audio-dir DIR``: check the folder first (exit 2 before any model is loaded), sample and
    score every file, write the report, log the scalars to TensorBoard under the evaluated run."""
    import torch

    from trainer.eval.clips import list_audio_files
    from trainer.eval.evaluate import evaluate_audio_dir
    from trainer.eval.report import fmt_entry
    from trainer.eval.rows import FOLDER_VARIANT
    from trainer.eval.scalars import log_eval_scalars
    from trainer.runtime import pick_device
    from trainer.sample import SampleError, load_sampling_model, one_line

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    try:
        files = list_audio_files(args.audio_dir)
        model = load_sampling_model(checkpoint, "cpu", overrides=lambda saved: config_or_exit(args, base=saved))
        model.to(pick_device(model.cfg.run.device))
        log(f"eval --audio-dir: {len(files)} audio files in {args.audio_dir} -> {out}")
        with torch.no_grad():
            report, pj = evaluate_audio_dir(model, args.audio_dir, out, log=log)
    except (SynestheteError, SampleError) as e:
        fail(one_line(e))
    tb = log_eval_scalars(report, model.step_dir, model.step)  # tags eval/audio_dir/METRIC/{generated,floor}
    v = report["variants"][FOLDER_VARIANT]
    log(f"eval --audio-dir: wrote {pj}, report.md and report.html ({v['n_clips']} files, "
        f"{len(report['skipped'])} skipped)" + (f"; TensorBoard scalars in {tb}" if tb else
                                                 "; no TensorBoard scalars (the shipped model is never written)"))
    for name, r in v["metrics"].items():
        g, f = r["generated"], r["floor"]
        log(f"  {name:38s} generated {fmt_entry(g):>24s}   floor {fmt_entry(f):>24s}   n={g['n']}")
    return 0
