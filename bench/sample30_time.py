"""Time `trainer sample` of 30 s of audio with a shipped model (the ship rule's "under 60 s on the CPU") and keep
the raw record beside the card's other reports:

    python bench/sample30_time.py --checkpoint models/synesthete-tiny \\
        --record docs/results/reports/synesthete-tiny/sample30.json

The song is the ship study's test song (bench/ablation/ship_study.py demo_song, 30 s at 22050 Hz, seed 0). The record
holds the command, its wall seconds (one command, start-up included), the load average before and after it, the CPU
and the commit it ran on (``-dirty`` with uncommitted changes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ablation.ship_study import demo_song  # noqa: E402
from ablation.writers import device_name  # noqa: E402
from shared.provenance import code_commit  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="models/synesthete-tiny")
    p.add_argument("--work", default="runs/sample30", help="Where the song and the video go (not committed).")
    p.add_argument("--record", required=True, help="The JSON record to write (committed beside the card).")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    song = work / "test_30s.wav"
    sf.write(song, demo_song(30.0), 22050)
    cmd = [sys.executable, "-m", "trainer", "sample", "--audio", str(song), "--checkpoint", args.checkpoint,
           "--out", str(work / f"{Path(args.checkpoint).name}.mp4"), "--no-progress"]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rec = {"command": " ".join(["python", *cmd[1:]]), "rc": r.returncode, "wall_s": round(wall, 2),
           "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
           "device": device_name(), "commit": code_commit(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
           "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(args.record).parent.mkdir(parents=True, exist_ok=True)
    Path(args.record).write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(rec, indent=1))
    return r.returncode


if __name__ == "__main__":
    raise SystemExit(main())
