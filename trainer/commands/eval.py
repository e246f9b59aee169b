"""`trainer eval`: audio-responsiveness report of a diffusion run on the val clips, beside the ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.cli import ShortFlag, add_config_args, config_or_exit, fail
from shared.errors import SynestheteError

NAME = "eval"
HELP = ("Evaluate a diffusion run on the val pixel shards: audio-shuffle loss gap and output sensitivity, style "
        "diversity, silence settle, AV-Align and RMS-motion correlation, VAE bottleneck; each beside the ground "
        "truth. Writes report.json, report.md, plots and side-by-side mp4s.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="runs/diffusion", metavar="RUN",
                        help="Diffusion run dir (its latest checkpoint) or a ckpt/step-* dir.")
    parser.add_argument("--data", default="data/pixels", metavar="PIXEL_DIR",
                        help="Pixel shards with a val/ split (ground truth frames, timelines, audio, meta).")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="Report dir. Default: CHECKPOINT_RUN/eval (runs/diffusion/eval for the default run).")
    add_config_args(parser, [
        ShortFlag("--n", "eval.n_clips", int, "Val clips evaluated."),
        ShortFlag("--seed", "inference.seed", int, "Noise seed."),
        ShortFlag("--guidance", "inference.audio_guidance_scale", float, "Audio classifier-free guidance scale."),
        ShortFlag("--steps", "inference.steps", int, "Sampling steps per snippet."),
    ])


def default_out(checkpoint: Path) -> Path:
    """RUN/eval; for a step dir (or RUN/latest, which points at one) RUN/eval/step-N."""
    step = checkpoint.resolve()
    if (step / "state.json").is_file() and step.parent.name == "ckpt":
        return step.parent.parent / "eval" / step.name
    return checkpoint / "eval"


def run(args: argparse.Namespace) -> int:
    from trainer.eval.evaluate import EvalError, evaluate
    from trainer.sample import load_sampling_model, one_line

    ckpt = Path(args.checkpoint)
    if not ckpt.exists():
        if args.dry_run:
            config_or_exit(args)
        fail(f"checkpoint {str(ckpt)!r}: not found (train one with `trainer diffusion` or pass --checkpoint RUN)")
    out = Path(args.out) if args.out else default_out(ckpt)
    try:
        import torch

        from trainer.runtime import pick_device

        model = load_sampling_model(ckpt, "cpu", overrides=lambda saved: config_or_exit(args, base=saved))
        model.to(pick_device(model.cfg.run.device))
        with torch.no_grad():  # scoped: tests call run() in-process
            rep, pj, pm = evaluate(model, args.data, out, log=lambda m: print(m, file=sys.stderr))
    except (SynestheteError, EvalError) as e:  # bad input: one line, exit 2; anything else keeps its traceback
        fail(one_line(e))
    print(f"eval: wrote {pm} and {pj.name} ({len(rep.rows)} metrics, {rep.info['clips']} clips)", file=sys.stderr)
    for r in rep.rows:
        from trainer.eval.report import fmt

        print(f"  {r.name:28s} generated {fmt(r.generated):>10s}   ground truth {fmt(r.ground_truth):>10s}")
    return 0
