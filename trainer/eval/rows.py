"""Stage 4 of the evaluation: assemble the report's rows, per variant, each with n and a bootstrap CI.

An entry is ``{"mean": float | None, "ci": [lo, hi] | None, "n": int}`` (None where undefined: JSON null,
never NaN). A row is ``{"generated": entry, "floor": entry, "ceiling": entry, "note": str | None}``.

A folder of audio (``trainer eval --audio-dir``) has no ground truth: its one variant's rows (:func:`folder_section`)
are registry metrics of each file's video against its own audio, with ceiling None (filled afterwards from the same
rows of the teacher's videos, :mod:`trainer.eval.folder_ceiling`) and, as floors, the same video against the next
file's audio, chance for retrieval, and for the shift test the file's audio circularly shifted.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from shared.config import Config
from trainer.eval import metrics as M
from trainer.eval import av_offset, retrieval, stats
from trainer.eval.memorisation import DEFINITION as MEMORISATION_DEFINITION
from trainer.eval.registry import (REGISTRY, AudioSide, ClipMetric, FileAudio, FileRun, Pairs, PooledMetric, VideoSide,
                                   metric, metric_statistic)

NO_CLIPS = "no clips"
UNDEFINED_NOTES = {
    "silence_settle_ratio": "no clip with a labelled silence segment",
    "dropout_return": "no clip with a track-dropout segment that has 0.5 s of music on both sides of its end",
}


def entry(stat: Callable[[np.ndarray], float] | None, n: int, cfg: Config, seed: int) -> dict[str, Any]:
    """mean, 95% percentile-bootstrap CI over clips (``eval.bootstrap`` resamples) and n."""
    if stat is None or n == 0:
        return {"mean": None, "ci": None, "n": int(n)}
    point, ci = stats.bootstrap_ci(stat, n, cfg.eval.bootstrap, seed)
    finite = point is not None and math.isfinite(point)
    return {"mean": float(point) if finite else None, "ci": list(ci) if (ci and finite) else None,
            "n": int(n) if finite else 0}


def fixed(value: float | None, n: int) -> dict[str, Any]:
    """An entry without sampling error (chance levels) or without a bootstrap (one pooled loss)."""
    ok = value is not None and math.isfinite(value)
    return {"mean": float(value) if ok else None, "ci": None, "n": int(n)}


def empty_row(note: str) -> dict[str, Any]:
    e = {"mean": None, "ci": None, "n": 0}
    return {"generated": dict(e), "floor": dict(e), "ceiling": dict(e), "note": note}


def metric_row(metric: ClipMetric | PooledMetric, kinds: dict[str, Pairs], cfg: Config, seed: int) -> dict[str, Any]:
    """One registry metric for one variant: generated, floor and ceiling pairs scored the same way."""
    n_clips = len(kinds["generated"])
    if n_clips == 0:
        return empty_row(NO_CLIPS)
    if isinstance(metric, PooledMetric) and n_clips < 2:
        return empty_row("needs >= 2 clips with distinct audio")
    row: dict[str, Any] = {"note": None}
    for kind in ("generated", "floor", "ceiling"):
        pairs = kinds[kind]
        if kind == "floor" and isinstance(metric, PooledMetric) and metric.chance is not None:
            row[kind] = fixed(metric.chance(n_clips), n_clips)
            row["note"] = "floor = chance"
            continue
        if not pairs or (isinstance(metric, PooledMetric) and len(pairs) < 2):
            row[kind] = {"mean": None, "ci": None, "n": 0}
            continue
        stat, n = metric_statistic(metric, pairs, cfg)
        row[kind] = entry(stat, n, cfg, seed)
    if row["generated"]["mean"] is None and row["ceiling"]["mean"] is None:
        row["note"] = UNDEFINED_NOTES.get(metric.name, "undefined on every clip")
    return row


def registry_rows(kinds: dict[str, Pairs], cfg: Config, seed: int) -> dict[str, dict[str, Any]]:
    return {m.name: metric_row(m, kinds, cfg, seed) for m in REGISTRY}


def style_rows(own_summaries: np.ndarray, gt_summaries: np.ndarray, sibling_summaries: list[np.ndarray] | None,
               cfg: Config, seed: int) -> dict[str, dict[str, Any]]:
    """Style diversity like for like. ``own_summaries`` (K, N, S): the generated clips' frame statistics for K
    style/seed samples at fixed audio; ``gt_summaries`` (N, S); ``sibling_summaries``: per sibling group
    (G_i, S) ground-truth clips sharing audio (None: the data has no siblings split; [] none in this variant).

    * ``style_diversity``: generated = mean pairwise distance over the K samples of one clip's audio;
      ceiling = the ground truth's across different clips (per clip: mean distance to the other clips).
    * ``style_diversity_siblings``: generated as above; ceiling = the ground truth's at fixed audio, across
      the visual plans of a sibling group (per group: mean pairwise distance)."""
    n = gt_summaries.shape[0]
    if n == 0:
        return {"style_diversity": empty_row(NO_CLIPS), "style_diversity_siblings": empty_row(NO_CLIPS)}
    gen = np.array([M.mean_pairwise_distance(own_summaries[:, i]) for i in range(n)])
    d = np.linalg.norm(gt_summaries[:, None] - gt_summaries[None], axis=-1)
    gt = np.array([d[i, np.arange(n) != i].mean() for i in range(n)]) if n >= 2 else np.full(n, np.nan)
    none = {"mean": None, "ci": None, "n": 0}
    gen_e = entry(stats.nanmean_of(gen), n, cfg, seed)
    rows = {"style_diversity": {"generated": gen_e, "floor": dict(none),
                                "ceiling": entry(stats.nanmean_of(gt), int(np.isfinite(gt).sum()), cfg, seed),
                                "note": "generated: fixed audio across style seeds; ground truth: across different "
                                        "clips" + ("" if n >= 2 else " (needs >= 2 clips)")}}
    if sibling_summaries is None or not sibling_summaries:
        rows["style_diversity_siblings"] = {"generated": dict(gen_e), "floor": dict(none), "ceiling": dict(none),
                                            "note": "no siblings" if sibling_summaries is None
                                            else "no siblings in this variant"}
    else:
        sib = np.array([M.mean_pairwise_distance(g) for g in sibling_summaries])
        rows["style_diversity_siblings"] = {
            "generated": dict(gen_e), "floor": dict(none),
            "ceiling": entry(stats.nanmean_of(sib), len(sib), cfg, seed),
            "note": "both at fixed audio: generated across style seeds, ground truth across the visual plans of "
                    f"{len(sib)} sibling group(s) (val_siblings/)"}
    return rows


def sensitivity_row(m_own0: np.ndarray, m_floor0: np.ndarray, m_own1: np.ndarray, cfg: Config, seed: int
                    ) -> dict[str, Any]:
    """Output sensitivity S on motion curves (N, T) of the clips that have a floor partner."""
    n = len(m_own0)
    if n == 0:
        return empty_row("no clip with a different-audio floor partner")
    stat = lambda idx: M.output_sensitivity(m_own0[idx], m_floor0[idx], m_own1[idx])  # noqa: E731
    none = {"mean": None, "ci": None, "n": 0}
    return {"generated": entry(stat, n, cfg, seed), "floor": dict(none), "ceiling": dict(none),
            "note": "ratio of means over clips; the ground truth has no generator"}


def val_loss_row(losses: dict[str, float] | None, n_clips: int) -> dict[str, Any]:
    if n_clips == 0:
        return empty_row(NO_CLIPS)
    if losses is None:
        return empty_row("needs >= 2 snippets")
    return {"generated": fixed(losses["val_L_good"], n_clips), "floor": fixed(losses["val_L_bad"], n_clips),
            "ceiling": {"mean": None, "ci": None, "n": 0},
            "note": f"one value over {losses['snippets']} snippets (no CI); floor = the loss with wrong audio"}


EXTRA_DEFINITIONS = {
    "style_diversity": "mean pairwise distance of clip frame statistics (mean/std RGB, motion, 4x4 luma layout): "
                       "generated at fixed audio across style seeds, ground truth across different clips",
    "style_diversity_siblings": "the same with the ground truth at fixed audio: clips of val_siblings/ sharing "
                                "audio with different visual plans",
    "output_sensitivity_motion": "S = E||f(G(a,z)) - f(G(a',z))|| / E||f(G(a,z)) - f(G(a,z'))||, f = motion curve, "
                                 "a' the floor partner's audio (0 = audio ignored)",
    "val_loss": "val diffusion loss (EMA weights) with each clip's own audio (generated) and with wrong audio (floor)",
    "memorisation_ratio": MEMORISATION_DEFINITION,
}


# ------------------------------------------------------------------ a folder of audio: no ground truth

FOLDER_VARIANT = "audio_dir"
# the folder's per-file rows (its report's names) -> the registry metric each is: those a streamed video's motion
# and flow suffice for
FOLDER_METRICS = {"settle_ratio": "silence_settle_ratio", "loudness_motion_spearman": "loudness_motion_spearman",
                  "av_align": "av_align", "beat_score": "beat_alignment_score"}
SHIFT_METRICS = ("loudness_motion_spearman", "av_align", "beat_score")
SHIFTS_S = (1.5, 2.25, 3.0, 3.75, 4.5, 5.25, 6.0)  # circular shifts of the shift test
MIN_SHIFT_MARGIN_S = 1.5   # a shift s is used only when s <= duration - this (else it wraps back near 0)

FOLDER_DEFINITIONS = {
    "settle_ratio": "motion energy (mean |frame difference|) from eval.settle_delay_s into detected silence over "
                    "motion energy outside silence, (m_silent + 1e-4) / (m_loud + 1e-4); lower = settles; files "
                    "without detected silence are left out (trainer/eval/metrics.py silence_settle_ratio)",
    "loudness_motion_spearman": "Spearman rank correlation of the audio frame RMS with motion energy over music "
                                "frames (scipy.stats.spearmanr)",
    "av_align": "AV-Align (Yariv et al. 2024, TempoTokens av_align.py): librosa onset_detect on audio at 22.05 kHz "
                "vs local maxima of the mean Farneback optical-flow magnitude (OpenCV); an onset is matched when "
                "a video peak lies strictly within +-1/fps; IoU = I / (|A| + |V| - I); peaks on music frames only",
    "beat_score": "beat alignment score in Bailando's form (Li et al. 2022) for visualisers: mean over the "
                  "timeline's beats of exp(-d^2 / 2 sigma^2), d = distance to the nearest local maximum of motion "
                  "energy (s); music frames only",
    "retrieval_top1": "audio retrieval across the folder: s_ij = Spearman over audio j's music frames of video i's "
                      "motion with audio j's RMS (common length); the fraction of videos whose own audio scores "
                      "highest (ties count half a rank); floor = chance 1/N",
    "retrieval_mean_rank": "mean rank of the video's own audio among the N files (1 = best, ties averaged); "
                           "floor = chance (N + 1) / 2",
    "shift_test_win_rate": "per file, the fraction of (shift, metric) comparisons where the true alignment scores "
                           "higher than the audio circularly shifted by 1.5-6 s (ties count half; metrics: "
                           "loudness_motion_spearman, av_align, beat_score), averaged over files; floor = chance 0.5",
    **{f"shift_test_{m}": f"{m} with the true alignment (generated) vs the mean over circular shifts of the audio by "
                          "1.5-6 s (floor)" for m in SHIFT_METRICS},
    "av_offset_ms": av_offset.OFFSET_DEFINITION.replace("variant's clips (and seeds)", "folder's files") +
                    "; per file: its own curve's peak; floor = each video against the next file's audio",
    "av_offset_peak": av_offset.PEAK_DEFINITION.replace("variant's clips (and seeds)", "folder's files"),
}
OFFSET_ROWS = ("av_offset_ms", "av_offset_peak")


def folder_definitions(cfg: Config) -> dict[str, str]:
    d = dict(FOLDER_DEFINITIONS)
    d["beat_score"] += f" (sigma = {cfg.eval.beat_sigma_s:g} s)"
    d["settle_ratio"] += f" (eval.settle_delay_s = {cfg.eval.settle_delay_s:g} s)"
    return d


def cut_pair(video: VideoSide, audio: FileAudio) -> tuple[AudioSide, VideoSide]:
    """A video (its motion and flow) and an audio side, both cut to the shorter."""
    n = min(len(video.motion), audio.n_frames)
    return audio.cut(n).side(), VideoSide(motion=video.motion[:n], flow=video.flow[:n])


def score_pair(video: VideoSide, audio: FileAudio, cfg: Config, offset: bool = False) -> dict[str, float]:
    """The per-file rows of a video against an audio side, both cut to the shorter (NaN where undefined);
    ``offset``: with the file's own AV offset and its peak strength (trainer.eval.av_offset)."""
    a, v = cut_pair(video, audio)
    out = {row: metric(name).fn(a, v, cfg) for row, name in FOLDER_METRICS.items()}
    if offset:
        out.update(zip(OFFSET_ROWS, (metric(m).fn([[(a, v)]], cfg)(np.arange(1)) for m in OFFSET_ROWS)))
    return out


