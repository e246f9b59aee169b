"""`trainer eval`: does the generated video follow the *music*? Per variant, beside a floor and a ceiling.

The evaluation runs in five stages, each its own module, on clips from one of two sources: the val shards
(:func:`evaluate`) or a folder of audio files with no ground truth (:func:`evaluate_audio_dir`, ``trainer eval
--audio-dir DIR``: each file sampled as ``trainer sample`` does; its ceiling the ground-truth visualizers rendered
on the same files, :mod:`trainer.eval.folder_ceiling`).

1. choose clips (:mod:`trainer.eval.clips`): ``eval.clips_per_variant`` clips of each variant of the val
   split, distinct audio, deterministic; each paired with a floor partner of different audio;
2. generate (:mod:`trainer.eval.generate`): own-audio and floor videos with shared style and noise,
   ``eval.seeds`` times (pooled), plus more style samples for the diversity metric;
3. score (:mod:`trainer.eval.registry` over the metric families :mod:`~trainer.eval.metrics` (settle,
   dropout return), :mod:`~trainer.eval.loudness`, :mod:`~trainer.eval.bands`, :mod:`~trainer.eval.rhythm`,
   :mod:`~trainer.eval.retrieval`, :mod:`~trainer.eval.av_offset` (the lag in ms)): each metric on the generated
   video, on the floor video and on the ground truth, all against the clip's own audio, on music frames (the AV
   offset on the whole clip);
4. assemble rows (:mod:`trainer.eval.rows`): per variant, n and a 95% bootstrap CI over clips;
5. write artifacts (:mod:`trainer.eval.report`, :mod:`trainer.eval.artifacts`): report.json, report.md
   (normal music first: the headline), plots, side-by-side mp4s; every report opens with the verdict
   (:mod:`trainer.eval.verdict`: the goals of :mod:`trainer.eval.goals` met or not, the VAE's warning floor).

Also the postmortem's VAE diagnostic: debug clips (the strongly reactive ones) encoded and decoded, the
metrics against their own vs a shuffled clip's audio, at the VAE's input and output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.errors import AudioError, DataError, OutputPathError
from shared.provenance import code_commit
from shared.timeline import channel_names
from trainer.eval import artifacts, rows
from trainer.eval import metrics as M
from trainer.eval.clips import Clip, floor_partners, list_audio_files, read_sibling_groups, read_val_clips
from trainer.eval.folder_ceiling import NO_CEILING, Teacher, folder_teacher
from trainer.eval.bands import RIDGE_LAMBDA
from trainer.eval.generate import Generated, generate_all, generate_files, val_loss
from trainer.eval.memorisation import NOT_MEASURED, memorisation_row, train_latents_of, training_bank
from trainer.eval.registry import (MUSIC_GUARD_S, REGISTRY, AudioSide, FileRun, PooledMetric, VideoSide, audio_side,
                                   definitions, metric_statistic, video_side)
from trainer.eval.report import json_number, write_report
from trainer.eval.verdict import verdict
from trainer.sample import SampleSettings, SamplingModel, stream_spec

MAX_VIDEOS_PER_VARIANT = 1
MAX_PLOTS_PER_VARIANT = 2
MAX_SIBLING_GROUPS = 16
MAX_TIMELINE_PLOTS = 8   # a folder's per-file timelines


def prepare(clips: list[Clip], cfg) -> int:
    """Timeline channel names per clip and one common length T (>= one snippet); returns T."""
    for c in clips:
        c.names = list(c.meta.get("timeline_channels") or [])
        if len(c.names) != c.timeline.shape[1]:
            c.names = channel_names(cfg.timeline)
        if len(c.names) != c.timeline.shape[1]:
            raise DataError(f"val clip {c.key}: timeline has {c.timeline.shape[1]} channels, the model's config "
                            f"{len(c.names)}")
    t = min(min(len(c.frames), len(c.timeline)) for c in clips)
    if t < cfg.diffusion.snippet_frames:
        raise DataError(f"val clips have {t} frames, fewer than one snippet ({cfg.diffusion.snippet_frames})")
    for c in clips:
        c.frames, c.timeline = c.frames[:t], c.timeline[:t]
    return t


def vae_diagnostic(model: SamplingModel, clips: list[Clip], idx: list[int], partners: list[int | None],
                   audio: list[AudioSide], gt: list[VideoSide], gt_lat: list[np.ndarray], cfg, seed: int
                   ) -> dict[str, Any]:
    """Postmortem §4: strongly reactive ground truth through the VAE; the metrics against own vs shuffled audio
    at the input (ground truth) and at the output (encoded -> decoded)."""
    out_sides, psnrs = {}, []
    for i in idx:
        rt = model.decode(torch.from_numpy(gt_lat[i]))
        out_sides[i] = video_side(rt)
        psnrs.append(M.psnr(rt, clips[i].frames))
    with_partner = [i for i in idx if partners[i] is not None]
    kinds = {
        "input_own": [[(audio[i], gt[i])] for i in idx],
        "input_shuffled": [[(audio[partners[i]], gt[i])] for i in with_partner],
        "output_own": [[(audio[i], out_sides[i])] for i in idx],
        "output_shuffled": [[(audio[partners[i]], out_sides[i])] for i in with_partner],
    }
    metrics = {}
    for m in REGISTRY:
        row = {}
        for kind, pairs in kinds.items():
            if len(pairs) < (2 if isinstance(m, PooledMetric) else 1):
                row[kind] = {"mean": None, "ci": None, "n": 0}
                continue
            stat, n = metric_statistic(m, pairs, cfg)
            row[kind] = rows.entry(stat, n, cfg, seed)
        metrics[m.name] = row
    return {"n_clips": len(idx), "clips": [clips[i].key for i in idx], "psnr_db": M.nanmean(psnrs),
            "metrics": metrics}


@dataclass
class Scored:
    """Stage 3's output: the chosen clips, their audio sides and every video's per-frame statistics."""

    clips: list[Clip]
    partners: list[int | None]
    frames: int                       # T, common to every clip
    audio: list[AudioSide]            # per clip
    gt: list[VideoSide]               # per clip: the ground-truth frames
    own: list[list[VideoSide]]        # per seed, per clip: generated from the clip's own audio
    floor: list[list[VideoSide]]      # per seed, per clip: generated from the floor partner's audio
    own_summaries: np.ndarray         # (K style samples, N clips, S) frame statistics at fixed audio
    reseeded_motion: np.ndarray       # (N, T) motion of the style-1 / seed-1 video (output sensitivity)
    gt_latents: list[np.ndarray]      # per clip: the ground truth encoded by the run's VAE
    own_latents: np.ndarray           # (N, T, C, h, w) the first style/seed's generated latents (memorisation)
    siblings: list[list[Clip]] | None  # val_siblings/ groups; None: the data has no such split


def score(model: SamplingModel, data: str | Path, clips: list[Clip], partners: list[int | None], frames: int,
          gen: Generated) -> Scored:
    fps, ev = model.cfg.render.fps, model.cfg.eval
    return Scored(
        clips=clips, partners=partners, frames=frames,
        audio=[audio_side(c.key, c.meta, c.timeline, c.names, c.wave, c.sr, fps) for c in clips],
        gt=[video_side(c.frames) for c in clips],
        own=[[video_side(v) for v in g] for g in gen.own[:ev.seeds]],
        floor=[[video_side(v) for v in g] for g in gen.floor],
        own_summaries=np.stack([[M.frame_statistics(v) for v in g] for g in gen.own]),
        reseeded_motion=np.stack([M.motion_energy(v) for v in gen.own[1]]),
        gt_latents=[model.encode(c.frames).float().cpu().numpy() for c in clips],
        own_latents=gen.own_latents[0],
        siblings=read_sibling_groups(data, model.cfg.render.resolution, MAX_SIBLING_GROUPS))


def variant_section(model: SamplingModel, sc: Scored, variant: str, ix: list[int], seed: int,
                    bank: np.ndarray | None = None) -> dict[str, Any]:
    """Stage 4 for one variant: every metric's generated / floor / ceiling entries over the clips ``ix``."""
    cfg = model.cfg
    if not ix:
        return {"n_clips": 0, "clips": [], "note": rows.NO_CLIPS,
                "metrics": {name: rows.empty_row(rows.NO_CLIPS)
                            for name in list(definitions(cfg)) + list(rows.EXTRA_DEFINITIONS)}}
    seeds = range(cfg.eval.seeds)
    fl = [i for i in ix if sc.partners[i] is not None]
    kinds = {"generated": [[(sc.audio[i], sc.own[s][i]) for s in seeds] for i in ix],
             "floor": [[(sc.audio[i], sc.floor[s][i]) for s in seeds] for i in fl],
             "ceiling": [[(sc.audio[i], sc.gt[i])] for i in ix]}
    metrics = rows.registry_rows(kinds, cfg, seed)
    sib = None if sc.siblings is None else [np.stack([M.frame_statistics(c.frames[:sc.frames]) for c in g])
                                            for g in sc.siblings if g[0].variant == variant]
    metrics.update(rows.style_rows(sc.own_summaries[:, ix], np.stack([sc.gt[i].summary for i in ix]), sib, cfg, seed))
    curves = lambda vids: np.stack([vids[i].motion for i in fl]) if fl else np.zeros((0, sc.frames))  # noqa: E731
    metrics["output_sensitivity_motion"] = rows.sensitivity_row(
        curves(sc.own[0]), curves(sc.floor[0]), sc.reseeded_motion[fl] if fl else np.zeros((0, sc.frames)), cfg, seed)
    losses = val_loss(model, [sc.clips[i] for i in ix], [sc.gt_latents[i] for i in ix], seed)
    metrics["val_loss"] = rows.val_loss_row(losses, len(ix))
    metrics["memorisation_ratio"] = memorisation_row([sc.own_latents[i] for i in ix], [sc.gt_latents[i] for i in ix],
                                                     bank, cfg, seed)
    return {"n_clips": len(ix), "clips": [sc.clips[i].key for i in ix], "note": None, "metrics": metrics}


