"""Accuracy of the timeline's tempo estimate (``shared.timeline.estimate_beats``).

Two sets, each scored as exact (within 2% of the truth), octave error (within 2% of 1/2, 2, 1/3 or 3
times it) or other:

* click tracks: noise bursts on every beat, every 4th accented (the test suite's ``click_track``), every ``--step`` BPM
  from 60 to 180, at 16, 22.05 and 44.1 kHz;
* procedural music: ``--clips`` normal-variant clips from ``datagen.audio.synthesize_clip`` at the
  default config (8 s, 22.05 kHz, 70-170 BPM), seeds from ``--seed0`` on (seeds no test uses), truth =
  the clip's ``meta["tempo"]``.

    .venv/bin/python bench/tempo_accuracy.py [--step 1] [--clips 40] [--json out.json]

Prints one line per set and, with ``--json``, writes the per-item results.

Measured 2026-12-01 on the 2-core CPU box (``--step 1 --clips 150``, seeds 0.. and 900000..), the
timeline before and after TIMELINE_VERSION 2 (pulse-train precision x recall on a smoothed envelope):

=================================  ===========================  ==============================
set                                 version 1 (autocorrelation)  version 2
=================================  ===========================  ==============================
click tracks, 363 (121 x 3 rates)   306 exact, 57 octave         363 exact (worst error 0.27%)
procedural, seeds 0..149            112 exact, 24 octave, 14 x   105 exact, 45 octave
procedural, seeds 900000..900149    91 exact, 40 octave, 19 x    107 exact, 43 octave
=================================  ===========================  ==============================

(x: other errors, all estimates at 2/3 of the truth.) Version 1 halved fast tempi (128 -> 64 BPM and so on) and made 2:3
errors; version 2 makes none of either, but doubles more slow procedural songs (70-100 BPM, busy 8ths
and 16ths, read as 140-200 BPM): every version-2 miss is an exact doubling.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RATES = (16000, 22050, 44100)


def verdict(estimate: float, truth: float, tol: float = 0.02) -> str:
    """'exact', 'octave' (a factor 2, 3, 1/2 or 1/3 off) or 'other'."""
    if abs(estimate / truth - 1.0) <= tol:
        return "exact"
    if any(abs(estimate / (truth * f) - 1.0) <= tol for f in (0.5, 2.0, 1.0 / 3.0, 3.0)):
        return "octave"
    return "other"


def summarise(rows: list[dict]) -> str:
    n = len(rows)
    counts = {k: sum(r["verdict"] == k for r in rows) for k in ("exact", "octave", "other")}
    errs = [abs(r["estimate"] / r["truth"] - 1.0) for r in rows if r["verdict"] == "exact"]
    worst = f", worst exact error {100 * max(errs):.2f}%" if errs else ""
    return f"{counts['exact']}/{n} exact, {counts['octave']} octave errors, {counts['other']} other{worst}"


def click_grid(step: float) -> list[dict]:
    from shared.timeline import estimate_beats
    from tests.test_timeline import click_track  # the test suite's click track: one definition

    rows = []
    for sr in RATES:
        for bpm in np.arange(60.0, 180.0 + 1e-9, step):
            offset = float((bpm * 0.0137) % (60.0 / bpm))  # a phase that varies over the grid
            est = estimate_beats(click_track(float(bpm), 8.0, sr, offset_s=offset, accent_every=4), sr).bpm
            rows.append({"sr": sr, "truth": float(bpm), "estimate": est, "verdict": verdict(est, float(bpm))})
    return rows


def procedural(n: int, seed0: int) -> list[dict]:
    from datagen.audio import synthesize_clip
    from shared.config import Config
    from shared.timeline import estimate_beats

    cfg = Config()
    rows = []
    for seed in range(seed0, seed0 + n):
        clip = synthesize_clip(cfg, seed, "normal")
        truth = float(clip.meta["tempo"])
        est = estimate_beats(clip.wave, clip.sr).bpm
        rows.append({"seed": seed, "truth": truth, "estimate": est, "verdict": verdict(est, truth)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--step", type=float, default=1.0, help="BPM step of the click grid (default 1)")
    ap.add_argument("--clips", type=int, default=40, help="procedural clips (default 40)")
    ap.add_argument("--seed0", type=int, default=900000, help="first procedural seed (default 900000)")
    ap.add_argument("--json", type=Path, default=None, help="write the per-item results here")
    args = ap.parse_args()
    t0 = time.time()
    clicks = click_grid(args.step)
    print(f"click tracks 60-180 BPM every {args.step:g} at {', '.join(map(str, RATES))} Hz: {summarise(clicks)}")
    for sr in RATES:
        print(f"  {sr} Hz: {summarise([r for r in clicks if r['sr'] == sr])}")
    music = procedural(args.clips, args.seed0) if args.clips else []
    if music:
        print(f"procedural clips (seeds {args.seed0}..{args.seed0 + args.clips - 1}): {summarise(music)}")
        bad = [f"{r['truth']:.1f}->{r['estimate']:.1f}" for r in music if r["verdict"] != "exact"]
        if bad:
            print("  misses (truth->estimate): " + ", ".join(bad))
    print(f"({time.time() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"clicks": clicks, "procedural": music}, indent=1))


if __name__ == "__main__":
    main()