def shift_frames(n_frames: int, fps: float) -> list[int]:
    """The shift test's shifts in frames: SHIFTS_S that leave MIN_SHIFT_MARGIN_S before wrapping around."""
    duration = n_frames / fps
    return sorted({int(round(s * fps)) for s in SHIFTS_S if s <= duration - MIN_SHIFT_MARGIN_S})


def values_row(generated: list, floor: list | None, cfg: Config, note: str | None = None, seed: int = 0
               ) -> dict[str, Any]:
    """A row from per-file values (None / NaN: undefined, left out); no ceiling."""
    def values_entry(values: list) -> dict[str, Any]:
        stat, n = stats.defined_mean(values)
        return entry(stat, n, cfg, seed)
    return {"generated": values_entry(generated), "floor": None if floor is None else values_entry(floor),
            "ceiling": None, "note": note}


def file_entries(runs: list[FileRun], videos: list[dict[str, str]], cfg: Config) -> list[dict[str, Any]]:
    """Per file: its info, its rows against its own audio, against the next file's (the floor) and shifted."""
    n = len(runs)
    out = []
    for i, r in enumerate(runs):
        other = runs[(i + 1) % n] if n >= 2 else None  # the floor: different audio, cut to the common length
        shifts = shift_frames(r.audio.n_frames, r.audio.fps)
        shifted = [score_pair(r.video, r.audio.rolled(k), cfg) for k in shifts]
        out.append({"file": r.name, **r.info, "video": videos[i]["path"] if i < len(videos) else None,
                    "metrics": score_pair(r.video, r.audio, cfg, True), "floor_audio": other.name if other else None,
                    "floor": score_pair(r.video, other.audio, cfg, True) if other
                    else {m: None for m in (*FOLDER_METRICS, *OFFSET_ROWS)},
                    "shift_test": {"shifts_s": [round(k / r.audio.fps, 4) for k in shifts],
                                   **{m: [s[m] for s in shifted] for m in SHIFT_METRICS}}})
    return out