def write_artifacts(out: Path, chosen: dict[str, list[Clip]], sc: Scored, gen: Generated,
                    variants: dict[str, Any], cfg) -> tuple[list[dict], list[dict]]:
    """Stage 5's pictures: (plots, videos) entries of report.json, the files written under ``out``."""
    fps = cfg.render.fps
    plots_out, videos = [], []
    for variant, v in variants.items():
        bar = artifacts.metric_bar_plot(out, variant, v["metrics"]) if v["n_clips"] else None
        if bar:
            plots_out.append({**bar, "variant": variant})
    for variant, cs in chosen.items():
        for c in cs[:MAX_PLOTS_PER_VARIANT]:
            i = sc.clips.index(c)
            curves = {"ground truth": sc.gt[i].motion, "generated (own audio)": sc.own[0][i].motion}
            if sc.partners[i] is not None:
                curves["floor (other audio)"] = sc.floor[0][i].motion
            plots_out.append(artifacts.timeline_plot(out, c.key, fps, sc.audio[i].rms,
                                                     M.audio_onset_peaks(sc.audio[i].onset), curves,
                                                     sc.audio[i].silence_spans, f"{c.key} ({c.variant})",
                                                     f"{c.variant} {c.key}: audio RMS and onsets vs motion energy")
                             | {"variant": variant})
        for c in cs[:MAX_VIDEOS_PER_VARIANT] if cfg.eval.write_videos else []:
            i = sc.clips.index(c)
            p = artifacts.write_side_by_side(out / "videos" / f"side_by_side_{c.key}.mp4", c.frames, gen.own[0][i],
                                             gen.floor[0][i], c, fps)
            videos.append({"variant": variant, "clip": c.key, "kind": "side_by_side", "path": str(p.relative_to(out))})
    return plots_out, videos


