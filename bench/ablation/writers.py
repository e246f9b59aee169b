"""The ablation's write-up (docs/RESULTS.md): the goal table first, one table per goal, how arm G was chosen, cost,
the other metrics, each arm (with a still), every command run and the config; the report.json files it reads are
copied beside it. Also the facts a write-up names (device, teacher, GPU preset) and the stills."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from .arms import LEVERS, Arm, legacy_loader, plan_arms, trained_key
from .presets import SEEDS
from .rule import GOALS, SECONDARY, Goal, GoalValue, entry, goal_value, headline_score, mean_of, value
from .runner import load_reports
from .steps import Log, Paths, repo_relative
from .text import entry_text, fmt, seeds_text

NOT_RUN = "not run (session time)"
MARKS = {True: "✓", False: "✗", None: "–"}


def met_text(gv: GoalValue) -> str:
    """'met (+0.012, 1.1× the target)' / 'not met (-0.2, 0.4× the target)' / 'n/a'."""
    if gv.met is None:
        return f"n/a ({gv.why_none})" if gv.why_none else "n/a"
    diff = gv.generated - gv.target
    ratio = f", {gv.generated / gv.target:.2f}× the target" if gv.target > 0 else ""
    return f"{'met' if gv.met else 'not met'} ({diff:+.3g}{ratio})"


def teacher_line() -> str:
    """The card's line naming the teacher: the generator's content versions (``trainer teacher`` measures it)."""
    from datagen.manifest import content_versions

    v = content_versions()
    return (f"**Teacher:** trained on shards of the generator of content versions timeline {v['timeline']}, audio "
            f"{v['audio']}, visual {v['visual']} (its ground truth is measured by `trainer teacher`; docs/RESULTS.md "
            "\"Teacher before/after\").")


def device_name() -> str:
    """The GPU name as nvidia-smi reports it, else the CPU model from /proc/cpuinfo."""
    if shutil.which("nvidia-smi"):
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=30)
            if r.returncode == 0 and r.stdout.strip():
                return r.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return f"CPU: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores visible)"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} ({os.cpu_count()} cores visible)"


def gpu_preset_note() -> str:
    """Why the GPU preset's table is not beside this one (it is written by its own run on a GPU)."""
    import torch

    if torch.cuda.is_available():
        return "not in this file: `python bench/responsiveness_ablation.py --preset h100` writes it"
    return ("not run: this machine has no CUDA GPU; `python bench/responsiveness_ablation.py --preset h100` on one "
            "writes that table")


def extract_still(video: Path, png: Path, n_frames: int = 4, max_bytes: int = 200_000) -> Path | None:
    """A strip of ``n_frames`` evenly spaced frames of a side-by-side mp4 stacked vertically, as a small PNG."""
    if not video.is_file() or not shutil.which("ffmpeg"):
        return None
    import ffmpeg

    info = ffmpeg.probe(str(video))
    vs = next(s for s in info["streams"] if s["codec_type"] == "video")
    total = int(vs.get("nb_frames") or 0) or 32
    every = max(1, total // n_frames)
    png.parent.mkdir(parents=True, exist_ok=True)
    width = min(max(int(vs["width"]) * 3, 192), 384)  # tiny frames upscaled (nearest) so that they can be seen
    while True:
        vf = f"select=not(mod(n\\,{every})),scale={width}:-2:flags=neighbor,tile=1x{n_frames}"
        r = subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-vf", vf, "-frames:v", "1", str(png)],
                           capture_output=True, text=True)
        if r.returncode != 0 or not png.is_file():
            print(f"[ablation] no still from {video}: {r.stderr.strip()[-300:]}", file=sys.stderr)
            return None
        if png.stat().st_size <= max_bytes or width <= 64:
            return png
        width //= 2


def loader_semantics() -> str:
    """Which mix-knob rule the checked-out trainer follows (arm C depends on it)."""
    if legacy_loader():
        return ("legacy: the mix knobs act only with data.reweight_variants=true, so arm C (explicit knobs, no "
                "reweight_variants) draws what the shards hold; re-run once the mix-knob fix is on main")
    return ("fixed: a mix knob given explicitly reweights the loader by itself, else it draws what the shards hold "
            "(data.reweight_variants is gone). B's knobs are explicit, so B already trains with the fixed knobs and "
            "C's training config is B's: C is B's runs")


