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

``--ship NAME --ship-arm K`` then runs the ship study (issue 13 item 7) on the same latents: arm K's recipe (default G)
trained as each of ``--ship-candidates`` (longer budgets, a capacity lever; table SHIP_CANDIDATES) with both seeds,
each evaluated at the arm's own sampling and (eval only) over a guidance sweep; SHIP_RULE, stated before the runs,
picks one (candidate, sampling) pair; its seed-0 checkpoint is packaged as models/NAME (config.yaml, latest ->
ckpt/step-N with EMA weights, vae/, MODEL_CARD.md written from the evals), `trainer sample` is timed on 30 s of
audio with it, the size limits are checked, and a section with every try is appended to the results.
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
import threading
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
        "render": {"resolution": 32, "fps": 12.0, "chunk_frames": 16},  # issue 29's choice (was 8)
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
    env: dict[str, str] | None = None  # extra environment variables for its process


@dataclass
class Log:
    """WORK/commands.jsonl: one line per step run (name, command, wall time, exit status), failed tries too."""

    path: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # steps may run in threads (--jobs)

    def load(self) -> "Log":
        if self.path.is_file():
            self.records = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return self

    def add(self, rec: dict[str, Any]) -> None:
        with self.lock:
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
                rc = subprocess.run(step.argv, cwd=REPO, env={**self.env, **(step.env or {})},
                                    stdout=None if self.verbose else f,
                                    stderr=None if self.verbose else subprocess.STDOUT).returncode
        wall = time.perf_counter() - t0
        self.log.add({"name": step.name, "group": step.group, "command": display_command(step.argv),
                      "wall_s": round(wall, 2), "rc": rc, "load1": round(os.getloadavg()[0], 2),
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


def loop_seconds(p: Paths, arm: Arm) -> list[float | None]:
    """The training loop's own seconds per seed (summary.json; start-up and imports not included)."""
    out = []
    for s in SEEDS:
        f = p.work / f"arm{trained_key(arm)}_s{s}" / "summary.json"
        out.append(json.loads(f.read_text()).get("seconds_this_session") if f.is_file() else None)
    return out


def seeds_text(xs: list[float | None]) -> str:
    return " / ".join(fmt(x) for x in xs)


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
          "audio (chance for retrieval), *ground truth* = the data's frames (the ceiling).", "",
          f"Raw reports behind every figure here: `{rel(keep_eval_reports(p, path, preset))}/` (each arm's "
          "`<arm>_s<seed>/report.json` and each ship pair's `ship/<candidate>_s<seed>/<sampling>/report.json`, "
          "copied there from the work dir's `eval/` by the script).", ""]
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
          f"- Mix knobs: {loader_semantics()}"]
    if preset != "h100":
        L.append(f"- GPU preset (`--preset h100`): {gpu_preset_note()}")
    L.append("")

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


# ----------------------------------------------------------------------------- the shipped model (issue 13 item 7)
# ``--ship NAME`` trains the ship arm's recipe as a few *candidates* (longer budgets, a capacity lever), each with both
# seeds, evaluates each candidate's checkpoints at the arm's own sampling setting and over a guidance sweep (eval
# only), picks one (candidate, sampling) pair by SHIP_RULE, and packages its seed-0 checkpoint as models/NAME.


@dataclass(frozen=True)
class Candidate:
    """One training configuration tried for the shipped model: the ship arm's recipe for ``steps`` steps plus the
    ``extra`` training overrides (a capacity lever). ``sweep``: its checkpoints are also sampled over GUIDANCE_SWEEP."""

    key: str
    title: str
    steps: int
    extra: tuple[str, ...] = ()
    sweep: bool = True


SHIP_CANDIDATES = {c.key: c for c in [
    Candidate("s2000", "2000 steps", 2000),
    Candidate("s4000", "4000 steps", 4000),
    Candidate("w96", "denoiser width 96 (capacity), 2000 steps", 2000, ("diffusion.width=96",), sweep=False),
    Candidate("d3", "denoiser depth 3 (capacity), 2000 steps", 2000, ("diffusion.depth=3",), sweep=False),
    Candidate("smoke", "4 steps, width 16 (the smoke preset's plumbing test)", 4, ("diffusion.width=16",),
              sweep=False),
]}
DEFAULT_CANDIDATES = ("s2000", "s4000", "w96")