NOTES = [
    "Side-by-side videos: ground truth | generated with the clip's own audio | floor (generated with a different "
    "clip's audio, same style and noise); the clip's own audio is muxed.",
    f"Music frames: every frame except labelled silence and the {MUSIC_GUARD_S:g} s after it; the loudness, bands, "
    "rhythm and retrieval metrics use only those.",
    "Clips are chosen per variant with distinct audio (copies of a debug clip count once), so floor partners always "
    "have different audio.",
]
BETTER_EXTRA = {"style_diversity": "toward ceiling", "style_diversity_siblings": "toward ceiling",
                "output_sensitivity_motion": "higher", "val_loss": "lower (floor higher)",
                "memorisation_ratio": "higher (>= 0.5: not replaying training clips)"}


def evaluate(model: SamplingModel, data: str | Path, out: str | Path, per_variant: int | None = None,
             seed: int | None = None, log=print, train_latents: str | Path | None = None
             ) -> tuple[dict[str, Any], Path, Path]:
    """Run the whole evaluation and write the report; returns (report dict, report.json, report.md).
    ``train_latents``: the training split's latent shards for the memorisation check (default: the run's own)."""
    cfg = model.cfg
    ev = cfg.eval
    out = Path(out)
    seed = cfg.inference.seed if seed is None else seed
    t_start = time.perf_counter()
    commit = code_commit()  # the code that measures: read at the start (a commit made during a long eval is not it)

    # 1. choose clips
    chosen = read_val_clips(data, per_variant or ev.clips_per_variant, cfg.render.resolution, model.step_dir)
    clips = [c for cs in chosen.values() for c in cs]
    t = prepare(clips, cfg)
    partners = floor_partners(clips)
    log(f"eval: {len(clips)} val clips (" + ", ".join(f"{len(cs)} {v}" for v, cs in chosen.items()) + f"), {t} frames each")
    # 2. generate
    gen = generate_all(model, clips, partners, seed, log)
    # 3. score
    sc = score(model, data, clips, partners, t, gen)
    log(f"eval: scored {len(clips) * (1 + 2 * ev.seeds)} videos ({time.perf_counter() - t_start:.1f} s so far)")
    # 4. rows per variant, and the VAE diagnostic
    train_dir = Path(train_latents) if train_latents else train_latents_of(model.step_dir)
    bank = training_bank(train_dir, model.latent_scale) if train_dir else None
    log(f"eval: memorisation check against {len(bank)} training frames of {train_dir}" if bank is not None
        else f"eval: memorisation {NOT_MEASURED}")
    variants = {v: variant_section(model, sc, v, [clips.index(c) for c in cs], seed, bank)
                for v, cs in chosen.items()}
    vae_idx = [i for i, c in enumerate(clips) if c.variant == "debug"] or list(range(len(clips)))
    vae = vae_diagnostic(model, clips, vae_idx, partners, sc.audio, sc.gt, sc.gt_latents, cfg, seed)
    vae["note"] = ("the debug clips (strongly reactive ground truth)" if clips[vae_idx[0]].variant == "debug"
                   else "no debug clip in val: all evaluated clips")
    # 5. artifacts
    plots_out, videos = write_artifacts(out, chosen, sc, gen, variants, cfg)
    spec = stream_spec(model, SampleSettings())
    info = {"step": model.step, "data": str(data), "clips": len(clips), "frames_per_clip": t, "fps": cfg.render.fps,
            "sampler": spec.sampler, "steps": spec.steps, "guidance": spec.guidance, "seed": seed,
            "seeds": ev.seeds, "bootstrap": ev.bootstrap, "music_guard_s": MUSIC_GUARD_S,
            "beat_sigma_s": ev.beat_sigma_s, "ridge_lambda": RIDGE_LAMBDA, "generation_seconds": round(gen.seconds, 2),
            "total_seconds": round(time.perf_counter() - t_start, 2), "commit": commit}
    rep = {"config": cfg.model_dump(mode="json"), "checkpoint": str(model.step_dir), "info": info,
           "variants": variants, "vae_diagnostic": vae, "videos": videos, "plots": plots_out,
           "definitions": {**definitions(cfg), **rows.EXTRA_DEFINITIONS},
           "better": {**{m.name: m.better for m in REGISTRY}, **BETTER_EXTRA}, "notes": NOTES}
    rep = {"verdict": verdict(rep, vae["psnr_db"], f"{vae['n_clips']} val clip(s) encoded and decoded"), **rep}
    pj, pm = write_report(out, rep)
    return rep, pj, pm