def arm_train_seconds(log: Log, arm: Arm) -> list[float | None]:
    """Wall seconds of the training command per seed (the arm's own, or that of the arm whose checkpoints it uses)."""
    return [(log.last_ok(f"arm{trained_key(arm)}_s{s}-train") or {}).get("wall_s") for s in SEEDS]


def arm_eval_seconds(log: Log, arm: Arm) -> list[float | None]:
    slug = f"arm{arm.same_as}" if arm.same_as else arm.slug
    return [(log.last_ok(f"{slug}_s{s}-eval") or {}).get("wall_s") for s in SEEDS]


def run_seconds(run_dir: Path) -> float | None:
    """A training run's own loop seconds (its summary.json; start-up and imports not included), None if not run."""
    f = run_dir / "summary.json"
    return json.loads(f.read_text()).get("seconds_this_session") if f.is_file() else None


def loop_seconds(p: Paths, arm: Arm) -> list[float | None]:
    """The training loop's own seconds per seed (summary.json; start-up and imports not included)."""
    return [run_seconds(p.work / f"arm{trained_key(arm)}_s{s}") for s in SEEDS]


def kept_reports_dir(results: Path, preset: str) -> Path:
    """Where the study's report.json files are copied, beside its RESULTS.md (committed with it)."""
    return results.parent / "results" / "reports" / f"ablation-{preset}"


def keep_eval_reports(p: Paths, results: Path, preset: str) -> Path:
    """Copy every report.json under the work dir's eval/ to :func:`kept_reports_dir`, by the same relative path
    (``<arm>_s<seed>/report.json``, ``ship/<candidate>_s<seed>/<sampling>/report.json``); returns that folder."""
    from trainer.eval.report import keep_report

    dest = kept_reports_dir(results, preset)
    for src in sorted((p.work / "eval").rglob("report.json")):
        keep_report(src, dest / src.relative_to(p.work / "eval"))
    return dest


def rel(q: Path, doc: Path) -> str:
    """``q`` as a link from the markdown file ``doc``."""
    return os.path.relpath(q, doc.parent)


def goal_marks(reps: list[dict[str, Any] | None]) -> str:
    """One mark per goal, in GOALS' order: ✓ met, ✗ not met, – n/a."""
    return " ".join(MARKS[goal_value(g, reps).met] for g in GOALS)


def goal_cells(goal: Goal, reps: list[dict[str, Any] | None]) -> list[str]:
    """A per-goal table's cells for one set of seed reports: floor, generated (mean of the seeds), each seed with
    its CI, ground truth with its CI (seed 0's report), target, verdict."""
    gv = goal_value(goal, reps)
    floor = mean_of([value(r, goal.variant, gv.metric, "floor") for r in reps])
    seeds = [entry_text(entry(r, goal.variant, gv.metric)) for r in reps]
    return [fmt(floor), fmt(gv.generated), *seeds, entry_text(entry(reps[0], goal.variant, gv.metric, "ceiling")),
            fmt(gv.target), met_text(gv)]


@dataclass
class Results:
    """What RESULTS.md is written from: the run's paths, plan and command log, its arms (G when chosen), their
    report.json per seed, and the arms that have all their seeds."""

    p: Paths
    plan: dict[str, Any]
    log: Log
    arm_list: list[Arm]
    reps: dict[str, list[dict[str, Any] | None]]
    complete: set[str]

    @classmethod
    def load(cls, p: Paths, plan: dict[str, Any], log: Log, tune: bool) -> "Results":
        arm_list = plan_arms(plan, tune)
        reps = {a.key: load_reports(p, a) for a in arm_list}
        complete = {k for k, rs in reps.items() if all(r is not None for r in rs)}
        return cls(p, plan, log, arm_list, reps, complete)


