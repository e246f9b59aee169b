"""Responsiveness ablation on the per-variant eval: which lever makes the generated video follow the music?

From one config (a preset, optionally with more ``--config`` layers) this runs, each step as its own command
(logged with its exact command line, wall time and exit status)::

    datagen run ─► trainer vae ─► trainer cache-latents                       (once)
      ─► trainer diffusion, a short calibration run per recipe (s/step)       (once per recipe)
      ─► trainer diffusion (arm, seed) for an equal wall-clock budget ─► trainer eval (arm, seed)
      ─► arm G: the best combination, chosen by a stated rule from the measured arms
      ─► docs/RESULTS.md (normal-music goal metrics first, from the eval's report.json files)

Arms (issue 13 item 6; every lever arm adds one lever to arm C, so that arm G can combine the levers that helped):

* A baseline: no silence clips, no shuffle pressure, per-clip normalisation, no audio CFG;
* B today's best: the shipped recipe (models/synesthete-tiny: silence 0.3, bootstrap curriculum debug 1 → 0.05
  over half the steps, hard negatives, x0-space hinge 0.5, absolute loudness, audio CFG 2), with the mix knobs
  switched on by ``data.reweight_variants=true`` as it was trained;
* C + knobs fixed: B's mix given by the explicit mix knobs alone (no ``data.reweight_variants``): with the loader's
  "a knob given explicitly reweights, else draw what the shards hold" rule this is B's mix through the new path;
* D C + band-permuted negatives (``diffusion.audio_shuffle_negatives=band_permuted``);
* E C + InfoNCE (``diffusion.audio_shuffle_loss_type=infonce``, K = ``diffusion.audio_contrastive_negatives``);
* F C's checkpoints sampled with the interval guidance schedule (``inference.audio_guidance_schedule=interval``,
  same peak g; no training of its own);
* G the best combination: C plus every lever of D, E, F whose arm beat C on the headline score (:func:`headline_score`,
  normal-music goal metrics, mean of the seeds). When no trained lever is chosen G is not trained again: it is C
  (no lever) or F (only the schedule).

Each trained arm runs two seeds (``run.seed`` and ``inference.seed`` = 0, 1) and the same wall-clock budget: the
budget is the preset's ``diffusion.steps`` at arm B's s/step, and each arm's steps are the budget over its own s/step,
measured by a short calibration run (InfoNCE with K negatives costs about K+1 forwards per step).

Resumable: a step whose output marker exists is skipped; the command log WORK/commands.jsonl keeps every try.
``--stop-after MIN`` starts no step after MIN minutes: arms left out are written "not run (session time)".

Usage::

    python bench/responsiveness_ablation.py --preset h100              # one H100
    nice -n 10 python bench/responsiveness_ablation.py --preset tiny    # issue 13's table, 2-core CPU
    python bench/responsiveness_ablation.py --preset smoke --work /tmp/x --results /tmp/x/RESULTS.md   # plumbing

``--ship NAME --ship-arm K`` then runs the ship study (issue 13 item 7) on the same latents: arm K's recipe (default G)
trained as each of ``--ship-candidates`` (longer budgets, a capacity lever; table SHIP_CANDIDATES) with both seeds,
each evaluated at the arm's own sampling and (eval only) over a guidance sweep; SHIP_RULE, stated before the runs,
picks one (candidate, sampling) pair; its seed-0 checkpoint is packaged as models/NAME (config.yaml, latest ->
ckpt/step-N with EMA weights, vae/, MODEL_CARD.md written from the evals), `trainer sample` is timed on 30 s of
audio with it, the size limits are checked, and a section with every try is appended to the results.

The code is the package bench/ablation/, one module per concern: presets (the scales), arms (the recipes A-G),
rule (the goals, the headline score, the choice of G's levers), steps (running and logging a command, the work dir),
calibration (equal wall-clock), runner (the ablation run), writers (RESULTS.md), ship (the ship study's candidates,
pairs and rule), ship_study (running it, packaging), ship_writers (its section and the model card). This file is the
command line; the names tests read from it (``responsiveness_ablation.X``) are imported here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

from shared.provenance import code_commit

from ablation.arms import FINAL_DEBUG_PROB, arms, combination_arm, legacy_loader, plan_arms
from ablation.calibration import equal_time_steps
from ablation.presets import CALIBRATION_STEPS, PRESETS, resolved_config
from ablation.rule import GOALS, choose_levers, entry, goal_value, headline_score, mean_of, seed_spread, value
from ablation.runner import load_reports, run_ablation
from ablation.study_runner import BUDGET_S, STUDY_VAE, keep_copy, run_study, runs_load, study_reports
from ablation.study_writer import write_study_results
from ablation.ship import DEFAULT_CANDIDATES, SHIP_CANDIDATES, Pair, Sampling, rank_pairs, sampling_of, sweep_for
from ablation.ship_study import ship
from ablation.steps import REPO, Log, Paths, Runner, display_command, repo_relative
from ablation.text import entry_text, fmt
from ablation.writers import met_text, write_results

__all__ = [  # the command line, and the names tests read as responsiveness_ablation.X
    "main", "parse_args",
    "FINAL_DEBUG_PROB", "arms", "combination_arm", "legacy_loader", "plan_arms", "equal_time_steps",
    "resolved_config", "GOALS", "choose_levers", "entry", "goal_value", "headline_score", "mean_of", "seed_spread",
    "value", "load_reports", "SHIP_CANDIDATES", "Pair", "Sampling", "rank_pairs", "sampling_of", "sweep_for", "Paths",
    "entry_text", "fmt", "met_text",
]

# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True,
                    help="Scale: h100; cpu (issue 24's study: 64 px, 1,024 training clips, 72 eval clips per variant); "
                         "tiny (issue 13's table, the shipped tiny model's scale); smoke (CI).")
    ap.add_argument("--config", action="append", default=[], metavar="FILE.yaml",
                    help="Extra YAML layers over the preset (repeatable).")
    ap.add_argument("--work", default=None, metavar="DIR", help="Work dir (data, runs, evals, logs). "
                    "Default: runs/ablation-PRESET.")
    ap.add_argument("--results", default=None, metavar="FILE.md",
                    help="Where to write the results. Default: docs/RESULTS.md (WORK/RESULTS.md for smoke).")
    ap.add_argument("--stills", default=None, metavar="DIR",
                    help="Where the PNG stills go. Default: docs/results/PRESET (WORK/stills for smoke).")
    ap.add_argument("--notes", default=None, metavar="FILE.md",
                    help="A hand-written reading of the table, included verbatim. Default: docs/results/notes_PRESET.md "
                         "when it exists.")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS for the steps (default: 1 for cpu/smoke, unset for h100).")
    ap.add_argument("--stop-after", type=float, default=None, metavar="MIN",
                    help="Start no step after MIN minutes; what is left is written 'not run (session time)'.")
    ap.add_argument("--in-process", action=argparse.BooleanOptionalAction, default=None,
                    help="Run the steps in this process instead of one subprocess each (default: on for smoke).")
    ap.add_argument("--study", action="store_true",
                    help="Issue 24's study instead of issue 13's ablation: arms A, B, B0 (B without the hinge) and B+ "
                         "for equal steps, the registered verdicts in WORK/study.json (bench/ablation/study.py).")
    ap.add_argument("--study-minutes", type=float, default=BUDGET_S / 60, metavar="MIN",
                    help="With --study: arm B's training time that sets every arm's steps (default: %(default)g).")
    ap.add_argument("--vae", default=None, metavar="DIR",
                    help="Encode with this trained VAE (a `trainer vae` run or a packaged one) instead of training one "
                         f"in WORK/vae. Default with --study --preset cpu: {STUDY_VAE} when it exists.")
    ap.add_argument("--keep-reports", default=None, metavar="DIR",
                    help="With --study: copy each arm's report.json here as it is written (default: "
                         "docs/results/study/reports; WORK/kept_reports for smoke).")
    ap.add_argument("--config-only", action="store_true",
                    help="Write the preset's resolved config to WORK/ablation.yaml, print its path and stop.")
    ap.add_argument("--tune", action="store_true",
                    help="Also run two tuning tries: C with shuffle weight 1; C's checkpoints with interval g = 4.")
    ap.add_argument("--ship", default=None, metavar="NAME",
                    help="After the ablation, train --ship-arm's recipe as the --ship-candidates (2 seeds each), "
                         "evaluate them (and a guidance sweep), choose one by the stated rule and package it as "
                         "models/NAME; adds a section to the results.")
    ap.add_argument("--ship-arm", default="G", help="Arm whose recipe the shipped model uses (default: G).")
    ap.add_argument("--ship-candidates", type=lambda v: [k for k in v.split(",") if k],
                    default=list(DEFAULT_CANDIDATES), metavar="KEY,KEY",
                    help="Training candidates of the ship study, cheapest first: "
                         + "; ".join(f"{c.key} = {c.title}" for c in SHIP_CANDIDATES.values())
                         + f" (default: {','.join(DEFAULT_CANDIDATES)}).")
    ap.add_argument("--ship-override", action="append", default=[], metavar="section.key=value",
                    help="Extra training overrides for every candidate (repeatable; same model shape rules apply).")
    ap.add_argument("--ship-notes", default=None, metavar="FILE.md",
                    help="A hand-written reading of the ship study, included in its section and the model card. "
                         "Default: docs/results/notes_ship_PRESET.md when it exists.")
    ap.add_argument("--jobs", type=int, default=None,
                    help="Ship study and --study: run up to this many (candidate or arm, seed) chains at once "
                         "(default: 2 for --study, as issue 24 registered it; else 1; always 1 in-process).")
    ap.add_argument("--models", default=str(REPO / "models"), metavar="DIR", help="Where --ship writes NAME/.")
    ap.add_argument("--verbose", action="store_true", help="Show the subprocesses' output instead of logging it.")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    t0 = time.time()
    args = parse_args(argv)
    work = Path(args.work or REPO / "runs" / f"ablation-{args.preset}").resolve()
    smoke = args.preset == "smoke"
    results = Path(args.results) if args.results else (work / "RESULTS.md" if smoke else REPO / "docs" / "RESULTS.md")
    stills = Path(args.stills) if args.stills else (work / "stills" if smoke else REPO / "docs" / "results" / args.preset)
    notes = Path(args.notes) if args.notes else REPO / "docs" / "results" / f"notes_{args.preset}.md"
    cfg_file = resolved_config(args.preset, args.config, work / "ablation.yaml")
    tree = yaml.safe_load(cfg_file.read_text())
    threads = args.threads if args.threads is not None else (None if args.preset == "h100" else 1)
    if threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP waits slow small ops on shared cores
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(REPO))
    in_process = smoke if args.in_process is None else args.in_process
    if in_process:
        os.chdir(REPO)
        if threads:
            import torch

            torch.set_num_threads(threads)
    runner = Runner(Log(work / "commands.jsonl").load(), env, work / "logs", args.verbose, in_process,
                    None if args.stop_after is None else t0 + 60 * args.stop_after)
    if args.config_only:
        print(cfg_file)
        return 0
    vae = args.vae or (str(STUDY_VAE) if args.study and args.preset == "cpu" and STUDY_VAE.is_dir() else None)
    p = Paths(work, cfg_file, vae=Path(vae).resolve() if vae else None)
    jobs = 1 if in_process else (args.jobs or (2 if args.study else 1))
    preset_steps = int(tree["diffusion"]["steps"])
    if args.study:
        keep = Path(args.keep_reports) if args.keep_reports else (
            work / "kept_reports" if smoke else REPO / "docs" / "results" / "study" / "reports")
        doc = run_study(p, runner, int(tree["diffusion"]["batch_size"]), CALIBRATION_STEPS[args.preset],
                        60.0 * args.study_minutes, jobs, keep)
        keep_copy(work / "study.json", keep.parent / "study.json")
        out = write_study_results(results, doc, study_reports(p, doc), repo_relative(str(keep)),
                                  code_commit() or "unknown", display_command([sys.executable, *sys.argv]),
                                  runs_load(runner.log))
        print(f"[study] wrote {out}", file=sys.stderr)
        print(f"[study] {doc.get('pressure', 'not decided: B was not calibrated')} (B vs B0; {work / 'study.json'}; "
              f"{time.time() - t0:.1f} s this run)", file=sys.stderr)
        return 0
    plan = run_ablation(p, runner, preset_steps, int(tree["diffusion"]["batch_size"]),
                        CALIBRATION_STEPS[args.preset], args.tune)
    out = write_results(results, p, args.preset, plan, runner.log, stills, notes, args.tune)
    print(f"[ablation] wrote {out} ({time.time() - t0:.1f} s this run"
          + (f"; not run (session time): {len(plan['not_run'])} steps" if plan["not_run"] else "") + ")",
          file=sys.stderr)
    if args.ship:
        ship(args, p, runner, plan, results, stills)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
