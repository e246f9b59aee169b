"""Datagen throughput: end-to-end frames/s into shards against this machine's render-only and JPEG-only limits.

For each resolution and worker count K, measured in the same run on the same workload (the clips
`datagen run` would make: real audio, timelines and visual plans):

* render-only limit: K spawned processes, one Renderer each, rendering the workload's clips (frames/s, all K);
* JPEG-only limit: K processes encoding the workload's rendered frames (simplejpeg 4:2:0 at render.jpeg_quality);
* end to end: `datagen run` (the chosen executor, K workers) writing shards, wall clock including worker start-up;
* ratios: end to end / render limit, end to end / encode limit, and against the serial combination
  1 / (1/render + 1/encode) (a worker both renders and encodes its frames);
* scaling: end-to-end frames/s at K workers / (K x frames/s at 1 worker);
* CPU work per frame: this thread's CPU time (time.thread_time: other processes' load does not count)
  per frame of each CPU stage of a worker on the workload's clips: audio synthesis, timeline, visual
  plan, JPEG encoding, and the sample's members plus the tar write; "synth+timeline+tar" is their sum
  without plan and JPEG. With ``--baseline DIR`` (a checkout of older code, e.g. ``git archive main``)
  that measurement runs in alternating subprocesses, old code then this code
  (an interleaved A/B: load swings hit both alike), ``--ab-runs`` times each, and the section gets a
  before/after table.

    .venv/bin/python bench/datagen_throughput.py --write      # replaces "## Datagen throughput" in bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The code measured: this checkout, or the one named by DATAGEN_BENCH_CODE (the --baseline subprocesses).
CODE = Path(os.environ.get("DATAGEN_BENCH_CODE", ROOT)).resolve()
sys.path.insert(0, str(CODE))

from datagen.run import available_cpus  # noqa: E402
from shared.config import Config, build_config  # noqa: E402
from shared.markdown import replace_section  # noqa: E402
from shared.provenance import machine_description  # noqa: E402

SECTION = "## Datagen throughput"


def bench_config(resolution: int, args: argparse.Namespace) -> Config:
    return build_config([], overrides=[
        f"render.resolution={resolution}", f"render.fps={args.fps}", f"data.clip_seconds={args.clip_seconds}",
        f"data.samples_per_shard={args.samples_per_shard}", "data.val_shards=1", "data.sample_rate=16000",
    ])


def workload(cfg: Config, n_clips: int) -> list[tuple[np.ndarray, list[str], dict]]:
    """The first ``n_clips`` train clips' (timeline, channel names, plan), exactly as the shard job makes them."""
    from datagen.audio import synthesize_clip
    from datagen.shard_job import variant_for
    from datagen.visual import sample_visual_plan
    from shared import shards as S
    from shared.seeding import sample_seed
    from shared.timeline import compute_audio_timeline

    out = []
    for i in range(n_clips):
        shard, sample = divmod(i, cfg.data.samples_per_shard)
        seed = sample_seed(cfg.data.seed, "train", shard, sample)
        variant = variant_for(cfg, "train", sample, seed)
        clip = synthesize_clip(cfg, seed, variant)
        f, names = compute_audio_timeline(S.quantize_pcm16(clip.wave), clip.sr, cfg.render.fps, cfg.timeline)
        out.append((f, names, sample_visual_plan(cfg, seed, variant)))
    return out


# ----------------------------------------------------------- limit workers (spawned)


def _render_worker(cfg_dict, clips, lp_threads, barrier, results) -> None:
    from datagen.visual import Renderer

    os.environ.setdefault("LP_NUM_THREADS", str(lp_threads))  # what the processes executor gives each worker

    cfg = Config.model_validate(cfg_dict)
    r = Renderer(cfg.render.resolution)
    for f, names, plan in clips[:1]:  # compile the programs outside the timing
        list(r.render(f[:2], names, plan, cfg.render.fps, 2))
    barrier.wait()
    t0 = time.time()
    n = 0
    for f, names, plan in clips:
        n += sum(len(c) for c in r.render(f, names, plan, cfg.render.fps, cfg.render.chunk_frames))
    results.put((n, t0, time.time()))