def intro(r: Results, path: Path, preset: str) -> list[str]:
    """Title, the PARTIAL warning, what the figures are, where the raw reports are kept, the scale's caveat."""
    missing = [a.key for a in r.arm_list if a.key not in r.complete] + ([] if r.plan.get("G") else ["G"])
    L = [f"# Responsiveness ablation ({preset} preset, issue 13 item 6)", ""]
    if missing:
        L += [f"**PARTIAL: arms {', '.join(missing)} {NOT_RUN}.** Their rows say so; no figure below stands in "
              "for them. Re-run the same command to finish (it resumes).", ""]
    L += ["Written by `bench/responsiveness_ablation.py` from the arms' `report.json` files (`trainer eval`, the "
          "per-variant evaluation of issue 12). Headline = **normal music** (music frames only). Every figure is the "
          f"mean of {len(SEEDS)} seeds (training seed and sampling seed {', '.join(map(str, SEEDS))}) with each "
          "seed's value and its 95% bootstrap CI over clips shown; *floor* = video generated from another clip's "
          "audio (chance for retrieval), *ground truth* = the data's frames (the ceiling).", "",
          f"Raw reports behind every figure here: `{rel(keep_eval_reports(r.p, path, preset), path)}/` "
          "(each arm's `<arm>_s<seed>/report.json` and each ship pair's "
          "`ship/<candidate>_s<seed>/<sampling>/report.json`, copied there from the work dir's `eval/` by the "
          "script).", ""]
    if preset == "smoke":
        L += ["**Smoke preset: this proves the plumbing only.** Models of a few hundred weights trained a few steps; "
              "the numbers mean nothing.", ""]
    elif preset != "h100":
        L += [f"**This is the {preset}-scale table, not the GPU result**: tiny models trained for a few minutes on a "
              "few dozen clips, evaluated on a handful of val clips. The numbers show direction at best; the CIs say "
              "how far to trust them.", ""]
    return L


def setting(r: Results, preset: str) -> list[str]:
    """The bullets: device, the preset's scale, the equal wall-clock budget, the mix-knob rule, the GPU preset."""
    cfg = yaml.safe_load(r.p.cfg_file.read_text())
    d, plan = cfg["data"], r.plan
    L = [f"- Device: {device_name()}",
         f"- Preset `{preset}`: {cfg['render']['resolution']}² px at {cfg['render']['fps']:g} fps, "
         f"{d['train_shards']}×{d['samples_per_shard']} train clips of {d['clip_seconds']:g} s, VAE "
         f"{cfg['vae']['steps']} steps, denoiser width {cfg['diffusion']['width']} depth {cfg['diffusion']['depth']}, "
         f"eval on {cfg['eval']['clips_per_variant']} val clips per variant, {cfg['inference']['steps']} "
         "sampling steps",
         f"- Equal wall-clock per arm: budget = {plan['reference']['steps']} steps of arm B = "
         f"{fmt(plan.get('budget_s'))} s of training loop; each arm's steps = budget / its s/step from a "
         f"{plan['calibration_steps']}-step calibration run",
         f"- Mix knobs: {loader_semantics()}"]
    if preset != "h100":
        L.append(f"- GPU preset (`--preset h100`): {gpu_preset_note()}")
    L.append("")
    return L


def goal_section(r: Results) -> list[str]:
    """Arm G's goal table (when G has all its seeds), then the goal marks of every arm."""
    has_g = "G" in r.complete
    g_title = next((a.title for a in r.arm_list if a.key == "G"), "")
    L = ["## Goal (issue 13): " + (f"arm G, {g_title}" if has_g else f"arm G {NOT_RUN}"), ""]
    if has_g:
        L += ["| goal | clips | metric | rule | target | arm G (mean of seeds) | seeds 0 / 1 | verdict |",
              "|---|---|---|---|---|---|---|---|"]
        for goal in GOALS:
            gv = goal_value(goal, r.reps["G"])
            L.append(f"| {goal.title} | {goal.variant} | `{gv.metric}` | {goal.rule} | {fmt(gv.target)} | "
                     f"{fmt(gv.generated)} | {seeds_text(gv.per_seed)} | {met_text(gv)} |")
        L.append("")
    L += ["Goal marks per arm (✓ met, ✗ not met, – n/a; order: " + ", ".join(g.title for g in GOALS) + "):", "",
          "| arm | recipe | goals | headline score |", "|---|---|---|---|"]
    for a in r.arm_list:
        if a.key not in r.complete:
            L.append(f"| {a.key} | {a.title} | {NOT_RUN} | |")
            continue
        L.append(f"| {a.key} | {a.title} | {goal_marks(r.reps[a.key])} | {fmt(headline_score(r.reps[a.key]))} |")
    if not r.plan.get("G"):
        L.append(f"| G | best combination | {NOT_RUN} | |")
    return L


