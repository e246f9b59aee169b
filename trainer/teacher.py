"""The teacher: the ground-truth visualizers of ``datagen`` measured with the eval's own metrics (issue 29).

``trainer eval`` scores a *ceiling* kind: the ground-truth frames of a val clip against that clip's own audio.
This module measures only that ceiling, on clips synthesized on the fly for any config (fps, resolution,
clip length), so one can see how well the procedural visualizers follow the music before any model is
trained on them:

* :func:`ground_truth`: one clip's audio, timeline, visual plan and frames, exactly as a shard sample with
  that clip seed gets them (PCM_16 audio, timeline with one BLAS thread, frames JPEG-coded at
  ``render.jpeg_quality`` and decoded, as the eval reads them);
* :func:`measure_teacher`: per variant, every :data:`~trainer.eval.registry.REGISTRY` metric on N clips with
  a 95% percentile-bootstrap CI over clips, the ground truth's style diversity across clips, and per clip
  the loudness range (std of ``log_rms`` in dB over music frames) and the clip metrics' values;
* :func:`measure_teacher_files`: the same visualizers (a plan seeded by the file name) on real audio files,
  per file.

Writers are in :mod:`trainer.teacher_report`; the command is ``trainer teacher``. ``trainer`` may import
``datagen`` (never the other way round); only long-standing ``datagen`` entry points are used, so
``bench/teacher_ab.py`` can run this module against an older generator checkout.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from shared.config import Config
from shared.timeline import channel_index
from trainer.eval import rows
from trainer.eval import metrics as M
from trainer.eval.registry import (REGISTRY, AudioSide, ClipMetric, PooledMetric, VideoSide, audio_side, definitions,
                                   metric_statistic, video_side)

Progress = Callable[[str], None]

SEED_VARIANTS = ("normal", "silence", "debug")  # fixed order: a variant's seeds do not depend on which are asked
VARIANT_STRIDE = 1_000_000                     # clip i of variant k has seed seed0 + k * VARIANT_STRIDE + i
LOUD_STD_DB = 8.0                              # "dynamic" clip: log_rms std over music frames >= this (dB)
STYLE_METRIC = "style_diversity"


# ------------------------------------------------------------------ one clip's ground truth


@dataclass
class GroundTruth:
    """One clip as a shard sample holds it."""

    frames: np.ndarray      # (T, R, R, 3) uint8
    timeline: np.ndarray    # (T, C) float32
    names: list[str]        # the timeline's channel names
    wave: np.ndarray        # (N,) float32 mono audio
    sr: int
    meta: dict[str, Any]    # the audio meta (variant, segments, tempo, ...), the visual plan, fps, n_frames


def clip_seed(seed0: int, variant: str, i: int) -> int:
    """The clip seed of clip ``i`` of ``variant``: distinct per variant, the first N the same for any larger N."""
    if variant not in SEED_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(SEED_VARIANTS)}")
    return int(seed0) + VARIANT_STRIDE * SEED_VARIANTS.index(variant) + int(i)


def stored_timeline(wave: np.ndarray, sr: int, cfg: Config) -> tuple[np.ndarray, list[str]]:
    """The timeline of ``wave`` as ``datagen run`` stores it: math libraries on one thread (their sums, hence the
    float32 bits, depend on the thread count; see :func:`datagen.shard_job.write_shard`)."""
    from threadpoolctl import threadpool_limits

    from shared.timeline import compute_audio_timeline

    with threadpool_limits(limits=1):
        features, names = compute_audio_timeline(np.asarray(wave, np.float32), sr, cfg.render.fps, cfg.timeline)
    return features, list(names)


@contextlib.contextmanager
def renderer_scope(renderer, resolution: int) -> Iterator[Any]:
    """``renderer`` itself, or a fresh :class:`datagen.visual.Renderer` released on exit."""
    if renderer is not None:
        yield renderer
        return
    from datagen.visual import Renderer

    own = Renderer(resolution)
    try:
        yield own
    finally:
        own.release()


def jpeg_roundtrip(frames: np.ndarray, quality: int) -> np.ndarray:
    """What a shard reader decodes: each frame JPEG 4:2:0 coded at ``quality`` and decoded."""
    from shared.shards import decode_jpeg, encode_jpeg

    return np.stack([decode_jpeg(encode_jpeg(np.ascontiguousarray(f), quality)) for f in frames])


def render_frames(cfg: Config, timeline: np.ndarray, names: list[str], plan: dict, renderer=None,
                  jpeg: bool = True) -> np.ndarray:
    """The plan's frames on the timeline (uint8 (T, R, R, 3)); ``jpeg``: as stored (coded and decoded)."""
    with renderer_scope(renderer, cfg.render.resolution) as r:
        chunks = r.render(timeline, names, plan, cfg.render.fps, cfg.render.chunk_frames)
        frames = np.concatenate([np.ascontiguousarray(c) for c in chunks])
    return jpeg_roundtrip(frames, cfg.render.jpeg_quality) if jpeg else frames