@dataclass(frozen=True)
class Sampling:
    """An audio-guidance setting for sampling: peak scale g and schedule (issue 13 item 2)."""

    scale: float
    schedule: str = "constant"

    @property
    def key(self) -> str:
        return f"g{self.scale:g}-{self.schedule}"

    @property
    def title(self) -> str:
        return "g = 1 (no guidance)" if self.scale == 1 else f"g = {self.scale:g}, {self.schedule}"

    @property
    def overrides(self) -> list[str]:
        return [f"inference.audio_guidance_scale={self.scale:g}", f"inference.audio_guidance_schedule={self.schedule}"]


GUIDANCE_SWEEP = (Sampling(1.0),) + tuple(Sampling(g, s) for s in ("constant", "interval") for g in (1.5, 2.0, 3.0, 4.0))
CONFIRM_SEED_OFFSET = 2    # the chosen pair is sampled again with inference.seed = seed + 2 (fresh sampling noise)
MAX_SAMPLE30_S = 60.0      # issue 13 item 7: 30 s of audio sampled on the 2-core CPU in under 1 minute
SETTLE_GOAL = next(g for g in GOALS if g.metric == "silence_settle_ratio")
SHIP_RULE = (
    "Fixed before the runs: among the (training candidate, sampling setting) pairs measured with both seeds, the "
    "shipped configuration is the pair with the highest *headline score* (arm G's rule: the mean over the four "
    "normal-music goals of min(1, generated / target), mean of the 2 seeds), counting first the pairs whose silence "
    "settle ratio (mean of the seeds) meets its goal (≤ 0.1); a tie (equal to 3 decimals) goes to the cheaper pair "
    "(candidates in table order, fewer steps first; then the sweep order, the arm's own sampling first). The "
    "pair's seed-0 checkpoint is shipped with its sampling setting written into config.yaml; it must sample 30 s of "
    f"audio on this CPU in under {MAX_SAMPLE30_S:.0f} s (one command, start-up included), else the next pair is "
    "shipped. The chosen pair's score is the best of many noisy tries, so it flatters: the pair is sampled again "
    f"with sampling seeds {CONFIRM_SEED_OFFSET} and {CONFIRM_SEED_OFFSET + 1} (same checkpoints and clips) and "
    "that score is reported beside it.")


def sampling_of(infer: tuple[str, ...] | list[str]) -> Sampling:
    """The Sampling an arm's inference overrides set (schema defaults g = 2, constant for the rest)."""
    kv = dict(o.split("=", 1) for o in infer)
    return Sampling(float(kv.get("inference.audio_guidance_scale", 2.0)),
                    kv.get("inference.audio_guidance_schedule", "constant"))


def sweep_for(base: Sampling, cand: Candidate) -> list[Sampling]:
    """The sampling settings a candidate is evaluated with: the arm's own first, then the sweep (if any)."""
    return [base] + ([s for s in GUIDANCE_SWEEP if s != base] if cand.sweep else [])


def ship_recipe(arm_key: str, plan: dict[str, Any], tune: bool) -> tuple[Arm, Arm]:
    """(the arm to ship, the arm whose training recipe it uses: itself or the arm whose checkpoints it samples)."""
    all_arms = plan_arms(plan, tune)
    arm = next((a for a in all_arms if a.key == arm_key), None)
    if arm is None:
        raise SystemExit(f"--ship-arm {arm_key!r}: no such arm in this run (arms: "
                         f"{', '.join(a.key for a in all_arms)})")
    return arm, next(a for a in all_arms if a.key == trained_key(arm))


def ship_run_dir(p: Paths, cand: Candidate, seed: int) -> Path:
    return p.work / "ship" / f"{cand.key}_s{seed}"


def ship_eval_dir(p: Paths, cand: Candidate, samp: Sampling, seed: int, confirm: bool = False) -> Path:
    return p.work / "eval" / "ship" / f"{cand.key}_s{seed}" / (samp.key + ("-confirm" if confirm else ""))


def ship_eval_step(p: Paths, cand: Candidate, samp: Sampling, seed: int, confirm: bool = False) -> Step:
    """Evaluate a candidate's checkpoint of ``seed`` with ``samp`` (sampling seed = seed, +2 for a confirmation)."""
    out = ship_eval_dir(p, cand, samp, seed, confirm)
    # the candidate's model-shape lever too: the eval builds the denoiser from --config plus these overrides
    inf = list(cand.extra) + samp.overrides + [f"inference.seed={seed + (CONFIRM_SEED_OFFSET if confirm else 0)}"]
    return Step(f"ship-{cand.key}_s{seed}-eval-{samp.key}" + ("-confirm" if confirm else ""),
                [p.py, "-m", "trainer", "eval", *p.c, "--checkpoint", str(ship_run_dir(p, cand, seed)), "--data",
                 str(p.work / "data"), "--out", str(out), *inf], out / "report.json", "ship")