# ------------------------------------------------------------------ a folder of audio

FOLDER_NOTES = [
    f"{NO_CEILING} Floors: the video scored against another file's audio (the next file by name), chance for "
    "retrieval, circularly shifted audio for the shift test.",
    f"Silence is detected by the timeline (is_silent); music frames exclude it and the {MUSIC_GUARD_S:g} s after it.",
]


def folder_report(runs: list[FileRun], skipped: list[dict[str, str]], cfg, checkpoint: str, folder: Path,
                  videos: list[dict[str, str]]) -> dict[str, Any]:
    """The report dict of a folder of audio (stage 4; plots and timing added by :func:`evaluate_audio_dir`)."""
    section, per_file, retrieval = rows.folder_section(runs, videos, cfg)
    return {
        "title": f"Synesthete evaluation on a folder of audio: {folder}",
        "config": {"eval": cfg.eval.model_dump(), "inference": cfg.inference.model_dump(),
                   "render": {"fps": cfg.render.fps, "resolution": cfg.render.resolution},
                   "data": {"sample_rate": cfg.data.sample_rate}, "beat_sigma_s": float(cfg.eval.beat_sigma_s),
                   "bootstrap": int(cfg.eval.bootstrap), "music_after_silence_s": MUSIC_GUARD_S,
                   "shifts_s": list(rows.SHIFTS_S)},
        "checkpoint": checkpoint, "audio_dir": str(folder),
        "variants": {rows.FOLDER_VARIANT: section}, "per_file": per_file, "skipped": skipped, "retrieval": retrieval,
        "videos": videos, "plots": [], "definitions": rows.folder_definitions(cfg), "notes": FOLDER_NOTES,
        "seconds": 0.0,
    }