def _encode_worker(frames, quality, repeat, barrier, results) -> None:
    from shared.shards import encode_jpeg

    barrier.wait()
    t0 = time.time()
    for _ in range(repeat):
        for fr in frames:
            encode_jpeg(fr, quality)
    results.put((len(frames) * repeat, t0, time.time()))


def parallel_rate(target, per_worker_args: list[tuple]) -> float:
    """Frames/s of K spawned processes started together behind a barrier: total frames / (last end - first start)."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(per_worker_args)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, results)) for a in per_worker_args]
    for p in procs:
        p.start()
    got = [results.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    frames = sum(g[0] for g in got)
    return frames / (max(g[2] for g in got) - min(g[1] for g in got))


def render_frames(cfg: Config, clips) -> list[np.ndarray]:
    from datagen.visual import Renderer

    r = Renderer(cfg.render.resolution)
    frames: list[np.ndarray] = []
    for f, names, plan in clips:
        for chunk in r.render(f, names, plan, cfg.render.fps, cfg.render.chunk_frames):
            frames.extend(chunk)
    return frames


def end_to_end(cfg: Config, k: int, shards: int, executor: str) -> dict:
    from datagen.run import run_datagen

    cfg = cfg.model_copy(deep=True)
    cfg.data.train_shards = shards
    cfg.run.executor = executor
    cfg.run.workers = k
    out = Path(tempfile.mkdtemp(prefix="dg-bench-"))
    try:
        # val shard first: plan_shards puts it first; count only what was written.
        code, summary = run_datagen(cfg, out, progress=False)
        if code:
            raise RuntimeError(f"datagen run failed: {summary['shards_failed']}")
        # Steady state: frames over the busiest worker's time inside shards (start-up and spawn excluded).
        busy: dict[int, float] = {}
        for e in json.loads((out / "manifest.json").read_text())["shards"].values():
            busy[e["worker"]["pid"]] = busy.get(e["worker"]["pid"], 0.0) + e["seconds"]
        summary["steady_frames_per_s"] = summary["frames_written"] / max(busy.values())
        return summary
    finally:
        shutil.rmtree(out, ignore_errors=True)


CPU_STAGES = ("synth", "timeline", "plan", "jpeg", "tar")


def cpu_work(cfg: Config, n_clips: int) -> dict[str, float]:
    """Thread-CPU ms per frame of each CPU stage over the first ``n_clips`` train clips (see the docstring).

    Calls the stage functions the shard job calls, in its order, one clip at a time, with BLAS pinned
    to one thread as in a shard; frames come from a Renderer (its time is not counted).
    """
    from threadpoolctl import threadpool_limits

    from datagen.audio import synthesize_clip
    from datagen.shard_job import build_meta, variant_for
    from datagen.visual import Renderer, sample_visual_plan
    from shared import shards as S
    from shared.seeding import sample_seed
    from shared.timeline import compute_audio_timeline

    spent = dict.fromkeys(CPU_STAGES, 0.0)
    frames = 0

    def timed(stage, fn, *a):
        t0 = time.thread_time()
        out = fn(*a)
        spent[stage] += time.thread_time() - t0
        return out

    r = Renderer(cfg.render.resolution)
    out = Path(tempfile.mkdtemp(prefix="dg-bench-cpu-"))
    try:
        with threadpool_limits(limits=1), S.ShardWriter(out / "shard.tar") as writer:
            synthesize_clip(cfg, 0, "normal")  # warm caches (wavetables, FFT plans), as a long-lived worker has them
            for i in range(n_clips):
                shard, sample = divmod(i, cfg.data.samples_per_shard)
                seed = sample_seed(cfg.data.seed, "train", shard, sample)
                variant = variant_for(cfg, "train", sample, seed)
                clip = timed("synth", synthesize_clip, cfg, seed, variant)
                wave = timed("timeline", S.quantize_pcm16, clip.wave)
                f, names = timed("timeline", compute_audio_timeline, wave, clip.sr, cfg.render.fps, cfg.timeline)
                plan = timed("plan", sample_visual_plan, cfg, seed, variant)
                rendered = [fr for c in r.render(f, names, plan, cfg.render.fps, cfg.render.chunk_frames) for fr in c]
                jpegs = timed("jpeg", lambda: [S.encode_jpeg(fr, cfg.render.jpeg_quality) for fr in rendered])

                def tar():
                    meta = build_meta(cfg, "train", shard, sample, seed, clip.meta, plan, names, len(jpegs))
                    writer.add_sample(S.sample_key(shard, sample), S.pixel_members(wave, clip.sr, f, jpegs, meta))

                timed("tar", tar)
                frames += len(jpegs)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        r.release()
    per_frame = {k: 1e3 * v / frames for k, v in spent.items()}
    per_frame["synth+timeline+tar"] = per_frame["synth"] + per_frame["timeline"] + per_frame["tar"]
    return per_frame


def cpu_work_ab(baseline: str, resolution: int, args: argparse.Namespace) -> dict[str, list[dict]]:
    """:func:`cpu_work` of the baseline code and of this code in alternating subprocesses, ``args.ab_runs`` each."""
    import subprocess

    runs: dict[str, list[dict]] = {"before": [], "after": []}
    flags = ["--cpu-only", "--resolutions", str(resolution), "--clips", str(args.clips), "--fps", str(args.fps),
             "--clip-seconds", str(args.clip_seconds), "--samples-per-shard", str(args.samples_per_shard)]
    for _ in range(args.ab_runs):
        for label, code in (("before", baseline), ("after", str(ROOT))):
            env = dict(os.environ, DATAGEN_BENCH_CODE=code, OMP_NUM_THREADS="1")
            res = subprocess.run([sys.executable, __file__, *flags], env=env, capture_output=True, text=True, check=True)
            runs[label].append(json.loads(res.stdout.strip().splitlines()[-1]))
    return runs


def e2e_ab(baseline: str, resolution: int, k: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """End-to-end ``datagen run`` of the baseline code and of this code in alternating subprocesses (``args.ab_runs``
    each, the best kept: other load only ever lowers a rate): {"before"|"after": {"wall", "e2e"}} frames/s."""
    import subprocess

    best = {"before": {"wall": 0.0, "e2e": 0.0}, "after": {"wall": 0.0, "e2e": 0.0}}
    flags = ["--e2e-only", "--resolutions", str(resolution), "--workers", str(k), "--fps", str(args.fps),
             "--clip-seconds", str(args.clip_seconds), "--samples-per-shard", str(args.samples_per_shard),
             "--shards-per-worker", str(args.shards_per_worker), "--executor", args.executor]
    for _ in range(args.ab_runs):
        for label, code in (("before", baseline), ("after", str(ROOT))):
            env = dict(os.environ, DATAGEN_BENCH_CODE=code)
            res = subprocess.run([sys.executable, __file__, *flags], env=env, capture_output=True, text=True, check=True)
            got = json.loads(res.stdout.strip().splitlines()[-1])
            best[label] = {m: max(best[label][m], got[m]) for m in ("wall", "e2e")}
    return best


def main(argv: list[str] | None = None) -> int:
    args, rows, gl = measure(argv)
    if args.cpu_only or args.e2e_only:
        return 0
    text = section_text(args, rows, gl, argv)
    print(text)
    if args.write:
        replace_section(args.write, SECTION, text)
    return 0


def measure(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[dict], str]:
    """Parse the command line and measure every (resolution, workers) row: (arguments, rows, GL renderer)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--executor", default="processes", choices=["processes", "ray", "local"])
    ap.add_argument("--shards-per-worker", type=int, default=2, help="Train shards per worker in the end-to-end runs.")
    ap.add_argument("--samples-per-shard", type=int, default=2)
    ap.add_argument("--clip-seconds", type=float, default=3.0)
    ap.add_argument("--fps", type=float, default=24.0)
    ap.add_argument("--repeats", type=int, default=1, help="Interleaved repeats per measurement; the best is kept.")
    ap.add_argument("--write", nargs="?", const=str(ROOT / "bench" / "RESULTS.md"), default=None, metavar="RESULTS.md",
                    help="Replace the section in this markdown file (default bench/RESULTS.md).")
    ap.add_argument("--clips", type=int, default=8, help="Clips in the CPU-work-per-frame measurement.")
    ap.add_argument("--baseline", default=None, metavar="DIR",
                    help="A checkout of older code: CPU work per frame before (DIR) and after (this code), interleaved.")
    ap.add_argument("--ab-runs", type=int, default=3, help="Alternating runs per side of the --baseline A/B.")
    ap.add_argument("--cpu-only", action="store_true", help="Print only the CPU work per frame (JSON), for --baseline.")
    ap.add_argument("--e2e-only", action="store_true",
                    help="Print only one end-to-end run's frames/s (JSON; first resolution and worker count), for --baseline.")
    ap.add_argument("--json", default=None, metavar="PATH", help="Also write the rows as JSON here.")
    args = ap.parse_args(argv)

    if args.cpu_only:
        print(json.dumps(cpu_work(bench_config(args.resolutions[0], args), args.clips)))
        return args, [], "?"
    if args.e2e_only:
        k = args.workers[0]
        summary = end_to_end(bench_config(args.resolutions[0], args), k, args.shards_per_worker * k, args.executor)
        print(json.dumps({"wall": summary["frames_per_s"], "e2e": summary["steady_frames_per_s"]}))
        return args, [], "?"
    rows = []
    gl = "?"
    for res in args.resolutions:
        cfg = bench_config(res, args)
        cpu = cpu_work(cfg, args.clips)
        ab = cpu_work_ab(args.baseline, res, args) if args.baseline else None
        print(json.dumps({"resolution": res, "cpu_ms_per_frame": cpu, "cpu_ab": ab}), flush=True)
        base = None
        for k in args.workers:
            shards = args.shards_per_worker * k
            clips = workload(cfg, shards * cfg.data.samples_per_shard)
            per_worker = [clips[i::k] for i in range(k)]
            frames = render_frames(cfg, clips[: max(1, len(clips) // k)])
            render = encode = wall = e2e = 0.0
            for _ in range(args.repeats):  # interleaved; best of N: other load only ever lowers a rate
                render = max(render, parallel_rate(_render_worker, [(cfg.model_dump(mode="json"), c, max(1, available_cpus() // k)) for c in per_worker]))
                encode = max(encode, parallel_rate(_encode_worker, [(frames, cfg.render.jpeg_quality, 2) for _ in range(k)]))
                summary = end_to_end(cfg, k, shards, args.executor)
                wall, e2e = max(wall, summary["frames_per_s"]), max(e2e, summary["steady_frames_per_s"])
            gl = summary["workers"][0]["renderer"]["renderer"]
            base = base or e2e / k
            combined = 1.0 / (1.0 / render + 1.0 / encode)
            row = {"resolution": res, "workers": k, "frames": summary["frames_written"], "wall": wall, "e2e": e2e,
                   "render": render, "encode": encode, "combined": combined, "scaling": e2e / (k * base),
                   "cpu_ms_per_frame": cpu, "cpu_ab": ab, "load_1min": os.getloadavg()[0],
                   "e2e_ab": e2e_ab(args.baseline, res, k, args) if args.baseline else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"argv": argv or sys.argv[1:], "gl": gl, "rows": rows}, indent=1))
    return args, rows, gl


def section_text(args: argparse.Namespace, rows: list[dict], gl: str, argv: list[str] | None) -> str:
    cmd = ".venv/bin/python bench/datagen_throughput.py " + " ".join(argv or sys.argv[1:])
    lines = [
        SECTION, "",
        f"End-to-end `datagen run` (executor `{args.executor}`) frames/s into shards, against the render-only and "
        "JPEG-only limits of the same K processes on the same clips, measured in the same run (each of K "
        "processes gets LP_NUM_THREADS = CPUs // K llvmpipe threads, as the executor gives its workers). End to end is "
        "measured two ways: *wall* is start to last shard with worker start-up (process spawn, imports, GL context) "
        "included; *steady* is frames over the busiest worker's time inside shards (audio synthesis, timeline, render, "
        "JPEG, tar write), the rate a long run converges to. Ratios and scaling use steady. Clips: "
        f"{args.clip_seconds:g} s at {args.fps:g} fps, {args.samples_per_shard} per shard, "
        f"{args.shards_per_worker} train shards per worker plus 1 val shard; best of {args.repeats} interleaved repeats.",
        f"Machine: {machine_description()}. GL: {gl}.",
        f"Command: `{cmd.strip()}`", "",
        "| res | workers | frames | wall f/s | steady f/s | render-only f/s | JPEG-only f/s | e2e / render | e2e / JPEG | "
        "e2e / serial render+JPEG | scaling vs 1 worker |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['resolution']}² | {r['workers']} | {r['frames']} | {r['wall']:.0f} | {r['e2e']:.0f} | {r['render']:.0f} | "
                     f"{r['encode']:.0f} | {r['e2e'] / r['render']:.0%} | {r['e2e'] / r['encode']:.0%} | "
                     f"{r['e2e'] / r['combined']:.0%} | {r['scaling']:.2f} |")
    lines += ["", f"CPU work per frame (thread CPU ms per frame, {args.clips} clips, one worker thread):", "",
              "| res | " + " | ".join(CPU_STAGES) + " | synth+timeline+tar |", "|---:|" + "---:|" * (len(CPU_STAGES) + 1)]
    seen = set()
    for r in rows:
        if r["resolution"] not in seen:
            seen.add(r["resolution"])
            c = r["cpu_ms_per_frame"]
            lines.append(f"| {r['resolution']}² | " + " | ".join(f"{c[k]:.3f}" for k in (*CPU_STAGES, "synth+timeline+tar")) + " |")
    ab_rows = [r for r in rows if r.get("cpu_ab")]
    if ab_rows:
        lines += ["", f"Interleaved A/B of the CPU work per frame (`--baseline`; medians of {args.ab_runs} alternating "
                  "subprocess runs each, thread CPU ms per frame):", "",
                  "| res | stage | before | after | before / after |", "|---:|---|---:|---:|---:|"]
        seen = set()
        for r in ab_rows:
            if r["resolution"] in seen:
                continue
            seen.add(r["resolution"])
            for k in (*CPU_STAGES, "synth+timeline+tar"):
                b = float(np.median([x[k] for x in r["cpu_ab"]["before"]]))
                a = float(np.median([x[k] for x in r["cpu_ab"]["after"]]))
                lines.append(f"| {r['resolution']}² | {k} | {b:.3f} | {a:.3f} | {b / a:.2f}x |")
    e2e_rows = [r for r in rows if r.get("e2e_ab")]
    if e2e_rows:
        from shared.provenance import git_sha

        lines += ["", f"Interleaved A/B of end-to-end `datagen run` (`--baseline {args.baseline}`, commit "
                  f"`{(git_sha(Path(args.baseline)) or '?')[:12]}`: the older code, then "
                  f"this code, in alternating subprocesses, best of {args.ab_runs} each; frames/s):", "",
                  "| res | workers | wall before | wall after | steady before | steady after | steady after / before | "
                  "1-min load |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in e2e_rows:
            b, a = r["e2e_ab"]["before"], r["e2e_ab"]["after"]
            lines.append(f"| {r['resolution']}² | {r['workers']} | {b['wall']:.0f} | {a['wall']:.0f} | {b['e2e']:.0f} | "
                         f"{a['e2e']:.0f} | {a['e2e'] / b['e2e']:.2f} | {r['load_1min']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
