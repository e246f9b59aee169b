"""Live mode under a real-time pipe: click-to-motion latency, sustained speed, drops, drift and memory.

    python bench/live_latency.py --minutes 10 --write          # the figures of bench/RESULTS.md
    python bench/live_latency.py --minutes 1 --json out.json   # a shorter run

The path measured is `trainer live --audio -`'s: a writer thread plays a click track into an OS pipe at
real-time pace (48 kHz stereo 16-bit wav, as a live pipe carries), ffmpeg decodes it as it arrives
(:class:`trainer.live.sources.PipeSource`), the causal timeline and the scheduler run on the real clock,
and the model generates every snippet (degrading when behind). Figures:

* **click-to-motion latency**: for each click, wall time from the write of the click's first sample into
  the pipe to the emission of the first frame whose motion (mean absolute difference to the previous
  frame) rises above the silent baseline: above both median + 6 MAD of the motion in the 1.5 s before the
  click and a quarter of the way from that median to the response's peak (the peak within 1 s must be 5x
  the median, else the click counts as missed). Frames from ``future`` frames before the click's frame
  count: a model that sees ahead may respond early, and the latency is then measured to that frame.
* **sustained speed**: frames emitted per wall second over the run, against the frame rate (1.0 = real time);
* **dropped frames**, and the **drift**: mean pipeline latency (emission - arrival of the frame's audio)
  over the last tenth of the run minus over the first tenth, in frames (0: no accumulating delay);
* **memory**: resident set size sampled every 5 s; first, last and max.

The machine is shared: ``uptime`` load averages are recorded at the start and end beside the figures.
``--write`` replaces the ``## Live latency`` section of bench/RESULTS.md; ``--json`` writes the summary.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.markdown import replace_section  # noqa: E402
from shared.provenance import machine_description  # noqa: E402

SECTION = "## Live latency"
FEED_SR = 48000


def click_track(seconds: float, every_s: float, sr: int = FEED_SR, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Silence with a click (a 30 ms decaying noise burst at 0.8 peak) every ``every_s`` s, starting at 2 s.

    Returns (wave float32 [N], click start sample indices).
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    wave = np.zeros(n, np.float32)
    starts = np.arange(int(2.0 * sr), n - int(0.05 * sr), int(every_s * sr))
    k = int(0.03 * sr)
    burst = (rng.uniform(-1, 1, k) * np.exp(-np.arange(k) / (0.008 * sr)) * 0.8).astype(np.float32)
    for s in starts:
        wave[s:s + k] = burst
    return wave, starts


def wav_stream(wave: np.ndarray, sr: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.stack([wave, wave], axis=1), sr, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


class Feeder(threading.Thread):
    """Writes the wav into the pipe at real-time pace (20 ms blocks); records when each byte offset went in."""

    def __init__(self, fd: int, data: bytes, header: int, bytes_per_s: int):
        super().__init__(name="feeder", daemon=True)
        self.fd, self.data, self.header, self.bps = fd, data, header, bytes_per_s
        # (end byte offset, clock time after the write), preallocated: the bench's own records must not show up
        # as memory growth of the pipeline (at most one write per 20 ms tick; ticks run late, never early)
        cap = int(len(data) / bytes_per_s / 0.02) + 100
        self.ends, self.times, self.n = np.zeros(cap, np.int64), np.zeros(cap), 0

    def run(self) -> None:
        t0 = time.monotonic()
        sent = 0
        with os.fdopen(self.fd, "wb", buffering=0) as w:
            while sent < len(self.data):
                due = self.header + int((time.monotonic() - t0) * self.bps) // 4 * 4
                end = min(len(self.data), max(due, self.header))
                if end > sent:
                    w.write(self.data[sent:end])
                    self.ends[self.n], self.times[self.n] = end, time.monotonic()
                    self.n += 1
                    sent = end
                time.sleep(0.02)

    def time_of(self, offset: int) -> float:
        """Clock time at which byte ``offset`` had been written."""
        i = int(np.searchsorted(self.ends[:self.n], offset, side="right"))
        return float(self.times[i]) if i < self.n else float("nan")


class BenchSink:
    """Keeps per-frame timing and motion (not the frames), and samples memory; arrays preallocated for
    ``n_frames`` so the bench's records do not show up as memory growth of the pipeline."""

    def __init__(self, n_frames: int, seconds: float):
        self.emitted, self.latency, self.motion = np.zeros(n_frames), np.zeros(n_frames), np.zeros(n_frames)
        self.n = 0
        self._prev = None
        self.rss = np.full(int(seconds / 5.0) + 10, np.nan)
        self._n_rss, self._next_rss = 0, 0.0

    def on_audio(self, samples):
        pass

    def on_frames(self, first, frames, infos):
        for f, info in zip(frames, infos):
            x = f.astype(np.float32) / 255.0
            i = self.n
            self.motion[i] = 0.0 if self._prev is None else float(np.abs(x - self._prev).mean())
            self._prev = x
            self.emitted[i], self.latency[i] = info["emitted"], info["latency_s"]
            self.n += 1
        now = time.monotonic()
        if now >= self._next_rss and self._n_rss < len(self.rss):
            self.rss[self._n_rss] = rss_mb()
            self._n_rss += 1
            self._next_rss = now + 5.0

    def on_status(self, status):
        pass

    def close(self, summary):
        pass


