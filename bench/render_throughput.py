"""Render throughput: frames/s per visualizer primitive at 128² and 256², with and without readback.

One Renderer per resolution (one EGL context), a synthetic music-like timeline, each primitive
timed alone (no augmentation). "draw" times the GL passes with a final glFinish; "draw+read"
includes the per-frame readback to uint8 numpy that `datagen run` pays.

    LP_NUM_THREADS=2 .venv/bin/python bench/render_throughput.py --frames 48 --write bench/RESULTS.md

The table (with the machine and command) replaces the ``## Render throughput`` section of the
results file, leaving other sections as they are.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.markdown import replace_section  # noqa: E402
from shared.provenance import machine_description  # noqa: E402

SECTION = "## Render throughput"


def synthetic_timeline(n: int, fps: float, n_bands: int = 8) -> tuple[np.ndarray, list[str]]:
    """A loud, beat-like timeline [n, C] in the shared.timeline channel order (no audio needed)."""
    from shared.config import TimelineConfig
    from shared.timeline import channel_names

    names = channel_names(TimelineConfig(n_bands=n_bands))
    t = np.arange(n) / fps
    beat = (t * 2.0) % 1.0
    f = np.zeros((n, len(names)), np.float32)
    col = {c: i for i, c in enumerate(names)}
    f[:, col["log_rms"]] = -12.0 - 12.0 * beat
    f[:, col["rms"]] = 10 ** (f[:, col["log_rms"]] / 20)
    for k in range(n_bands):
        f[:, col[f"band_{k:02d}"]] = 10 ** ((-18 - 3 * k - 10 * beat * (k % 3)) / 20)
    f[:, col["onset"]] = np.where(beat < 1.0 / (2 * fps) * 2, 20.0, 1.0)
    f[:, col["centroid"]] = 0.2 + 0.1 * np.sin(t)
    if "beat_phase" in col:
        f[:, col["beat_phase"]] = beat
        f[:, col["downbeat"]] = (t * 0.5 % 1.0) < 1.0 / fps
    return f, names


def measure_primitive(renderer, name: str, features, names, fps: float) -> tuple[float, float]:
    """(frames/s with readback, frames/s draw only) for one primitive."""
    from datagen.visual import single_plan

    plan = single_plan(name, 0)
    list(renderer.render(features[:2], names, plan, fps, 2))  # compile + warm up
    t0 = time.perf_counter()
    n = sum(len(c) for c in renderer.render(features, names, plan, fps, 64))
    read = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    n = renderer.draw_only(features, names, plan, fps)
    draw = n / (time.perf_counter() - t0)
    return read, draw


def main(argv: list[str] | None = None) -> int:
    args, results, info = measure(argv)
    text = section_text(args, results, info, argv)
    print(text)
    if args.write:
        replace_section(args.write, SECTION, text)
    return 0


def measure(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[tuple[str, int], tuple[float, float]], dict]:
    """Parse the command line and time every (primitive, resolution): (arguments, results, GL info)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=48, help="Frames per measurement.")
    ap.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--primitives", nargs="+", default=None, help="Default: all.")
    ap.add_argument("--gpu", type=int, default=None, help="GPU ordinal (EGL device of that GPU).")
    ap.add_argument("--write", type=Path, default=None, help="Markdown file whose render-throughput section to replace.")
    args = ap.parse_args(argv)

    from datagen.visual import PRIMITIVES, Renderer

    prims = args.primitives or list(PRIMITIVES)
    fps = 24.0
    features, names = synthetic_timeline(args.frames, fps)
    results: dict[tuple[str, int], tuple[float, float]] = {}
    info = None
    for res in args.resolutions:
        r = Renderer(res, gpu_index=args.gpu)
        info = r.info
        for p in prims:
            results[p, res] = measure_primitive(r, p, features, names, fps)
            print(f"{p:14s} {res:4d}²  draw+read {results[p, res][0]:8.1f} f/s   draw {results[p, res][1]:8.1f} f/s",
                  flush=True)
        r.release()
    return args, results, info


def section_text(args: argparse.Namespace, results: dict, info: dict, argv: list[str] | None) -> str:
    prims = list(dict.fromkeys(p for p, _ in results))
    head = "| primitive | " + " | ".join(f"{r}² draw+read | {r}² draw" for r in args.resolutions) + " |"
    rule = "|---|" + "---:|---:|" * len(args.resolutions)
    rows = [f"| {p} | " + " | ".join(f"{results[p, r][0]:.0f} | {results[p, r][1]:.0f}" for r in args.resolutions) + " |"
            for p in prims]
    cmd = " ".join(["LP_NUM_THREADS=" + os.environ["LP_NUM_THREADS"]] if "LP_NUM_THREADS" in os.environ else []) + \
        " .venv/bin/python bench/render_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([
        SECTION, "",
        f"Frames/s per primitive (one layer, no augmentation), {args.frames} frames per case, one process.",
        f"Machine: {machine_description()}. GL: {info['renderer']} ({info['version']}).",
        f"Command: `{cmd.strip()}`", "",
        head, rule, *rows, "",
    ])
    return text


if __name__ == "__main__":
    sys.exit(main())
