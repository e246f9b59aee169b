"""Sampling throughput: output video frames per second of wall time, the way `trainer sample` makes them.

    python bench/sample_throughput.py --size tiny --device cpu --seconds 20 --write
    python bench/sample_throughput.py --size full --device cuda --write       # the default model on a GPU

The model is built from the config with freshly initialised weights (speed does not depend on the weights):
the diffusion denoiser of the config's shape and its frame VAE. The measured path is the real one:
audio -> timeline -> autoregressive snippets (``inference.steps`` DDIM steps, audio CFG, cross-faded
overlaps) -> VAE decode -> h264/AAC mp4 through the shared writer. Two figures:

* ``single stream``: one audio file, ``trainer sample``'s path end to end (timeline and mp4 writing included);
* ``batched``: ``inference.batch_snippets`` independent streams denoised together (how ``trainer eval`` runs),
  frames of all streams per second, mp4 writing excluded;
* ``snippet latency``: in one stream, the wall time from a snippet's audio being available to its last frame
  decoded. A snippet can start once the previous one's latents exist (it is conditioned on them), so the
  stream is run without the decode overlap (``generate_frames(..., overlap=False)``: snippet j starts when
  j - 1's frames are out): the time between successive decoded snippets is then exactly one snippet's
  audio-available-to-decoded time. Reported: the median over the first ``--latency-snippets``, and the first
  snippet's time on its own (mp4 writing excluded); and the same median for the batched streams (one snippet
  of each of the B streams).
* ``throughput`` (the single-stream and batched frames/s) runs as ``trainer sample`` does: on CUDA with the
  decode of each snippet overlapped with the next one's denoising.

Goal on an H100 for the default full-size model with default steps: >= 24 frames/s (real time at 24 fps).
``--write`` replaces the ``## Sampling throughput`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
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

from shared.audio_io import write_wav  # noqa: E402
from shared.config import Config, build_config  # noqa: E402
from shared.timeline import channel_names, frame_count  # noqa: E402
from trainer.diffusion.model import Denoiser, count_parameters  # noqa: E402
from trainer.runtime import pick_device  # noqa: E402
from trainer.sample import (SampleSettings, SamplingModel, audio_conditioning, generate_frames,  # noqa: E402
                            sample_file, stream_spec, style_for_seed)
from trainer.vae.model import FrameVAE  # noqa: E402
from shared.markdown import replace_section  # noqa: E402

SECTION = "## Sampling throughput"


def bench_config(size: str, device: str, overrides: list[str]) -> Config:
    yaml = [ROOT / "configs" / "tiny.yaml"] if size == "tiny" else []
    return build_config(yaml, overrides=[f"run.device={device}"] + overrides)


def random_model(cfg: Config, device: torch.device) -> SamplingModel:
    """A SamplingModel of the config's shape with initial weights (for timing only)."""
    torch.manual_seed(0)
    size = cfg.render.resolution // cfg.vae.downsample
    c = cfg.vae.latent_channels
    den = Denoiser(cfg, c, size, len(channel_names(cfg.timeline))).to(device).eval()
    vae = FrameVAE(cfg.vae).to(device).eval()
    return SamplingModel(cfg=cfg, denoiser=den, vae=vae, latent_scale=1.0, latent_shape=(c, size, size), step=0,
                         step_dir=Path("(initial weights)"), device=device)


