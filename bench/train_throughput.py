"""Diffusion training throughput: samples/s and model FLOP utilisation (MFU) of full training steps.

A training step here is what ``trainer diffusion`` does per step: ``diffusion_loss`` (with the shuffle
pressure's second, wrong-audio forward: 2B snippets through the network), backward, grad clipping, AdamW,
EMA. FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one such step (matmuls, convs
and attention, forward and backward). MFU = counted FLOPs per second over two peaks: a large matmul in the
step's precision measured in the same run (8192³ bf16 on CUDA), and on a GPU the datasheet's dense bf16
rate for the GPU torch names (:func:`datasheet_bf16_tflops`). Peak memory is the CUDA allocator's maximum
over the timed steps. Batches are synthetic and resident on the device, so the loader is out of the
measurement.

    python bench/train_throughput.py                       # CUDA: default full-size model, bf16, compiled
    python bench/train_throughput.py --size tiny --device cpu --steps 5 --write   # what runs on a CPU box

``--write`` replaces the ``## Diffusion training throughput`` section of bench/RESULTS.md with a result row.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.config import build_config  # noqa: E402
from trainer import runtime as rt  # noqa: E402
from trainer.diffusion.losses import diffusion_loss  # noqa: E402
from trainer.diffusion.model import Denoiser, count_parameters  # noqa: E402
from trainer.diffusion.synthetic import n_audio_channels, synthetic_batch  # noqa: E402
from trainer.diffusion.train import param_groups  # noqa: E402
from trainer.loop import to_device  # noqa: E402
from shared.markdown import replace_section  # noqa: E402

SECTION = "## Diffusion training throughput"
TINY = ["diffusion.width=64", "diffusion.depth=2", "diffusion.heads=4", "diffusion.snippet_frames=4",
        "diffusion.audio_context_frames=2", "diffusion.style_dim=8", "render.resolution=64", "vae.downsample=4"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> float:
    """Measured FLOP/s of an n x n x n matmul in ``dtype`` (best of ``reps`` timed batches)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    inner = 20 if device.type == "cuda" else 2
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        for _ in range(inner):
            a @ b
        sync(device)
        best = max(best, 2 * n ** 3 * inner / (time.perf_counter() - t))
    return best


# Dense (no sparsity) bf16 tensor-core TFLOP/s from NVIDIA's datasheets, keyed by a fragment of the name
# torch.cuda.get_device_name / nvidia-smi report; the most specific fragment wins ("H100 PCIe" before "H100").
DATASHEET_BF16_DENSE_TFLOPS = {
    "H200 NVL": 835.5, "H200": 989.5,              # H200 datasheet: 1,671 / 1,979 TFLOPS with sparsity
    "H100 NVL": 835.5, "H100 PCIe": 756.5, "H100": 989.5,  # H100 datasheet (SXM5 is "H100 80GB HBM3")
    "A100": 312.0, "L40S": 362.05, "L4": 121.0,
}


def datasheet_bf16_tflops(gpu_name: str) -> float | None:
    """The datasheet's dense bf16 peak for a GPU name such as 'NVIDIA H200' (None when the table lacks it)."""
    hits = [k for k in DATASHEET_BF16_DENSE_TFLOPS if k.lower() in gpu_name.lower()]
    return DATASHEET_BF16_DENSE_TFLOPS[max(hits, key=len)] if hits else None


def main(argv: list[str] | None = None) -> int:
    args, result = measure(argv)
    print(json.dumps(result, indent=2))
    if args.write:
        write_results(result, Path(args.results))
    return 0