def ship_train_overrides(trained: Arm, base: Sampling, cand: Candidate, seed: int, extra: list[str]) -> list[str]:
    """The training overrides of a candidate: the recipe's for its steps and seed, its lever, the arm's sampling
    setting (so that the run's config.yaml samples as the arm does) and the --ship-override extras."""
    return trained.train_overrides(cand.steps, seed) + list(cand.extra) + base.overrides + list(extra)


def ship_chain(p: Paths, trained: Arm, base: Sampling, cand: Candidate, seed: int, extra: list[str]) -> list[Step]:
    """Train one candidate with one seed, then evaluate it with each of its sampling settings (in this order)."""
    run = ship_run_dir(p, cand, seed)
    train = Step(f"ship-{cand.key}_s{seed}-train", train_argv(p, run, ship_train_overrides(trained, base, cand, seed,
                                                                                          extra)),
                 run / "summary.json", "ship")
    return [train] + [ship_eval_step(p, cand, samp, seed) for samp in sweep_for(base, cand)]


def run_chains(runner: Runner, chains: list[list[Step]], jobs: int) -> None:
    """Run each chain's steps in order, up to ``jobs`` chains at once (each step its own process). A failed step
    stops the whole run once the chains already going have finished."""
    def go(chain: list[Step]) -> None:
        for step in chain:
            if not runner.run(step):
                return

    if jobs <= 1:
        for chain in chains:
            go(chain)
        return
    from concurrent.futures import ThreadPoolExecutor

    # librosa's numba kernels cache their compiled code on disk (cache=True); two processes writing that cache at
    # once left it corrupt here (every later eval segfaulted in librosa.util.peak_pick). One cache dir per chain:
    # a chain's steps run one after another, so no two processes ever write the same cache.
    cache = runner.logs_dir.parent / "numba_cache"
    chains = [[replace(st, env={**(st.env or {}), "NUMBA_CACHE_DIR": str(cache / f"chain{i}")})
               for st in chain] for i, chain in enumerate(chains)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(go, chain) for chain in chains]
    for f in futures:
        f.result()  # re-raises a failed step's SystemExit


@dataclass
class Pair:
    """A (training candidate, sampling setting) pair and its report.json per seed (None where not made)."""

    cand: Candidate
    samp: Sampling
    reps: list[dict[str, Any] | None]

    @property
    def key(self) -> str:
        return f"{self.cand.key} / {self.samp.key}"

    @property
    def complete(self) -> bool:
        return all(r is not None for r in self.reps)