def ground_truth(cfg: Config, seed: int, variant: str, renderer=None, jpeg: bool = True) -> GroundTruth:
    """The ground truth of clip seed ``seed`` as a shard sample with that seed and variant gets it: audio from
    :func:`datagen.audio.synthesize_clip`, PCM_16-quantised; its timeline; the plan
    :func:`datagen.visual.sample_visual_plan` draws for the seed; its frames (``jpeg=False``: as rendered)."""
    from datagen.audio import synthesize_clip
    from datagen.visual import sample_visual_plan, visual_meta
    from shared.shards import quantize_pcm16

    clip = synthesize_clip(cfg, int(seed), variant)
    wave = quantize_pcm16(clip.wave)
    timeline, names = stored_timeline(wave, clip.sr, cfg)
    plan = sample_visual_plan(cfg, int(seed), variant)
    frames = render_frames(cfg, timeline, names, plan, renderer, jpeg)
    meta = {**clip.meta, **visual_meta(plan), "seed": int(seed), "fps": cfg.render.fps,
            "resolution": cfg.render.resolution, "n_frames": len(frames), "timeline_channels": names}
    return GroundTruth(frames, timeline, names, wave, int(clip.sr), meta)


# ------------------------------------------------------------------ scoring


@dataclass
class ScoredClip:
    """One ground-truth clip scored against its own audio."""

    key: str
    seed: int
    audio: AudioSide
    video: VideoSide
    loudness_std_db: float
    values: dict[str, float]          # every ClipMetric's value (NaN where undefined)
    info: dict[str, Any] = field(default_factory=dict)
    more_videos: list[VideoSide] = field(default_factory=list)  # the same audio under other visual plans


def loudness_std_db(timeline: np.ndarray, names: list[str], music: np.ndarray) -> float:
    """Std (dB, ddof 0) of the timeline's ``log_rms`` channel over the music frames; NaN without any."""
    x = np.asarray(timeline[:, channel_index(names, "log_rms")], dtype=np.float64)[np.asarray(music, bool)]
    return float(x.std()) if x.size else float("nan")


def clip_values(audio: AudioSide, video: VideoSide, cfg: Config) -> dict[str, float]:
    """Each per-clip registry metric of one (audio, video) pair."""
    return {m.name: float(m.fn(audio, video, cfg)) for m in REGISTRY if isinstance(m, ClipMetric)}


def score_clip(cfg: Config, gt: GroundTruth, key: str) -> ScoredClip:
    """The ground truth against its own audio (the eval's ceiling kind)."""
    a = audio_side(key, gt.meta, gt.timeline, gt.names, gt.wave, gt.sr, cfg.render.fps)
    v = video_side(gt.frames)
    info = {"visualizers": gt.meta.get("visualizers"), "tempo": gt.meta.get("tempo"),
            "segments": [[s.get("kind"), s.get("start_frame"), s.get("end_frame")]
                         for s in gt.meta.get("segments", [])]}
    return ScoredClip(key, int(gt.meta.get("seed", -1)), a, v, loudness_std_db(gt.timeline, gt.names, a.music),
                      clip_values(a, v, cfg), info)


def metric_entry(metric: ClipMetric | PooledMetric, pairs: list, cfg: Config, seed: int) -> dict[str, Any]:
    """``{"mean", "ci", "n", "note"}`` of one registry metric over the clips (plus ``chance`` for retrieval)."""
    if isinstance(metric, PooledMetric) and len(pairs) < 2:
        e = {"mean": None, "ci": None, "n": 0, "note": "needs >= 2 clips"}
    else:
        stat, n = metric_statistic(metric, pairs, cfg)
        e = dict(rows.entry(stat, n, cfg, seed))
        e["note"] = None if e["n"] else rows.UNDEFINED_NOTES.get(metric.name, "undefined on every clip")
    if isinstance(metric, PooledMetric) and metric.chance is not None and len(pairs) >= 2:
        e["chance"] = float(metric.chance(len(pairs)))
    return e


def style_entry(summaries: np.ndarray, cfg: Config, seed: int) -> dict[str, Any]:
    """The ground truth's style diversity across clips, exactly the eval's ceiling (:func:`rows.style_rows`)."""
    row = rows.style_rows(summaries[None], summaries, None, cfg, seed)[STYLE_METRIC]
    e = dict(row["ceiling"])
    e["note"] = None if e["n"] else "needs >= 2 clips"
    return e


