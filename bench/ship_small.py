"""Issue 24 step 3: the study's winning recipe trained as one model and shipped as models/NAME, in one command.

    python bench/ship_small.py --arm B --minutes 80               # about 2.5 h alone on the 2-core CPU
    python bench/ship_small.py --smoke --work /tmp/ship-smoke     # the same chain at the smoke preset's size

Each step is one command, logged to WORK/commands.jsonl and skipped when its output is there, so a run cut short
goes on where it stopped (a cut training run resumes from its last checkpoint, bit-exactly):

1. data and latents: the preset's shards (a pure function of config and seed), encoded with the study's committed
   VAE (models/synesthete-vae-64; the smoke preset trains its own tiny one);
2. calibration: a short run of the arm's recipe at this run's thread count gives s/step; the training steps are the
   budget over it, fixed in plan.json beside the kept reports, so that a later session trains the same model;
3. training (seed 0), then packaging as models/NAME: EMA weights stored as float16, config.yaml sampling with the
   arm's setting (trainer.checkpoint.package_model);
4. (after 6, which is timed and runs alone; 4, 5, 7 and 8 then run as ``--jobs`` chains at one thread each)
   the packaged model's eval on the val split (the study's 72 normal-music clips, silence and debug) with sampling
   seeds 0 and 1 (the study's goals are decided on the mean of seeds);
5. its eval on a folder of real recordings (tests/data/real_audio), whose ceiling is the teacher on the same files;
6. 30 s of audio sampled with the packaged model (bench/sample30_time.py): the record trainer/models.py's order reads;
7. the style probe (bench/style_probe.py): does ``--style-seed`` change the video at fixed audio (issue 23);
8. the contact sheet: the teacher above the model on a real song (bench/showcase.py).

The training run is WORK/runs/ARM_STEPSsteps and the evals' outputs WORK/after/ARM_STEPSsteps/, so that nothing made
for another arm or plan is taken for this one. Then the reports are copied to docs/results/reports/NAME/ and models/NAME/MODEL_CARD.md is written from them
(bench/ablation/small_card.py). The default-model order (trainer.models.SHIPPED) is edited by hand: the command
prints what the rule (``cpu_default_order``) makes of the shipped models with this one among them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ablation.calibration import calibration_step, seconds_per_step  # noqa: E402
from ablation.arms import with_overrides  # noqa: E402
from ablation.presets import CALIBRATION_STEPS, resolved_config  # noqa: E402
from ablation.runner import setup_steps  # noqa: E402
from ablation.ship import sampling_of  # noqa: E402
from ablation.small_card import write_card  # noqa: E402
from ablation.steps import (Log, Paths, Runner, Step, display_command, repo_path, run_chains,  # noqa: E402
                            train_argv)
from ablation.study import study_arms  # noqa: E402
from ablation.study_runner import STUDY_VAE, plan_ident, saved_plan  # noqa: E402

CPU_MINUTES = 80.0  # issue 24 step 3: "as long as a step allows (about two hours)": setup, evals and CI in 3 h
SMOKE_MINUTES = 0.02  # about a second of smoke-sized steps
PROTECTED = ("synesthete-tiny", "synesthete-tiny-live", STUDY_VAE.name)  # shipped models other commands made
AUDIO_DIR = ROOT / "tests" / "data" / "real_audio"
SONG = AUDIO_DIR / "joplin_maple_leaf_rag.mp3"
# what each kept file is (WORK-relative source -> name under the kept folder)
KEPT = {"eval/val/report.json": "val.json", "eval/val_s1/report.json": "val_s1.json",
        "eval/real/report.json": "real_audio.json",
        "sample30.json": "sample30.json", "style_probe.json": "style_probe.json", "showcase/song.json": "showcase.json"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arm", default="B", choices=[a.key for a in study_arms()],
                    help="The study arm whose recipe is trained (bench/ablation/study.py). Default: %(default)s.")
    ap.add_argument("--minutes", type=float, default=None,
                    help="Training budget: the steps are this many minutes at the calibrated s/step. "
                         f"Default: {CPU_MINUTES:g} ({SMOKE_MINUTES:g} with --smoke).")
    ap.add_argument("--name", default="synesthete-small", help="The shipped model's name. Default: %(default)s.")
    ap.add_argument("--style-source", choices=("posterior", "plan"), default="posterior",
                    help="diffusion.style_source of the trained model (issue 23): posterior = the arm as the study ran "
                         "it; plan = the same arm conditioned on the teacher's visual plan (trainer/style.py). The "
                         "training steps are the arm's plan either way, so the two compare at equal steps. "
                         "Default: %(default)s.")
    ap.add_argument("--style-guidance", type=float, default=None, metavar="S",
                    help="inference.style_guidance_scale the model ships with and is evaluated at (issue 23; its "
                         "evals go to an after-folder of their own). Default: the schema's (1 = off).")
    ap.add_argument("--smoke", action="store_true",
                    help="The smoke preset (seconds per step): proves the chain; writes nothing outside WORK.")
    ap.add_argument("--work", default=None, help="Work dir (data, run, evals, logs). Default: runs/ship-NAME.")
    ap.add_argument("--models", default=None, help="Where NAME/ is written. Default: models/ (WORK/models with --smoke).")
    ap.add_argument("--keep", default=None,
                    help="Where the reports are kept. Default: docs/results/reports/NAME (WORK/kept with --smoke).")
    ap.add_argument("--threads", type=int, default=2,
                    help="OMP_NUM_THREADS of every step (the run is alone on the box). Default: %(default)s.")
    ap.add_argument("--jobs", type=int, default=2,
                    help="After the timed 30 s sample (alone, at --threads), the evals, style probe and contact sheet "
                         "run as this many chains at once, one thread each (1: in order, at --threads). "
                         "Default: %(default)s.")
    ap.add_argument("--stop-after", type=float, default=None, metavar="MIN",
                    help="Start no step after MIN minutes (what is left is listed; run again to go on).")
    ap.add_argument("--verbose", action="store_true", help="Show the steps' output instead of logging it.")
    return ap.parse_args(argv)


def plan_steps(p: Paths, runner: Runner, arm, calib_k: int, batch_size: int, budget_s: float, keep: Path,
               threads: int) -> dict[str, Any] | None:
    """The training steps, fixed once: a kept plan.json made for the same config, VAE, budget, arm and threads
    (study_runner.saved_plan), else the arm's calibration now (None when it was left out for time)."""
    ident = plan_ident(p, budget_s, arm=arm.key, threads=threads)
    plan = saved_plan(keep / "plan.json", ident)
    if plan is not None:
        return plan
    step = calibration_step(p, arm, calib_k)
    shutil.rmtree(step.marker.parent, ignore_errors=True)  # a calibration made for another plan is not reused
    if not runner.run(step):
        return None
    sps = seconds_per_step(step.marker.parent, batch_size)
    rec = runner.log.last_ok(step.name) or {}
    plan = {**ident, "s_per_step": sps, "steps": max(1, round(budget_s / sps)), "calibration_steps": calib_k,
            "calibration_load1": rec.get("load1"), "calibrated_utc": rec.get("finished_utc")}
    keep.mkdir(parents=True, exist_ok=True)
    (keep / "plan.json").write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
    return plan