def per_goal_section(r: Results) -> list[str]:
    """One table per goal: every arm's floor, generated, seeds with CIs, ground truth, target, verdict, clips."""
    L = ["", "## Normal-music goal metrics (and settle on silence clips)", ""]
    for goal in GOALS:
        L += [f"### {goal.title}: goal {goal.rule} ({goal.variant} clips)", "",
              "| arm | floor | generated (mean of seeds) | seed 0 [95% CI] | seed 1 [95% CI] | ground truth [95% CI] "
              "| target | verdict | n |", "|---|---|---|---|---|---|---|---|---|"]
        for a in r.arm_list:
            if a.key not in r.complete:
                L.append(f"| {a.key} | {NOT_RUN} | | | | | | | |")
                continue
            rs = r.reps[a.key]
            metric = goal_value(goal, rs).metric
            n = "/".join(str((entry(rep, goal.variant, metric) or {}).get("n", "n/a")) for rep in rs)
            L.append(f"| {a.key} | " + " | ".join(goal_cells(goal, rs)) + f" | {n} |")
        L.append("")
    L += ["Style diversity at fixed audio reads `style_diversity_siblings` (ground truth across the visual plans "
          "of clips sharing one audio, `val_siblings/`); where the data has none it falls back to "
          "`style_diversity` (ground truth across different clips) and the goal row names that metric.", ""]
    return L


def rule_section(r: Results) -> list[str]:
    """How arm G was chosen: the rule as stated before the runs, and each lever's score against C's."""
    L = ["## How arm G was chosen", "",
         "Rule, fixed before the runs: a lever (D band-permuted negatives, E InfoNCE, F interval guidance) joins "
         "arm C in G when its arm's *headline score* is strictly above C's. Headline score = the mean over the "
         "four normal-music goals (loudness → motion, bands R², retrieval top-1, style diversity at fixed audio) "
         "of min(1, generated / target), mean of the seeds (goals without a target > 0 are left out), and it must "
         "beat C's by more than the seed noise: the larger of the two arms' seed spreads (half the range of the "
         "per-seed scores). G is trained like every arm (equal wall-clock, both seeds) unless no training lever "
         "was chosen; then it is C's or F's runs.", "",
         "| arm | headline score | seed spread | against C | in G |", "|---|---|---|---|---|"]
    sc, spr = r.plan.get("headline_scores", {}), r.plan.get("seed_spreads", {})
    chosen = r.plan.get("chosen_levers")
    for k in ["C", *LEVERS]:
        s = sc.get(k)
        vs = "" if k == "C" or s is None or sc.get("C") is None else f"{s - sc['C']:+.3g}"
        L.append(f"| {k} | {fmt(s) if k in r.complete else NOT_RUN} | {fmt(spr.get(k))} | {vs} | "
                 f"{'' if k == 'C' else ('n/a' if chosen is None else ('yes' if k in chosen else 'no'))} |")
    return L


def cost_section(r: Results) -> list[str]:
    """Per arm: calibrated s/step, steps, training loop seconds, train and eval command seconds."""
    L = ["", "## Cost per arm (equal wall-clock)", "",
         "| arm | s/step (calibration) | steps | training loop s (seed 0 / 1) | train command s (seed 0 / 1) | "
         "eval command s (seed 0 / 1) |", "|---|---|---|---|---|---|"]
    for a in r.arm_list:
        k = trained_key(a)
        note = "" if a.train is not None else f" (arm {k}'s)"
        L.append(f"| {a.key} | {fmt(r.plan['s_per_step'].get(k))}{note} | {r.plan['steps'].get(k, NOT_RUN)}{note} | "
                 f"{seeds_text(loop_seconds(r.p, a))} | {seeds_text(arm_train_seconds(r.log, a))} | "
                 f"{seeds_text(arm_eval_seconds(r.log, a))} |")
    return L