def loudness_summary(stds: Sequence[float]) -> dict[str, Any]:
    """Median loudness std and the share of clips at or above :data:`LOUD_STD_DB`."""
    x = np.asarray([s for s in stds if np.isfinite(s)], dtype=np.float64)
    if not x.size:
        return {"median_db": None, "share_ge_threshold": None, "threshold_db": LOUD_STD_DB, "n": 0}
    return {"median_db": float(np.median(x)), "share_ge_threshold": float(np.mean(x >= LOUD_STD_DB)),
            "threshold_db": LOUD_STD_DB, "n": int(x.size), "min_db": float(x.min()), "max_db": float(x.max())}


def clip_record(c: ScoredClip) -> dict[str, Any]:
    """A clip's line of the report."""
    return {"key": c.key, "seed": c.seed, "loudness_std_db": c.loudness_std_db, "values": dict(c.values), **c.info}


def section(cfg: Config, clips: list[ScoredClip], seed: int, pooled: bool = True) -> dict[str, Any]:
    """One variant's (or the files') part of the report: metrics with CIs over the clips, loudness, per clip.
    ``pooled=False`` leaves out the pooled metrics (they need clips of one length)."""
    pairs = [[(c.audio, v) for v in (c.video, *c.more_videos)] for c in clips]
    metrics = {m.name: metric_entry(m, pairs, cfg, seed) for m in REGISTRY if pooled or isinstance(m, ClipMetric)}
    if clips:
        metrics[STYLE_METRIC] = style_entry(np.stack([c.video.summary for c in clips]), cfg, seed)
    return {"n_clips": len(clips), "metrics": metrics,
            "loudness_std": loudness_summary([c.loudness_std_db for c in clips]),
            "clips": [clip_record(c) for c in clips]}


# ------------------------------------------------------------------ the measurements


def score_variant(cfg: Config, variant: str, n_clips: int, seed0: int, renderer,
                  progress: Progress | None = None) -> list[ScoredClip]:
    """The first ``n_clips`` clips of ``variant`` (seeds :func:`clip_seed`), each made and scored."""
    out = []
    for i in range(n_clips):
        seed = clip_seed(seed0, variant, i)
        if progress:
            progress(f"teacher: {variant} clip {i + 1}/{n_clips} (seed {seed})")
        out.append(score_clip(cfg, ground_truth(cfg, seed, variant, renderer), f"{variant}-{seed}"))
    return out


def measure_teacher(cfg: Config, n_clips: int, variants: Sequence[str] = ("normal", "silence"), seed0: int = 0,
                    progress: Progress | None = None, renderer=None) -> dict[str, Any]:
    """The teacher's report: per variant, every registry metric on the ground truth of ``n_clips`` fresh clips
    (seeds :func:`clip_seed`) with a 95% bootstrap CI over clips (``eval.bootstrap`` resamples, seed ``seed0``),
    the style diversity across clips, the loudness-std summary and per-clip values; plus the run's provenance."""
    if n_clips < 1:
        raise ValueError(f"n_clips must be >= 1, got {n_clips}")
    for v in variants:
        clip_seed(seed0, v, 0)  # validates the variant name
    t0 = time.perf_counter()
    with renderer_scope(renderer, cfg.render.resolution) as r:
        sections = {}
        for v in variants:
            sec = section(cfg, score_variant(cfg, v, n_clips, seed0, r, progress), seed0)
            sections[v] = {"seeds": [clip_seed(seed0, v, i) for i in range(n_clips)], **sec}
        gl = dict(getattr(r, "info", {}))
    return {"kind": "teacher", "info": run_info(cfg, seed0, time.perf_counter() - t0, gl),
            "variants": sections, "definitions": report_definitions(cfg),
            "better": {m.name: m.better for m in REGISTRY} | {STYLE_METRIC: "toward ceiling"}}


def file_plan_seed(seed0: int, path: str | Path) -> int:
    """The visual plan's seed for an audio file: from its name (stable whatever else is in the folder)."""
    return int(seed0) + zlib.crc32(Path(path).name.encode("utf-8"))


def file_ground_truth(cfg: Config, path: str | Path, seed0: int = 0, renderer=None) -> GroundTruth:
    """A real audio file with the ground-truth visualizers of a fixed plan: the file resampled to
    ``data.sample_rate`` (as ``trainer sample`` and ``trainer eval --audio-dir`` read it), its timeline, the
    normal-variant plan of :func:`file_plan_seed`. Its detected silence (``is_silent``) is recorded as the
    meta's silence segments, so the music frames and the settle metric use it as ``--audio-dir`` does."""
    from datagen.visual import sample_visual_plan, visual_meta
    from shared.audio_io import load_audio

    wave, sr = load_audio(path, sr=int(cfg.data.sample_rate))
    timeline, names = stored_timeline(wave, sr, cfg)
    seed = file_plan_seed(seed0, path)
    plan = sample_visual_plan(cfg, seed, "normal")
    frames = render_frames(cfg, timeline, names, plan, renderer)
    spans = M.spans_from_mask(timeline[:, channel_index(names, "is_silent")] > 0.5)
    segments = [{"kind": "silence", "start_frame": a, "end_frame": b, "start_s": a / cfg.render.fps,
                 "end_s": b / cfg.render.fps} for a, b in spans]
    meta = {"variant": "file", "file": Path(path).name, "segments": segments, "seed": seed,
            "duration_s": len(wave) / sr, **visual_meta(plan), "fps": cfg.render.fps, "n_frames": len(frames)}
    return GroundTruth(frames, timeline, names, wave, sr, meta)