def with_style_source(arm, source: str, style_guidance: float | None = None):
    """The arm trained with ``diffusion.style_source=source`` and sampled with ``style_guidance`` (the arm itself for
    the defaults: posterior, no style guidance)."""
    if source != "posterior":
        arm = replace(arm, title=f"{arm.title}; style from the teacher's plan (diffusion.style_source={source})",
                      train=with_overrides(arm.train, (f"diffusion.style_source={source}",)))
    if style_guidance is not None:
        arm = replace(arm, title=f"{arm.title}; style guidance {style_guidance:g}",
                      infer=with_overrides(arm.infer, (f"inference.style_guidance_scale={style_guidance:g}",)))
    return arm


def inference_of(infer: tuple[str, ...]) -> dict[str, Any]:
    """The inference section a packaged model's config.yaml gets from the arm's inference overrides: the audio
    guidance (ablation.ship.sampling_of) and, where set, the style guidance."""
    kv = dict(o.split("=", 1) for o in infer)
    out = sampling_of(infer).inference
    if "inference.style_guidance_scale" in kv:
        out["style_guidance_scale"] = float(kv["inference.style_guidance_scale"])
    return out


def after_name(name: str, style_guidance: float | None) -> str:
    """The after-folder of a training run's evals: one per sampling setting the model ships with."""
    return name if style_guidance is None else f"{name}_sg{style_guidance:g}"


def run_name(arm, plan: dict[str, Any], style_source: str = "posterior") -> str:
    """The training run's name: its arm, style source and steps, so that a run made for another plan is never
    taken for it."""
    tag = "" if style_source == "posterior" else f"_{style_source}"
    return f"{arm.slug}{tag}_{plan['steps']}steps"