def secondary_section(r: Results) -> list[str]:
    """The other normal-music metrics, mean of the seeds, ground truth in brackets."""
    L = ["", "## Other normal-music metrics (mean of seeds; ground truth in brackets)", "",
         "| arm | " + " | ".join(SECONDARY) + " |", "|---|" + "---|" * len(SECONDARY)]
    for a in r.arm_list:
        if a.key not in r.complete:
            L.append(f"| {a.key} | {NOT_RUN} |" + " |" * (len(SECONDARY) - 1))
            continue
        cells = []
        for m in SECONDARY:
            gm = mean_of([value(rep, "normal", m) for rep in r.reps[a.key]])
            gt = mean_of([value(rep, "normal", m, "ceiling") for rep in r.reps[a.key]])
            cells.append(fmt(gm) + ("" if gt is None else f" ({fmt(gt)})"))
        L.append(f"| {a.key} | " + " | ".join(cells) + " |")
    return L


def still_of(rep: dict[str, Any], eval_dir: Path, png: Path) -> Path | None:
    """The still of a report's first side-by-side video (ground truth | generated | floor), None without one."""
    vids = [v["path"] for v in rep.get("videos", []) if v["kind"] == "side_by_side"]
    return extract_still(eval_dir / vids[0], png) if vids else None


def arms_section(r: Results, path: Path, stills_dir: Path) -> list[str]:
    """Each arm: its training and sampling overrides, and a still of seed 0's first side-by-side video."""
    L = ["", "## Arms", ""]
    for a in r.arm_list:
        L += [f"### Arm {a.key}: {a.title}", ""]
        if a.train is not None:
            L.append("Training overrides: `" + " ".join(a.train_overrides(r.plan["steps"].get(a.key, 0), 0)).replace(
                "run.seed=0", "run.seed=SEED") + "`.")
        else:
            L.append(f"No training: evaluates arm {a.same_as or a.ckpt_of}'s checkpoints.")
        L += ["Sampling overrides: `" + " ".join(a.eval_overrides(0)).replace("inference.seed=0", "inference.seed=SEED")
              + "`.", ""]
        if a.key not in r.complete:
            L += [f"{NOT_RUN.capitalize()}.", ""]
            continue
        src = r.p.eval_dir(replace(a, key=a.same_as) if a.same_as else a, SEEDS[0])
        png = still_of(r.reps[a.key][0], src, stills_dir / f"{a.slug}.png")
        if png is not None:
            L += [f"![arm {a.key}: ground truth | generated | floor (other audio), 4 frames top to bottom]"
                  f"({rel(png, path)})", ""]
    return L


def tries_section(r: Results, preset: str, tune: bool) -> list[str]:
    """Every command run for the table (failed ones too), the steps left out for time, the config, the re-run."""
    L = ["## Every try", "", "Every command the script ran for this table, in order, failed ones included "
         "(exit status ≠ 0), and the steps left out for time.", "",
         "| step | exit | wall s | finished (UTC) | command |", "|---|---|---|---|---|"]
    for rec in r.log.records:
        if rec["group"] == "ship":
            continue
        L.append(f"| {rec['name']} | {rec['rc']} | {rec['wall_s']:.1f} | {rec.get('finished_utc', '')} | "
                 f"`{repo_relative(rec['command'])}` |")
    for name in r.plan.get("not_run", []):
        L.append(f"| {name} | {NOT_RUN} | | | |")
    L += ["", "## Config", "", f"`{repo_relative(str(r.p.cfg_file))}`, written by the script from the preset:", "",
          "```yaml", r.p.cfg_file.read_text().rstrip(), "```", "",
          f"Re-run: `python bench/responsiveness_ablation.py --preset {preset}{' --tune' if tune else ''}` "
          "(resumable: a step whose output exists is skipped).", ""]
    return L


def write_results(path: Path, p: Paths, preset: str, plan: dict[str, Any], log: Log, stills_dir: Path,
                  notes: Path | None, tune: bool) -> Path:
    """docs/RESULTS.md from the arms' report.json files, the plan and the command log. Arms without their reports
    are rows saying 'not run (session time)': a partial run never reads as a complete one."""
    r = Results.load(p, plan, log, tune)
    L = intro(r, path, preset) + setting(r, preset) + goal_section(r) + per_goal_section(r) + rule_section(r)
    L += cost_section(r) + secondary_section(r) + arms_section(r, path, stills_dir)
    note_text = notes.read_text().strip() if notes and notes.is_file() else ""
    if note_text:
        L += ["## Reading the table", "", note_text, ""]
    L += tries_section(r, preset, tune)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L), encoding="utf-8")
    return path
