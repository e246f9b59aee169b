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
    nice -n 10 python bench/responsiveness_ablation.py --preset cpu    # tiny, 2-core CPU
    python bench/responsiveness_ablation.py --preset smoke --work /tmp/x --results /tmp/x/RESULTS.md   # plumbing

``--ship NAME --ship-arm K --ship-steps N`` then trains arm K's recipe (default G) for N steps on the same latents,
evaluates it, packages it as models/NAME (config.yaml, latest -> ckpt/step-N with EMA weights, vae/, MODEL_CARD.md),
times `trainer sample` on 30 s of audio with it, and checks the size limits.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- presets
# Each preset is one config tree (the sections of shared/config.py). The data is generated with a debug share of
# 0.2 (so that the curriculum has debug clips to draw) and a silence share of 0.3; the arms set the loader's mix.

_COMMON_RUN = {"num_workers": 0, "sample_every": 100000, "keep_checkpoints": 1, "executor": "processes"}

PRESETS: dict[str, dict[str, Any]] = {
    # CI: seconds in all, proves the plumbing only (the numbers mean nothing).
    "smoke": {
        "data": {"sample_rate": 8000, "clip_seconds": 2.0, "train_shards": 2, "val_shards": 3, "samples_per_shard": 6,
                 "val_style_siblings": 1, "debug_set_size": 2, "audio_debug_mix_prob": 0.2,
                 "audio_silence_mix_prob": 0.3},
        "timeline": {"n_bands": 4, "n_fft": 256},
        "render": {"resolution": 16, "fps": 8.0, "chunk_frames": 16, "max_layers": 1},
        "vae": {"downsample": 4, "base_channels": 4, "max_channels": 8, "batch_size": 4, "steps": 2,
                "warmup_steps": 0, "ema_decay": 0.5},
        "diffusion": {"snippet_frames": 2, "audio_context_frames": 1, "width": 8, "depth": 1, "heads": 2,
                      "patch_size": 2, "style_dim": 2, "batch_size": 4, "steps": 3, "warmup_steps": 0,
                      "ema_decay": 0.5, "compile": False, "val_every": 1000},
        "inference": {"steps": 2, "batch_snippets": 4},
        "eval": {"clips_per_variant": 2, "n_style_samples": 2, "bootstrap": 50, "write_videos": False},
        "run": {**_COMMON_RUN, "log_every": 1, "checkpoint_every": 1000, "workers": 1, "executor": "local",
                "device": "cpu"},
    },
    # The 2-core CPU box: a real but tiny-scale table (the shipped model's scale). 6 val shards: datagen forces two
    # of every four val slots to silence and debug clips, and the eval wants 8 distinct normal-music clips.
    "cpu": {
        "data": {"sample_rate": 16000, "clip_seconds": 4.0, "train_shards": 6, "val_shards": 6, "samples_per_shard": 8,
                 "debug_set_size": 4, "audio_debug_mix_prob": 0.2, "audio_silence_mix_prob": 0.3},
        "timeline": {"n_bands": 8, "n_fft": 512},
        "render": {"resolution": 32, "fps": 8.0, "chunk_frames": 16},
        "vae": {"downsample": 4, "base_channels": 16, "max_channels": 32, "batch_size": 16, "steps": 1200,
                "warmup_steps": 50, "lr": 1e-3, "ema_decay": 0.99},
        "diffusion": {"snippet_frames": 4, "audio_context_frames": 2, "width": 64, "depth": 2, "heads": 4,
                      "patch_size": 2, "style_dim": 8, "batch_size": 16, "steps": 600, "warmup_steps": 50,
                      "lr": 1e-3, "ema_decay": 0.99, "compile": False, "val_every": 200},
        "inference": {"steps": 10, "batch_snippets": 4},
        "eval": {"clips_per_variant": 8, "n_style_samples": 2},
        "run": {**_COMMON_RUN, "log_every": 50, "checkpoint_every": 300, "workers": 2, "device": "cpu"},
    },
    # One H100 (16 cores): data and VAE once, each arm a few minutes of training; every command < 10 min.
    "h100": {
        "data": {"sample_rate": 22050, "clip_seconds": 8.0, "train_shards": 32, "val_shards": 1,
                 "samples_per_shard": 32, "debug_set_size": 16, "audio_debug_mix_prob": 0.2,
                 "audio_silence_mix_prob": 0.3},
        "timeline": {"n_bands": 8, "n_fft": 2048},
        "render": {"resolution": 128, "fps": 12.0, "chunk_frames": 64},
        "vae": {"downsample": 8, "base_channels": 64, "max_channels": 256, "batch_size": 64, "steps": 4000,
                "warmup_steps": 200, "lr": 4e-4, "ema_decay": 0.995},
        "diffusion": {"snippet_frames": 8, "audio_context_frames": 4, "width": 256, "depth": 8, "heads": 4,
                      "patch_size": 2, "style_dim": 16, "batch_size": 64, "steps": 3000, "warmup_steps": 200,
                      "lr": 5e-4, "ema_decay": 0.999, "compile": True, "val_every": 1000},
        "inference": {"steps": 25, "batch_snippets": 16},
        "eval": {"clips_per_variant": 8, "n_style_samples": 4},
        "run": {**_COMMON_RUN, "num_workers": 4, "log_every": 100, "checkpoint_every": 2000, "workers": 8,
                "device": "auto"},
    },
}
CALIBRATION_STEPS = {"smoke": 2, "cpu": 40, "h100": 200}  # short run per recipe; s/step from its second half
SEEDS = (0, 1)
FINAL_DEBUG_PROB = 0.05

# ----------------------------------------------------------------------------- arms


@dataclass(frozen=True)
class Arm:
    """One arm: training overrides (None: evaluates ``ckpt_of``'s checkpoints) and inference overrides."""

    key: str
    title: str
    train: tuple[str, ...] | None
    infer: tuple[str, ...]
    ckpt_of: str | None = None
    curriculum: bool = False  # data.audio_debug_mix_schedule_steps = half the arm's steps
    same_as: str | None = None  # G without a trained lever: this arm's runs and reports (C or F) are G's

    @property
    def slug(self) -> str:
        return "arm" + self.key

    def train_overrides(self, steps: int, seed: int) -> list[str]:
        """The arm's training overrides for ``steps`` steps and ``seed``."""
        assert self.train is not None
        out = list(self.train) + [f"diffusion.steps={steps}", f"run.seed={seed}"]
        if self.curriculum:
            out.append(f"data.audio_debug_mix_schedule_steps={max(1, steps // 2)}")
        return out

    def eval_overrides(self, seed: int) -> list[str]:
        return list(self.infer) + [f"inference.seed={seed}"]