def test_audio(sr: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    env = np.repeat(rng.uniform(0.0, 1.0, int(seconds * 4) + 1), sr // 4)[: len(t)]
    return (0.3 * env * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores visible)"


def main(argv: list[str] | None = None) -> int:
    args, r = measure(argv)
    print(r)
    if args.write:
        write_results(r, Path(args.results))
    return 0


def snippet_times(chunks) -> tuple[list[float], int]:
    """For an iterator of decoded snippets (B, n, H, W, 3): the seconds from the start (or the previous snippet)
    to each one, and the frames of all streams together."""
    times, frames, t = [], 0, time.perf_counter()
    for chunk in chunks:
        now = time.perf_counter()
        times.append(now - t)
        frames += chunk.shape[0] * chunk.shape[1]
        t = now
    return times, frames


def measure(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict]:
    """Parse the command line and run the three measurements: (arguments, the result row)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=("tiny", "full"), default="full", help="configs/tiny.yaml or the defaults.")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seconds", type=float, default=20.0, help="Length of the test audio.")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
    p.add_argument("--latency-snippets", type=int, default=12, help="Snippets timed one by one in one stream.")
    p.add_argument("--write", action="store_true", help="Write the result into bench/RESULTS.md.")
    p.add_argument("--results", default=str(ROOT / "bench" / "RESULTS.md"))
    p.add_argument("overrides", nargs="*", help="section.key=value config overrides (e.g. inference.steps=10).")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    cfg = bench_config(args.size, args.device, args.overrides)
    device = pick_device(cfg.run.device)
    model = random_model(cfg, device)
    spec = stream_spec(model, SampleSettings())
    sr = cfg.data.sample_rate
    wave = test_audio(sr, args.seconds)
    n = frame_count(len(wave), sr, cfg.render.fps)

    # warm-up (allocator, kernels): one short stream
    win, sil, _ = audio_conditioning(wave[: sr * 2], sr, cfg, frame_count(sr * 2, sr, cfg.render.fps))
    for _ in generate_frames(model, win[None], sil[None], style_for_seed(cfg, 0), spec, 0):
        pass

    # single stream, end to end through the mp4 writer
    with tempfile.TemporaryDirectory() as tmp:
        audio_path = write_wav(Path(tmp) / "bench.wav", wave, sr)
        sync(device)
        t0 = time.perf_counter()
        summary = sample_file(audio_path, Path(tmp) / "bench.mp4", model, SampleSettings(), progress=False)
        sync(device)
        single = n / (time.perf_counter() - t0)
    assert summary["frames"] == n

    # snippet latency in one stream (no mp4 writer): the first snippet, then the median of the next ones
    win, sil, _ = audio_conditioning(wave, sr, cfg, n)
    stream = generate_frames(model, win[None], sil[None], style_for_seed(cfg, 0), spec, 0,
                             overlap=False)
    times, _ = snippet_times(itertools.islice(stream, args.latency_snippets))
    stream.close()
    first_ms, steady_ms = 1e3 * times[0], 1e3 * float(np.median(times[1:] if len(times) > 1 else times))

    # batched streams (as evaluation runs them)
    b = cfg.inference.batch_snippets
    style = torch.cat([style_for_seed(cfg, i) for i in range(b)])
    sync(device)
    t0 = time.perf_counter()
    batch_times, made = snippet_times(
        generate_frames(model, np.repeat(win[None], b, 0), np.repeat(sil[None], b, 0), style, spec, 0))  # overlapped
    sync(device)
    batched = made / (time.perf_counter() - t0)
    batched_ms = 1e3 * float(np.median(batch_times[1:] if len(batch_times) > 1 else batch_times))

    r = {"size": args.size, "hardware": hardware(device), "device": device.type,
         "precision": "bf16 autocast" if device.type == "cuda" and cfg.run.precision != "fp32" else "fp32",
         "compiled": bool(model.sampling_net().compile_mode),
         "params_M": round(count_parameters(model.denoiser) / 1e6, 2), "resolution": cfg.render.resolution,
         "fps": cfg.render.fps, "snippet": cfg.diffusion.snippet_frames, "overlap": spec.overlap, "steps": spec.steps,
         "sampler": spec.sampler, "guidance": spec.guidance, "seconds": args.seconds, "frames": n,
         "single": round(single, 1), "batch": b, "batched": round(batched, 1),
         "snippet_latency_ms": round(steady_ms, 1), "first_snippet_ms": round(first_ms, 1),
         "batched_snippet_latency_ms": round(batched_ms, 1),
         "latency_snippets": len(times)}
    return args, r


def write_results(r: dict, path: Path) -> None:
    """Replace this benchmark's section of the results file (other sections are left as they are)."""
    body = [
        SECTION, "",
        "`python bench/sample_throughput.py --size tiny|full --device cpu|cuda --seconds S --write`: output frames per "
        "second of wall time for `trainer sample`'s path (timeline, autoregressive snippets with audio CFG, VAE decode, "
        "mp4 writing), single stream; and for `inference.batch_snippets` streams denoised together (as `trainer eval` "
        "runs, mp4 writing excluded). Weights are initial ones: the speed does not depend on them.", "",
        "| size | hardware | precision | compiled | params | resolution | snippet / overlap | sampler x steps | CFG | audio | "
        "single stream frames/s | batched (B) frames/s | snippet latency ms (first) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {r['size']} | {r['hardware']} | {r['precision']} | {r['compiled']} | {r['params_M']} M | {r['resolution']}² @ {r['fps']:g} fps | "
        f"{r['snippet']} / {r['overlap']} | {r['sampler']} x {r['steps']} | {r['guidance']:g} | {r['seconds']:g} s "
        f"({r['frames']} frames) | {r['single']} | {r['batched']} ({r['batch']}) | {r['snippet_latency_ms']} "
        f"({r['first_snippet_ms']}) |",
        "",
    ]
    if r["device"] == "cpu":
        body += ["The CPU row is the tiny model on a 2-core machine shared with other jobs while it ran: an order of "
                 "magnitude, not a performance figure. The H100 figure for the default full-size model "
                 "(`python bench/sample_throughput.py --size full --device cuda --write`; goal >= 24 frames/s, real "
                 "time at 24 fps) is still to be measured: no GPU was available to this task.", ""]
    replace_section(path, SECTION, "\n".join(body))


if __name__ == "__main__":
    raise SystemExit(main())