def measure(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict]:
    """Parse the command line and run the measurement: (arguments, the result row)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("full", "tiny"), default="full", help="full: the schema defaults (configs/full.yaml).")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch", type=int, default=None, help="Snippets per step (default diffusion.batch_size).")
    p.add_argument("--steps", type=int, default=20, help="Timed steps.")
    p.add_argument("--warmup", type=int, default=5, help="Untimed steps first (compilation, autotuning).")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="auto: diffusion.compile on CUDA only.")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    p.add_argument("--write", action="store_true", help="Write the result into bench/RESULTS.md.")
    p.add_argument("--results", default=str(ROOT / "bench" / "RESULTS.md"), help="The results file --write updates.")
    p.add_argument("overrides", nargs="*", help="section.key=value config overrides.")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = build_config([], overrides=(TINY if args.size == "tiny" else []) + [f"run.device={args.device}"] + args.overrides)
    device = rt.pick_device(cfg.run.device)
    dtype = rt.autocast_dtype(cfg.run, device) or torch.float32
    batch_size = args.batch or cfg.diffusion.batch_size
    latent = cfg.render.resolution // cfg.vae.downsample
    c = cfg.vae.latent_channels

    torch.manual_seed(0)
    model = Denoiser(cfg, c, latent, n_audio_channels(cfg)).to(device)
    ema = rt.EMA(model, cfg.diffusion.ema_decay)
    opt = torch.optim.AdamW(param_groups(model, cfg.diffusion.weight_decay), lr=1e-4, fused=device.type == "cuda")
    compiled = args.compile == "on" or (args.compile == "auto" and cfg.diffusion.compile and device.type == "cuda")
    net = torch.compile(model) if compiled else model
    batch = to_device(synthetic_batch(cfg, batch_size, c, latent, torch.Generator().manual_seed(0)), device)

    rt.enable_tf32(device)  # as the loop does

    def step(i: int) -> None:  # the loop's step (trainer/loop.py) on a resident batch: draws on the device
        with rt.autocast(cfg.run, device):
            loss, _ = diffusion_loss(net, batch, cfg, rt.step_generator(cfg.run.seed, 0, i, device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.diffusion.grad_clip)
        opt.step()
        ema.update(model)

    # FLOPs of one step, counted on the eager model (the compiled graph does the same math)
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        with rt.autocast(cfg.run, device):
            loss, _ = diffusion_loss(model, batch, cfg, rt.step_generator(cfg.run.seed, 0, 0, device))
        loss.backward()
    flops_per_step = counter.get_total_flops()
    opt.zero_grad(set_to_none=True)

    for i in range(args.warmup):
        step(i)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    for i in range(args.steps):
        step(args.warmup + i)
    sync(device)
    seconds = time.perf_counter() - t

    peak = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 1024, 5 if device.type == "cuda" else 3)
    achieved = flops_per_step * args.steps / seconds
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    sheet = datasheet_bf16_tflops(gpu) if device.type == "cuda" and dtype == torch.bfloat16 else None
    peak_mem = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    result = {
        "size": args.size, "device": str(device), "hardware": gpu, "threads": torch.get_num_threads(),
        "precision": str(dtype).replace("torch.", ""), "compiled": compiled, "params_M": round(count_parameters(model) / 1e6, 2),
        "batch": batch_size, "snippet_frames": cfg.diffusion.snippet_frames, "latent": [c, latent, latent],
        "width": cfg.diffusion.width, "depth": cfg.diffusion.depth,
        "tokens_per_snippet": (cfg.diffusion.prev_frames + cfg.diffusion.snippet_frames)
        * (int(cfg.diffusion.cond_token_in_spatial) + (latent // cfg.diffusion.patch_size) ** 2),
        "gflop_per_step": round(flops_per_step / 1e9, 2), "steps": args.steps, "seconds": round(seconds, 3),
        "samples_per_s": round(batch_size * args.steps / seconds, 2), "achieved_tflops": round(achieved / 1e12, 4),
        "peak_tflops": round(peak / 1e12, 3), "mfu": round(achieved / peak, 4),
        "datasheet_tflops": sheet, "mfu_datasheet": round(achieved / (sheet * 1e12), 4) if sheet else None,
        "peak_memory_gib": round(peak_mem, 2) if peak_mem is not None else None,
    }
    return args, result


def write_results(r: dict, path: Path) -> None:
    """Replace this benchmark's section of the results file (other sections are left as they are)."""
    body = [
        SECTION, "",
        "`python bench/train_throughput.py [--size tiny --device cpu]`: full training steps of `trainer diffusion` "
        "(loss with the shuffle pressure's second forward, backward, clip, AdamW, EMA) on resident synthetic batches. "
        "MFU = FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` per second over a matmul peak measured "
        "in the same run and precision (and, on a GPU, over the datasheet's dense bf16 peak).", "",
        "| size | hardware | precision | compiled | params | batch x frames | tokens/snippet | GFLOP/step | samples/s | "
        "achieved TFLOP/s | peak TFLOP/s | MFU | datasheet TFLOP/s | MFU (datasheet) | peak memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {r['size']} | {r['hardware']} ({r['device']}, torch threads={r['threads']}) | {r['precision']} | {r['compiled']} | "
        f"{r['params_M']} M | {r['batch']} x {r['snippet_frames']} | {r['tokens_per_snippet']} | {r['gflop_per_step']} | "
        f"{r['samples_per_s']} | {r['achieved_tflops']} | {r['peak_tflops']} | {r['mfu'] * 100:.1f}% | "
        f"{r['datasheet_tflops'] or '-'} | {f'{r_ds * 100:.1f}%' if (r_ds := r['mfu_datasheet']) else '-'} | "
        f"{str(r['peak_memory_gib']) + ' GiB' if r['peak_memory_gib'] is not None else '-'} |",
        "",
    ]
    if r["device"] == "cpu":
        body += ["CPU rows are a smoke test of the benchmark at tiny size (fp32, on a 2-core machine shared with other "
                 "jobs while it ran), not a performance figure: tiny widths are dominated by per-op overhead.", "",
                 "The H100 figures for the default full-size model (`python bench/train_throughput.py` on CUDA: bf16, "
                 "compiled) are still to be measured: no GPU was available when this was written. Goal: >= 45% MFU "
                 "(a plain compiled DiT-B/2 reaches 46% of a measured 788 TFLOP/s bf16 peak on an H100).", ""]
    replace_section(path, SECTION, "\n".join(body))


if __name__ == "__main__":
    raise SystemExit(main())
