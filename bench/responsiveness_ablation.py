"""Responsiveness ablation: does the generated video use its audio, and which ingredient makes it?

From one config (a preset, optionally with more ``--config`` layers) this runs, each step as its own
subprocess (logged with its exact command line and wall time)::

    datagen run ─► trainer vae ─► trainer cache-latents          (once)
      ─► trainer diffusion (arm k, equal steps) ─► trainer eval   (per arm)
      ─► docs/RESULTS.md (table from the report.json files, commands, device, wall times, stills)

Arms (postmortem: conditioning that is present but not necessary gets ignored):

1. baseline: no shuffle pressure, silence clips reweighted to 0, per-clip normalisation on;
2. + silence/dropout clips (0.3) and absolute loudness (normalisation off);
3. + shuffle pressure (weight 0.5, derange negatives);
4. + hard negatives and x0-space pressure;
5. arm 4's checkpoint evaluated with audio CFG 2 and 4 (guidance 1 is arm 4's own row; no training);
6. bootstrap curriculum: debug clips first (their share falls from 1 to 0.05 over half the steps),
   pressure as in arm 4 throughout.

Arms 1-4 and 6 are evaluated at guidance 1 (no CFG) so that arm 5 isolates CFG. The data is generated
with a generous debug share (so that arm 6's curriculum has debug clips to draw); every arm reweights
the loader to the same final mix (``data.reweight_variants=true``, debug 0.05), so arms differ only in
the knobs named above.

Resumable: a step whose output marker exists is skipped (an arm whose report.json exists is not
retrained); wall times of earlier runs are kept in WORK/commands.jsonl.

Usage::

    python bench/responsiveness_ablation.py --preset h100            # on one H100 (~25 min)
    nice -n 10 python bench/responsiveness_ablation.py --preset cpu  # tiny, 2-core CPU (~20 min)
    python bench/responsiveness_ablation.py --preset smoke --work /tmp/x --results /tmp/x/RESULTS.md

``--ship NAME --ship-arm K --ship-steps N`` then trains arm K's recipe for N steps on the same latents,
evaluates it, packages it as models/NAME (config.yaml, latest -> ckpt/step-N with EMA weights, vae/,
MODEL_CARD.md), times `trainer sample` on 30 s of audio with it, and checks the size limits.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- presets
# Each preset is one config tree (the sections of shared/config.py). The data is generated with a
# debug share of DATA_DEBUG_PROB; the arms then reweight the loader to a final debug share of 0.05.

_COMMON_RUN = {"num_workers": 0, "sample_every": 100000, "keep_checkpoints": 1, "executor": "processes"}

PRESETS: dict[str, dict[str, Any]] = {
    # CI: seconds per arm, proves the plumbing only (the numbers mean nothing).
    "smoke": {
        "data": {"sample_rate": 8000, "clip_seconds": 2.0, "train_shards": 2, "val_shards": 1, "samples_per_shard": 4,
                 "debug_set_size": 2, "audio_debug_mix_prob": 0.25, "audio_silence_mix_prob": 0.3},
        "timeline": {"n_bands": 4, "n_fft": 256},
        "render": {"resolution": 32, "fps": 8.0, "chunk_frames": 16, "max_layers": 1},
        "vae": {"downsample": 4, "base_channels": 8, "max_channels": 16, "batch_size": 8, "steps": 3,
                "warmup_steps": 0, "ema_decay": 0.5},
        "diffusion": {"snippet_frames": 4, "audio_context_frames": 1, "width": 16, "depth": 1, "heads": 2,
                      "patch_size": 2, "style_dim": 4, "batch_size": 4, "steps": 3, "warmup_steps": 0,
                      "ema_decay": 0.5, "compile": False, "val_every": 1000},
        "inference": {"steps": 2, "batch_snippets": 4},
        "eval": {"clips_per_variant": 2, "n_style_samples": 2, "bootstrap": 200},
        "run": {**_COMMON_RUN, "log_every": 1, "checkpoint_every": 1000, "workers": 1, "executor": "local",
                "device": "cpu"},
    },
    # The 2-core CPU box: ~20 minutes for the whole ablation; a real but tiny-scale table.
    "cpu": {
        "data": {"sample_rate": 16000, "clip_seconds": 4.0, "train_shards": 6, "val_shards": 2, "samples_per_shard": 8,
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
    # One H100 (16 cores): data and VAE once, each arm ~2-3 min of training; every command < 10 min.
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

FINAL_DEBUG_PROB = 0.05


@dataclass
class Arm:
    """One arm: its training overrides (None = reuses another arm's checkpoint) and eval guidances."""

    key: str
    title: str
    train: list[str] | None
    guidance: float = 1.0
    ckpt_of: str | None = None  # evaluate this other arm's checkpoint instead of training
    reuse_report_of: str | None = None  # identical evaluation already made by this arm


def arms(steps: int, tune: bool = False) -> list[Arm]:
    """The ablation arms for ``steps`` training steps each (overrides on top of the preset config).

    ``tune`` adds the tuning tries on arm 6's recipe: a stronger shuffle weight (1, 2) and a wider margin.
    """
    mix = ["data.reweight_variants=true", f"data.audio_debug_mix_prob={FINAL_DEBUG_PROB}",
           "data.audio_debug_mix_schedule_steps=0"]
    base = mix + ["data.audio_silence_mix_prob=0", "diffusion.audio_feature_normalize_per_clip=true",
                  "diffusion.audio_shuffle_loss_weight=0"]
    silence = mix + ["data.audio_silence_mix_prob=0.3", "diffusion.audio_feature_normalize_per_clip=false",
                     "diffusion.audio_shuffle_loss_weight=0"]
    pressure = silence[:-1] + ["diffusion.audio_shuffle_loss_weight=0.5", "diffusion.audio_shuffle_negatives=derange",
                               "diffusion.audio_shuffle_loss_space=pred"]
    hard = pressure[:-2] + ["diffusion.audio_shuffle_negatives=hard", "diffusion.audio_shuffle_loss_space=x0"]
    curriculum = [o for o in hard if not o.startswith("data.audio_debug_mix_schedule_steps")] + [
        f"data.audio_debug_mix_schedule_steps={max(1, steps // 2)}"]
    return [
        Arm("1", "baseline (no pressure, no silence clips, per-clip normalisation)", base),
        Arm("2", "+ silence/dropout clips 0.3, absolute loudness", silence),
        Arm("3", "+ shuffle pressure 0.5 (derange)", pressure),
        Arm("4", "+ hard negatives, x0-space pressure", hard),
        Arm("5 (g=1)", "arm 4 sampled with audio CFG 1", None, 1.0, ckpt_of="4", reuse_report_of="4"),
        Arm("5 (g=2)", "arm 4 sampled with audio CFG 2", None, 2.0, ckpt_of="4"),
        Arm("5 (g=4)", "arm 4 sampled with audio CFG 4", None, 4.0, ckpt_of="4"),
        Arm("6", "bootstrap curriculum (debug clips first), pressure as arm 4", curriculum),
    ] + ([
        Arm("T1 (w=1)", "arm 6 with shuffle weight 1", with_override(curriculum, "diffusion.audio_shuffle_loss_weight=1")),
        Arm("T2 (w=2)", "arm 6 with shuffle weight 2", with_override(curriculum, "diffusion.audio_shuffle_loss_weight=2")),
        Arm("T3 (m=0.2)", "arm 6 with margin 0.2", curriculum + ["diffusion.audio_shuffle_loss_margin=0.2"]),
    ] if tune else [])


def with_override(overrides: list[str], new: str) -> list[str]:
    """``overrides`` with the key of ``new`` replaced by ``new``."""
    key = new.split("=", 1)[0] + "="
    return [o for o in overrides if not o.startswith(key)] + [new]


def arm_slug(key: str) -> str:
    """'5 (g=2)' -> 'arm5_g2', 'T3 (m=0.2)' -> 'armT3' (a file-system name)."""
    if key.startswith("T"):
        return "arm" + key.split()[0]
    return "arm" + key.replace(" (g=", "_g").replace(")", "").replace(".", "p")


# ----------------------------------------------------------------------------- steps


@dataclass
class Step:
    name: str
    argv: list[str]
    marker: Path  # the step counts as done when this exists
    group: str    # "setup" or an arm key: wall times are summed per group


@dataclass
class Log:
    """WORK/commands.jsonl: one line per step run (name, command, wall time, exit status)."""

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


def run_step(step: Step, log: Log, env: dict[str, str], logs_dir: Path, verbose: bool) -> None:
    """Run one step as a subprocess unless its marker exists; stdout+stderr to WORK/logs/NAME.log."""
    if step.marker.exists():
        print(f"[ablation] skip {step.name} ({step.marker} exists)", file=sys.stderr)
        return
    logs_dir.mkdir(parents=True, exist_ok=True)
    out = logs_dir / f"{step.name}.log"
    print(f"[ablation] {step.name}: {display_command(step.argv)}", file=sys.stderr)
    t0 = time.perf_counter()
    with out.open("w", encoding="utf-8") as f:
        rc = subprocess.run(step.argv, cwd=REPO, env=env, stdout=None if verbose else f,
                            stderr=subprocess.STDOUT if not verbose else None).returncode
    wall = time.perf_counter() - t0
    log.add({"name": step.name, "group": step.group, "command": display_command(step.argv), "wall_s": round(wall, 2),
             "rc": rc, "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    print(f"[ablation] {step.name}: exit {rc} in {wall:.1f} s", file=sys.stderr)
    if rc != 0:
        tail = "".join(out.read_text(errors="replace").splitlines(keepends=True)[-20:]) if out.is_file() else ""
        raise SystemExit(f"ablation step {step.name!r} failed (exit {rc}); log {out}:\n{tail}")


def build_steps(py: str, work: Path, cfg_file: Path, steps: int, tune: bool = False) -> list[Step]:
    """Every command of the ablation, in order, with its done-marker."""
    data, vae, lat = work / "data", work / "vae", work / "latents"
    c = ["--config", str(cfg_file)]
    out = [
        Step("datagen", [py, "-m", "datagen", "run", *c, "--out", str(data), "--no-progress"],
             data / "summary.json", "setup"),
        Step("vae", [py, "-m", "trainer", "vae", *c, "--data", str(data), "--out", str(vae)],
             vae / "summary.json", "setup"),
        Step("cache-latents", [py, "-m", "trainer", "cache-latents", *c, "--data", str(data), "--vae", str(vae),
                               "--out", str(lat)], lat / "manifest.json", "setup"),
    ]
    for arm in arms(steps, tune):
        slug = arm_slug(arm.key)
        run = work / slug
        if arm.train is not None:
            out.append(Step(f"{slug}-train", [py, "-m", "trainer", "diffusion", *c, "--latents", str(lat),
                                              "--out", str(run), *arm.train],
                            run / "summary.json", arm.key))
        if arm.reuse_report_of is not None:
            continue
        ckpt = work / arm_slug(arm.ckpt_of) if arm.ckpt_of else run
        out.append(Step(f"{slug}-eval", [py, "-m", "trainer", "eval", *c, "--checkpoint", str(ckpt),
                                         "--data", str(data), "--out", str(work / "eval" / slug),
                                         f"inference.audio_guidance_scale={arm.guidance:g}"],
                        work / "eval" / slug / "report.json", arm.key))
    return out


# ----------------------------------------------------------------------------- results


TABLE = [  # (column title, report metric, has a ground-truth ceiling)
    ("loss gap", "val_loss_gap"),
    ("S (motion)", "output_sensitivity_motion"),
    ("settle ratio", "silence_settle_ratio"),
    ("AV-Align", "av_align"),
    ("loudness-motion Spearman", "loudness_motion_spearman"),
    ("style diversity", "style_diversity"),
]


def fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if isinstance(x, float) and not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}"


METRIC_VARIANT = {"silence_settle_ratio": "silence"}  # read from this variant; every other metric: normal music
KIND = {"generated": "generated", "ground_truth": "ceiling", "floor": "floor"}


def metric(rep: dict[str, Any], name: str, which: str = "generated") -> float | None:
    """One mean of a report.json (None when missing or not finite): normal music, except the silence-settle
    ratio (silence clips); ``val_loss_gap`` is the val loss with wrong audio (floor) minus with own audio."""
    if name == "val_loss_gap":
        good, bad = metric(rep, "val_loss"), metric(rep, "val_loss", "floor")
        return bad - good if which == "generated" and good is not None and bad is not None else None
    row = rep.get("variants", {}).get(METRIC_VARIANT.get(name, "normal"), {}).get("metrics", {}).get(name, {})
    v = (row.get(KIND[which]) or {}).get("mean")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def entry_text(e: dict[str, Any]) -> str:
    """A report entry as 'mean [lo, hi]' (n/a when undefined)."""
    if e.get("mean") is None:
        return "n/a"
    return fmt(e["mean"]) + (f" [{fmt(e['ci'][0])}, {fmt(e['ci'][1])}]" if e.get("ci") else "")


def cell(rep: dict[str, Any], name: str) -> str:
    """'generated (GT x)' or just 'generated' where the metric has no ground truth."""
    g, t = metric(rep, name), metric(rep, name, "ground_truth")
    return fmt(g) if t is None else f"{fmt(g)} (GT {fmt(t)})"


def goal_check(rep: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    """The issue's goal: RMS-motion >= 0.8 of GT, settle <= 0.2, S >= 2x the baseline's."""
    parts = []
    sp, spt = metric(rep, "loudness_motion_spearman"), metric(rep, "loudness_motion_spearman", "ground_truth")
    parts.append("✓" if sp is not None and spt and sp >= 0.8 * spt else "✗")
    st = metric(rep, "silence_settle_ratio")
    parts.append("✓" if st is not None and st <= 0.2 else "✗")
    s, s0 = metric(rep, "output_sensitivity_motion"), metric(baseline or {}, "output_sensitivity_motion")
    parts.append("✓" if s is not None and s0 is not None and s0 > 0 and s >= 2 * s0 else "✗")
    return " ".join(parts)


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


def changed(name: str, a: float, b: float, gt: float | None) -> str:
    """'better' / 'worse' / 'same' for one metric going from ``a`` to ``b`` (3 significant digits)."""
    if f"{a:.3g}" == f"{b:.3g}":
        return "same"
    if name == "silence_settle_ratio":
        return "better" if b < a else "worse"
    if name == "style_diversity" and gt is not None:  # toward the ground truth
        return "better" if abs(b - gt) < abs(a - gt) else "worse"
    return "better" if b > a else "worse"


def arm_text(arm: Arm, rep: dict[str, Any], prev: dict[str, Any] | None, prev_key: str | None) -> str:
    """Facts of one arm against the arm it builds on (computed, not interpreted)."""
    if prev is None:
        return "Reference row."
    if arm.reuse_report_of:
        return (f"Same checkpoint and same evaluation as arm {arm.reuse_report_of} (guidance 1): the row is arm "
                f"{arm.reuse_report_of}'s, repeated as the no-CFG point of the guidance sweep.")
    out = []
    for title, name in TABLE:
        a, b = metric(prev, name), metric(rep, name)
        if a is None or b is None:
            out.append(f"{title}: n/a")
            continue
        out.append(f"{title} {fmt(a)} → {fmt(b)} ({changed(name, a, b, metric(rep, name, 'ground_truth'))})")
    return f"Against arm {prev_key}: " + "; ".join(out) + "."


BUILDS_ON = {"1": None, "2": "1", "3": "2", "4": "3", "5 (g=1)": "4", "5 (g=2)": "4", "5 (g=4)": "4", "6": "4",
             "T1 (w=1)": "6", "T2 (w=2)": "6", "T3 (m=0.2)": "6"}


def write_results(path: Path, work: Path, preset: str, steps: int, log: Log, stills_dir: Path,
                  notes: Path | None, cfg_file: Path, total_wall: float, tune: bool = False) -> Path:
    """docs/RESULTS.md from the arms' report.json files and the command log."""
    reps: dict[str, dict[str, Any]] = {}
    arm_list = arms(steps, tune)
    for arm in arm_list:
        slug = arm_slug(arm.reuse_report_of or arm.key)
        pj = work / "eval" / slug / "report.json"
        if not pj.is_file():
            raise SystemExit(f"missing {pj}: run the ablation first")
        reps[arm.key] = json.loads(pj.read_text())
    walls: dict[str, dict[str, float]] = {}
    for rec in log.records:
        if rec["rc"] == 0:
            kind = "train" if rec["name"].endswith("-train") else "eval" if rec["name"].endswith("-eval") else rec["name"]
            walls.setdefault(rec["group"], {})[kind] = rec["wall_s"]
    rel = lambda p: os.path.relpath(p, path.parent)  # noqa: E731
    L = [f"# Responsiveness ablation ({preset} preset)", "",
         "Written by `bench/responsiveness_ablation.py` from the arms' `report.json` files (`trainer eval`). "
         "Every value is the generated video's, with the ground truth's (its ceiling) beside it where one exists. "
         "Loss gap = val loss with shuffled audio minus with true audio (> 0: the audio is used); S = output "
         "sensitivity of per-frame motion to swapping the audio; settle ratio = motion in silence / motion in "
         "music (lower is better); AV-Align and RMS-motion Spearman: higher is better; style diversity: toward "
         "the ground truth.", ""]
    if preset != "h100":
        L += [f"**This is the {preset}-scale table, not the GPU result.** No GPU was available when it was made; "
              "the H100 run (`python bench/responsiveness_ablation.py --preset h100`) is still to be made. At this "
              f"scale the models are tiny and trained for {steps} steps on a few dozen clips, evaluated on a "
              "handful of val clips: the numbers show the method's direction at best, and are noisy.", ""]
    cfg = yaml.safe_load(cfg_file.read_text())
    L += [f"- Device: {device_name()}",
          f"- Preset: `{preset}`: {cfg['render']['resolution']}² px at {cfg['render']['fps']:g} fps, "
          f"{cfg['data']['train_shards']}×{cfg['data']['samples_per_shard']} train clips of "
          f"{cfg['data']['clip_seconds']:g} s, VAE {cfg['vae']['steps']} steps, diffusion {steps} steps per arm "
          f"(width {cfg['diffusion']['width']}, depth {cfg['diffusion']['depth']}), eval on "
          f"{cfg['eval']['clips_per_variant']} val clips per variant with {cfg['inference']['steps']} sampling steps",
          f"- Total wall time of the commands: {total_wall / 60:.1f} min", "",
          "## Table", "",
          "Goal (issue 8) per arm as three marks: RMS-motion Spearman ≥ 0.8 × GT · settle ratio ≤ 0.2 · "
          "S ≥ 2 × baseline." + (" Rows T1-T3 are tuning tries on arm 6's recipe (stronger shuffle weight, wider "
                                  "margin), evaluated like arm 6 at guidance 1." if tune else ""), "",
          "| arm | recipe | guidance | " + " | ".join(t for t, _ in TABLE) + " | goal | train s | eval s |",
          "|---|---|---|" + "---|" * len(TABLE) + "---|---|---|"]
    for arm in arm_list:
        rep = reps[arm.key]
        w = walls.get(arm.reuse_report_of or arm.key, {})
        train_w = walls.get(arm.ckpt_of, {}).get("train") if arm.ckpt_of else w.get("train")
        L.append(f"| {arm.key} | {arm.title} | {arm.guidance:g} | " + " | ".join(cell(rep, n) for _, n in TABLE)
                 + f" | {goal_check(rep, reps['1'])} | {fmt(train_w)}{' (arm ' + arm.ckpt_of + ')' if arm.ckpt_of else ''}"
                 f" | {fmt(w.get('eval'))} |")
    vb = reps["1"].get("vae_diagnostic", {}).get("metrics", {})
    if vb:
        L += ["", "VAE bottleneck (the same for every arm: one VAE): the ground truth's metrics after a round trip "
              "through the VAE, beside the original frames'. This is the ceiling a latent model can reach.", "",
              "| metric | VAE round trip | original |", "|---|---|---|"]
        L += [f"| {k} | {fmt(v['output_own']['mean'])} | {fmt(v['input_own']['mean'])} |" for k, v in vb.items()]
    L += ["", "## Per arm", ""]
    note_text = notes.read_text().strip() if notes and notes.is_file() else ""
    for arm in arm_list:
        prev = BUILDS_ON[arm.key]
        L += [f"### Arm {arm.key}: {arm.title}", "",
              arm_text(arm, reps[arm.key], reps.get(prev) if prev else None, prev), ""]
        slug = arm_slug(arm.reuse_report_of or arm.key)
        vids = [v["path"] for v in reps[arm.key].get("videos", []) if v["kind"] == "side_by_side"]
        if vids:
            png = extract_still(work / "eval" / slug / vids[0], stills_dir / f"{slug}.png")
            if png is not None:
                L += [f"![arm {arm.key}: ground truth | generated (true audio) | generated (shuffled audio), "
                      f"4 frames top to bottom]({rel(png)})", ""]
    if note_text:
        L += ["## Reading the table", "", note_text, ""]
    L += ["## Commands", "", "Each step is a separate command (run from the repo root; wall times in seconds). "
          f"Config: `{repo_relative(str(cfg_file))}`, written by the script from the preset (copied below).", "", "```yaml", cfg_file.read_text().rstrip(), "```", "",
          "| step | wall s | command |", "|---|---|---|"]
    seen = set()
    for rec in reversed(log.records):
        if rec["rc"] == 0 and rec["name"] not in seen:
            seen.add(rec["name"])
    for rec in log.records:
        if rec["rc"] == 0 and rec["name"] in seen and rec["group"] != "ship":
            seen.discard(rec["name"])
            L.append(f"| {rec['name']} | {rec['wall_s']:.1f} | `{repo_relative(rec['command'])}` |")
    L += ["", "Re-run everything: `python bench/responsiveness_ablation.py --preset "
          f"{preset}{' --tune' if tune else ''}` (resumable: an arm whose report.json exists is skipped). The shipped "
          "model (models/synesthete-tiny, see its MODEL_CARD.md) came from the same data and VAE: `python "
          f"bench/responsiveness_ablation.py --preset {preset} --ship synesthete-tiny --ship-arm 6 --ship-steps 2000 "
          "--ship-override inference.audio_guidance_scale=2`.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- the shipped model


def ship_steps(py: str, work: Path, cfg_file: Path, arm_key: str, steps: int, extra: list[str]) -> list[Step]:
    """Train ``arm_key``'s recipe for ``steps`` steps (plus ``extra`` overrides) on the same latents, evaluate it."""
    arm = next((a for a in arms(steps) if a.key == arm_key and a.train is not None), None)
    if arm is None:
        raise SystemExit(f"--ship-arm {arm_key!r}: not a training arm (choose from 1, 2, 3, 4, 6)")
    c = ["--config", str(cfg_file)]
    run = work / "ship"
    return [
        Step("ship-train", [py, "-m", "trainer", "diffusion", *c, "--latents", str(work / "latents"), "--out", str(run),
                            *arm.train, f"diffusion.steps={steps}", *extra], run / "summary.json", "ship"),
        Step("ship-eval", [py, "-m", "trainer", "eval", *c, "--checkpoint", str(run), "--data", str(work / "data"),
                           "--out", str(work / "eval" / "ship"), *[e for e in extra if e.startswith("inference.")]],
             work / "eval" / "ship" / "report.json", "ship"),
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
    return sorted(p for p in dest.rglob("*") if p.is_file() and not p.is_symlink())


def model_card(dest: Path, name: str, preset: str, arm: Arm, steps: int, cfg: dict[str, Any], data_cfg: dict[str, Any],
               rep: dict[str, Any], log: Log, train_cmd: str) -> Path:
    """MODEL_CARD.md: data (as generated), recipe, steps, the eval table beside the ground truth, sizes, use."""
    d, r, df = data_cfg, cfg["render"], cfg["diffusion"]
    files = sorted(p for p in dest.rglob("*") if p.is_file() and not p.is_symlink() and p.name != "MODEL_CARD.md")
    total = sum(p.stat().st_size for p in files)
    wall = (log.last_ok("ship-train") or {}).get("wall_s")
    L = [f"# {name}", "",
         f"A tiny audio-conditioned latent diffusion model for Synesthete, trained on {device_name()} by "
         f"`bench/responsiveness_ablation.py --preset {preset} --ship {name}`. It turns any audio file into a "
         f"{r['resolution']}×{r['resolution']} px video at {r['fps']:g} fps: "
         "`python -m trainer sample --audio song.wav` uses it when no `--checkpoint` is given and "
         "`runs/diffusion/` does not exist.", "",
         "**Quality, honestly:** this is a demonstration-size model, not a production one: "
         f"{r['resolution']}² px, a {df['width']}-wide {df['depth']}-block denoiser trained {steps} steps on "
         f"{d['train_shards'] * d['samples_per_shard']} procedural clips. Its pictures are blurry blobs in the "
         "palette of the procedural visualizers; what it shows is whether motion follows the audio. The table "
         "below says how far it is from the ground truth's responsiveness.", "",
         "## Data", "",
         f"- {d['train_shards']}×{d['samples_per_shard']} train clips and {d.get('val_shards', 1)}×"
         f"{d['samples_per_shard']} val clips from `datagen run` (procedural music, {d['clip_seconds']:g} s each, "
         f"{d['sample_rate']} Hz; silence/dropout share {d['audio_silence_mix_prob']:g}, debug share "
         f"{d['audio_debug_mix_prob']:g} as generated), rendered by the GPU-shader visualizers at "
         f"{r['resolution']}² px.",
         f"- Frame VAE: downsample {cfg['vae']['downsample']}, {cfg['vae']['steps']} steps (copy in `vae/`).", "",
         "## Recipe", "",
         f"Arm {arm.key} of the ablation ({arm.title}), {steps} steps"
         + (f" ({wall / 60:.1f} min wall on the CPU)" if wall else "") + ":", "",
         f"```\n{train_cmd}\n```", "",
         "## Evaluation (`trainer eval` on the val clips, normal music)", "",
         "| metric | floor (other audio) | generated | ground truth | n |", "|---|---|---|---|---|"]
    normal = rep.get("variants", {}).get("normal", {})
    for mname, row in normal.get("metrics", {}).items():
        L.append(f"| {mname} | {entry_text(row['floor'])} | {entry_text(row['generated'])} | "
                 f"{entry_text(row['ceiling'])} | {row['generated']['n']} |")
    sp, spt = metric(rep, "loudness_motion_spearman"), metric(rep, "loudness_motion_spearman", "ground_truth")
    st = metric(rep, "silence_settle_ratio")
    L += ["", "Against the issue's goal (loudness-motion Spearman ≥ 0.8 × ground truth, settle ratio ≤ 0.2): "
          f"Spearman {fmt(sp)} vs GT {fmt(spt)} ({fmt(sp / spt if sp is not None and spt else None)} of it), "
          f"settle ratio {fmt(st)}. Style diversity {fmt(metric(rep, 'style_diversity'))} against the ground "
          f"truth's {fmt(metric(rep, 'style_diversity', 'ground_truth'))}: the model varies its look across "
          "clips much less than the data does (shuffle pressure spends the small model's capacity on motion).", "",
          "## Files", "", "| file | bytes |", "|---|---|"]
    L += [f"| {p.relative_to(dest)} | {p.stat().st_size} |" for p in files]
    sample = log.last_ok("ship-sample30")
    L += [f"| total | {total} |", "", "## Use", ""]
    if sample:
        L += [f"Sampling 30 s of audio on {device_name()} took {sample['wall_s']:.0f} s (one command, start-up "
              f"included): `{repo_relative(sample['command'])}`.", ""]
    L += [
          "```\npython -m trainer sample --audio song.wav --out song.mp4            # this model (default)\n"
          f"python -m trainer sample --audio song.wav --checkpoint models/{name} --guidance 2\n```", ""]
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
    files = [p for p in dest.rglob("*") if p.is_file() and not p.is_symlink()]
    big = [p for p in files if p.stat().st_size > per_file]
    if big or sum(p.stat().st_size for p in files) > total:
        raise SystemExit(f"shipped model too large: {[str(p) for p in big]} / total "
                         f"{sum(p.stat().st_size for p in files)} bytes")


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), required=True, help="Scale: h100, cpu, or smoke (CI).")
    p.add_argument("--config", action="append", default=[], metavar="FILE.yaml",
                   help="Extra YAML layers over the preset (repeatable).")
    p.add_argument("--work", default=None, metavar="DIR", help="Work dir (data, runs, evals, logs). "
                   "Default: runs/ablation-PRESET.")
    p.add_argument("--results", default=None, metavar="FILE.md",
                   help="Where to write the results. Default: docs/RESULTS.md (WORK/RESULTS.md for smoke).")
    p.add_argument("--stills", default=None, metavar="DIR",
                   help="Where the PNG stills go. Default: docs/results/PRESET (WORK/stills for smoke).")
    p.add_argument("--notes", default=None, metavar="FILE.md",
                   help="A hand-written reading of the table, included verbatim. Default: docs/results/notes_PRESET.md "
                        "when it exists.")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP_NUM_THREADS for the subprocesses (default: 1 for cpu/smoke, unset for h100).")
    p.add_argument("--tune", action="store_true",
                   help="Also train the tuning tries on arm 6's recipe (shuffle weight 1 and 2, margin 0.2).")
    p.add_argument("--ship", default=None, metavar="NAME",
                   help="After the ablation, train --ship-arm's recipe for --ship-steps and package it as models/NAME.")
    p.add_argument("--ship-arm", default="4", help="Arm whose recipe the shipped model uses (default: 4).")
    p.add_argument("--ship-steps", type=int, default=None, help="Training steps of the shipped model "
                   "(default: 3x the arms').")
    p.add_argument("--ship-override", action="append", default=[], metavar="section.key=value",
                   help="Extra overrides for the shipped model (repeatable; same model shape rules apply).")
    p.add_argument("--models", default=str(REPO / "models"), metavar="DIR", help="Where --ship writes NAME/.")
    p.add_argument("--verbose", action="store_true", help="Show the subprocesses' output instead of logging it.")
    return p.parse_args(argv)


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
    args = parse_args(argv)
    work = Path(args.work or REPO / "runs" / f"ablation-{args.preset}").resolve()
    smoke = args.preset == "smoke"
    results = Path(args.results) if args.results else (work / "RESULTS.md" if smoke else REPO / "docs" / "RESULTS.md")
    stills = Path(args.stills) if args.stills else (work / "stills" if smoke else REPO / "docs" / "results" / args.preset)
    notes = Path(args.notes) if args.notes else REPO / "docs" / "results" / f"notes_{args.preset}.md"
    cfg_file = resolved_config(args.preset, args.config, work / "ablation.yaml")
    steps = int(yaml.safe_load(cfg_file.read_text())["diffusion"]["steps"])
    env = dict(os.environ)
    threads = args.threads if args.threads is not None else (None if args.preset == "h100" else 1)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP waits slow small ops on shared cores
    env.setdefault("PYTHONPATH", str(REPO))
    log = Log(work / "commands.jsonl").load()
    t0 = time.perf_counter()
    for step in build_steps(sys.executable, work, cfg_file, steps, args.tune):
        run_step(step, log, env, work / "logs", args.verbose)
    total = sum(r["wall_s"] for r in {r["name"]: r for r in log.records if r["rc"] == 0 and r["group"] != "ship"}.values())
    out = write_results(results, work, args.preset, steps, log, stills, notes, cfg_file, total, args.tune)
    print(f"[ablation] wrote {out} ({time.perf_counter() - t0:.1f} s this run)", file=sys.stderr)
    if args.ship:
        ship_n = args.ship_steps or 3 * steps
        ship = ship_steps(sys.executable, work, cfg_file, args.ship_arm, ship_n, args.ship_override)
        for step in ship:
            run_step(step, log, env, work / "logs", args.verbose)
        dest = Path(args.models) / args.ship
        package_model(work / "ship", dest)
        import soundfile as sf

        song = work / "ship_test_30s.wav"
        sf.write(song, demo_song(30.0), 22050)
        run_step(Step("ship-sample30", [sys.executable, "-m", "trainer", "sample", "--audio", str(song), "--checkpoint",
                                        str(dest), "--out", str(work / "ship_test_30s.mp4"), "--no-progress"],
                      work / "ship_test_30s.mp4", "ship"), log, env, work / "logs", args.verbose)
        arm = next(a for a in arms(ship_n) if a.key == args.ship_arm)
        from trainer.checkpoint import read_run_config

        card = model_card(dest, args.ship, args.preset, arm, ship_n, read_run_config(work / "ship"),
                          yaml.safe_load(cfg_file.read_text())["data"],
                          json.loads((work / "eval" / "ship" / "report.json").read_text()), log,
                          display_command(ship[0].argv))
        check_sizes(dest)
        print(f"[ablation] shipped {dest} ({card.name})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