def package(run: Path, dest: Path, infer: tuple[str, ...]) -> None:
    """models/NAME from the run's newest checkpoint (float16 EMA weights), unless ``dest`` already holds exactly
    those weights (its state.json's ``source_sha256``, halved)."""
    from trainer.checkpoint import file_digest, find_checkpoint, package_model

    from trainer.checkpoint import read_run_config

    src = find_checkpoint(run)
    state = dest / "latest" / "state.json"
    held = json.loads(state.read_text()) if state.is_file() else {}
    inference = inference_of(infer)
    saved = ((read_run_config(dest) or {}).get("inference") or {}) if (dest / "config.yaml").is_file() else None
    if (held.get("source_sha256") == file_digest(src / "ema.safetensors") and held.get("weights_dtype") == "float16"
            and saved is not None and all(saved.get(k) == v for k, v in inference.items())):
        print(f"[ship] skip package ({dest} holds {src.name} of {run.name})", file=sys.stderr)
        return
    files = package_model(run, dest, inference, half=True)
    print(f"[ship] packaged {src.name} of {run.name} as {dest}: {sum(f.stat().st_size for f in files) / 1e6:.2f} MB",
          file=sys.stderr)


def after_steps(p: Paths, dest_path: Path, arm, out: Path, smoke: bool) -> list[Step]:
    """Steps 4-8 of the module docstring, on the packaged model; their outputs under ``out`` (one folder per training
    run, so that a report of another run is never taken for this one's)."""
    py, dest = p.py, repo_path(dest_path)
    audio = [repo_path(SONG)] if smoke else []  # the smoke run probes one file for a short while
    return [
        *[Step(f"{out.name}-eval-{name}", [py, "-m", "trainer", "eval", *p.c, "--checkpoint", dest, "--data",
                                           str(p.work / "data"), "--out", str(out / "eval" / name),
                                           # a packaged model records no training latents: the memorisation
                                           # check is given the ones it trained on
                                           "--train-latents", str(p.work / "latents"), *arm.eval_overrides(seed)],
               out / "eval" / name / "report.json", "eval") for seed, name in ((0, "val"), (1, "val_s1"))],
        Step(f"{out.name}-eval-real", [py, "-m", "trainer", "eval", "--checkpoint", dest, "--audio-dir",
                                       repo_path(AUDIO_DIR), "--out", str(out / "eval" / "real"),
                                       "eval.write_videos=false"] + (["eval.bootstrap=50"] if smoke else []),
             out / "eval/real/report.json", "eval"),
        Step(f"{out.name}-sample30", [py, str(ROOT / "bench" / "sample30_time.py"), "--checkpoint", dest,
                                      "--work", str(out / "sample30"), "--record", str(out / "sample30.json")],
             out / "sample30.json", "eval"),
        Step(f"{out.name}-style-probe", [py, str(ROOT / "bench" / "style_probe.py"), "--checkpoint", dest,
                                         "--latents", str(p.work / "latents"), "--out", str(out / "style_probe.json")]
             + (["--audio", *audio, "--k", "2", "--seconds", "2", "--posterior-batches", "1"] if smoke else []),
             out / "style_probe.json", "eval"),
        Step(f"{out.name}-showcase", [py, str(ROOT / "bench" / "showcase.py"), "--audio", repo_path(SONG), "--model",
                                      f"{dest_path.name}={dest}", "--out", str(out / "showcase" / "song")]
             + (["--seconds", "4", "--panel", "64"] if smoke else []), out / "showcase/song.json", "eval"),
    ]


def run_after(runner: Runner, steps: list[Step], jobs: int) -> None:
    """The after-steps: the 30 s sampling record first and alone (a time the default-model order reads), then the
    others in ``jobs`` chains at one thread each (two one-thread processes get more from the two cores than one
    two-thread process; the figures do not depend on it), dealt round-robin so that the two val evals run at once."""
    timed = [s for s in steps if s.name.endswith("-sample30")]
    rest = [s for s in steps if s not in timed]
    for step in timed:
        if not runner.run(step):
            return
    if jobs <= 1:
        run_chains(runner, [rest], 1)
        return
    one = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rest = [replace(s, env={**(s.env or {}), **one}) for s in rest]
    run_chains(runner, [rest[i::jobs] for i in range(jobs)], jobs)


def drop_failed_record(record: Path) -> None:
    """bench/sample30_time.py writes its record even when sampling failed (rc != 0): such a record is removed, so
    that the step runs again instead of being skipped as done."""
    if record.is_file() and json.loads(record.read_text()).get("rc") != 0:
        record.unlink()