def per_file_rows(per_file: list[dict[str, Any]], cfg: Config) -> dict[str, dict[str, Any]]:
    n = len(per_file)
    one_file_note = "one file: no other audio for the floor" if n < 2 else None
    out = {}
    for m in FOLDER_METRICS:
        note = one_file_note
        if m == "settle_ratio":
            with_sil = sum(1 for p in per_file if p["detected_silences_s"])
            note = f"{with_sil} of {n} files have detected silence" + (f"; {one_file_note}" if one_file_note else "")
        out[m] = values_row([p["metrics"][m] for p in per_file], None if n < 2 else [p["floor"][m] for p in per_file],
                            cfg, note)
    return out


def retrieval_rows(runs: list[FileRun], cfg: Config, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the report's retrieval block, the registry's retrieval rows) across the folder's files."""
    n = len(runs)
    if n < 2:
        skipped = f"{n} file: retrieval needs at least 2 audio files in the folder"
        row = {"generated": {"mean": None, "ci": None, "n": 0}, "floor": None, "ceiling": None, "note": skipped}
        return {"skipped": skipped}, {"retrieval_top1": row, "retrieval_mean_rank": dict(row)}
    audio = [r.audio.side(r.name) for r in runs]
    s = retrieval.score_matrix([r.video.motion for r in runs], [a.rms for a in audio], [a.music for a in audio])
    ranks, top1 = retrieval.true_audio_ranks(s)
    block = {"skipped": None, "files": [r.name for r in runs], "scores": s.tolist(), "ranks": ranks.tolist(),
             "top1_credit": top1.tolist()}
    pairs = [[(a, r.video)] for a, r in zip(audio, runs)]
    out = {}
    for name, note in (("retrieval_top1", f"floor = chance 1/{n}"),
                       ("retrieval_mean_rank", f"lower is better; floor = chance ({n}+1)/2")):
        m = metric(name)
        stat, k = metric_statistic(m, pairs, cfg)
        out[name] = {"generated": entry(stat, k, cfg, seed), "floor": fixed(m.chance(n), n), "ceiling": None,
                     "note": note}
    return block, out


