"""The prepared GPU suite: the CUDA smoke tests and every GPU throughput figure of the project in one command.

    bash bench/gpu_suite.sh --out DIR            # on the GPU machine (bench/gpu_prepare.sh first, elsewhere)
    bash bench/gpu_suite.sh --out DIR --smoke    # the same entry points at tiny size on the CPU (CI runs this)
    python bench/gpu_results.py DIR/results.jsonl --write bench/RESULTS.md   # the "## GPU suite" section

On this workplace's lent H200 (the device tool), after ``bash bench/gpu_prepare.sh`` here: run
``set -o pipefail; bash bench/gpu_suite.sh --out $OUT 2>&1 | tee $OUT/suite.log`` with ``carry`` = [".whl", ".gl"]
and a timeout of about 420 s (four files come back: results.jsonl, summary.json, RESULTS_section.md, suite.log).

Steps, in order (each is skipped once ``--budget-s`` is spent, so the command ends in time):

* ``machine``: the GPU as nvidia-smi names it, driver, memory; torch, CUDA, Python, CPUs, load;
* ``selftest``: ``trainer selftest`` (compilers, imports, a compiled tiny denoiser against the eager one;
  with ``aot_eager`` instead of TorchInductor in the smoke run);
* ``bf16``: a tiny denoiser's forward and backward under bf16 autocast against fp32 (:data:`BF16_TOLERANCE`);
* ``ddp``: one training step through DistributedDataParallel in a 1-process NCCL group (gloo on the CPU),
  gradients against the same step without DDP (:data:`DDP_TOLERANCE`);
* ``resume``: ``trainer diffusion``'s loop, 4 steps straight against 2 + resume + 2, on the device; SDPA's
  backward is not deterministic on CUDA, so the resumed run is compared within :data:`RESUME_TOLERANCE`
  (losses relative to the loss, weights relative to the update of those 2 steps);
* ``train``: bench/train_throughput.py at the full preset (the schema defaults; the shuffle pass included),
  MFU over the measured 8192³ bf16 matmul and over the datasheet's dense bf16 peak, peak memory;
* ``sample``: bench/sample_throughput.py at the full preset (256²): frames/s in one stream and batched,
  snippet latency;
* ``render``: bench/render_throughput.py at 256²: the EGL render limit per primitive, one process;
* ``datagen``: bench/datagen_throughput.py at 256²: ``datagen run`` (processes executor, one worker per CPU)
  into shards against the render-only and JPEG-only limits of the same processes;
* ``sampling_paths``: a tiny sampler's CUDA paths against the plain ones, last (it only runs when budget is left):
  the decode overlapped on a side stream against the sequential decode (the same frames, exactly), and the
  CUDA-graph compiled per-step denoise (``inference.compile``) against eager (:data:`SAMPLE_COMPILE_TOLERANCE`).

Each result is appended to DIR/results.jsonl the moment it exists (one JSON object per step: name, ok,
seconds, result or error with its traceback) and DIR/summary.json is rewritten after every step; at the
end DIR/RESULTS_section.md holds the section bench/gpu_results.py writes. Exit 0 when every step that ran
passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from shared.fsutil import atomic_write_json, atomic_write_text  # noqa: E402

# bf16 operands carry 8 bits of mantissa (~4e-3 per rounding); through a few layers the output moves ~1e-2.
BF16_TOLERANCE = 5e-2  # max |bf16 - fp32| / max |fp32|
# DDP in a world of one averages each gradient over one rank: the same gradients, up to the order of the
# bucketed copies (exact on the CPU) and, on CUDA, SDPA's non-deterministic backward.
DDP_TOLERANCE = 1e-2  # max |g_ddp - g| / max |g| over all parameters
# Resume: losses of the resumed steps against the straight run, relative to the loss; final weights,
# ||w_resumed - w_straight|| relative to ||w_straight(4) - w(2)|| (what the last 2 steps moved them).
RESUME_TOLERANCE = {"loss": 1e-2, "weights": 5e-2}
# Sampling paths: the CUDA-graph compiled per-step denoise fuses bf16 ops differently from eager, and the difference
# grows over the DDIM steps and the autoregressive snippets; mean |frame difference| in uint8 levels.
SAMPLE_COMPILE_TOLERANCE = 3.0
# The decode on a side stream runs the same kernels as the sequential one: the frames must agree exactly.
TINY_MODEL = ["diffusion.snippet_frames=2", "diffusion.audio_context_frames=1", "diffusion.width=32",
              "diffusion.depth=1", "diffusion.heads=2", "diffusion.style_dim=4", "diffusion.batch_size=4",
              "diffusion.warmup_steps=2", "timeline.n_bands=4"]
LATENT_C, LATENT_HW = 4, 8


@dataclass
class Context:
    out: Path
    smoke: bool
    device: Any  # torch.device
    tmp: Path
    started: float = field(default_factory=time.time)
    compile_ok: bool = True  # False once the selftest's compiled forward failed: later steps then run eagerly


# --------------------------------------------------------------------------- the trainer's public API
# Everything this suite takes from the training loop, in one place (the loop's module may move).

def loop_api():
    from trainer import runtime as rt
    from trainer.diffusion.losses import diffusion_loss
    from trainer.diffusion.synthetic import n_audio_channels, synthetic_batch
    from trainer.diffusion.train import param_groups, train
    from trainer.loop import to_device

    return rt, diffusion_loss, synthetic_batch, n_audio_channels, rt.step_generator, param_groups, to_device, train


def tiny_config(device: Any, *extra: str):
    from shared.config import build_config

    return build_config([], overrides=TINY_MODEL + [f"run.device={device.type}", *extra])


# ------------------------------------------------------------------------------------------- steps


def step_machine(ctx: Context) -> dict:
    import torch

    r: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                         "cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2), "platform": platform.platform()}
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=60)
        r["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
        if q.returncode == 0 and q.stdout.strip():
            name, driver, mem, clock = [x.strip() for x in q.stdout.strip().splitlines()[0].split(",")]
            r.update(gpu=name, driver=driver, gpu_memory=mem, max_sm_clock=clock)
    if ctx.device.type == "cuda":
        r["torch_device_name"] = torch.cuda.get_device_name(ctx.device)
    r.setdefault("gpu", None)
    r["device"] = str(ctx.device)
    return r


def step_selftest(ctx: Context) -> dict:
    """``trainer selftest``'s checks, in this process (tests/test_selftest.py runs the command itself). The smoke
    run compiles with ``aot_eager`` (graph capture without TorchInductor's code generation), so that CI does not
    pay a cold inductor compile (30-60 s on 2 cores); the GPU run compiles with TorchInductor, as training does."""
    import io

    from trainer.commands.selftest import run_checks

    log = io.StringIO()
    checks = run_checks(ctx.device.type, out=log, backend="aot_eager" if ctx.smoke else "inductor")
    lines = log.getvalue().splitlines()
    ctx.compile_ok = all(c["ok"] for c in checks)
    if not ctx.compile_ok:
        raise RuntimeError("trainer selftest failed:\n" + "\n".join(lines) + "\n" + checks[-1]["traceback"])
    return {"lines": lines, "checks": checks}


def step_bf16(ctx: Context) -> dict:
    import torch

    from trainer.commands.selftest import tiny_denoiser_and_inputs

    model, (x, t, cond) = tiny_denoiser_and_inputs(ctx.device, seed=1)
    model.train()
    ref = model(x, t, cond)
    with torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16):
        out = model(x, t, cond)
        out_dtype = str(out.dtype).replace("torch.", "")
    out.float().square().mean().backward()
    grads_finite = all(torch.isfinite(p.grad).all().item() for p in model.parameters() if p.grad is not None)
    err = ((out.float() - ref).abs().max() / ref.abs().max()).item()
    r = {"relative_error": err, "tolerance": BF16_TOLERANCE, "output_dtype": out_dtype, "grads_finite": grads_finite}
    if not (err <= BF16_TOLERANCE and grads_finite and out_dtype == "bfloat16"):
        raise RuntimeError(f"bf16 autocast check failed: {r}")
    return r


def step_ddp(ctx: Context) -> dict:
    import torch
    import torch.distributed as td
    from torch.nn.parallel import DistributedDataParallel as DDP

    from trainer.diffusion.model import Denoiser

    rt, diffusion_loss, synthetic_batch, n_audio_channels, step_generator, param_groups, to_device, _ = loop_api()
    dev = ctx.device
    backend = "nccl" if dev.type == "cuda" else "gloo"
    # one process: an in-process store, no TCP port (a port picked free and bound later raced with other
    # processes' servers, and the rendezvous then waited on a foreign socket: a CI run hung here), and a bound on
    # any wait, so that a stuck collective costs a minute of the GPU call, not all of it
    td.init_process_group(backend, store=td.HashStore(), rank=0, world_size=1, timeout=timedelta(seconds=60),
                          **({"device_id": dev} if dev.type == "cuda" else {}))
    try:
        cfg = tiny_config(dev)
        torch.manual_seed(0)
        model = Denoiser(cfg, LATENT_C, LATENT_HW, n_audio_channels(cfg)).to(dev)
        with torch.no_grad():  # away from adaLN-Zero's all-zero output layer, so every gradient is non-zero
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        plain = copy.deepcopy(model)
        net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
        batch = to_device(synthetic_batch(cfg, cfg.diffusion.batch_size, LATENT_C, LATENT_HW,
                                          torch.Generator().manual_seed(0)), dev)
        losses = []
        for m in (net, plain):
            with rt.autocast(cfg.run, dev):
                loss, _ = diffusion_loss(m, batch, cfg, step_generator(cfg.run.seed, 0, 0))
            loss.backward()
            losses.append(loss.item())
        g_ddp = torch.cat([p.grad.flatten().float() for p in model.parameters()])
        g = torch.cat([p.grad.flatten().float() for p in plain.parameters()])
        err = ((g_ddp - g).abs().max() / g.abs().max()).item()
        opt = torch.optim.AdamW(param_groups(model, cfg.diffusion.weight_decay), lr=1e-3, fused=dev.type == "cuda")
        opt.step()  # the optimizer step DDP training takes (fused AdamW on CUDA)
        probe = torch.full((4,), 3.0, device=dev)
        td.all_reduce(probe)
        r = {"backend": td.get_backend(), "world_size": td.get_world_size(), "loss_ddp": losses[0], "loss": losses[1],
             "grad_relative_error": err, "tolerance": DDP_TOLERANCE, "all_reduce_ok": bool((probe == 3.0).all().item()),
             "weights_finite": all(torch.isfinite(p).all().item() for p in model.parameters())}
    finally:
        td.destroy_process_group()
    if not (err <= DDP_TOLERANCE and r["all_reduce_ok"] and r["weights_finite"]):
        raise RuntimeError(f"DDP step check failed: {r}")
    return r


def _train_losses(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {x["step"]: x["train/loss"] for x in lines if "train/loss" in x}


def step_resume(ctx: Context) -> dict:
    import torch

    from trainer import checkpoint as ckpt

    rt, _, synthetic_batch, n_audio_channels, _, _, _, train = loop_api()
    from shared.seeding import derive_seed

    common = ["run.checkpoint_every=2", "diffusion.val_every=1000", "run.log_every=1", "run.sample_every=1000",
              "diffusion.compile=false", "run.keep_checkpoints=3"]
    full, half = tiny_config(ctx.device, *common, "diffusion.steps=4"), tiny_config(ctx.device, *common, "diffusion.steps=2")

    def source(start: int):
        s = start
        while True:  # batches as a pure function of the step: a resumed run sees the same ones
            yield synthetic_batch(full, full.diffusion.batch_size, LATENT_C, LATENT_HW,
                                  torch.Generator().manual_seed(derive_seed(0, s)))
            s += 1

    val = [synthetic_batch(full, 4, LATENT_C, LATENT_HW, torch.Generator().manual_seed(99))]
    kw = dict(latent_channels=LATENT_C, latent_size=LATENT_HW, n_audio_channels=n_audio_channels(full), show_progress=False)
    a, b = ctx.tmp / "resume-straight", ctx.tmp / "resume-resumed"
    train(full, a, source, val, **kw)
    train(half, b, source, val, **kw)
    summary = train(full, b, source, val, **kw)
    la, lb = _train_losses(a), _train_losses(b)
    loss_err = max(abs(la[s] - lb[s]) / max(abs(la[s]), 1e-12) for s in (3, 4))
    wa = ckpt.load_checkpoint(a)[1]["model"]
    wb = ckpt.load_checkpoint(b)[1]["model"]
    w2 = ckpt.load_checkpoint(b / "ckpt" / ckpt.step_dir_name(2))[1]["model"]
    flat = lambda sd: torch.cat([v.flatten().double() for v in sd.values()])  # noqa: E731
    moved = (flat(wa) - flat(w2)).norm().item()
    weight_err = (flat(wa) - flat(wb)).norm().item() / max(moved, 1e-30)
    r = {"resumed_from": summary.get("resumed_from"), "loss_relative_error": loss_err, "weights_relative_error": weight_err,
         "tolerance": RESUME_TOLERANCE, "losses_straight": [la[s] for s in sorted(la)],
         "losses_resumed": [lb[s] for s in sorted(lb)], "device": summary.get("device")}
    if not (r["resumed_from"] == 2 and loss_err <= RESUME_TOLERANCE["loss"] and weight_err <= RESUME_TOLERANCE["weights"]):
        raise RuntimeError(f"resume check failed: {r}")
    return r


def step_train(ctx: Context) -> dict:
    import torch
    import train_throughput

    if ctx.smoke:
        argv = ["--size", "tiny", "--device", "cpu", "--batch", "2", "--steps", "1", "--warmup", "0",
                "diffusion.depth=1", "diffusion.width=32", "render.resolution=32"]
    else:
        # compiled as `trainer diffusion` runs it (diffusion.compile), unless the selftest found compiling broken
        argv = ["--size", "full", "--device", "cuda", "--steps", "12", "--warmup", "4",
                "--compile", "auto" if ctx.compile_ok else "off"]
    oom = None
    try:
        _, r = train_throughput.measure(argv)
    except torch.cuda.OutOfMemoryError as e:  # at the default batch: measure at half of it, and say so
        oom = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    if oom is not None:  # outside the except block, so that the failed step's tensors can be freed
        from shared.config import DiffusionConfig

        release_memory(ctx)
        argv = [*argv, "--batch", str(DiffusionConfig().batch_size // 2)]
        _, r = train_throughput.measure(argv)
        r["out_of_memory_at_default_batch"] = oom
    r["argv"] = argv
    return r


def step_sample(ctx: Context) -> dict:
    import sample_throughput

    if ctx.smoke:
        argv = ["--size", "tiny", "--device", "cpu", "--seconds", "1.5", "--latency-snippets", "3",
                "inference.steps=2", "inference.batch_snippets=2", "render.resolution=32"]
    else:
        argv = ["--size", "full", "--device", "cuda", "--seconds", "8"]
    _, r = sample_throughput.measure(argv)
    r["argv"] = argv
    return r


def step_render(ctx: Context) -> dict:
    import render_throughput

    argv = (["--frames", "4", "--resolutions", "32", "--primitives", "plasma"] if ctx.smoke
            else ["--frames", "96", "--resolutions", "256"])
    args, results, info = render_throughput.measure(argv)
    per = {f"{p}@{res}": {"draw_read": round(v[0], 1), "draw": round(v[1], 1)} for (p, res), v in results.items()}
    reads = [v[0] for v in results.values()]
    return {"argv": argv, "gl": info, "on_gpu": "llvmpipe" not in str(info.get("renderer")), "per_primitive": per,
            "mean_draw_read": round(sum(reads) / len(reads), 1),
            "min_draw_read": round(min(reads), 1), "max_draw_read": round(max(reads), 1)}


def step_datagen(ctx: Context) -> dict:
    import datagen_throughput

    if ctx.smoke:
        argv = ["--resolutions", "32", "--workers", "1", "--shards-per-worker", "1", "--samples-per-shard", "1",
                "--clip-seconds", "1", "--fps", "8"]
    else:
        argv = ["--resolutions", "256", "--workers", str(os.cpu_count() or 1), "--shards-per-worker", "2",
                "--samples-per-shard", "4", "--clip-seconds", "8", "--fps", "24"]
    _, rows, gl = datagen_throughput.measure(argv)
    return {"argv": argv, "gl": gl, "rows": rows}


def step_sampling_paths(ctx: Context) -> dict:
    import numpy as np
    import sample_throughput
    import torch

    from trainer.diffusion.sampler import SamplingNet
    from trainer.sample import SampleSettings, generate_frames, stream_spec, style_for_seed

    cfg = sample_throughput.bench_config("tiny", ctx.device.type, ["inference.steps=4", "render.resolution=32"])
    model = sample_throughput.random_model(cfg, ctx.device)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # away from adaLN-Zero's all-zero output layer, so the frames depend on every path
        for p in model.denoiser.parameters():
            p.add_(torch.randn(p.shape, generator=g).to(p.device) * 0.05)
    spec = stream_spec(model, SampleSettings())
    n = 3 * spec.snippet_frames
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((2, n, model.denoiser.window, model.denoiser.n_audio_channels)).astype(np.float32)
    silent = np.zeros((2, n), np.float32)
    style = torch.cat([style_for_seed(cfg, i) for i in range(2)])

    def frames(compile_mode, overlap: bool) -> np.ndarray:
        model._net = SamplingNet(model.denoiser, compile_mode)
        return np.concatenate(list(generate_frames(model, windows, silent, style, spec, 0, overlap=overlap)), axis=1)

    mode = "reduce-overhead" if ctx.device.type == "cuda" and ctx.compile_ok else None
    eager_seq, eager_overlap = frames(None, False), frames(None, True)
    compiled = frames(mode, True)
    overlap_diff = int(np.abs(eager_seq.astype(int) - eager_overlap).max())
    compile_diff = float(np.abs(eager_seq.astype(float) - compiled).mean())
    r = {"frames": list(eager_seq.shape), "compile_mode": mode, "overlap_max_abs_diff": overlap_diff,
         "compiled_mean_abs_diff": round(compile_diff, 3), "tolerance": SAMPLE_COMPILE_TOLERANCE,
         "frames_std": round(float(eager_seq.std()), 2)}
    if overlap_diff != 0 or compile_diff > SAMPLE_COMPILE_TOLERANCE:
        raise RuntimeError(f"sampling paths disagree: {r}")
    return r


STEPS: list[tuple[str, Callable[[Context], dict]]] = [
    ("machine", step_machine), ("selftest", step_selftest), ("bf16", step_bf16), ("ddp", step_ddp),
    ("resume", step_resume), ("train", step_train), ("sample", step_sample), ("render", step_render),
    ("datagen", step_datagen), ("sampling_paths", step_sampling_paths),
]


# ------------------------------------------------------------------------------------------ runner


def run_suite(ctx: Context, only: list[str] | None, budget_s: float, command: str) -> list[dict]:
    results_path, summary_path = ctx.out / "results.jsonl", ctx.out / "summary.json"
    results_path.write_text("")
    entries: list[dict] = []
    for name, fn in STEPS:
        if only and name not in only and name != "machine":
            continue
        elapsed = time.time() - ctx.started
        entry: dict[str, Any] = {"name": name, "mode": "smoke" if ctx.smoke else "gpu"}
        if elapsed > budget_s:
            entry.update(ok=None, skipped=f"time budget of {budget_s:g} s spent ({elapsed:.0f} s elapsed)", seconds=0.0)
        else:
            print(f"gpu_suite: {name} ...", flush=True)
            t0 = time.perf_counter()
            try:
                entry.update(ok=True, result=fn(ctx))
            except Exception as e:  # one failing step must not lose the others' figures
                entry.update(ok=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
            entry["seconds"] = round(time.perf_counter() - t0, 2)
            release_memory(ctx)
        if name == "machine":
            entry["command"] = command
        entries.append(entry)
        with results_path.open("a") as f:  # each result lands the moment it exists
            f.write(json.dumps(entry, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        status = "ok" if entry["ok"] else ("SKIPPED" if entry["ok"] is None else "FAILED: " + entry["error"])
        print(f"gpu_suite: {name}: {status} ({entry['seconds']:.1f} s)", flush=True)
        atomic_write_json(summary_path, summary_of(entries), indent=2, default=str)
    return entries


def release_memory(ctx: Context) -> None:
    """Give the next step the whole GPU: drop this step's tensors and the allocator's cached blocks."""
    import gc

    import torch

    gc.collect()
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()


def summary_of(entries: list[dict]) -> dict:
    from gpu_results import headline_figures

    return {"ok": all(e["ok"] is not False for e in entries), "steps": {e["name"]: e for e in entries},
            "figures": headline_figures(entries)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="Directory for results.jsonl, summary.json, RESULTS_section.md.")
    ap.add_argument("--smoke", action="store_true", help="Tiny sizes on the CPU: proves the suite runs (CI).")
    ap.add_argument("--only", nargs="+", choices=[n for n, _ in STEPS], help="Run only these steps (machine always runs).")
    ap.add_argument("--budget-s", type=float, default=230.0,
                    help="Steps that would start after this many seconds are skipped (and reported as skipped).")
    args = ap.parse_args(argv)

    import torch

    from trainer.runtime import pick_device

    if not args.smoke and not torch.cuda.is_available():
        print("error: torch sees no CUDA device here: the full suite needs a GPU (on a CPU machine run --smoke)",
              file=sys.stderr)
        return 2
    device = pick_device("cpu" if args.smoke else "cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    command = "bash bench/gpu_suite.sh --out DIR" + (" --smoke" if args.smoke else "") + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--smoke",) and not str(a) == str(args.out)
        and a != "--out")
    if args.smoke:
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp:
        ctx = Context(out=args.out, smoke=args.smoke, device=device, tmp=Path(tmp))
        entries = run_suite(ctx, args.only, args.budget_s, command.strip())
    from gpu_results import section_text

    atomic_write_text(args.out / "RESULTS_section.md", section_text(entries))
    failed = [e["name"] for e in entries if e["ok"] is False]
    print(f"gpu_suite: {len(entries) - len(failed)} of {len(entries)} steps passed or skipped"
          + (f"; FAILED: {', '.join(failed)}" if failed else "") + f"; results in {args.out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