def keep_outputs(out: Path, keep: Path, dest: Path) -> None:
    """This run's reports to the kept folder, each replacing the previous one; a report this run does not have is
    removed there (the card then says it is missing), so that no figure of an earlier model stays. The contact sheet
    goes beside the card."""
    from trainer.eval.report import keep_report

    for src, name in KEPT.items():
        if (out / src).is_file():
            keep_report(out / src, keep / name)
        else:
            (keep / name).unlink(missing_ok=True)
    sheet, copy = out / "showcase" / "song.png", dest / "contact_sheet.png"
    if sheet.is_file():
        shutil.copy2(sheet, copy)
    else:
        copy.unlink(missing_ok=True)


def shipped_order(dest: Path, keep: Path) -> tuple[str, ...] | None:
    """What trainer.models.cpu_default_order makes of the shipped models with this one (None without its record)."""
    from trainer.models import SAMPLE30_RECORD, SHIPPED, cpu_default_order, model_parameters, shipped_model

    record = keep / "sample30.json"
    if not record.is_file():
        return None
    sizes = {dest.name: model_parameters(dest)["total"]}
    secs = {dest.name: json.loads(record.read_text())["wall_s"]}
    for name in SHIPPED:
        rec, path = ROOT / SAMPLE30_RECORD.format(name=name), shipped_model(name)
        if name != dest.name and rec.is_file() and path is not None:
            sizes[name], secs[name] = model_parameters(path)["total"], json.loads(rec.read_text())["wall_s"]
    return cpu_default_order(sizes, secs)


def main(argv: list[str] | None = None) -> int:
    t0 = time.time()
    args = parse_args(argv)
    preset = "smoke" if args.smoke else "cpu"
    work = Path(args.work or ROOT / "runs" / f"ship-{args.name}").resolve()
    models = Path(args.models or (work / "models" if args.smoke else ROOT / "models")).resolve()
    keep = Path(args.keep or (work / "kept" if args.smoke else ROOT / "docs" / "results" / "reports" / args.name))
    if args.name in PROTECTED:
        raise SystemExit(f"--name {args.name}: that model is shipped and not made by this command (pick another name)")
    dest = models / args.name
    cfg_file = resolved_config(preset, [], work / "ship.yaml")
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    runner = Runner(Log(work / "commands.jsonl").load(), dict(os.environ), work / "logs", args.verbose, False,
                    None if args.stop_after is None else t0 + 60 * args.stop_after)
    vae = None if args.smoke else STUDY_VAE
    p = Paths(work, cfg_file, vae=vae)
    arm = {a.key: a for a in study_arms()}[args.arm]
    for step in setup_steps(p):
        if not runner.run(step):
            return left_out(runner)
    import yaml

    batch = int(yaml.safe_load(cfg_file.read_text())["diffusion"]["batch_size"])
    minutes = args.minutes if args.minutes is not None else (SMOKE_MINUTES if args.smoke else CPU_MINUTES)
    plan = plan_steps(p, runner, arm, CALIBRATION_STEPS[preset], batch, 60.0 * minutes, keep, args.threads)
    if plan is None:
        return left_out(runner)
    name = run_name(arm, plan, args.style_source)
    arm = with_style_source(arm, args.style_source, args.style_guidance)
    run, out = work / "runs" / name, work / "after" / after_name(name, args.style_guidance)
    train = Step(f"{name}-train", train_argv(p, run, arm.train_overrides(plan["steps"], 0)), run / "summary.json",
                 arm.key)
    if not runner.run(train):
        return left_out(runner)
    package(run, dest, arm.infer)
    drop_failed_record(out / "sample30.json")
    try:
        run_after(runner, after_steps(p, dest, arm, out, args.smoke), args.jobs)
    finally:  # a failed step still leaves the reports made so far and a card that names what is missing
        keep_outputs(out, keep, dest)
        data_cmd = display_command(setup_steps(p)[0].argv)
        vae_desc = f"the study's committed VAE {STUDY_VAE.relative_to(ROOT)}" if vae else "trained by this run"
        card = write_card(dest, keep, arm, plan, runner.log, train, data_cmd, preset, vae_desc)
    order = shipped_order(dest, keep)
    print(f"[ship] wrote {card}; reports in {keep}", file=sys.stderr)
    if order is not None:
        print(f"[ship] the CPU default-model order with {args.name} (trainer/models.py SHIPPED): {order}",
              file=sys.stderr)
    return left_out(runner)


def left_out(runner: Runner) -> int:
    """0; the steps left out for time are named (run the command again to go on)."""
    if runner.skipped_for_time:
        print(f"[ship] not run (session time): {', '.join(runner.skipped_for_time)}; run again to go on",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
