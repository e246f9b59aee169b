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
                    header: int) -> tuple[list[float], int, list[int], list[float]]:
    """Per measured click: the latency (s); the count of missed clicks; the responding frame minus the click's own
    frame (0: the model moved on the frame holding the click, 1: on the next one, ...); and the frame wait (s),
    from the click to the end of its frame (the audio a causal frame must have before it can start)."""
    motion = sink.motion[:sink.n]
    out, missed, offsets, waits = [], 0, [], []
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
        waits.append((frame + 1) / fps - t_click)
    return out, missed, offsets, waits


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
    p.add_argument("--profile", action="store_true",
                   help="Only time the stages on the frame path (no real-time run): one snippet's generation, the "
                        "streaming timeline per 20 ms block with and without the causal beat tracker, ffmpeg's decode "
                        "lag on a real-time pipe; prints JSON (with --write: kept as bench/live_profile_<model>_cpu.json "
                        "and shown in RESULTS.md).")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides of the checkpoint's config.")
    args = p.parse_args(argv)
    if args.rewrite:
        write_results(Path(args.results))
        return 0
    if args.profile:
        prof = profile(args)
        print(json.dumps(prof, indent=2))
        if args.write:
            from shared.fsutil import atomic_write_json

            atomic_write_json(ROOT / "bench" / f"live_profile_{Path(args.checkpoint).name}_cpu.json", prof, indent=2)
            write_results(Path(args.results))
        return 0

    import torch

    from shared.config import build_config
    from trainer.live.features import live_timeline
    from trainer.live.generator import SnippetGenerator, live_spec
    from trainer.live.scheduler import LiveScheduler
    from trainer.live.sources import PipeSource, RealClock
    from trainer.runtime import pick_device
    from trainer.sample import load_sampling_model, style_for_seed

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
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    clock = RealClock()
    r_fd, w_fd = os.pipe()
    feeder = Feeder(w_fd, data, header, FEED_SR * 4)
    with os.fdopen(r_fd, "rb", buffering=0) as r:
        source = PipeSource(r, sr, clock, name="the bench pipe")
        gen = SnippetGenerator(model, live_spec(model), style_for_seed(cfg, 0), 0)
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

    lat, missed, offsets, waits = click_latencies(sink, feeder, clicks, fps, gen.future, header)
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
        "click_frame_wait_ms": round(1000 * float(np.mean(waits)), 1) if waits else None,
        "rss_mb_start": round(rss_start, 1), "rss_mb_first": round(rss[0], 1) if rss else None,
        "rss_mb_last": round(rss[-1], 1) if rss else None, "rss_mb_max": round(max(rss), 1) if rss else None,
        "started_utc": started, "load_start": load_start, "load_end": uptime(), "machine": machine,
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


def _ms(x: list[float]) -> dict:
    a = 1000 * np.asarray(x, np.float64)
    return {"mean": round(float(a.mean()), 2), "p95": round(float(np.percentile(a, 95)), 2),
            "p99": round(float(np.percentile(a, 99)), 2), "max": round(float(a.max()), 2), "n": int(len(a))}