def evaluate_audio_dir(model: SamplingModel, folder: str | Path, out: str | Path, seed: int | None = None,
                       progress: bool = True, log=print, teacher: Teacher | None = None
                       ) -> tuple[dict[str, Any], Path]:
    """Sample every audio file in ``folder`` into ``out``/videos, score them, write report.json, report.md and
    report.html into ``out``; returns (report dict, report.json path). A file that cannot be read is skipped and
    listed with its reason; a folder with no usable audio file is an AudioError (exit 2). ``teacher`` renders the
    ground-truth visualizers on a file: the ceiling (:mod:`trainer.eval.folder_ceiling`); None: no ceiling."""
    t0 = time.perf_counter()
    commit = code_commit()  # the code that measures: read at the start
    folder, out = Path(folder), Path(out)
    files = list_audio_files(folder)
    try:
        (out / "videos").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"--out {out}: cannot be created ({e.strerror or e})") from None
    cfg = model.cfg
    settings = SampleSettings(seed=cfg.inference.seed if seed is None else seed)
    runs, skipped, videos = generate_files(model, files, out, settings, progress, log)
    if not runs:
        raise AudioError(f"--audio-dir {folder}: none of the {len(files)} audio files could be used "
                         f"({'; '.join(s['file'] + ': ' + s['reason'] for s in skipped)})")
    rep = folder_report(runs, skipped, cfg, str(model.step_dir), folder, videos)
    vae_psnr = folder_teacher(model, rep, runs, files, teacher, log)
    rep = {"verdict": verdict(rep, vae_psnr, "the teacher's frames of these files encoded and decoded"), **rep}
    rep["plots"] = artifacts.folder_plots(out, runs, rep["per_file"], rep["retrieval"], MAX_TIMELINE_PLOTS)
    rep["seconds"] = round(time.perf_counter() - t0, 2)
    rep["commit"] = commit  # the code that measured it (None outside git)
    rep = json_number(rep)
    pj, _ = write_report(out, rep)
    return rep, pj