def legacy_loader() -> bool:
    """True on code from before the mix-knob fix, where the mix knobs act only with data.reweight_variants=true.
    After it (shared.config has no such field) an explicit mix knob reweights by itself."""
    from shared.config import DataConfig

    return "reweight_variants" in DataConfig.model_fields


LEGACY_REWEIGHT = "data.reweight_variants=true"  # how the shipped model switched the mix knobs on, before the fix
_PRESSURE = ("diffusion.audio_feature_normalize_per_clip=false", "diffusion.audio_shuffle_loss_weight=0.5",
             "diffusion.audio_shuffle_negatives=hard", "diffusion.audio_shuffle_loss_space=x0",
             "diffusion.audio_shuffle_loss_type=hinge")
_MIX = ("data.audio_silence_mix_prob=0.3", f"data.audio_debug_mix_prob={FINAL_DEBUG_PROB}")
C_TRAIN = _MIX + _PRESSURE  # the shipped recipe with explicit mix knobs (its curriculum: Arm.curriculum)
_CFG2 = ("inference.audio_guidance_scale=2", "inference.audio_guidance_schedule=constant")
# The levers of D, E, F as (training overrides, inference overrides) added to arm C.
LEVERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "D": (("diffusion.audio_shuffle_negatives=band_permuted",), ()),
    "E": (("diffusion.audio_shuffle_loss_type=infonce",), ()),
    "F": ((), ("inference.audio_guidance_schedule=interval",)),
}


