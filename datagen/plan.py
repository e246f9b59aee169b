"""``datagen run --dry-run``'s plan: what a run of a config would write, and what it would cost here.

Counted exactly from the config (the variant of every clip is a pure function of its seed): shards and clips
per split, clips per variant, frames. Measured on this machine: up to three probe clips of each variant the run
holds are generated serially by the real pipeline (synthesis, timeline, this machine's renderer, JPEG), outside any
output directory; their mean bytes (tar framing included) and wall time are scaled by the clip counts. The time assumes
the run's workers (``run.workers``, else one per CPU) each start as fast as the probe's worker and then render at
its pace.
"""

from __future__ import annotations

import tarfile
import time
from collections import Counter
from typing import Any

from shared.config import Config
from shared.seeding import sample_seed
from shared.timeline import frame_count

from datagen.executors.base import available_cpus
from datagen.shard_job import SIBLINGS, SPLITS, VARIANTS, ShardWorker, build_sample, samples_in, split_counts, \
    variant_for

_PROBE_SEARCH = 4096  # samples of val shard 0, then train shard 0, searched for clips of each variant
PROBES_PER_VARIANT = 3  # clips of one variant differ in size and time: the plan takes their mean


def clip_variants(cfg: Config) -> dict[str, Counter]:
    """Clips per variant in each split, counted clip by clip."""
    counts = split_counts(cfg)
    out: dict[str, Counter] = {}
    for split in SPLITS:
        c: Counter = Counter()
        if split == SIBLINGS:
            c["normal"] = counts[split] * samples_in(cfg, split)
        else:
            for shard in range(counts[split]):
                for i in range(samples_in(cfg, split)):
                    c[variant_for(cfg, split, i, sample_seed(cfg.data.seed, split, shard, i))] += 1
        out[split] = c
    return out


def member_bytes(members: list[tuple[str, bytes]]) -> int:
    """Bytes the members of one sample take in a shard: a 512-byte header each, data padded to whole blocks."""
    return sum(tarfile.BLOCKSIZE + len(d) + (-len(d) % tarfile.BLOCKSIZE) for _, d in members)


def probe_slots(cfg: Config, variant: str, n: int = PROBES_PER_VARIANT) -> list[tuple[str, int, int]]:
    """Up to ``n`` (split, shard, sample) of clips of ``variant``, from the first samples of train and val shard 0."""
    slots = []
    for split in ("train", "val"):
        for i in range(min(_PROBE_SEARCH, samples_in(cfg, split))):
            if len(slots) < n and variant_for(cfg, split, i, sample_seed(cfg.data.seed, split, 0, i)) == variant:
                slots.append((split, 0, i))
    return slots


def probe_clips(cfg: Config, variants: list[str], workers: int) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Generate a few clips of each variant with this machine's renderer: {variant: {clips, bytes, seconds}}
    (means per clip), and the renderer's info with ``startup_s``, what a worker takes to be ready (its GL context,
    shader compilation and first-use costs, measured with a warm-up clip)."""
    t0 = time.perf_counter()
    worker = ShardWorker(cfg.model_dump(mode="json"), render_threads=max(1, available_cpus() // workers))
    build_sample(cfg, "val", 0, 0, worker.renderer)  # warm-up
    startup_s = time.perf_counter() - t0
    probes = {}
    for v in variants:
        sizes, times = [], []
        for slot in probe_slots(cfg, v):
            t0 = time.perf_counter()
            _key, members, _meta = build_sample(cfg, *slot, worker.renderer)
            times.append(time.perf_counter() - t0)
            sizes.append(member_bytes(members))
        if sizes:
            probes[v] = {"clips": len(sizes), "bytes": sum(sizes) / len(sizes), "seconds": sum(times) / len(times)}
    return probes, dict(worker.renderer.info, startup_s=startup_s)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1000
    raise AssertionError("unreachable")


def _human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def build_plan(cfg: Config, measure: bool = True) -> dict[str, Any]:
    """The plan as data: counts, and (``measure``) the probe's size and time estimates."""
    counts = split_counts(cfg)
    variants = clip_variants(cfg)
    per_clip = frame_count(round(cfg.data.clip_seconds * cfg.data.sample_rate), cfg.data.sample_rate, cfg.render.fps)
    total = Counter()
    for c in variants.values():
        total.update(c)
    clips = sum(total.values())
    workers = max(1, cfg.run.workers or available_cpus())
    plan: dict[str, Any] = {
        "shards": {s: counts[s] for s in SPLITS}, "clips": {s: sum(variants[s].values()) for s in SPLITS},
        "variants": {s: {v: variants[s].get(v, 0) for v in VARIANTS} for s in SPLITS},
        "frames_per_clip": per_clip, "frames": clips * per_clip, "workers": workers,
    }
    if measure and clips:
        probes, renderer = probe_clips(cfg, [v for v in VARIANTS if total.get(v)], workers)
        n_shards = sum(counts.values())
        size = sum(total[v] * p["bytes"] for v, p in probes.items()) + n_shards * tarfile.RECORDSIZE
        seconds = renderer["startup_s"] + sum(total[v] * p["seconds"] for v, p in probes.items()) / workers
        plan.update(probes=probes, renderer=renderer, bytes=size, seconds=seconds)
    return plan


def plan_lines(plan: dict[str, Any]) -> list[str]:
    """The plan as lines for a person."""
    lines = []
    for s in SPLITS:
        if plan["shards"][s]:
            mix = ", ".join(f"{plan['variants'][s][v]} {v}" for v in VARIANTS if plan["variants"][s][v])
            lines.append(f"{s}: {plan['shards'][s]} shards, {plan['clips'][s]} clips ({mix})")
    lines.append(f"frames: {plan['frames']} ({plan['frames_per_clip']} per clip)")
    if "bytes" in plan:
        per = ", ".join(f"{v} {_human_bytes(p['bytes'])} in {p['seconds']:.2f} s" for v, p in plan["probes"].items())
        r = plan["renderer"]
        lines += [f"expected size on disk: {_human_bytes(plan['bytes'])} (per clip, mean of up to "
                  f"{PROBES_PER_VARIANT} probe clips per variant: {per})",
                  f"expected time here: {_human_seconds(plan['seconds'])} with {plan['workers']} workers on "
                  f"{r.get('renderer', '?')} ({r['startup_s']:.1f} s to start a worker, then the probes' serial pace; "
                  "a run overlaps CPU work with rendering)"]
    return lines