def profile(args: argparse.Namespace, snippets: int = 80, seconds: float = 20.0) -> dict:
    """Per-stage costs of the live frame path (ms): generation per snippet, the causal timeline per 20 ms block
    (as the model streams it, and with the beat tracker on), and the decode lag of the pipe (write to arrival)."""
    import torch

    from shared.config import build_config
    from trainer.live.features import StreamingTimeline, live_timeline
    from trainer.live.generator import SnippetGenerator, live_spec
    from trainer.live.sources import PipeSource, RealClock
    from trainer.sample import load_sampling_model, style_for_seed

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    model = load_sampling_model(args.checkpoint, "cpu",
                                overrides=lambda saved: build_config(base=saved, overrides=args.overrides))
    cfg = model.cfg
    sr, fps = cfg.data.sample_rate, cfg.render.fps
    gen = SnippetGenerator(model, live_spec(model), style_for_seed(cfg, 0), 0)
    gen.warm_up()
    win = np.zeros((gen.snippet_frames, gen.past + 1 + gen.future, model.denoiser.n_audio_channels), np.float32)
    total, sample = [], []
    for i in range(snippets):
        t0 = time.perf_counter()
        _, tm = gen.generate(i * gen.snippet_frames, win, np.zeros(gen.snippet_frames, np.float32), gen.full_steps)
        total.append(time.perf_counter() - t0)
        sample.append(tm.sample_s)
    wave, clicks = click_track(seconds, args.click_every)
    mono = wave[::FEED_SR // sr] if FEED_SR % sr == 0 else wave[: int(seconds * sr)]
    tcfg, _ = live_timeline(cfg)
    push = {}
    for label, tc in (("as streamed for this model", tcfg), ("with the beat tracker", cfg.timeline.model_copy(
            update={"beat_channels": True}))):
        st, costs, block = StreamingTimeline(sr, fps, tc), [], sr // 50
        for i in range(0, len(mono), block):
            t0 = time.perf_counter()
            st.push(mono[i:i + block])
            costs.append(time.perf_counter() - t0)
        push[f"{label} (beat_channels={tc.beat_channels})"] = _ms(costs)
    data = wav_stream(wave, FEED_SR)
    header = len(data) - len(wave) * 4
    r_fd, w_fd = os.pipe()
    feeder, clock, lags, got = Feeder(w_fd, data, header, FEED_SR * 4), RealClock(), [], 0
    with os.fdopen(r_fd, "rb", buffering=0) as r:
        source = PipeSource(r, sr, clock, name="the bench pipe")
        feeder.start()
        while not source.ended:
            block = source.poll(0.05)
            if block is not None:
                got += len(block.samples)
                lags.append(block.arrived - feeder.time_of(header + (got * FEED_SR // sr - 1) * 4))
        source.close()
    feeder.join()
    lags = [x for x in lags[50:] if np.isfinite(x)]  # after ffmpeg's start-up probe
    return {"checkpoint": str(args.checkpoint), "threads": args.threads, "steps": gen.full_steps,
            "generate_snippet_ms": _ms(total), "sampling_steps_ms": _ms(sample), "timeline_push_ms_per_20ms_block": push,
            "decode_lag_ms": _ms(lags), "load": uptime()}


def kept_summary(r: dict) -> Path:
    """Where --write keeps a run's summary: bench/live_latency_<model>_<device>.json."""
    device = str(r["device"]).split(":")[0]
    return ROOT / "bench" / f"live_latency_{Path(r['checkpoint']).name}_{device}.json"


def table_row(r: dict) -> str:
    """One row of the results table; a summary kept from an earlier model names it in ``label``."""
    resp = r.get("click_response_frames")
    resp_text = ", ".join(f"{k}: {v}" for k, v in resp.items()) if resp else "n/a"
    return (f"| {r['device']} ({r['threads']} thread) | {r.get('label') or Path(r['checkpoint']).name} | {r['resolution']}² @ {r['fps']:g} fps, "
           f"F={r['snippet_frames']}, look-ahead {r['lookahead_frames']} frames | {r['minutes']:g} min | "
           f"{r['sustained_x_realtime']} | {r['dropped']} / {r['frames']} | {r['steps_mean']} of {r['steps_full']} | "
           f"{r['click_latency_mean_ms']} / {r['click_latency_p95_ms']} / {r['click_latency_max_ms']} ms "
           f"({r['clicks_measured']} clicks, {r['clicks_missed']} missed) | {resp_text} | "
           f"{r['pipeline_latency_mean_ms']} / {r['pipeline_latency_p95_ms']} ms | {r['drift_frames']} | "
           f"{r['rss_mb_first']} → {r['rss_mb_last']} (max {r['rss_mb_max']}) MB | {r['load_start'].split('load average:')[-1].strip()} → "
           f"{r['load_end'].split('load average:')[-1].strip()} |")


def profile_rows(p: dict) -> list[str]:
    def cell(x: dict) -> str:
        return f"{x['mean']} / {x['p95']} / {x['p99']} / {x['max']}"

    rows = [f"| {Path(p['checkpoint']).name}: one snippet's generation ({p['steps']} DDIM steps, CFG) | "
            f"{cell(p['generate_snippet_ms'])} |",
            f"| of which the sampling steps | {cell(p['sampling_steps_ms'])} |"]
    rows += [f"| causal timeline per 20 ms block, {k} | {cell(v)} |" for k, v in p["timeline_push_ms_per_20ms_block"].items()]
    rows.append(f"| ffmpeg decode lag, pipe write to decoded arrival | {cell(p['decode_lag_ms'])} |")
    return rows


def write_results(path: Path) -> None:
    """Rebuild this benchmark's section of the results file from the kept summaries (other sections untouched)."""
    runs = sorted((json.loads(p.read_text()) for p in (ROOT / "bench").glob("live_latency_*.json")),
                  key=lambda r: r.get("started_utc", ""))  # in the order they ran
    profiles = [json.loads(p.read_text()) for p in sorted((ROOT / "bench").glob("live_profile_*.json"))]
    machines = sorted({r["machine"].split(" (")[0] for r in runs})
    body = [
        SECTION, "",
        "`python bench/live_latency.py --minutes M --checkpoint models/NAME --write`: `trainer live --audio -`'s path "
        "on the real clock, fed a click track (a click every 2 s in silence) through an OS pipe at real-time pace "
        "(48 kHz stereo wav, decoded by ffmpeg as it arrives). Click latency: from the click's first sample entering "
        "the pipe to the emission of the first frame whose motion rises above the silent baseline; the clicks fall "
        "on frame starts, so it includes a whole frame of waiting for the click's frame to be complete (125 ms at "
        "8 fps: the goal's '1 frame'). Responded on: the responding frame minus the click's own frame, with the "
        "number of clicks (0: the click's own frame). Pipeline latency: emission minus arrival of each frame's own "
        "audio (mean / p95). Drift: last tenth minus first tenth of the pipeline latency, in frames. Sustained: "
        "frames emitted per wall second / fps. The 2-core box is shared: the load averages of `uptime` at the start "
        "and end are in each row.", "",
        *[f"Machine: {m}." for m in machines], "",
        "| device | model | shape | run | sustained (x real time) | dropped / frames | steps used (mean) | click "
        "latency mean / p95 / max | responded on | pipeline latency | drift (frames) | RSS first → last | load (uptime "
        "1/5/15 min) start → end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[table_row(r) for r in runs], "",
        "Before and after. *Before*: the live model of commit 1849e42 (a 1-frame audio window, trained on the "
        "offline channels, all 15 channels streamed, so the causal beat tracker re-estimated the tempo on the frame "
        "path once a second). *After*: the causal `models/synesthete-tiny-live` (frames t-2 .. t, the 13 causal "
        "channels, no beat channel, so `trainer live` does not run the tracker). The 10-minute *before* rows ran "
        "while the box carried 7 other jobs; the two 2-minute rows ran back to back at the same load and show the "
        "pipeline itself: what remains after the frame wait is generation and the decode blocks, and the tail "
        "under load is the machine's (the causal tracker's update, a few ms once a second, is a small part of it). "
        "The 10-minute *after* rows ran once under load and once on the quiet box. `models/synesthete-tiny` is not causal: each snippet of 4 frames waits for "
        "4 - 1 + 2 = 5 frames (625 ms) of audio after its first frame, so its latency is bounded below by that "
        "look-ahead. GPU rows at 256² are still to be measured: no device was drawn for this task.", "",
    ]
    if profiles:
        body += ["Per-stage costs on the frame path (`python bench/live_latency.py --profile --checkpoint models/NAME "
                 "--write`, ms mean / p95 / p99 / max, 1 torch thread; load " + "; ".join(
                     p["load"].split("load average:")[-1].strip() for p in profiles) + "):", "",
                 "| stage | ms |", "|---|---|", *[row for p in profiles for row in profile_rows(p)], ""]
    replace_section(path, SECTION, "\n".join(body))


if __name__ == "__main__":
    raise SystemExit(main())
