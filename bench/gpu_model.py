"""The GPU model call (issue 27, part 2's second call): data at 128² -> VAE -> latents -> diffusion -> eval,
then the weights, configs and eval report in one tar.

    bash bench/gpu_model.sh --out DIR            # on the GPU machine (bench/gpu_model.sh installs the carried wheels)
    bash bench/gpu_model.sh --out DIR --smoke    # tiny sizes on the CPU, a few minutes: proves the chain runs
    python bench/gpu_model.py --out DIR --plan   # print the steps' command lines and run nothing

Each step is one command line (``python -m datagen run``, ``python -m trainer vae | cache-latents |
diffusion | eval``) with configs/tiny.yaml and this call's overrides (FULL or SMOKE); datagen uses the
``processes`` executor (Ray is not carried). After each step a line lands in DIR/steps.jsonl, so a timeout
still returns what was done; the tar (DIR/model.tar: the VAE's and the denoiser's latest EMA weights as
float16, their state.json and config.yaml, the eval's report.json and report.md) is written as soon as the eval is; without an
eval (budget spent, a step failed) the trained weights are still tarred. Val shards are not carried back:
they are regenerated on the CPU from the config.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "tiny.yaml"

# The GPU model (issue 27): 128² from the GPU renderer, VAE base 32 / max 128 (1.57 M) and a denoiser of 3.05 M under
# 3.4 M (together <= 5 M: tests/test_gpu_model.py), the shipped recipe (silence share 0.3, hard x0 hinge 0.5: the config defaults and models/synesthete-tiny).
FULL = [
    "render.resolution=128", "render.fps=12.0",
    "data.train_shards=64", "data.val_shards=4", "data.samples_per_shard=32", "data.audio_silence_mix_prob=0.3",
    "vae.base_channels=32", "vae.max_channels=128", "vae.batch_size=32", "vae.steps=3000",
    "diffusion.width=160", "diffusion.depth=4", "diffusion.heads=4", "diffusion.batch_size=64",
    "diffusion.steps=6000", "diffusion.val_every=1000",
    "run.device=auto", "run.precision=auto", "run.num_workers=4", "run.checkpoint_every=1000",
]
# CPU smoke: the same chain at tiny size (eval needs >= 8 distinct normal-music val clips: 4 val shards of 8).
SMOKE = [
    "render.resolution=32", "render.fps=8.0", "data.clip_seconds=2.0",
    "data.train_shards=2", "data.val_shards=4", "data.samples_per_shard=8",
    "vae.steps=6", "vae.warmup_steps=2", "vae.batch_size=8",
    "diffusion.steps=6", "diffusion.warmup_steps=2", "diffusion.batch_size=8", "diffusion.val_every=6",
    "eval.clips_per_variant=2", "eval.batch_clips=8", "eval.bootstrap=50",
    "eval.write_videos=false", "inference.steps=2",
    "run.device=cpu", "run.workers=1", "run.log_every=2", "run.checkpoint_every=6",
]


@dataclass
class Step:
    """One command line of the chain and the file that proves it finished."""

    name: str
    argv: list[str]
    done: Path


def plan(work: Path, overrides: list[str], py: str = sys.executable, workers: int | None = None) -> list[Step]:
    """The chain's steps under ``work`` (data, vae, latents, diffusion, eval)."""
    c = ["--config", str(CONFIG), *overrides]
    data, vae, lat, dif, ev = (work / n for n in ("data", "vae", "latents", "diffusion", "eval"))
    w = [f"run.workers={workers}"] if workers else []
    return [
        Step("datagen", [py, "-m", "datagen", "run", *c, *w, "--executor", "processes", "--out", str(data),
                         "--no-progress"], data / "summary.json"),
        Step("vae", [py, "-m", "trainer", "vae", *c, "--data", str(data), "--out", str(vae)], vae / "summary.json"),
        Step("cache-latents", [py, "-m", "trainer", "cache-latents", *c, "--data", str(data), "--vae", str(vae),
                               "--out", str(lat)], lat / "manifest.json"),
        Step("diffusion", [py, "-m", "trainer", "diffusion", *c, "--latents", str(lat), "--out", str(dif)],
             dif / "summary.json"),
        Step("eval", [py, "-m", "trainer", "eval", *c, "--checkpoint", str(dif), "--data", str(data),
                      "--out", str(ev)], ev / "report.json"),
    ]


