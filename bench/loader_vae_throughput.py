"""Loader and VAE throughput: what `trainer vae` and `trainer diffusion` can be fed, and how fast the VAE trains.

Measures, on this machine:

* frame loader (pixel shards -> ``{"frame": (B, 3, H, W)}`` batches) in frames/s with 0/2/4 DataLoader workers;
* snippet loader (latent shards -> snippet batches) in snippets/s with 0/2/4 workers;
* the diffusion training step's consumption (snippets/s of ``diffusion_loss`` + backward + AdamW on a real
  snippet batch from the loader), and the loader / consumption ratio (goal >= 3);
* VAE training steps (forward, loss, backward, AdamW, EMA) in samples/s: tiny and default sizes, fp32 and bf16
  autocast on the CPU; bf16 eager and compiled on CUDA.

Shards are synthetic (smooth random frames as JPEG q90, random fp16 latents with a timeline of the right
channels) unless ``--pixels`` points at real pixel shards.

    python bench/loader_vae_throughput.py --write          # writes the "## Loader and VAE throughput" section
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared import shards as S  # noqa: E402
from shared.config import build_config  # noqa: E402
from shared.timeline import channel_names  # noqa: E402
from trainer import runtime as rt  # noqa: E402
from trainer.data import ShardDataset, make_loader, resolve_shards  # noqa: E402
from trainer.vae import FrameVAE, vae_loss  # noqa: E402
from shared.markdown import replace_section  # noqa: E402

SECTION = "## Loader and VAE throughput"
RESULTS = ROOT / "bench" / "RESULTS.md"


def smooth_frames(n: int, res: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (n, res, res, 3): low-frequency colour fields drifting over time (JPEG-realistic content)."""
    yy, xx = np.mgrid[0:res, 0:res].astype(np.float32) / res
    phase = rng.uniform(0, 2 * np.pi, (3, 4))
    out = np.empty((n, res, res, 3), np.uint8)
    for t in range(n):
        for c in range(3):
            v = np.sin(2 * np.pi * (xx * (1 + c) + 0.05 * t) + phase[c, 0]) * np.cos(2 * np.pi * yy * (2 - c * 0.5) + phase[c, 1])
            out[t, ..., c] = np.clip(127.5 + 120 * v, 0, 255).astype(np.uint8)
    return out