def merge_plans(runs: list[ScoredClip]) -> ScoredClip:
    """One file under several visual plans: its values are the mean over the plans (each plan's kept in
    ``info["plan_values"]``), its videos all of them (the metrics' per-clip mean then averages the plans too)."""
    first = runs[0]
    values = {k: M.nanmean(r.values[k] for r in runs) for k in first.values}
    info = dict(first.info, plan_seeds=[r.seed for r in runs], plan_values=[dict(r.values) for r in runs])
    return ScoredClip(first.key, first.seed, first.audio, first.video, first.loudness_std_db, values, info,
                      [r.video for r in runs[1:]])


def measure_teacher_files(cfg: Config, paths: Sequence[str | Path], seed0: int = 0,
                          progress: Progress | None = None, renderer=None, plans: int = 1) -> dict[str, Any]:
    """The teacher on real audio files: per file, every per-clip registry metric of the ground truth against the
    file's audio (no labels: silence is the detected one), averaged over ``plans`` visual plans (seeds ``seed0``..
    by file name; one plan's figure on one file moves by 0.1 with the plan alone), its loudness std, and the mean
    over files with a bootstrap CI (pooled metrics are left out: the files differ in length)."""
    if not paths:
        raise ValueError("measure_teacher_files: no audio files")
    if plans < 1:
        raise ValueError(f"plans must be >= 1, got {plans}")
    t0 = time.perf_counter()
    scored = []
    with renderer_scope(renderer, cfg.render.resolution) as r:
        for k, p in enumerate(paths):
            if progress:
                progress(f"teacher: file {k + 1}/{len(paths)} ({Path(p).name}, {plans} plan(s))")
            runs = []
            for j in range(plans):
                gt = file_ground_truth(cfg, p, seed0 + j, r)
                c = score_clip(cfg, gt, Path(p).name)
                c.info.update(file=Path(p).name, duration_s=round(gt.meta["duration_s"], 4), frames=len(gt.frames))
                runs.append(c)
            scored.append(merge_plans(runs))
    sec = section(cfg, scored, seed0, pooled=False)
    return {"seconds": round(time.perf_counter() - t0, 3), "seed0": int(seed0), "plans": int(plans), **sec}


# ------------------------------------------------------------------ provenance


def report_definitions(cfg: Config) -> dict[str, str]:
    """The eval's definitions of every metric, plus the teacher's own quantities."""
    return {**definitions(cfg), STYLE_METRIC: rows.EXTRA_DEFINITIONS[STYLE_METRIC] + " (here: the ground truth "
            "across the variant's clips, as the eval's ceiling)",
            "loudness_std_db": f"std (dB) of the timeline's log_rms channel over the clip's music frames; a clip "
                               f"counts as dynamic at >= {LOUD_STD_DB:g} dB"}


def content_versions() -> dict[str, Any] | None:
    """``datagen.manifest.content_versions()`` where the generator has it (older checkouts may not)."""
    try:
        from datagen.manifest import content_versions as cv
    except ImportError:
        return None
    return cv()


def run_info(cfg: Config, seed0: int, wall_s: float, renderer_info: dict[str, Any]) -> dict[str, Any]:
    """Config essentials, code versions, the generator actually imported, machine and wall time."""
    import datagen
    import trainer
    from shared.provenance import git_sha, machine_description, provenance

    dg = Path(datagen.__file__).resolve().parent
    return {"fps": cfg.render.fps, "resolution": cfg.render.resolution, "clip_seconds": cfg.data.clip_seconds,
            "sample_rate": cfg.data.sample_rate, "jpeg_quality": cfg.render.jpeg_quality,
            "visualizers": list(cfg.render.visualizers), "bootstrap": cfg.eval.bootstrap, "seed0": int(seed0),
            "content_versions": content_versions(), "datagen_path": str(dg), "datagen_commit": git_sha(dg),
            "trainer_commit": git_sha(Path(trainer.__file__).resolve().parent), "renderer": renderer_info,
            "machine": machine_description(), "time_utc": provenance()["time_utc"], "wall_s": round(wall_s, 3)}