def append_jsonl(path: Path, entry: dict) -> None:
    """One result line, flushed at once (a timeout keeps what was written)."""
    with path.open("a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def run_step(step: Step, out: Path, timeout_s: float) -> dict:
    """Run one step with its output in DIR/logs/NAME.log; the entry says ok, seconds and the exit status."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with (logs / f"{step.name}.log").open("w") as log:
        try:
            rc = subprocess.run(step.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            rc = None
    ok = rc == 0 and step.done.exists()
    return {"name": step.name, "ok": ok, "rc": rc, "seconds": round(time.perf_counter() - t0, 2),
            "error": None if ok else ("timed out" if rc is None else f"exit {rc}; see logs/{step.name}.log")}


def checkpoint_files(run: Path) -> list[Path]:
    """A run's latest checkpoint's sampling weights and state (ema.safetensors, state.json: what models/
    ships; no training weights or optimizer state) and its config.yaml, summary.json; [] before a checkpoint."""
    latest = run / "latest"
    if not latest.exists():
        return []
    step_dir = latest.resolve()
    files = [step_dir / n for n in ("ema.safetensors", "state.json")]
    return [p for p in (*files, run / "config.yaml", run / "summary.json") if p.is_file()]


def fp16_copy(src: Path, dst: Path) -> None:
    """``src`` (safetensors) with its floating tensors cast to float16, metadata kept: half the bytes to carry."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(tensors, str(dst), metadata=meta)


def write_tar(work: Path, out: Path) -> dict:
    """DIR/model.tar: both latest checkpoints (EMA weights as float16 in ``ema.fp16.safetensors``: cast back to
    float32 as ``ema.safetensors`` when shipping), their configs, the eval report (whatever exists)."""
    members = checkpoint_files(work / "vae") + checkpoint_files(work / "diffusion")
    members += [p for p in (work / "eval" / "report.json", work / "eval" / "report.md") if p.is_file()]
    tmp = out / "model.tar.tmp"
    names = []
    with tarfile.open(tmp, "w") as tar:
        for p in members:
            arc = str(p.relative_to(work))
            if p.name == "ema.safetensors":
                half = out / "ema.fp16.tmp"
                fp16_copy(p, half)
                arc = arc.replace("ema.safetensors", "ema.fp16.safetensors")
                tar.add(half, arcname=arc)
                half.unlink()
            else:
                tar.add(p, arcname=arc)
            names.append(arc)
    tmp.replace(out / "model.tar")
    return {"files": names, "bytes": (out / "model.tar").stat().st_size}


def main(argv: list[str] | None = None) -> int:
    """Run the chain (or print it with --plan); 0 when every step and the tar succeeded."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="Results: steps.jsonl, logs/, model.tar.")
    ap.add_argument("--work", type=Path, default=None, help="Data and runs (default: OUT/work; never carried back).")
    ap.add_argument("--smoke", action="store_true", help="Tiny sizes on the CPU (CI and the rehearsal).")
    ap.add_argument("--plan", action="store_true", help="Print the steps' command lines; run nothing.")
    ap.add_argument("--workers", type=int, default=None, help="datagen render workers (default: one per CPU; --smoke: the config's 1).")
    ap.add_argument("--budget-s", type=float, default=340.0, help="Stop starting steps past this many seconds.")
    ap.add_argument("--steps", nargs="+", default=None, metavar="STEP",
                    help="Run only these steps (datagen vae cache-latents diffusion eval), e.g. the rehearsal without torch.")
    ap.add_argument("overrides", nargs="*", help="More section.key=value overrides, after the mode's.")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    work = (args.work or out / "work").resolve()
    # the full call renders with one worker per CPU, as the suite's datagen step does
    workers = args.workers or (None if args.smoke else os.cpu_count())
    steps = plan(work, [*(SMOKE if args.smoke else FULL), *args.overrides], workers=workers)
    if args.steps:
        unknown = set(args.steps) - {s.name for s in steps}
        if unknown:
            ap.error(f"unknown steps {sorted(unknown)}")
        steps = [s for s in steps if s.name in args.steps]
    if args.plan:
        for s in steps:
            print(" ".join(s.argv))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ok = True
    for step in steps:
        left = args.budget_s - (time.perf_counter() - t0)
        entry = run_step(step, out, left) if ok and left > 0 else {
            "name": step.name, "ok": None, "error": "an earlier step failed" if not ok else "time budget spent"}
        append_jsonl(out / "steps.jsonl", entry)
        print(json.dumps(entry), flush=True)
        ok = ok and bool(entry["ok"])
    tar = write_tar(work, out)
    append_jsonl(out / "steps.jsonl", {"name": "tar", "ok": bool(tar["files"]), **tar})
    print(f"gpu_model: {len(tar['files'])} files, {tar['bytes']} bytes in {out / 'model.tar'}", flush=True)
    trained = any(s.name in ("vae", "diffusion") for s in steps)  # --steps datagen alone tars nothing
    return 0 if ok and (tar["files"] or not trained) else 1


if __name__ == "__main__":
    sys.exit(main())