def _read_report(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def ship_pairs(p: Paths, cands: list[Candidate], base: Sampling, confirm: bool = False) -> list[Pair]:
    """Every pair of the study in table order (candidates in order, each with its sampling settings in order)."""
    return [Pair(c, s, [_read_report(ship_eval_dir(p, c, s, seed, confirm) / "report.json") for seed in SEEDS])
            for c in cands for s in sweep_for(base, c)]


def rank_pairs(pairs: list[Pair]) -> list[Pair]:
    """SHIP_RULE: the complete pairs with a headline score, best first."""
    scored = [(i, q, headline_score(q.reps)) for i, q in enumerate(pairs) if q.complete]

    def order(item: tuple[int, Pair, float | None]) -> tuple[int, float, int]:
        i, q, score = item
        return (0 if goal_value(SETTLE_GOAL, q.reps).met else 1, -round(score, 3), i)

    return [q for _, q, _ in sorted((x for x in scored if x[2] is not None), key=order)]


def package_model(run: Path, dest: Path, samp: Sampling) -> list[Path]:
    """Copy what sampling needs from a diffusion run: config.yaml (its inference section set to ``samp``),
    latest -> ckpt/step-N (state.json without the optimizer/RNG state, ema.safetensors) and the vae/ copy.
    Returns the files written."""
    from shared.config import build_config
    from trainer.checkpoint import find_checkpoint

    step_dir = find_checkpoint(run).resolve()
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "ckpt" / step_dir.name).mkdir(parents=True)
    doc = yaml.safe_load((run / "config.yaml").read_text())
    doc["config"]["inference"].update(audio_guidance_scale=float(samp.scale), audio_guidance_schedule=samp.schedule)
    (dest / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    checked = dest / "config.check.yaml"  # the edited tree must still be a valid config
    checked.write_text(yaml.safe_dump(doc["config"], sort_keys=False), encoding="utf-8")
    try:
        build_config([checked])
    finally:
        checked.unlink()
    state = json.loads((step_dir / "state.json").read_text())
    state["structure"] = {"ema": state["structure"]["ema"]}
    if "files" in state:  # the listing (size, sha256) of the one weights file shipped, so that loading checks it
        state["files"] = {"ema.safetensors": state["files"]["ema.safetensors"]}
    for k in ("rng", "latents", "vae_source"):
        state.get("state", {}).pop(k, None)
    (dest / "ckpt" / step_dir.name / "state.json").write_text(json.dumps(state), encoding="utf-8")
    shutil.copy2(step_dir / "ema.safetensors", dest / "ckpt" / step_dir.name / "ema.safetensors")
    (dest / "latest").symlink_to(Path("ckpt") / step_dir.name)
    shutil.copytree(run / "vae", dest / "vae", symlinks=True)
    return sorted(q for q in dest.rglob("*") if q.is_file() and not q.is_symlink())


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


# --- the study's tables (RESULTS.md section and model card)


def cell(vals: list[float | None]) -> str:
    """'mean (seed 0 / seed 1)'."""
    return f"{fmt(mean_of(vals))} ({seeds_text(vals)})"


def ship_train_seconds(p: Paths, log: Log, cand: Candidate) -> tuple[list[float | None], list[float | None]]:
    """(training loop s per seed from summary.json, training command wall s per seed from the log)."""
    loop = []
    for s in SEEDS:
        f = ship_run_dir(p, cand, s) / "summary.json"
        loop.append(json.loads(f.read_text()).get("seconds_this_session") if f.is_file() else None)
    return loop, [(log.last_ok(f"ship-{cand.key}_s{s}-train") or {}).get("wall_s") for s in SEEDS]


def secs_text(xs: list[float | None]) -> str:
    """Seconds per seed, whole seconds: '358 / 1010'."""
    return " / ".join("n/a" if x is None else f"{x:.0f}" for x in xs)


def load_text(rec: dict[str, Any] | None) -> str:
    return "" if not rec or rec.get("load1") is None else f" (load average {rec['load1']:.2f} as it finished)"


def ship_goal_rows(reps: list[dict[str, Any] | None], per_seed_ci: bool = True) -> list[str]:
    """The goal table of one pair: mean of the seeds against the target, each seed with its CI."""
    rows = [f"| goal | clips | rule | target | mean of seeds | {' | '.join(f'seed {s}' + (' [95% CI]' if per_seed_ci else '') for s in SEEDS)} | verdict |",
            "|---|---|---|---|---|" + "---|" * len(SEEDS) + "---|"]
    for goal in GOALS:
        gv = goal_value(goal, reps)
        seeds = [entry_text(entry(r, goal.variant, gv.metric)) for r in reps]
        rows.append(f"| {goal.title} | {goal.variant} | {goal.rule} | {fmt(gv.target)} | {fmt(gv.generated)} | "
                    f"{' | '.join(seeds)} | {met_text(gv)} |")
    return rows


def pairs_table(p: Paths, log: Log, pairs: list[Pair], chosen: Pair | None) -> list[str]:
    """One row per pair: steps, seconds, headline score and each goal, mean (seed 0 / seed 1)."""
    L = ["| candidate | sampling | steps | training loop s (seed 0 / 1) | headline score | "
         + " | ".join(g.title for g in GOALS) + " | goals |", "|---|---|---|---|---|" + "---|" * len(GOALS) + "---|"]
    for q in pairs:
        mark = " **(shipped)**" if chosen is not None and q is chosen else ""
        loop, _ = ship_train_seconds(p, log, q.cand)
        if not q.complete:
            L.append(f"| {q.cand.key}{mark} | {q.samp.title} | {q.cand.steps} | {secs_text(loop)} | {NOT_RUN} |"
                     + " |" * (len(GOALS) + 1))
            continue
        score = f"{fmt(headline_score(q.reps))} ({seeds_text([headline_score([r]) for r in q.reps])})"
        goals = [cell([value(r, g.variant, goal_value(g, q.reps).metric) for r in q.reps]) for g in GOALS]
        marks = " ".join({True: "✓", False: "✗", None: "–"}[goal_value(g, q.reps).met] for g in GOALS)
        L.append(f"| {q.cand.key}{mark} | {q.samp.title} | {q.cand.steps} | {secs_text(loop)} | {score} | "
                 + " | ".join(goals) + f" | {marks} |")
    return L


PAIRS_NOTE = ("Headline score: from the goal values averaged over the seeds (the rule's score), each seed's own score "
              "in brackets (capping at the goal makes the first differ from the mean of the second). Goal marks: ✓ met, "
              "✗ not met (mean of seeds), in the order of the columns. Retrieval top-1 over 8 clips moves in steps of "
              "0.125.")


def ship_section(p: Paths, log: Log, arm: Arm, trained: Arm, base: Sampling, cands: list[Candidate],
                 pairs: list[Pair], chosen: Pair | None, confirm: Pair | None, name: str, results: Path,
                 stills_dir: Path, note_text: str, extra: list[str]) -> list[str]:
    """The RESULTS.md section of the ship study: every try, the rule, the shipped pair's goal table."""
    rel = lambda q: os.path.relpath(q, results.parent)  # noqa: E731
    missing = [q.key for q in pairs if not q.complete]
    L = ["", f"## Shipped model `models/{name}` (issue 13 item 7): training budget, guidance, capacity", ""]
    if missing:
        L += [f"**PARTIAL: pairs {', '.join(missing)} {NOT_RUN}.** Their rows say so.", ""]
    L += [f"Arm {arm.key}'s recipe (training: arm {trained.key}'s overrides; sampling: {base.title}) trained as "
          f"{len(cands)} candidates, each with {len(SEEDS)} seeds (training and sampling seed "
          f"{', '.join(map(str, SEEDS))}) on the same data, VAE and latents as the table above; each candidate's "
          "checkpoints evaluated with the arm's own sampling and, where marked, over a guidance sweep (eval only: "
          "the same checkpoints sampled with another setting). Unlike the arms above these are not equal wall-clock: "
          "the point is how far a longer budget or a wider model goes, so each row gives its steps and seconds. "
          "Several steps ran two at a time (`--jobs`), so seconds include contention; the every-try table gives "
          "the load average at the end of each step.", "",
          "Candidates: " + "; ".join(f"`{c.key}` = {c.title}" + (f" (`{' '.join(c.extra)}`)" if c.extra else "")
                                     + ("" if c.sweep else ", own sampling only") for c in cands) + ".",
          "Guidance sweep: " + "; ".join(s.title for s in GUIDANCE_SWEEP) + f" (interval = τ in the schema's "
          "default `inference.audio_guidance_interval`).", "", "**Rule.** " + SHIP_RULE, "",
          "### Every pair (mean of the seeds, seed 0 / seed 1 in brackets)", ""]
    L += pairs_table(p, log, pairs, chosen)
    L += ["", PAIRS_NOTE, ""]
    if chosen is None:
        L += ["**Nothing shipped**: no pair was measured with both seeds.", ""]
    else:
        L += [f"### Shipped: `{chosen.cand.key}` ({chosen.cand.title}) sampled with {chosen.samp.title}", "",
              f"`models/{name}` is this pair's seed-0 checkpoint. Its goals, mean of the {len(SEEDS)} seeds (each "
              "seed's value with its 95% bootstrap CI over clips):", ""]
        L += ship_goal_rows(chosen.reps)
        if confirm is not None and confirm.complete:
            L += ["", f"Confirmation with fresh sampling noise (sampling seeds {CONFIRM_SEED_OFFSET}, "
                  f"{CONFIRM_SEED_OFFSET + 1}; same checkpoints, same clips): headline score "
                  f"{fmt(headline_score(confirm.reps))} against {fmt(headline_score(chosen.reps))} in the choice.",
                  ""]
            L += ship_goal_rows(confirm.reps)
        rec = log.last_ok(sample30_name(chosen))
        if rec:
            L += ["", f"Sampling 30 s of audio with it took {rec['wall_s']:.1f} s{load_text(rec)}: "
                  f"`{repo_relative(rec['command'])}`."]
        vids = [v["path"] for v in chosen.reps[0].get("videos", []) if v["kind"] == "side_by_side"]
        if vids:
            png = extract_still(ship_eval_dir(p, chosen.cand, chosen.samp, SEEDS[0]) / vids[0],
                                stills_dir / f"shipped_{name}.png")
            if png is not None:
                L += ["", f"![models/{name}: ground truth | generated | floor (other audio), 4 frames top to bottom]"
                      f"({rel(png)})"]
        L.append("")
    L += ["### Per goal, every pair with 95% CIs", ""]
    for goal in GOALS:
        L += [f"#### {goal.title}: goal {goal.rule} ({goal.variant} clips)", "",
              "| candidate | sampling | floor | generated (mean of seeds) | seed 0 [95% CI] | seed 1 [95% CI] | "
              "ground truth [95% CI] | target | verdict |", "|---|---|---|---|---|---|---|---|---|"]
        for q in pairs + ([confirm] if confirm is not None and confirm.complete else []):
            label = q.cand.key + (" (confirmation)" if q is confirm else "")
            if not q.complete:
                L.append(f"| {label} | {q.samp.title} | {NOT_RUN} | | | | | | |")
                continue
            gv = goal_value(goal, q.reps)
            floor = mean_of([value(r, goal.variant, gv.metric, "floor") for r in q.reps])
            seeds = [entry_text(entry(r, goal.variant, gv.metric)) for r in q.reps]
            L.append(f"| {label} | {q.samp.title} | {fmt(floor)} | {fmt(gv.generated)} | {' | '.join(seeds)} | "
                     f"{entry_text(entry(q.reps[0], goal.variant, gv.metric, 'ceiling'))} | {fmt(gv.target)} | "
                     f"{met_text(gv)} |")
        L.append("")
    L += ["### Cost per candidate", "", "| candidate | steps | training loop s (seed 0 / 1) | train command s "
          "(seed 0 / 1) | training overrides (seed 0) |", "|---|---|---|---|---|"]
    for c in cands:
        loop, cmd = ship_train_seconds(p, log, c)
        L.append(f"| {c.key} | {c.steps} | {secs_text(loop)} | {secs_text(cmd)} | "
                 f"`{' '.join(ship_train_overrides(trained, base, c, SEEDS[0], extra))}` |")
    if note_text:
        L += ["", "### Reading the shipped model's figures", "", note_text]
    L += ["", "### Every try (ship study)", "", "| step | exit | wall s | load avg | finished (UTC) | command |",
          "|---|---|---|---|---|---|"]
    for rec in log.records:
        if rec["group"] == "ship":
            L.append(f"| {rec['name']} | {rec['rc']} | {rec['wall_s']:.1f} | {fmt(rec.get('load1'))} | "
                     f"{rec.get('finished_utc', '')} | `{repo_relative(rec['command'])}` |")
    L += ["", f"Re-run: `python bench/responsiveness_ablation.py --preset PRESET --ship {name} --ship-candidates "
          f"{','.join(c.key for c in cands)}` (resumable).", ""]
    return L


def sample30_name(q: Pair) -> str:
    return f"ship-sample30-{q.cand.key}-{q.samp.key}"


def kept_report_path(p: Paths, results: Path, preset: str, pair: Pair, seed: int) -> str:
    """The committed copy of a ship pair's report.json (see :func:`keep_eval_reports`), repository-relative."""
    src = ship_eval_dir(p, pair.cand, pair.samp, seed) / "report.json"
    return repo_relative(str(kept_reports_dir(results.resolve(), preset) / src.relative_to(p.work / "eval")))


def model_card(dest: Path, name: str, preset: str, arm: Arm, chosen: Pair, confirm: Pair | None, pairs: list[Pair],
               cfg: dict[str, Any], p: Paths, log: Log, train_cmd: str, note_text: str, results: Path) -> Path:
    """MODEL_CARD.md: the normal-music table first (this model: seed 0), silence settle, the goal table (mean of
    the seeds), what was tried, what stands in the way, files, the 30-s sampling time, use."""
    d, r, df = cfg["data"], cfg["render"], cfg["diffusion"]
    rep = chosen.reps[0]
    files = sorted(q for q in dest.rglob("*") if q.is_file() and not q.is_symlink() and q.name != "MODEL_CARD.md")
    n_normal = (rep["variants"].get("normal") or {}).get("n_clips")
    L = [f"# {name}", "",
         f"A tiny audio-conditioned latent diffusion model for Synesthete, trained on {device_name()} by "
         f"`python bench/responsiveness_ablation.py --preset {preset} --ship {name} --ship-candidates "
         f"{','.join(dict.fromkeys(q.cand.key for q in pairs))}` (issue 13 item 7). It turns any "
         f"audio file into a {r['resolution']}² px video at {r['fps']:g} fps: `python -m trainer sample --audio "
         "song.wav` uses it when no `--checkpoint` is given and `runs/diffusion/` does not exist.", "",
         f"**Quality, honestly:** a demonstration-size model: a {df['width']}-wide {df['depth']}-block denoiser "
         f"trained {chosen.cand.steps} steps on {d['train_shards'] * d['samples_per_shard']} procedural clips of "
         f"{d['clip_seconds']:g} s. Its pictures are blurry blobs in the visualizers' palettes; what it shows is "
         "whether the picture follows the audio. It settles in silence; on normal music it meets some of issue "
         "13's goals and misses others (table below).", "",
         teacher_line(), "",
         "## Recipe", "",
         f"Arm {arm.key} of the responsiveness ablation ({arm.title}), trained as candidate `{chosen.cand.key}` "
         f"({chosen.cand.title}) and sampled with {chosen.samp.title}, {r['fps']:g} fps, "
         f"{cfg['inference']['steps']} {cfg['inference']['sampler']} steps. This is seed 0 of the pair chosen by the "
         f"rule below; data: `datagen run` with the ablation's `{preset}` preset (timeline version 2), frame VAE "
         f"downsample {cfg['vae']['downsample']}, {cfg['vae']['steps']} steps (copy in `vae/`). Training command:", "",
         f"```\n{train_cmd}\n```", "",
         f"Its `config.yaml` is that run's with the sampling setting of the pair: `{' '.join(chosen.samp.overrides)}`.",
         "", "**How it was chosen.** " + SHIP_RULE, "",
         f"## Evaluation: normal music (`trainer eval`, this model)", "",
         f"{n_normal} normal-music val clips (music frames only: without labelled silence and the 0.5 s after it), "
         "95% bootstrap CIs over clips in brackets. *Floor* = the same metric for video generated from another "
         "clip's audio with the same style and noise (chance for retrieval); *ground truth* = the data's frames "
         f"(the ceiling). Command: `{repo_relative(log.last_ok(f'ship-{chosen.cand.key}_s{SEEDS[0]}-eval-{chosen.samp.key}')['command'])}`."
         if log.last_ok(f"ship-{chosen.cand.key}_s{SEEDS[0]}-eval-{chosen.samp.key}") else "", "",
         f"Raw report behind this table: `{kept_report_path(p, results, preset, chosen, SEEDS[0])}` (written with "
         "docs/RESULTS.md; the other seeds' and pairs' reports are beside it).", "",
         "| metric | floor (other audio) | generated | ground truth | n |", "|---|---|---|---|---|"]
    for mname, row in rep.get("variants", {}).get("normal", {}).get("metrics", {}).items():
        if not (row.get("generated") or {}).get("n"):
            continue  # a silence metric: no silence in normal clips' music frames
        L.append(f"| {mname} | {entry_text(row.get('floor'))} | {entry_text(row.get('generated'))} | "
                 f"{entry_text(row.get('ceiling'))} | {(row.get('generated') or {}).get('n')} |")
    sil = rep.get("variants", {}).get("silence", {}).get("metrics", {}).get("silence_settle_ratio") or {}
    L += ["", "## Silence clips", "",
          f"Silence-settle ratio (motion in labelled silence over motion in the music around it; goal ≤ 0.1): "
          f"{entry_text(sil.get('generated'))}, ground truth {entry_text(sil.get('ceiling'))}, floor "
          f"{entry_text(sil.get('floor'))} (n = {(sil.get('generated') or {}).get('n')}).", "",
          f"## Goal (issue 13): mean of {len(SEEDS)} seeds", "",
          f"Seed 0 is this model; seed 1 the same recipe trained and sampled with seed 1.", ""]
    L += ship_goal_rows(chosen.reps)
    if confirm is not None and confirm.complete:
        L += ["", f"The choice took the best of {sum(q.complete for q in pairs)} pairs, which flatters it: sampled "
              f"again with sampling seeds {CONFIRM_SEED_OFFSET} and {CONFIRM_SEED_OFFSET + 1} (same checkpoints and "
              f"clips) its headline score is {fmt(headline_score(confirm.reps))} (in the choice "
              f"{fmt(headline_score(chosen.reps))})."]
        for goal in GOALS:
            gv = goal_value(goal, confirm.reps)
            L.append(f"- {goal.title}: {fmt(gv.generated)} ({seeds_text(gv.per_seed)}), {met_text(gv)}")
    L += ["", "## What was tried", "",
          "Every pair measured (the full tables with CIs and every command: `docs/RESULTS.md`, section "
          f"\"Shipped model `models/{name}`\"):", ""]
    L += pairs_table(p, log, pairs, chosen)
    L += ["", PAIRS_NOTE]
    if note_text:
        L += ["", "## What stands in the way", "", note_text]
    L += ["", "## Files", "", "| file | bytes |", "|---|---|"]
    L += [f"| {q.relative_to(dest)} | {q.stat().st_size} |" for q in files]
    L += [f"| total | {sum(q.stat().st_size for q in files)} |", "", "## Use", ""]
    sample = log.last_ok(sample30_name(chosen))
    if sample:
        L += [f"Sampling 30 s of audio on {device_name()} took {sample['wall_s']:.1f} s (one command, start-up "
              f"included{load_text(sample).replace(' (', '; ').rstrip(')')}): `{repo_relative(sample['command'])}`.",
              ""]
    L += ["```\npython -m trainer sample --audio song.wav --out song.mp4            # this model (default)\n"
          f"python -m trainer sample --audio song.wav --checkpoint models/{name}\n```", ""]
    out = dest / "MODEL_CARD.md"
    out.write_text("\n".join(L), encoding="utf-8")
    return out


def ship(args: argparse.Namespace, p: Paths, runner: Runner, plan: dict[str, Any], results: Path,
         stills_dir: Path) -> None:
    """The ship study (module docstring): candidates x seeds, evals, the rule, packaging, card, RESULTS section."""
    arm, trained = ship_recipe(args.ship_arm, plan, args.tune)
    if trained.train is None:
        raise SystemExit(f"--ship-arm {args.ship_arm}: arm {trained.key} has no training recipe")
    base = sampling_of(arm.infer)
    unknown = [k for k in args.ship_candidates if k not in SHIP_CANDIDATES]
    if unknown:
        raise SystemExit(f"--ship-candidates: unknown {unknown} (known: {', '.join(SHIP_CANDIDATES)})")
    cands = [SHIP_CANDIDATES[k] for k in args.ship_candidates]
    jobs = 1 if runner.in_process else args.jobs
    run_chains(runner, [ship_chain(p, trained, base, c, s, args.ship_override) for c in cands for s in SEEDS], jobs)
    pairs = ship_pairs(p, cands, base)
    ranked = rank_pairs(pairs)
    chosen = confirm = None
    dest = Path(args.models) / args.ship
    note_file = Path(args.ship_notes) if args.ship_notes else REPO / "docs" / "results" / f"notes_ship_{args.preset}.md"
    note_text = note_file.read_text().strip() if note_file.is_file() else ""
    try:
        for q in ranked:
            run_chains(runner, [[ship_eval_step(p, q.cand, q.samp, s, confirm=True)] for s in SEEDS], jobs)
            package_model(ship_run_dir(p, q.cand, SEEDS[0]), dest, q.samp)
            import soundfile as sf

            song = p.work / "ship_test_30s.wav"
            if not song.is_file():
                sf.write(song, demo_song(30.0), 22050)
            video = p.work / f"ship_test_30s_{q.cand.key}_{q.samp.key}.mp4"
            if not runner.run(Step(sample30_name(q), [p.py, "-m", "trainer", "sample", "--audio", str(song),
                                                      "--checkpoint", str(dest), "--out", str(video), "--no-progress"],
                                   video, "ship")):
                break
            if runner.log.last_ok(sample30_name(q))["wall_s"] < MAX_SAMPLE30_S:
                chosen = q
                break
            print(f"[ablation] {q.key}: 30 s of audio took >= {MAX_SAMPLE30_S:.0f} s to sample; next pair",
                  file=sys.stderr)
        if chosen is not None:
            confirm = next(c for c in ship_pairs(p, [chosen.cand], base, confirm=True) if c.samp == chosen.samp)
            card = model_card(dest, args.ship, args.preset, arm, chosen, confirm, pairs,
                              yaml.safe_load((dest / "config.yaml").read_text())["config"], p, runner.log,
                              display_command(ship_chain(p, trained, base, chosen.cand, SEEDS[0],
                                                         args.ship_override)[0].argv), note_text, results)
            check_sizes(dest)
            print(f"[ablation] shipped {dest} ({card.name}): {chosen.key}", file=sys.stderr)
    finally:
        section = ship_section(p, runner.log, arm, trained, base, cands, pairs, chosen, confirm, args.ship, results,
                               stills_dir, note_text, args.ship_override)
        text = results.read_text() if results.is_file() else ""
        results.write_text(text.rstrip("\n") + "\n" + "\n".join(section), encoding="utf-8")
    if chosen is None:
        raise SystemExit("ship: no pair measured with both seeds (or none samples 30 s in time): nothing shipped")


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
    ap.add_argument("--jobs", type=int, default=1,
                    help="Ship study: run up to this many (candidate, seed) chains at once (default 1).")
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
        ship(args, p, runner, plan, results, stills)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