def offset_rows(runs: list[FileRun], cfg: Config, seed: int = 0) -> dict[str, dict[str, Any]]:
    """The AV offset and its peak strength pooled over the folder's files (:func:`registry.offset_curves`): each
    video against its own audio, the floor each against the next file's audio; the CI over files."""
    n = len(runs)
    own = [[cut_pair(r.video, r.audio)] for r in runs]
    other = [[cut_pair(r.video, runs[(i + 1) % n].audio)] for i, r in enumerate(runs)] if n >= 2 else None
    out = {}
    for name in OFFSET_ROWS:
        m = metric(name)
        row = [entry(*metric_statistic(m, pairs, cfg), cfg, seed) if pairs else None for pairs in (own, other)]
        out[name] = {"generated": row[0], "floor": row[1], "ceiling": None,
                     "note": "one file: no other audio for the floor" if n < 2 else
                     "the mean cross-correlation curve over files; floor: each video against the next file's audio"}
    return out


def shift_test_rows(per_file: list[dict[str, Any]], cfg: Config) -> dict[str, dict[str, Any]]:
    """Per file, the share of its (shift, metric) comparisons the true alignment wins (into its shift_test); the CI
    is over files (comparisons within a file are not independent)."""
    win_rates, n_comparisons = [], 0
    for p in per_file:
        wins = [1.0 if t > v else 0.5 if t == v else 0.0
                for m in SHIFT_METRICS for t in [p["metrics"][m]] for v in p["shift_test"][m]
                if math.isfinite(t) and math.isfinite(v)]
        p["shift_test"]["win_rate"] = float(np.mean(wins)) if wins else None
        win_rates.append(p["shift_test"]["win_rate"])
        n_comparisons += len(wins)
    out = {}
    for m in SHIFT_METRICS:
        shifted_means = [float(np.nanmean(p["shift_test"][m])) if np.isfinite(p["shift_test"][m]).any() else None
                         for p in per_file if p["shift_test"][m]]
        out[f"shift_test_{m}"] = values_row([p["metrics"][m] for p in per_file if p["shift_test"][m]], shifted_means,
                                            cfg, "floor = the same video against its audio circularly shifted")
    no_shift = [p["file"] for p in per_file if not p["shift_test"]["shifts_s"]]
    scored = sum(r is not None for r in win_rates)
    out["shift_test_win_rate"] = {
        "generated": values_row(win_rates, None, cfg)["generated"], "floor": fixed(0.5, scored), "ceiling": None,
        "note": (f"per file over its {n_comparisons // max(1, scored)} (shift, metric) comparisons on average; "
                 "floor = chance" +
                 (f"; too short for a shift of {SHIFTS_S[0]:g} s + {MIN_SHIFT_MARGIN_S:g} s: {', '.join(no_shift)}"
                  if no_shift else ""))}
    return out


def folder_section(runs: list[FileRun], videos: list[dict[str, str]], cfg: Config
                   ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Stage 4 for a folder of audio: (its variant section, the per-file entries, the retrieval block)."""
    per_file = file_entries(runs, videos, cfg)
    metrics = per_file_rows(per_file, cfg)
    block, r_rows = retrieval_rows(runs, cfg)
    metrics.update(r_rows)
    metrics.update(offset_rows(runs, cfg))
    metrics.update(shift_test_rows(per_file, cfg))
    return {"n_clips": len(runs), "clips": [r.name for r in runs], "metrics": metrics}, per_file, block
