"""`trainer eval`: audio-responsiveness report of a diffusion run on the val clips, beside the ground truth."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from shared.cli import ShortFlag, config_or_exit, fail, resolved_or_exit
from shared.errors import SynestheteError
from trainer.models import add_model_arguments, add_model_config_args, resolve_model, sampling_flags

NAME = "eval"
HELP = ("Evaluate a diffusion run on the val pixel shards, per variant (normal music first): silence settle, "
        "loudness -> motion/brightness/size, bands -> colour/geometry, AV-Align and beat alignment, audio retrieval, "
        "style diversity, each beside a shuffled-audio floor and the ground-truth ceiling with a bootstrap CI; plus "
        "the VAE diagnostic. Every report opens with a verdict (does it follow the music? each goal of "
        "trainer/eval/goals.py met / not met / undecided on its CI; a VAE below 20 dB PSNR flagged). Writes "
        "report.json, report.md, report.html, plots and side-by-side mp4s.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default = add_model_arguments(parser)
    parser.add_argument("--data", default="data/pixels", metavar="PIXEL_DIR",
                        help="Pixel shards with a val/ split (ground truth frames, timelines, audio, meta).")
    parser.add_argument("--audio-dir", default=None, metavar="DIR",
                        help="Instead of the val shards: sample every audio file in DIR (wav/flac/mp3/..., any rate) "
                             "and score what needs no ground truth (settle, loudness-motion, AV-Align, beat score, "
                             "retrieval, shift test), each beside the ground-truth visualizers rendered on the same "
                             "files (the ceiling; see --no-teacher). Default --out: CHECKPOINT_RUN/eval/audio_dir "
                             "(runs/eval-NAME/audio_dir for the shipped model).")
    parser.add_argument("--train-latents", default=None, metavar="LATENT_DIR",
                        help="The training split's latent shards for the memorisation check (a latent set dir or its "
                             "train/), or 'regenerate': remake them from the run's config and VAE (datagen run + "
                             "cache-latents into OUT/memorisation/; shards are a pure function of config and seed). "
                             "Default: the ones the run recorded, when still there (else the check is reported as "
                             "not measured).")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="Report dir. Default: CHECKPOINT_RUN/eval (runs/diffusion/eval for the default run; runs/eval-NAME for a "
                             "shipped model, whose folder stays untouched).")
    parser.add_argument("--no-teacher", action="store_true",
                        help="With --audio-dir: skip the ceiling (the ground-truth visualizers rendered on each file and "
                             "scored the same way; a few seconds for a few files). Its ceiling column is then n/a.")
    parser.add_argument("--skip-current", action="store_true",
                        help="Do nothing when the report dir already holds report.json, .md and .html written after "
                             "every file of the checkpoint, the data (--data's val splits or --audio-dir) and the eval "
                             "code (a re-run of `make demo`); other flags are not compared. Default: always evaluate.")
    add_model_config_args(parser, default, [
        ShortFlag("--n", "eval.clips_per_variant", int, "Val clips evaluated per variant (distinct audio)."),
        *sampling_flags()])


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


REGENERATE = "regenerate"


def regenerate_train_latents(model, out: Path) -> Path:
    """The run's training latents remade from its config: ``datagen run`` into OUT/memorisation/pixels and
    ``cache-latents`` with the run's VAE (its ``vae/`` copy) into OUT/memorisation/latents; returns the train split.
    Both resume: a second eval reuses what the first made."""
    from datagen.run import run_datagen
    from trainer.latents import cache_latents

    run_dir = model.step_dir.parent.parent
    pixels, latents = out / "memorisation" / "pixels", out / "memorisation" / "latents"
    cfg, want = regeneration_config(model)
    print(f"eval: regenerating the training shards of {run_dir} into {pixels.parent}", file=sys.stderr)
    code, _ = run_datagen(cfg, pixels)
    if code != 0:
        fail(f"--train-latents regenerate: datagen run into {pixels} failed (exit {code})")
    got = json.loads((pixels / "manifest.json").read_text()).get("content_id")
    if want and got != want:
        fail(f"--train-latents regenerate: the remade shards (content {got}) are not the ones {run_dir} trained on "
             f"(content {want}): the code that makes them changed since; pass --train-latents DIR")
    print(f"eval: the remade shards match the run's record (content {got})" if want else
          "eval: the remade shards are not verified: the run records no pixel content id (trained before it did)",
          file=sys.stderr)
    cache_latents(cfg, str(pixels), str(run_dir / "vae"), str(latents))
    return latents / "train"


def regeneration_config(model) -> tuple[Any, str | None]:
    """(the config that remakes the run's training shards, the pixel content id they must have or None): the
    run's config with the data, timeline and render sections its checkpoint recorded from the pixel set."""
    from shared.config import build_config

    state = json.loads((model.step_dir / "state.json").read_text()).get("state", {})
    recorded = state.get("pixel_config") or {}
    tree = {**model.cfg.model_dump(mode="json"), **recorded}
    return build_config(base=tree), state.get("pixel_content_id")


def train_split(path: str | None) -> Path | None:
    """``--train-latents``: a latent set dir (its train/) or the split dir itself; a missing dir is one line."""
    if path is None or path == REGENERATE:
        return None
    p = Path(path)
    if (p / "train").is_dir():
        return p / "train"
    if not p.is_dir():
        fail(f"--train-latents {path!r}: not a directory")
    return p


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
            train = (regenerate_train_latents(model, out) if args.train_latents == REGENERATE
                     else train_split(args.train_latents))
            rep, pj, pm = evaluate(model, args.data, out, log=lambda m: print(m, file=sys.stderr),
                                   train_latents=train)
        tb = log_eval_scalars(rep, model.step_dir, model.step)
    except SynestheteError as e:  # bad input: one line, exit 2; anything else keeps its traceback
        fail(one_line(e))
    if tb is not None:
        print(f"eval: scalars in {tb} (TensorBoard)", file=sys.stderr)
    print(f"eval: wrote {pm}, {pj.name} and report.html ({rep['info']['clips']} clips; "
          + ", ".join(f"{v['n_clips']} {name}" for name, v in rep["variants"].items()) + ")", file=sys.stderr)
    print_verdict(rep["verdict"])
    head = rep["variants"][HEADLINE]
    print(f"{HEADLINE} music ({head['n_clips']} clips): floor | generated | ceiling, 95% CI")
    for name, row in head["metrics"].items():
        print(f"  {name:32s} {fmt_entry(row['floor']):>24s} | {fmt_entry(row['generated']):>24s} | "
              f"{fmt_entry(row['ceiling']):>24s}")
    return 0


@contextlib.contextmanager
def teacher_scope(cfg, wanted: bool, log) -> Iterator[Callable | None]:
    """The folder's ceiling: ``path -> (frames, info)`` of the ground-truth visualizers on an audio file (the
    composite plan seeded by the file name, :func:`trainer.teacher.file_ground_truth`) on one renderer, released
    on exit; None when not wanted or when no renderer can be made here (said in one line)."""
    if not wanted:
        yield None
        return
    from datagen.visual import EGLContextError
    from trainer.teacher import file_ground_truth, renderer_scope

    with contextlib.ExitStack() as stack:
        try:
            renderer = stack.enter_context(renderer_scope(None, cfg.render.resolution))
        except EGLContextError as e:
            log(f"eval --audio-dir: no ceiling (the visualizers cannot render here: {e})")
            yield None
            return

        def teacher(path: Path):
            gt = file_ground_truth(cfg, path, 0, renderer)
            return gt.frames, {"plan_seed": gt.meta["seed"]}
        yield teacher


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
        with teacher_scope(model.cfg, not args.no_teacher, log) as teacher, torch.no_grad():
            report, pj = evaluate_audio_dir(model, args.audio_dir, out, log=log, teacher=teacher)
    except (SynestheteError, SampleError) as e:
        fail(one_line(e))
    tb = log_eval_scalars(report, model.step_dir, model.step)  # tags eval/audio_dir/METRIC/{generated,floor}
    v = report["variants"][FOLDER_VARIANT]
    log(f"eval --audio-dir: wrote {pj}, report.md and report.html ({v['n_clips']} files, "
        f"{len(report['skipped'])} skipped)" + (f"; TensorBoard scalars in {tb}" if tb else
                                                 "; no TensorBoard scalars (the shipped model is never written)"))
    for name, r in v["metrics"].items():
        g, f, c = r["generated"], r["floor"], r["ceiling"]
        log(f"  {name:38s} generated {fmt_entry(g):>24s}   floor {fmt_entry(f):>24s}   ceiling {fmt_entry(c):>24s}"
            f"   n={g['n']}")
    print_verdict(report["verdict"])
    return 0


def print_verdict(v: dict) -> None:
    """The verdict block in a few lines (stdout): the warnings, the answer, each goal."""
    for w in v["warnings"]:
        print(f"WARNING: {w}")
    print(f"{v['question']} {v['summary']}")
    for g in v["goals"]:
        print(f"  [{g['status']:>9s}] {g['variant']}: {g['goal']} ({g['rule']}), n={g['n']}: {g['why']}")