def write_synthetic_shards(root: Path, cfg, n_shards: int, clips: int, frames: int, res: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    names = channel_names(cfg.timeline)
    latent = cfg.render.resolution // cfg.vae.downsample
    pixels, latents = root / "pixels", root / "latents"
    base = smooth_frames(frames, res, rng)
    jpegs = [S.encode_jpeg(f, 90) for f in base]
    for shard in range(n_shards):
        with S.ShardWriter(pixels / "train" / S.shard_name(shard)) as wp, \
                S.ShardWriter(latents / "train" / S.shard_name(shard)) as wl:
            for i in range(clips):
                key = S.sample_key(shard, i)
                feats = rng.random((frames, len(names)), dtype=np.float32)
                meta = {"variant": "normal", "tempo": 120.0, "fps": cfg.render.fps, "n_frames": frames,
                        "timeline_channels": names, "key": key}
                wave = np.zeros(int(cfg.data.sample_rate * frames / cfg.render.fps), np.float32)
                wp.add_sample(key, S.pixel_members(wave, cfg.data.sample_rate, feats, jpegs, meta))
                lat = rng.standard_normal((frames, cfg.vae.latent_channels, latent, latent)).astype(np.float16)
                wl.add_sample(key, S.latent_members(lat, np.ones_like(lat), feats, meta))
    return pixels, latents


def loader_rate(ds: ShardDataset, batch: int, workers: int, batches: int) -> float:
    """Samples/s over ``batches`` batches after the first (worker start-up excluded)."""
    it = iter(make_loader(ds, batch, workers))
    next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batch * batches / (time.perf_counter() - t)


def vae_step_rate(cfg, device: torch.device, batch: int, steps: int, precision: str, compiled: bool) -> float:
    cfg = cfg.model_copy(deep=True)
    cfg.run.precision = precision
    torch.manual_seed(0)
    model = FrameVAE(cfg.vae).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ema = rt.EMA(model, 0.999)
    net = torch.compile(model) if compiled else model
    res = cfg.render.resolution
    x = torch.rand(batch, 3, res, res, device=device) * 2 - 1
    noise = torch.randn(batch, cfg.vae.latent_channels, res // cfg.vae.downsample, res // cfg.vae.downsample, device=device)

    def step() -> None:
        with rt.autocast(cfg.run, device):
            recon, mean, logvar = net(x, noise)
        loss, _ = vae_loss(recon, x, mean, logvar, cfg.vae)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)

    for _ in range(1 if not compiled else 3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)


def diffusion_consumption(cfg, latents: Path, device: torch.device, steps: int) -> float | None:
    """Snippets/s of full diffusion training steps on a real loader batch (None if the diffusion code is absent)."""
    try:
        from trainer.diffusion.losses import diffusion_loss
        from trainer.diffusion.model import Denoiser
        from trainer.diffusion.train import to_device
    except ImportError as e:
        print(f"diffusion step not measured: {e}", file=sys.stderr)
        return None
    ds = ShardDataset(resolve_shards(latents), cfg, "snippets", source="latents", shuffle=8)
    batch = to_device(next(iter(make_loader(ds, cfg.diffusion.batch_size, 0))), device)
    n_audio = batch["audio"].shape[-1]
    torch.manual_seed(0)
    model = Denoiser(cfg, cfg.vae.latent_channels, cfg.render.resolution // cfg.vae.downsample, n_audio).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(i: int) -> None:
        with rt.autocast(cfg.run, device):
            loss, _ = diffusion_loss(model, batch, cfg, torch.Generator().manual_seed(i))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(0)
    t = time.perf_counter()
    for i in range(steps):
        step(i + 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return cfg.diffusion.batch_size * steps / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pixels", default=None, help="Real pixel shards to time the frame loader on (default: synthetic).")
    p.add_argument("--resolution", type=int, default=256, help="Synthetic pixel frame size.")
    p.add_argument("--frames", type=int, default=64, help="Frames per synthetic clip.")
    p.add_argument("--workers", default="0,2,4", help="DataLoader worker counts to time.")
    p.add_argument("--batches", type=int, default=20, help="Timed batches per loader case.")
    p.add_argument("--vae-steps", type=int, default=3, help="Timed VAE steps per case.")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the main process.")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--write", action="store_true", help="Write the section into bench/RESULTS.md.")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = rt.pick_device(args.device)
    workers = [int(w) for w in args.workers.split(",")]
    tiny = build_config([ROOT / "configs" / "tiny.yaml"])
    full = build_config([], overrides=[f"render.resolution={args.resolution}"])
    result: dict = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs", "device": str(device),
                    "threads": args.threads, "loader": {}, "vae": [], "load_avg": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        pixels, latents = write_synthetic_shards(Path(tmp), tiny, 4, 8, args.frames, args.resolution)
        latent_cfg = tiny
        frame_src = args.pixels or str(pixels)
        for w in workers:
            ds = ShardDataset(resolve_shards(frame_src), full, "frames", frames_per_clip=4)
            result["loader"][f"frames_w{w}"] = round(loader_rate(ds, 32, w, args.batches), 1)
            ds = ShardDataset(resolve_shards(latents), latent_cfg, "snippets", source="latents", shuffle=64)
            result["loader"][f"snippets_w{w}"] = round(loader_rate(ds, 16, w, args.batches), 1)
            print(json.dumps(result["loader"]), flush=True)
        consumption = diffusion_consumption(latent_cfg, latents, device, 3)
        result["diffusion_consumption"] = None if consumption is None else round(consumption, 2)
        print(json.dumps({"diffusion_consumption": result["diffusion_consumption"]}), flush=True)
    if device.type == "cpu":  # (size, config, batch, precision, compiled); the default size is slow on a CPU
        cases = [("tiny", tiny, 32, "fp32", False), ("tiny", tiny, 32, "bf16", False), ("default", full, 4, "fp32", False)]
    else:
        cases = [(n, c, 64, "bf16", comp) for n, c in (("tiny", tiny), ("default", full)) for comp in (False, True)]
    for name, cfg, batch, prec, compiled in cases:
        rate = vae_step_rate(cfg, device, batch, args.vae_steps, prec, compiled)
        row = {"size": name, "resolution": cfg.render.resolution, "base_channels": cfg.vae.base_channels,
               "downsample": cfg.vae.downsample, "batch": batch, "precision": prec, "compiled": compiled,
               "samples_per_s": round(rate, 2)}
        result["vae"].append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps(result, indent=2))
    if args.write:
        write_results(result, args)
    return 0


def write_results(r: dict, args) -> None:
    L = r["loader"]
    ws = sorted({int(k.split("_w")[1]) for k in L})
    body = [
        SECTION, "",
        f"`python bench/loader_vae_throughput.py --write` on {r['machine']} ({r['device']}; {r['threads']} torch thread in "
        f"the main process; load average {r['load_avg']:.1f} from other jobs while it ran, so these are lower bounds). "
        f"Synthetic shards: 4 shards x 8 clips x {args.frames} frames; pixels {args.resolution}² JPEG q90; "
        "latents 4x16x16 fp16 (configs/tiny.yaml).", "",
        "| loader | " + " | ".join(f"{w} workers" for w in ws) + " |",
        "|---|" + "---:|" * len(ws),
        f"| frames/s ({args.resolution}², 4 frames decoded per clip read, batch 32) | "
        + " | ".join(str(L[f'frames_w{w}']) for w in ws) + " |",
        "| snippets/s (tiny latents, F=4, batch 16) | " + " | ".join(str(L[f'snippets_w{w}']) for w in ws) + " |",
        "",
    ]
    c = r.get("diffusion_consumption")
    if c:
        best = max(L[f"snippets_w{w}"] for w in ws)
        body += [f"Diffusion training step (tiny config, same machine, real loader batch) consumes {c} snippets/s; "
                 f"the snippet loader delivers {best} snippets/s at its best worker count: "
                 f"{best / c:.0f}x the consumption (goal >= 3x).", ""]
    body += ["| VAE train step | resolution | base ch | downsample | batch | precision | compiled | samples/s |",
             "|---|---:|---:|---:|---:|---|---|---:|"]
    for v in r["vae"]:
        body.append(f"| {v['size']} | {v['resolution']} | {v['base_channels']} | {v['downsample']} | {v['batch']} | "
                    f"{v['precision']} | {v['compiled']} | {v['samples_per_s']} |")
    body += ["", "The H100 rows (bf16, compiled vs eager; `--device cuda`) are still to be measured: no GPU was "
             "lent to this session.", ""] if r["device"] == "cpu" else [""]
    replace_section(RESULTS, SECTION, "\n".join(body))


if __name__ == "__main__":
    raise SystemExit(main())