def with_overrides(base: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    """``base`` with every key of ``new`` replaced by ``new``'s value (order kept, new keys appended)."""
    keys = {n.split("=", 1)[0] for n in new}
    return tuple(o for o in base if o.split("=", 1)[0] not in keys) + tuple(new)


def arms(tune: bool = False, legacy: bool | None = None) -> list[Arm]:
    """Arms A-F (G is made by :func:`combination_arm` from their results). ``tune`` adds two cheap tries.

    ``legacy`` (default: :func:`legacy_loader`): on code before the mix-knob fix, A and B switch the knobs on with
    data.reweight_variants=true as the shipped model was trained, and C trains without it. After the fix, B's
    explicit knobs already reweight: C's training config is B's, so C is B's runs (same seeds: the same models)."""
    legacy = legacy_loader() if legacy is None else legacy
    rw = (LEGACY_REWEIGHT,) if legacy else ()
    c_title = "+ knobs fixed: B's mix from the explicit mix knobs alone"
    out = [
        Arm("A", "baseline: no silence clips, no shuffle pressure, per-clip normalisation, no audio CFG",
            ("data.audio_silence_mix_prob=0", f"data.audio_debug_mix_prob={FINAL_DEBUG_PROB}",
             "data.audio_debug_mix_schedule_steps=0", *rw,
             "diffusion.audio_feature_normalize_per_clip=true", "diffusion.audio_shuffle_loss_weight=0"),
            ("inference.audio_guidance_scale=1", "inference.audio_guidance_schedule=constant")),
        Arm("B", "today's best (shipped recipe): silence 0.3, debug curriculum, hard x0 hinge 0.5, audio CFG 2"
            + ("; mix via data.reweight_variants" if legacy else ""), rw + C_TRAIN, _CFG2, curriculum=True),
        Arm("C", c_title, C_TRAIN, _CFG2, curriculum=True) if legacy else
        Arm("C", c_title + " (this code: B's config exactly, so B's runs)", None, _CFG2, ckpt_of="B", same_as="B"),
    ]
    base_ckpt = trained_key(out[2])
    names = {"D": "+ band-permuted negatives", "E": "+ InfoNCE", "F": "+ guidance schedule (interval, same peak)"}
    for key, (tr, inf) in LEVERS.items():
        out.append(Arm(key, f"C {names[key]}", with_overrides(C_TRAIN, tr) if tr else None,
                       with_overrides(_CFG2, inf), ckpt_of=None if tr else base_ckpt, curriculum=bool(tr)))
    if tune:
        out += [Arm("T1", "tuning: C with shuffle weight 1", with_overrides(C_TRAIN, ("diffusion.audio_shuffle_loss_weight=1",)),
                    _CFG2, curriculum=True),
                Arm("T2", "tuning: C sampled with the interval schedule at peak g = 4", None,
                    with_overrides(_CFG2, ("inference.audio_guidance_schedule=interval",
                                           "inference.audio_guidance_scale=4")), ckpt_of=base_ckpt)]
    return out


def trained_key(arm: Arm) -> str:
    """The arm whose training runs this arm's checkpoints come from (itself, or the arm it evaluates)."""
    return arm.key if arm.train is not None else str(arm.ckpt_of)


def combination_arm(chosen: list[str], all_arms: list[Arm]) -> Arm:
    """Arm G: arm C plus the chosen levers. Without a chosen training lever, G reuses C's (or F's) runs."""
    c = next(a for a in all_arms if a.key == "C")
    train, infer = C_TRAIN, c.infer
    for k in chosen:
        tr, inf = LEVERS[k]
        train, infer = with_overrides(train, tr), with_overrides(infer, inf)
    title = "best combination: C" + "".join(f" + {k}" for k in chosen) + ("" if chosen else " (no lever beat C)")
    if any(LEVERS[k][0] for k in chosen):
        return Arm("G", title, train, infer, curriculum=True)
    runs = "F" if chosen else (c.same_as or "C")
    return Arm("G", title + f": the same runs as {runs}", None, infer, ckpt_of=trained_key(c), same_as=runs)


# ----------------------------------------------------------------------------- goals (issue 13)


@dataclass(frozen=True)
class Goal:
    title: str
    variant: str
    metric: str
    reference: str   # "ground truth" (factor x ceiling), "chance" (factor x floor) or "absolute" (factor itself)
    factor: float
    lower: bool = False  # the goal is value <= target

    @property
    def rule(self) -> str:
        ref = {"ground truth": f"{self.factor:g} × ground truth", "chance": f"{self.factor:g} × chance",
               "absolute": f"{self.factor:g}"}[self.reference]
        return ("≤ " if self.lower else "≥ ") + ref


GOALS = [
    Goal("loudness → motion Spearman", "normal", "loudness_motion_spearman", "ground truth", 0.8),
    Goal("bands → colour/geometry R²", "normal", "bands_colour_geometry_r2", "ground truth", 0.5),
    Goal("retrieval top-1", "normal", "retrieval_top1", "chance", 3.0),
    Goal("style diversity at fixed audio", "normal", "style_diversity_siblings", "ground truth", 0.5),
    Goal("settle ratio (silence clips)", "silence", "silence_settle_ratio", "absolute", 0.1, lower=True),
]
HEADLINE = [g for g in GOALS if g.variant == "normal"]
SECONDARY = ["loudness_brightness_spearman", "loudness_bright_area_spearman", "av_align", "beat_alignment_score",
             "av_align_proxy", "retrieval_mean_rank", "output_sensitivity_motion", "mean_motion_energy",
             "style_diversity"]


def entry(rep: dict[str, Any] | None, variant: str, name: str, kind: str = "generated") -> dict[str, Any] | None:
    """One ENTRY ({"mean", "ci", "n"}) of a report.json; kind = generated | floor | ceiling. None when absent."""
    if rep is None:
        return None
    row = rep.get("variants", {}).get(variant, {}).get("metrics", {}).get(name)
    e = (row or {}).get(kind)
    return e if isinstance(e, dict) else None


def value(rep: dict[str, Any] | None, variant: str, name: str, kind: str = "generated") -> float | None:
    e = entry(rep, variant, name, kind)
    v = None if e is None else e.get("mean")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def goal_metric(goal: Goal, rep: dict[str, Any] | None) -> str:
    """The report metric a goal reads: style diversity at fixed audio falls back to the across-clips ground
    truth (``style_diversity``) when the data has no sibling groups."""
    if goal.metric == "style_diversity_siblings" and value(rep, goal.variant, goal.metric, "ceiling") is None:
        return "style_diversity"
    return goal.metric


def mean_of(xs: list[float | None]) -> float | None:
    """Mean of the defined values; None when there is none."""
    ok = [x for x in xs if x is not None]
    return sum(ok) / len(ok) if ok else None


@dataclass
class GoalValue:
    generated: float | None   # mean over the seeds
    per_seed: list[float | None]
    target: float | None
    metric: str
    lower: bool = False
    why_none: str = ""  # why there is no target, when there is none

    @property
    def met(self) -> bool | None:
        if self.generated is None or self.target is None:
            return None
        return self.generated <= self.target if self.lower else self.generated >= self.target


def goal_value(goal: Goal, reps: list[dict[str, Any] | None]) -> GoalValue:
    """A goal over one arm's seed reports: generated mean of the seeds, and the target from the reports'
    ground truth / chance (mean over the seeds; the val clips are the same for every seed)."""
    name = goal_metric(goal, next((r for r in reps if r is not None), None))
    per_seed = [value(r, goal.variant, name) for r in reps]
    if goal.reference == "absolute":
        target: float | None = goal.factor
    else:
        ref = mean_of([value(r, goal.variant, name, "ceiling" if goal.reference == "ground truth" else "floor")
                       for r in reps])
        target = None if ref is None or ref <= 0 else goal.factor * ref  # a fraction of a reference <= 0 is no goal
        if target is None:
            return GoalValue(mean_of(per_seed), per_seed, None, name, goal.lower,
                             f"{goal.reference} {'undefined' if ref is None else fmt(ref) + ' ≤ 0'}: no target")
    return GoalValue(mean_of(per_seed), per_seed, target, name, goal.lower)


def headline_score(reps: list[dict[str, Any] | None]) -> float | None:
    """The combination rule's score: the mean over the normal-music goals of min(1, generated / target) (the
    share of each goal reached, capped at the goal), for goals whose target is > 0. None without any."""
    shares = []
    for g in HEADLINE:
        gv = goal_value(g, reps)
        if gv.generated is not None and gv.target is not None and gv.target > 0:
            shares.append(min(1.0, gv.generated / gv.target))
    return sum(shares) / len(shares) if shares else None


def seed_spread(reps: list[dict[str, Any] | None]) -> float:
    """Half the range of the per-seed headline scores (0 when fewer than two are defined)."""
    xs = [x for x in (headline_score([r]) for r in reps) if x is not None]
    return (max(xs) - min(xs)) / 2 if len(xs) >= 2 else 0.0


def choose_levers(scores: dict[str, float | None], spreads: dict[str, float]) -> list[str]:
    """The levers (D, E, F) whose arm's headline score beats arm C's by more than the seed noise: by more than
    the larger of the two arms' seed spreads (:func:`seed_spread`). [] when C has no score."""
    base = scores.get("C")
    if base is None:
        return []
    return [k for k in LEVERS if scores.get(k) is not None
            and scores[k] - base > max(spreads.get(k, 0.0), spreads.get("C", 0.0))]


# ----------------------------------------------------------------------------- steps



@dataclass
class Step:
    name: str
    argv: list[str]
    marker: Path  # the step counts as done when this exists
    group: str    # "setup", "calibration" or an arm key


@dataclass
class Log:
    """WORK/commands.jsonl: one line per step run (name, command, wall time, exit status), failed tries too."""

    path: Path
    records: list[dict[str, Any]] = field(default_factory=list)

    def load(self) -> "Log":
        if self.path.is_file():
            self.records = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return self

    def add(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def last_ok(self, name: str) -> dict[str, Any] | None:
        ok = [r for r in self.records if r["name"] == name and r["rc"] == 0]
        return ok[-1] if ok else None


def display_command(argv: list[str]) -> str:
    """The command line as a person would type it from the repo root (``python`` for the interpreter)."""
    shown = ["python" if a == sys.executable else a for a in argv]
    return repo_relative(shlex.join(shown))


def repo_relative(text: str) -> str:
    """Paths under the repo root written relative to it (commands are run from the root)."""
    return text.replace(str(REPO) + "/", "")


def run_in_process(argv: list[str], out: Path) -> int:
    """Run ``python -m PACKAGE ARGS`` (argv as built by the step builders) in this process, output to ``out``.
    The smoke preset uses it: a fresh interpreter and torch import per step cost more than its tiny steps."""
    package, args = argv[2], argv[3:]
    cli = importlib.import_module(f"{package}.cli")
    with out.open("w", encoding="utf-8") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            cli.main(args)
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except Exception:  # a bug in a step: its traceback goes to the step's log, the step fails
            traceback.print_exc(file=f)
            return 1
    return 0


@dataclass
class Runner:
    """Runs steps (skipping those whose marker exists) and records them in the log."""

    log: Log
    env: dict[str, str]
    logs_dir: Path
    verbose: bool = False
    in_process: bool = False
    deadline: float | None = None  # time.time() after which no step starts
    skipped_for_time: list[str] = field(default_factory=list)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.time() > self.deadline

    def run(self, step: Step) -> bool:
        """True when the step's output is there (run now or before); False when it was left out for time."""
        if step.marker.exists():
            print(f"[ablation] skip {step.name} ({step.marker} exists)", file=sys.stderr)
            return True
        if self.out_of_time():
            self.skipped_for_time.append(step.name)
            print(f"[ablation] not run (session time): {step.name}", file=sys.stderr)
            return False
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        out = self.logs_dir / f"{step.name}.log"
        print(f"[ablation] {step.name}: {display_command(step.argv)}", file=sys.stderr)
        t0 = time.perf_counter()
        if self.in_process:
            rc = run_in_process(step.argv, out)
        else:
            with out.open("w", encoding="utf-8") as f:
                rc = subprocess.run(step.argv, cwd=REPO, env=self.env, stdout=None if self.verbose else f,
                                    stderr=None if self.verbose else subprocess.STDOUT).returncode
        wall = time.perf_counter() - t0
        self.log.add({"name": step.name, "group": step.group, "command": display_command(step.argv),
                      "wall_s": round(wall, 2), "rc": rc,
                      "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        print(f"[ablation] {step.name}: exit {rc} in {wall:.1f} s", file=sys.stderr)
        if rc != 0:
            tail = "".join(out.read_text(errors="replace").splitlines(keepends=True)[-20:]) if out.is_file() else ""
            raise SystemExit(f"ablation step {step.name!r} failed (exit {rc}); log {out}:\n{tail}")
        return True


@dataclass(frozen=True)
class Paths:
    work: Path
    cfg_file: Path
    py: str = sys.executable

    @property
    def c(self) -> list[str]:
        return ["--config", str(self.cfg_file)]

    def run_dir(self, arm: Arm, seed: int) -> Path:
        return self.work / f"{arm.slug}_s{seed}"

    def eval_dir(self, arm: Arm, seed: int) -> Path:
        return self.work / "eval" / f"{arm.slug}_s{seed}"

    def report(self, arm: Arm, seed: int) -> Path:
        return self.eval_dir(arm, seed) / "report.json"


def setup_steps(p: Paths) -> list[Step]:
    data, vae, lat = p.work / "data", p.work / "vae", p.work / "latents"
    return [
        Step("datagen", [p.py, "-m", "datagen", "run", *p.c, "--out", str(data), "--no-progress"],
             data / "summary.json", "setup"),
        Step("vae", [p.py, "-m", "trainer", "vae", *p.c, "--data", str(data), "--out", str(vae)],
             vae / "summary.json", "setup"),
        Step("cache-latents", [p.py, "-m", "trainer", "cache-latents", *p.c, "--data", str(data), "--vae", str(vae),
                               "--out", str(lat)], lat / "manifest.json", "setup"),
    ]


def train_argv(p: Paths, out: Path, overrides: list[str]) -> list[str]:
    return [p.py, "-m", "trainer", "diffusion", *p.c, "--latents", str(p.work / "latents"), "--out", str(out),
            *overrides]


def calibration_step(p: Paths, arm: Arm, k: int) -> Step:
    """A k-step run of the arm's recipe; its last metrics line's samples/s (steps k/2+1..k) gives s/step."""
    out = p.work / "calibration" / arm.slug
    ov = arm.train_overrides(k, SEEDS[0]) + [f"run.log_every={max(1, k // 2)}", f"run.checkpoint_every={k}",
                                             f"diffusion.val_every={k}"]
    return Step(f"calibrate-{arm.slug}", train_argv(p, out, ov), out / "summary.json", "calibration")


def seconds_per_step(run_dir: Path, batch_size: int) -> float:
    """s/step from the last ``train/samples_per_s`` of ``run_dir/metrics.jsonl`` (start-up not included)."""
    rate = None
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rate = row.get("train/samples_per_s", rate)
    if not rate:
        raise SystemExit(f"{run_dir}/metrics.jsonl has no train/samples_per_s: cannot calibrate")
    return batch_size / rate


def equal_time_steps(sps: dict[str, float], reference_steps: int, reference: str = "B") -> dict[str, int]:
    """Steps per arm for an equal wall-clock budget: reference_steps at the reference arm's s/step, divided by
    each arm's own s/step (at least 1)."""
    budget = reference_steps * sps[reference]
    return {k: max(1, round(budget / s)) for k, s in sps.items()}


def arm_steps(p: Paths, arm: Arm, steps: int) -> list[Step]:
    """Train (when the arm trains) and evaluate one arm for every seed (nothing for G as a copy of C or F)."""
    out: list[Step] = []
    if arm.same_as:
        return out
    for seed in SEEDS:
        if arm.train is not None:
            run = p.run_dir(arm, seed)
            out.append(Step(f"{arm.slug}_s{seed}-train", train_argv(p, run, arm.train_overrides(steps, seed)),
                            run / "summary.json", arm.key))
        ckpt = p.work / f"arm{arm.ckpt_of}_s{seed}" if arm.ckpt_of else p.run_dir(arm, seed)
        out.append(Step(f"{arm.slug}_s{seed}-eval", [p.py, "-m", "trainer", "eval", *p.c, "--checkpoint", str(ckpt),
                                                    "--data", str(p.work / "data"), "--out", str(p.eval_dir(arm, seed)),
                                                    *arm.eval_overrides(seed)],
                        p.report(arm, seed), arm.key))
    return out


def load_reports(p: Paths, arm: Arm) -> list[dict[str, Any] | None]:
    """The arm's report.json per seed (None where it was not made)."""
    out = []
    for seed in SEEDS:
        pj = p.report(replace(arm, key=arm.same_as) if arm.same_as else arm, seed)
        out.append(json.loads(pj.read_text()) if pj.is_file() else None)
    return out


def run_ablation(p: Paths, runner: Runner, preset_steps: int, batch_size: int, calib_k: int, tune: bool
                 ) -> dict[str, Any]:
    """Every step in order; returns the plan (arms, s/step, steps, chosen levers) also written to WORK/plan.json."""
    for step in setup_steps(p):
        if not runner.run(step):
            break
    all_arms = arms(tune)
    trained = [a for a in all_arms if a.train is not None]
    sps: dict[str, float] = {}
    for arm in trained:
        step = calibration_step(p, arm, calib_k)
        if runner.run(step):
            sps[arm.key] = seconds_per_step(step.marker.parent, batch_size)
    steps = equal_time_steps(sps, preset_steps) if "B" in sps else {}
    for arm in all_arms:
        k = arm.ckpt_of or arm.key
        if k in steps:
            for step in arm_steps(p, arm, steps[k]):
                runner.run(step)
    scores = {a.key: headline_score(load_reports(p, a)) for a in all_arms}
    spreads = {a.key: seed_spread(load_reports(p, a)) for a in all_arms}
    measured = all(all(r is not None for r in load_reports(p, a)) for a in all_arms if a.key in "CDEF")
    g = None
    if measured:
        g = combination_arm(choose_levers(scores, spreads), all_arms)
        if g.train is not None:
            step = calibration_step(p, g, calib_k)
            if runner.run(step) and "B" in sps:
                sps["G"] = seconds_per_step(step.marker.parent, batch_size)
                steps["G"] = equal_time_steps({"B": sps["B"], "G": sps["G"]}, preset_steps)["G"]
        k = g.ckpt_of or "G"
        if k in steps:
            for step in arm_steps(p, g, steps[k]):
                runner.run(step)
        scores["G"] = headline_score(load_reports(p, g))
    plan = {"s_per_step": sps, "steps": steps, "budget_s": preset_steps * sps["B"] if "B" in sps else None,
            "reference": {"arm": "B", "steps": preset_steps}, "calibration_steps": calib_k, "seeds": list(SEEDS),
            "headline_scores": scores, "seed_spreads": spreads,
            "chosen_levers": None if g is None else choose_levers(scores, spreads),
            "G": None if g is None else {"title": g.title, "train": list(g.train or []), "infer": list(g.infer),
                                         "ckpt_of": g.ckpt_of, "same_as": g.same_as},
            "not_run": runner.skipped_for_time}
    (p.work / "plan.json").write_text(json.dumps(plan, indent=2), encoding="utf-8")
    return plan


def plan_arms(plan: dict[str, Any], tune: bool) -> list[Arm]:
    """Arms A-F (and the tuning tries) plus G when it was chosen."""
    out = arms(tune)
    if plan.get("G"):
        g = plan["G"]
        out.append(Arm("G", g["title"], tuple(g["train"]) if g["train"] else None, tuple(g["infer"]),
                       ckpt_of=g["ckpt_of"], curriculum=bool(g["train"]), same_as=g["same_as"]))
    return out


# ----------------------------------------------------------------------------- results

NOT_RUN = "not run (session time)"


def fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if isinstance(x, float) and not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}"


def entry_text(e: dict[str, Any] | None) -> str:
    """A report entry as 'mean [lo, hi]' (n/a when undefined)."""
    if not e or e.get("mean") is None:
        return "n/a"
    return fmt(e["mean"]) + (f" [{fmt(e['ci'][0])}, {fmt(e['ci'][1])}]" if e.get("ci") else "")


def met_text(gv: GoalValue) -> str:
    """'met (+0.012, 1.1× the target)' / 'not met (-0.2, 0.4× the target)' / 'n/a'."""
    if gv.met is None:
        return f"n/a ({gv.why_none})" if gv.why_none else "n/a"
    diff = gv.generated - gv.target
    ratio = f", {gv.generated / gv.target:.2f}× the target" if gv.target > 0 else ""
    return f"{'met' if gv.met else 'not met'} ({diff:+.3g}{ratio})"


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


def loop_seconds(p: Paths, arm: Arm) -> list[float | None]:
    """The training loop's own seconds per seed (summary.json; start-up and imports not included)."""
    out = []
    for s in SEEDS:
        f = p.work / f"arm{trained_key(arm)}_s{s}" / "summary.json"
        out.append(json.loads(f.read_text()).get("seconds_this_session") if f.is_file() else None)
    return out


def seeds_text(xs: list[float | None]) -> str:
    return " / ".join(fmt(x) for x in xs)


def write_results(path: Path, p: Paths, preset: str, plan: dict[str, Any], log: Log, stills_dir: Path,
                  notes: Path | None, tune: bool) -> Path:
    """docs/RESULTS.md from the arms' report.json files, the plan and the command log. Arms without their reports
    are rows saying 'not run (session time)': a partial run never reads as a complete one."""
    arm_list = plan_arms(plan, tune)
    reps = {a.key: load_reports(p, a) for a in arm_list}
    complete = {k for k, rs in reps.items() if all(r is not None for r in rs)}
    missing = [a.key for a in arm_list if a.key not in complete] + ([] if plan.get("G") else ["G"])
    cfg = yaml.safe_load(p.cfg_file.read_text())
    rel = lambda q: os.path.relpath(q, path.parent)  # noqa: E731
    L = [f"# Responsiveness ablation ({preset} preset, issue 13 item 6)", ""]
    if missing:
        L += [f"**PARTIAL: arms {', '.join(missing)} {NOT_RUN}.** Their rows say so; no figure below stands in "
              "for them. Re-run the same command to finish (it resumes).", ""]
    L += ["Written by `bench/responsiveness_ablation.py` from the arms' `report.json` files (`trainer eval`, the "
          "per-variant evaluation of issue 12). Headline = **normal music** (music frames only). Every figure is the "
          f"mean of {len(SEEDS)} seeds (training seed and sampling seed {', '.join(map(str, SEEDS))}) with each "
          "seed's value and its 95% bootstrap CI over clips shown; *floor* = video generated from another clip's "
          "audio (chance for retrieval), *ground truth* = the data's frames (the ceiling).", ""]
    if preset == "smoke":
        L += ["**Smoke preset: this proves the plumbing only.** Models of a few hundred weights trained a few steps; "
              "the numbers mean nothing.", ""]
    elif preset != "h100":
        L += [f"**This is the {preset}-scale table, not the GPU result**: tiny models trained for a few minutes on a "
              "few dozen clips, evaluated on a handful of val clips. The numbers show direction at best; the CIs say "
              "how far to trust them.", ""]
    d = cfg["data"]
    L += [f"- Device: {device_name()}",
          f"- Preset `{preset}`: {cfg['render']['resolution']}² px at {cfg['render']['fps']:g} fps, "
          f"{d['train_shards']}×{d['samples_per_shard']} train clips of {d['clip_seconds']:g} s, VAE "
          f"{cfg['vae']['steps']} steps, denoiser width {cfg['diffusion']['width']} depth {cfg['diffusion']['depth']}, "
          f"eval on {cfg['eval']['clips_per_variant']} val clips per variant, {cfg['inference']['steps']} "
          "sampling steps",
          f"- Equal wall-clock per arm: budget = {plan['reference']['steps']} steps of arm B = "
          f"{fmt(plan.get('budget_s'))} s of training loop; each arm's steps = budget / its s/step from a "
          f"{plan['calibration_steps']}-step calibration run",
          f"- Mix knobs: {loader_semantics()}", ""]

    # --- goal table
    g_key = "G" if "G" in complete else None
    L += ["## Goal (issue 13): " + (f"arm G, {next(a.title for a in arm_list if a.key == 'G')}" if g_key else
                                     f"arm G {NOT_RUN}"), ""]
    if g_key:
        L += ["| goal | clips | metric | rule | target | arm G (mean of seeds) | seeds 0 / 1 | verdict |",
              "|---|---|---|---|---|---|---|---|"]
        for goal in GOALS:
            gv = goal_value(goal, reps["G"])
            L.append(f"| {goal.title} | {goal.variant} | `{gv.metric}` | {goal.rule} | {fmt(gv.target)} | "
                     f"{fmt(gv.generated)} | {seeds_text(gv.per_seed)} | {met_text(gv)} |")
        L.append("")
    L += ["Goal marks per arm (✓ met, ✗ not met, – n/a; order: " + ", ".join(g.title for g in GOALS) + "):", "",
          "| arm | recipe | goals | headline score |", "|---|---|---|---|"]
    for a in arm_list:
        if a.key not in complete:
            L.append(f"| {a.key} | {a.title} | {NOT_RUN} | |")
            continue
        marks = " ".join({True: "✓", False: "✗", None: "–"}[goal_value(g, reps[a.key]).met] for g in GOALS)
        L.append(f"| {a.key} | {a.title} | {marks} | {fmt(headline_score(reps[a.key]))} |")
    if not plan.get("G"):
        L.append(f"| G | best combination | {NOT_RUN} | |")

    # --- per goal metric
    L += ["", "## Normal-music goal metrics (and settle on silence clips)", ""]
    for goal in GOALS:
        L += [f"### {goal.title}: goal {goal.rule} ({goal.variant} clips)", "",
              "| arm | floor | generated (mean of seeds) | seed 0 [95% CI] | seed 1 [95% CI] | ground truth [95% CI] "
              "| target | verdict | n |", "|---|---|---|---|---|---|---|---|---|"]
        for a in arm_list:
            if a.key not in complete:
                L.append(f"| {a.key} | {NOT_RUN} | | | | | | | |")
                continue
            rs = reps[a.key]
            gv = goal_value(goal, rs)
            seeds = [entry_text(entry(r, goal.variant, gv.metric)) for r in rs]
            floor = mean_of([value(r, goal.variant, gv.metric, "floor") for r in rs])
            n = "/".join(str((entry(r, goal.variant, gv.metric) or {}).get("n", "n/a")) for r in rs)
            L.append(f"| {a.key} | {fmt(floor)} | {fmt(gv.generated)} | {' | '.join(seeds)} | "
                     f"{entry_text(entry(rs[0], goal.variant, gv.metric, 'ceiling'))} | {fmt(gv.target)} | "
                     f"{met_text(gv)} | {n} |")
        L.append("")
    L += ["Style diversity at fixed audio reads `style_diversity_siblings` (ground truth across the visual plans "
          "of clips sharing one audio, `val_siblings/`); where the data has none it falls back to "
          "`style_diversity` (ground truth across different clips) and the goal row names that metric.", ""]

    # --- combination rule
    L += ["## How arm G was chosen", "",
          "Rule, fixed before the runs: a lever (D band-permuted negatives, E InfoNCE, F interval guidance) joins "
          "arm C in G when its arm's *headline score* is strictly above C's. Headline score = the mean over the "
          "four normal-music goals (loudness → motion, bands R², retrieval top-1, style diversity at fixed audio) "
          "of min(1, generated / target), mean of the seeds (goals without a target > 0 are left out), and it must "
          "beat C's by more than the seed noise: the larger of the two arms' seed spreads (half the range of the "
          "per-seed scores). G is trained like every arm (equal wall-clock, both seeds) unless no training lever "
          "was chosen; then it is C's or F's runs.", "",
          "| arm | headline score | seed spread | against C | in G |", "|---|---|---|---|---|"]
    sc, spr = plan.get("headline_scores", {}), plan.get("seed_spreads", {})
    chosen = plan.get("chosen_levers")
    for k in ["C", *LEVERS]:
        s = sc.get(k)
        vs = "" if k == "C" or s is None or sc.get("C") is None else f"{s - sc['C']:+.3g}"
        L.append(f"| {k} | {fmt(s) if k in complete else NOT_RUN} | {fmt(spr.get(k))} | {vs} | "
                 f"{'' if k == 'C' else ('n/a' if chosen is None else ('yes' if k in chosen else 'no'))} |")

    # --- cost
    L += ["", "## Cost per arm (equal wall-clock)", "",
          "| arm | s/step (calibration) | steps | training loop s (seed 0 / 1) | train command s (seed 0 / 1) | "
          "eval command s (seed 0 / 1) |", "|---|---|---|---|---|---|"]
    for a in arm_list:
        k = trained_key(a)
        note = "" if a.train is not None else f" (arm {k}'s)"
        L.append(f"| {a.key} | {fmt(plan['s_per_step'].get(k))}{note} | {plan['steps'].get(k, NOT_RUN)}{note} | "
                 f"{seeds_text(loop_seconds(p, a))} | {seeds_text(arm_train_seconds(log, a))} | "
                 f"{seeds_text(arm_eval_seconds(log, a))} |")

    # --- secondary
    L += ["", "## Other normal-music metrics (mean of seeds; ground truth in brackets)", "",
          "| arm | " + " | ".join(SECONDARY) + " |", "|---|" + "---|" * len(SECONDARY)]
    for a in arm_list:
        if a.key not in complete:
            L.append(f"| {a.key} | {NOT_RUN} |" + " |" * (len(SECONDARY) - 1))
            continue
        cells = []
        for m in SECONDARY:
            gm = mean_of([value(r, "normal", m) for r in reps[a.key]])
            gt = mean_of([value(r, "normal", m, "ceiling") for r in reps[a.key]])
            cells.append(fmt(gm) + ("" if gt is None else f" ({fmt(gt)})"))
        L.append(f"| {a.key} | " + " | ".join(cells) + " |")

    # --- per arm
    L += ["", "## Arms", ""]
    for a in arm_list:
        L += [f"### Arm {a.key}: {a.title}", ""]
        if a.train is not None:
            L.append("Training overrides: `" + " ".join(a.train_overrides(plan["steps"].get(a.key, 0), 0)).replace(
                "run.seed=0", "run.seed=SEED") + "`.")
        else:
            L.append(f"No training: evaluates arm {a.same_as or a.ckpt_of}'s checkpoints.")
        L += ["Sampling overrides: `" + " ".join(a.eval_overrides(0)).replace("inference.seed=0", "inference.seed=SEED")
              + "`.", ""]
        if a.key not in complete:
            L += [f"{NOT_RUN.capitalize()}.", ""]
            continue
        vids = [v["path"] for v in reps[a.key][0].get("videos", []) if v["kind"] == "side_by_side"]
        if vids:
            src = p.eval_dir(replace(a, key=a.same_as) if a.same_as else a, SEEDS[0])
            png = extract_still(src / vids[0], stills_dir / f"{a.slug}.png")
            if png is not None:
                L += [f"![arm {a.key}: ground truth | generated | floor (other audio), 4 frames top to bottom]"
                      f"({rel(png)})", ""]
    note_text = notes.read_text().strip() if notes and notes.is_file() else ""
    if note_text:
        L += ["## Reading the table", "", note_text, ""]

    # --- every try
    L += ["## Every try", "", "Every command the script ran for this table, in order, failed ones included "
          "(exit status ≠ 0), and the steps left out for time.", "",
          "| step | exit | wall s | finished (UTC) | command |", "|---|---|---|---|---|"]
    for rec in log.records:
        if rec["group"] == "ship":
            continue
        L.append(f"| {rec['name']} | {rec['rc']} | {rec['wall_s']:.1f} | {rec.get('finished_utc', '')} | "
                 f"`{repo_relative(rec['command'])}` |")
    for name in plan.get("not_run", []):
        L.append(f"| {name} | {NOT_RUN} | | | |")
    L += ["", "## Config", "", f"`{repo_relative(str(p.cfg_file))}`, written by the script from the preset:", "",
          "```yaml", p.cfg_file.read_text().rstrip(), "```", "",
          f"Re-run: `python bench/responsiveness_ablation.py --preset {preset}{' --tune' if tune else ''}` "
          "(resumable: a step whose output exists is skipped).", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- the shipped model


def ship_recipe(arm_key: str, plan: dict[str, Any], tune: bool) -> tuple[Arm, Arm]:
    """(the arm to ship, the arm whose training recipe it uses: itself or the arm whose checkpoints it samples)."""
    all_arms = plan_arms(plan, tune)
    arm = next((a for a in all_arms if a.key == arm_key), None)
    if arm is None:
        raise SystemExit(f"--ship-arm {arm_key!r}: no such arm in this run (arms: "
                         f"{', '.join(a.key for a in all_arms)})")
    return arm, next(a for a in all_arms if a.key == trained_key(arm))


def ship_steps(p: Paths, arm: Arm, trained: Arm, steps: int, extra: list[str]) -> list[Step]:
    """Train ``trained``'s recipe for ``steps`` steps with ``arm``'s sampling settings (plus ``extra`` overrides) on
    the same latents, evaluate it."""
    run = p.work / "ship"
    infer = list(arm.infer)
    ov = trained.train_overrides(steps, SEEDS[0]) + infer + list(extra)
    return [
        Step("ship-train", train_argv(p, run, ov), run / "summary.json", "ship"),
        Step("ship-eval", [p.py, "-m", "trainer", "eval", *p.c, "--checkpoint", str(run), "--data",
                           str(p.work / "data"), "--out", str(p.work / "eval" / "ship"),
                           *[o for o in infer + extra if o.startswith("inference.")]],
             p.work / "eval" / "ship" / "report.json", "ship"),
    ]


def package_model(run: Path, dest: Path) -> list[Path]:
    """Copy what sampling needs from a diffusion run: config.yaml, latest -> ckpt/step-N (state.json without
    the optimizer/RNG state, ema.safetensors) and the vae/ copy. Returns the files written."""
    from trainer.checkpoint import find_checkpoint

    step_dir = find_checkpoint(run).resolve()
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "ckpt" / step_dir.name).mkdir(parents=True)
    shutil.copy2(run / "config.yaml", dest / "config.yaml")
    doc = json.loads((step_dir / "state.json").read_text())
    doc["structure"] = {"ema": doc["structure"]["ema"]}
    for k in ("rng", "latents", "vae_source"):
        doc.get("state", {}).pop(k, None)
    (dest / "ckpt" / step_dir.name / "state.json").write_text(json.dumps(doc), encoding="utf-8")
    shutil.copy2(step_dir / "ema.safetensors", dest / "ckpt" / step_dir.name / "ema.safetensors")
    (dest / "latest").symlink_to(Path("ckpt") / step_dir.name)
    shutil.copytree(run / "vae", dest / "vae", symlinks=True)
    return sorted(q for q in dest.rglob("*") if q.is_file() and not q.is_symlink())


def model_card(dest: Path, name: str, preset: str, arm: Arm, steps: int, cfg: dict[str, Any], rep: dict[str, Any],
               log: Log, train_cmd: str) -> Path:
    """MODEL_CARD.md: data, recipe, steps, the eval's normal-music table and the goal table, sizes, use."""
    d, r, df = cfg["data"], cfg["render"], cfg["diffusion"]
    files = sorted(q for q in dest.rglob("*") if q.is_file() and not q.is_symlink() and q.name != "MODEL_CARD.md")
    wall = (log.last_ok("ship-train") or {}).get("wall_s")
    L = [f"# {name}", "",
         f"A tiny audio-conditioned latent diffusion model for Synesthete, trained on {device_name()} by "
         f"`bench/responsiveness_ablation.py --preset {preset} --ship {name}`: a {r['resolution']}² px video at "
         f"{r['fps']:g} fps from any audio file (`python -m trainer sample --audio song.wav`). A demonstration-size "
         f"model: a {df['width']}-wide {df['depth']}-block denoiser trained {steps} steps on "
         f"{d['train_shards'] * d['samples_per_shard']} procedural clips.", "",
         "## Recipe", "", f"Arm {arm.key} of the ablation ({arm.title}), {steps} steps"
         + (f" ({wall / 60:.1f} min wall)" if wall else "") + ":", "", f"```\n{train_cmd}\n```", "",
         "## Evaluation (`trainer eval`, normal music)", "",
         "| metric | floor (other audio) | generated | ground truth | n |", "|---|---|---|---|---|"]
    for mname, row in rep.get("variants", {}).get("normal", {}).get("metrics", {}).items():
        L.append(f"| {mname} | {entry_text(row.get('floor'))} | {entry_text(row.get('generated'))} | "
                 f"{entry_text(row.get('ceiling'))} | {(row.get('generated') or {}).get('n')} |")
    L += ["", "Against the goal of issue 13 (one seed):", "", "| goal | rule | target | value | verdict |",
          "|---|---|---|---|---|"]
    for goal in GOALS:
        gv = goal_value(goal, [rep])
        L.append(f"| {goal.title} | {goal.rule} | {fmt(gv.target)} | {fmt(gv.generated)} | {met_text(gv)} |")
    L += ["", "## Files", "", "| file | bytes |", "|---|---|"]
    L += [f"| {q.relative_to(dest)} | {q.stat().st_size} |" for q in files]
    L += [f"| total | {sum(q.stat().st_size for q in files)} |", "", "## Use", ""]
    sample = log.last_ok("ship-sample30")
    if sample:
        L += [f"Sampling 30 s of audio on {device_name()} took {sample['wall_s']:.0f} s (one command, start-up "
              f"included): `{repo_relative(sample['command'])}`.", ""]
    L += ["```\npython -m trainer sample --audio song.wav --out song.mp4            # this model (default)\n"
          f"python -m trainer sample --audio song.wav --checkpoint models/{name}\n```", ""]
    out = dest / "MODEL_CARD.md"
    out.write_text("\n".join(L), encoding="utf-8")
    return out


def demo_song(seconds: float, sr: int = 22050, seed: int = 0) -> "np.ndarray":
    """A plain test song: a kick-like pulse at 120 BPM with a noise hat, a 3 s silence in the middle."""
    import numpy as np

    t = np.arange(int(seconds * sr)) / sr
    phase = t % 0.5
    kick = np.sin(2 * np.pi * (50 + 120 * np.exp(-phase * 30)) * phase) * np.exp(-phase * 8)
    hat = np.random.default_rng(seed).standard_normal(len(t)) * np.exp(-((t + 0.25) % 0.5) * 40) * 0.2
    wave = 0.6 * kick + hat
    mid = len(t) // 2
    wave[mid:mid + 3 * sr] = 0.0
    return wave.astype(np.float32)


def check_sizes(dest: Path, per_file: int = 16 << 20, total: int = 48 << 20) -> None:
    """Refuse a model whose files exceed the repository limits (16 MiB each, 48 MiB in all)."""
    files = [q for q in dest.rglob("*") if q.is_file() and not q.is_symlink()]
    big = [q for q in files if q.stat().st_size > per_file]
    if big or sum(q.stat().st_size for q in files) > total:
        raise SystemExit(f"shipped model too large: {[str(q) for q in big]} / total "
                         f"{sum(q.stat().st_size for q in files)} bytes")


def ship(args: argparse.Namespace, p: Paths, runner: Runner, plan: dict[str, Any], preset_steps: int) -> None:
    arm, trained = ship_recipe(args.ship_arm, plan, args.tune)
    n = args.ship_steps or 3 * preset_steps
    steps = ship_steps(p, arm, trained, n, args.ship_override)
    for step in steps:
        runner.run(step)
    dest = Path(args.models) / args.ship
    package_model(p.work / "ship", dest)
    import soundfile as sf

    song = p.work / "ship_test_30s.wav"
    sf.write(song, demo_song(30.0), 22050)
    runner.run(Step("ship-sample30", [p.py, "-m", "trainer", "sample", "--audio", str(song), "--checkpoint", str(dest),
                                      "--out", str(p.work / "ship_test_30s.mp4"), "--no-progress"],
                    p.work / "ship_test_30s.mp4", "ship"))
    from trainer.checkpoint import read_run_config

    card = model_card(dest, args.ship, args.preset, arm, n, read_run_config(p.work / "ship"),
                      json.loads((p.work / "eval" / "ship" / "report.json").read_text()), runner.log,
                      display_command(steps[0].argv))
    check_sizes(dest)
    print(f"[ablation] shipped {dest} ({card.name})", file=sys.stderr)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True, help="Scale: h100, cpu, or smoke (CI).")
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
    ap.add_argument("--tune", action="store_true",
                    help="Also run two tuning tries: C with shuffle weight 1; C's checkpoints with interval g = 4.")
    ap.add_argument("--ship", default=None, metavar="NAME",
                    help="After the ablation, train --ship-arm's recipe for --ship-steps and package it as models/NAME.")
    ap.add_argument("--ship-arm", default="G", help="Arm whose recipe the shipped model uses (default: G).")
    ap.add_argument("--ship-steps", type=int, default=None, help="Training steps of the shipped model "
                    "(default: 3x the preset's diffusion.steps).")
    ap.add_argument("--ship-override", action="append", default=[], metavar="section.key=value",
                    help="Extra overrides for the shipped model (repeatable; same model shape rules apply).")
    ap.add_argument("--models", default=str(REPO / "models"), metavar="DIR", help="Where --ship writes NAME/.")
    ap.add_argument("--verbose", action="store_true", help="Show the subprocesses' output instead of logging it.")
    return ap.parse_args(argv)


def resolved_config(preset: str, extra: list[str], out: Path) -> Path:
    """Write WORK/ablation.yaml: the preset tree with the extra YAML layers merged over it (sections only)."""
    tree = json.loads(json.dumps(PRESETS[preset]))
    for f in extra:
        layer = yaml.safe_load(Path(f).read_text()) or {}
        for section, body in layer.items():
            tree.setdefault(section, {}).update(body or {})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return out


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
    p = Paths(work, cfg_file)
    preset_steps = int(tree["diffusion"]["steps"])
    plan = run_ablation(p, runner, preset_steps, int(tree["diffusion"]["batch_size"]),
                        CALIBRATION_STEPS[args.preset], args.tune)
    out = write_results(results, p, args.preset, plan, runner.log, stills, notes, args.tune)
    print(f"[ablation] wrote {out} ({time.time() - t0:.1f} s this run"
          + (f"; not run (session time): {len(plan['not_run'])} steps" if plan["not_run"] else "") + ")",
          file=sys.stderr)
    if args.ship:
        ship(args, p, runner, plan, preset_steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