def click_latencies(sink: BenchSink, feeder: Feeder, click_starts: np.ndarray, fps: float, future: int,
                    header: int) -> tuple[list[float], int, list[int]]:
    """Per measured click: the latency (s); the count of missed clicks; and the responding frame minus the
    click's own frame (0: the model moved on the frame holding the click, 1: on the next one, ...)."""
    motion = sink.motion[:sink.n]
    out, missed, offsets = [], 0, []
    for s in click_starts:
        t_click = s / FEED_SR
        frame = int(np.floor(t_click * fps))
        lo = max(1, frame - future)
        base = motion[max(1, frame - int(1.5 * fps)):lo]
        if len(base) < 3 or frame + int(fps) >= len(motion):
            continue
        med = float(np.median(base))
        mad = float(np.median(np.abs(base - med)))
        window = motion[lo:frame + int(fps)]
        peak = float(window.max())
        thr = max(med + 6 * mad, med + 0.25 * (peak - med))
        hits = np.nonzero(window > thr)[0]
        if peak < 5 * med + 1e-3 or not len(hits):
            missed += 1
            continue
        t = lo + int(hits[0])
        wrote = feeder.time_of(header + int(s) * 4)  # 16-bit stereo: 4 bytes a sample
        out.append(sink.emitted[t] - wrote)
        offsets.append(t - frame)
    return out, missed, offsets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="Length of the real-time run (default 10).")
    p.add_argument("--click-every", type=float, default=2.0, help="Seconds between clicks.")
    p.add_argument("--checkpoint", default=str(ROOT / "models" / "synesthete-tiny"))
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the box is shared).")
    p.add_argument("--json", default=None, metavar="FILE.json", help="Write the summary here.")
    p.add_argument("--write", action="store_true",
                   help="Keep the summary as bench/live_latency_<model>_<device>.json and rebuild the ## Live latency "
                        "section of bench/RESULTS.md from every such summary (one row each).")
    p.add_argument("--results", default=str(ROOT / "bench" / "RESULTS.md"))
    p.add_argument("--rewrite", action="store_true",
                   help="Only rebuild the RESULTS.md section from the kept summaries (no run).")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides of the checkpoint's config.")
    args = p.parse_args(argv)
    if args.rewrite:
        write_results(Path(args.results))
        return 0

    import torch

    from shared.config import build_config
    from trainer.live.features import live_timeline
    from trainer.live.generator import SnippetGenerator, live_spec
    from trainer.live.scheduler import LiveScheduler
    from trainer.live.sources import PipeSource, RealClock
    from trainer.runtime import pick_device
    from trainer.sample import load_sampling_model, style_from_prior

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    model = load_sampling_model(args.checkpoint, "cpu",
                                overrides=lambda saved: build_config(base=saved, overrides=args.overrides))
    model.to(pick_device(args.device))
    cfg = model.cfg
    fps, sr = cfg.render.fps, cfg.data.sample_rate
    wave, clicks = click_track(args.minutes * 60.0, args.click_every)
    data = wav_stream(wave, FEED_SR)
    header = len(data) - len(wave) * 4
    load_start, rss_start, machine = uptime(), rss_mb(), machine_description()

    clock = RealClock()
    r_fd, w_fd = os.pipe()
    feeder = Feeder(w_fd, data, header, FEED_SR * 4)
    with os.fdopen(r_fd, "rb", buffering=0) as r:
        source = PipeSource(r, sr, clock, name="the bench pipe")
        gen = SnippetGenerator(model, live_spec(model), style_from_prior(cfg.diffusion.style_dim, 0), 0)
        sink = BenchSink(int(len(wave) / FEED_SR * fps) + 1, len(wave) / FEED_SR + 60)
        tcfg, channels = live_timeline(cfg)  # as `trainer live` streams it for this model
        sched = LiveScheduler(source, gen, [sink], clock, sr, fps, tcfg, realtime=True, channels=channels,
                              min_steps=cfg.inference.live_min_steps, stall_s=cfg.inference.live_stall_s)
        feeder.start()
        t0 = time.monotonic()
        summary = sched.run()
        wall = time.monotonic() - t0
        source.close()
    feeder.join()

    lat, missed, offsets = click_latencies(sink, feeder, clicks, fps, gen.future, header)
    n = sink.n
    tenth = max(1, n // 10)
    lat_frames = sink.latency[:n]
    emitted = sink.emitted[:n]
    span = emitted[-1] - emitted[0] if n > 1 else float("nan")
    rss = [float(m) for m in sink.rss[:sink._n_rss]]
    r = {
        "checkpoint": str(args.checkpoint), "device": str(model.device), "threads": args.threads,
        "resolution": cfg.render.resolution, "fps": fps, "snippet_frames": gen.snippet_frames,
        "lookahead_frames": gen.lookahead, "steps_full": gen.full_steps, "minutes": args.minutes,
        "frames": summary["frames"], "dropped": summary["dropped"], "degraded_snippets": summary["degraded_snippets"],
        "steps_mean": round(summary["steps_mean"], 2), "wall_s": round(wall, 1),
        "sustained_x_realtime": round((n - 1) / span / fps, 4) if n > 1 else None,
        "pipeline_latency_mean_ms": round(1000 * float(lat_frames.mean()), 1),
        "pipeline_latency_p95_ms": round(1000 * float(np.percentile(lat_frames, 95)), 1),
        "drift_frames": round(float(lat_frames[-tenth:].mean() - lat_frames[:tenth].mean()) * fps, 3),
        "clicks": int(len(clicks)), "clicks_measured": len(lat), "clicks_missed": missed,
        "click_latency_mean_ms": round(1000 * float(np.mean(lat)), 1) if lat else None,
        "click_latency_p95_ms": round(1000 * float(np.percentile(lat, 95)), 1) if lat else None,
        "click_latency_max_ms": round(1000 * float(np.max(lat)), 1) if lat else None,
        # which frame moved first, relative to the click's own frame: {offset: clicks}
        "click_response_frames": {str(k): int(v) for k, v in zip(*np.unique(offsets, return_counts=True))},
        "rss_mb_start": round(rss_start, 1), "rss_mb_first": round(rss[0], 1) if rss else None,
        "rss_mb_last": round(rss[-1], 1) if rss else None, "rss_mb_max": round(max(rss), 1) if rss else None,
        "load_start": load_start, "load_end": uptime(), "machine": machine,
    }
    print(json.dumps(r, indent=2))
    if args.json:
        from shared.fsutil import atomic_write_json

        atomic_write_json(args.json, r, indent=2)
    if args.write:
        from shared.fsutil import atomic_write_json

        atomic_write_json(kept_summary(r), r, indent=2)
        write_results(Path(args.results))
    return 0


def kept_summary(r: dict) -> Path:
    """Where --write keeps a run's summary: bench/live_latency_<model>_<device>.json."""
    device = str(r["device"]).split(":")[0]
    return ROOT / "bench" / f"live_latency_{Path(r['checkpoint']).name}_{device}.json"


def table_row(r: dict) -> str:
    """One row of the results table; a summary kept from an earlier model names it in ``label``."""
    return (f"| {r['device']} ({r['threads']} thread) | {r.get('label') or Path(r['checkpoint']).name} | {r['resolution']}² @ {r['fps']:g} fps, "
           f"F={r['snippet_frames']}, look-ahead {r['lookahead_frames']} frames | {r['minutes']:g} min | "
           f"{r['sustained_x_realtime']} | {r['dropped']} / {r['frames']} | {r['steps_mean']} of {r['steps_full']} | "
           f"{r['click_latency_mean_ms']} / {r['click_latency_p95_ms']} ms ({r['clicks_measured']} clicks, "
           f"{r['clicks_missed']} missed) | {r['pipeline_latency_mean_ms']} ms | {r['drift_frames']} | "
           f"{r['rss_mb_first']} → {r['rss_mb_last']} (max {r['rss_mb_max']}) MB | {r['load_start'].split('load average:')[-1].strip()} → "
           f"{r['load_end'].split('load average:')[-1].strip()} |")


def write_results(path: Path) -> None:
    """Rebuild this benchmark's section of the results file from the kept summaries (other sections untouched)."""
    runs = [json.loads(p.read_text()) for p in sorted((ROOT / "bench").glob("live_latency_*.json"))]
    body = [
        SECTION, "",
        "`python bench/live_latency.py --minutes M --write`: `trainer live --audio -`'s path on the real clock, fed "
        "a click track (a click every 2 s in silence) through an OS pipe at real-time pace (48 kHz stereo wav, "
        "decoded by ffmpeg as it arrives). Click latency: from the click's first sample entering the pipe to the "
        "emission of the first frame whose motion rises above the silent baseline. Pipeline latency: emission minus "
        "arrival of each frame's own audio. Drift: last tenth minus first tenth of the pipeline latency, in frames. "
        "Sustained: frames emitted per wall second / fps.", "",
        *[f"Machine ({Path(r['checkpoint']).name}): {r['machine']}." for r in runs], "",
        "| device | model | shape | run | sustained (x real time) | dropped / frames | steps used (mean) | click "
        "latency mean / p95 | pipeline latency | drift (frames) | RSS first → last | load (uptime 1/5/15 min) start → end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[table_row(r) for r in runs], "",
        "Figures under load: the 2-core box was shared with 7 other jobs while these ran (load averages in each "
        "row), so a quiet machine does better. `models/synesthete-tiny` is not causal: each snippet of 4 frames "
        "waits for 4 - 1 + 2 = 5 frames (625 ms) of audio after its first frame, so its latency is bounded below "
        "by that look-ahead. `models/synesthete-tiny-live` (1-frame snippets, a 1-frame audio window: no "
        "look-ahead) waits for its own frame only, and pays for it in compute: one snippet (10 DDIM steps with "
        "CFG) per frame instead of per 4 frames. GPU rows at 256² are still to be measured: no device was drawn "
        "for this task.", "",
    ]
    replace_section(path, SECTION, "\n".join(body))


if __name__ == "__main__":
    raise SystemExit(main())
