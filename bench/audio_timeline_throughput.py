"""Time per clip to synthesize procedural audio and compute its timeline (issue 2's closing figure).

    OMP_NUM_THREADS=1 .venv/bin/python bench/audio_timeline_throughput.py [--clips 30]

Prints the median CPU time of `synthesize_clip` and of `compute_audio_timeline` per variant, for the
production config (8 s at 22.05 kHz, 24 fps) and configs/tiny.yaml, plus wall-time median and minimum.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from datagen.audio import synthesize_clip
from shared.config import build_config
from shared.timeline import compute_audio_timeline

ROOT = Path(__file__).resolve().parents[1]


def time_variant(cfg, variant: str, clips: int) -> dict[str, float]:
    synthesize_clip(cfg, 0, variant)  # warm caches (wavetables, FFT plans)
    synth, timeline, wall = [], [], []
    for seed in range(clips):
        w0, c0 = time.perf_counter(), time.process_time()
        clip = synthesize_clip(cfg, seed, variant)
        c1 = time.process_time()
        compute_audio_timeline(clip.wave, clip.sr, cfg.render.fps, cfg.timeline)
        c2, w2 = time.process_time(), time.perf_counter()
        synth.append(c1 - c0)
        timeline.append(c2 - c1)
        wall.append(w2 - w0)
    return {"synth_ms": 1e3 * float(np.median(synth)), "timeline_ms": 1e3 * float(np.median(timeline)),
            "wall_median_ms": 1e3 * float(np.median(wall)), "wall_min_ms": 1e3 * float(min(wall))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=30, help="clips timed per variant (default 30)")
    args = ap.parse_args()
    configs = (("full: 8 s @ 22.05 kHz, 24 fps", build_config()),
               ("tiny: 4 s @ 16 kHz, 8 fps", build_config([ROOT / "configs" / "tiny.yaml"])))
    print(f"machine: {platform.processor() or platform.machine()}, {platform.platform()}")
    print("| config | variant | synth CPU ms | timeline CPU ms | wall median ms | wall min ms |")
    print("|---|---|---:|---:|---:|---:|")
    for name, cfg in configs:
        for variant in ("normal", "silence", "debug"):
            r = time_variant(cfg, variant, args.clips)
            print(f"| {name} | {variant} | {r['synth_ms']:.1f} | {r['timeline_ms']:.1f} | "
                  f"{r['wall_median_ms']:.1f} | {r['wall_min_ms']:.1f} |")


if __name__ == "__main__":
    main()
