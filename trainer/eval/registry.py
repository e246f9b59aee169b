"""The metric registry: every audio-responsiveness metric of the report, one line each.

A metric is scored on (audio, video) pairs: the audio side of a clip (:class:`AudioSide`, from its timeline,
wave and meta) and the per-frame statistics of one video (:class:`VideoSide`). The report scores three
kinds of video against each clip's own audio: *generated* (made from that audio), *floor* (made from a
different clip's audio, same style and noise) and *ceiling* (the ground-truth frames).

The clips come from one of two sources: the val shards (:func:`audio_side` of a stored clip) or a folder of
audio files (``trainer eval --audio-dir``: a :class:`FileAudio` per file, from its detected silence, and a
streamed video's motion and flow only, so there the metrics that need only those are scored).

* :class:`ClipMetric`: a per-clip value ``fn(audio, video, cfg)``; a variant's value is the mean over its
  clips (clips where it is undefined, NaN, are left out and not counted in ``n``).
* :class:`PooledMetric`: ``fn(pairs, cfg) -> stat(idx)``, a statistic of the variant's clips as a whole
  (a pooled fit, a retrieval over the clips), which the bootstrap resamples by clip. ``chance(n)``, when
  given, is the floor (what a video that carries no audio information scores).

A new metric is one pure function of arrays in its family's module and one line in :data:`REGISTRY`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from shared.config import Config
from shared.timeline import channel_index
from trainer.eval import av_offset, bands, loudness, retrieval, rhythm, stats
from trainer.eval import metrics as M

MUSIC_GUARD_S = 0.5    # labelled silence and this long after it are not music frames
DROPOUT_WINDOW_S = 0.5


@dataclass
class AudioSide:
    """A clip's audio, per frame ``[T]`` unless noted."""

    key: str
    fps: float
    rms: np.ndarray
    music: np.ndarray            # bool: not labelled silence, not within MUSIC_GUARD_S after it
    silence_spans: list[tuple[int, int]]
    dropout_spans: list[tuple[int, int]]
    onset_times: np.ndarray      # s, librosa at 22.05 kHz (AV-Align's audio peaks)
    beat_times: np.ndarray       # s, the timeline's beat estimate
    onset: np.ndarray | None = None        # the timeline's spectral-flux channel (None: a folder's file)
    band_inputs: np.ndarray | None = None  # (T, B) log10 band amplitudes, the ridge inputs (None: a folder's file)
    change_env: np.ndarray | None = None   # the audio's spectral flux on a 10 ms grid (av_offset); None: not measured


@dataclass
class VideoSide:
    """One video's per-frame statistics ``[T]`` unless noted; None where not measured (a streamed video of
    ``trainer eval --audio-dir`` keeps motion and flow only)."""

    motion: np.ndarray           # mean |frame difference|
    flow: np.ndarray             # mean Farneback optical-flow magnitude (px / frame)
    brightness: np.ndarray | None = None   # mean luma
    bright_area: np.ndarray | None = None  # fraction of pixels with luma > 0.5
    colour: np.ndarray | None = None       # (T, D) mean RGB, hue histogram, radial-ring luma
    summary: np.ndarray | None = None      # (S,) clip summary for style diversity (metrics.frame_statistics)


def audio_side(key: str, meta: dict, timeline: np.ndarray, names: list[str], wave: np.ndarray, sr: int,
               fps: float) -> AudioSide:
    """The audio side of one clip cut to ``len(timeline)`` frames."""
    from shared.timeline import estimate_beats

    t = len(timeline)
    spans = [(a, min(b, t)) for a, b in M.silence_spans_from_meta(meta) if a < t]
    if not spans and meta.get("variant") == "silence":
        spans = M.spans_from_mask(timeline[:, channel_index(names, "is_silent")])
    dropouts = [(a, min(b, t)) for a, b in M.segment_spans_from_meta(meta, "dropout") if a < t]
    band_idx = [i for i, n in enumerate(names) if n.startswith("band_")]
    wave = np.asarray(wave[: int(round(t / fps * sr))], dtype=np.float32)
    return AudioSide(
        key=key, fps=fps, rms=timeline[:, channel_index(names, "rms")].astype(np.float64),
        onset=timeline[:, channel_index(names, "onset")].astype(np.float64),
        band_inputs=bands.band_inputs(timeline[:, band_idx]),
        music=M.music_mask(t, spans, fps, MUSIC_GUARD_S), silence_spans=spans, dropout_spans=dropouts,
        onset_times=rhythm.audio_onset_times(wave, sr),
        beat_times=estimate_beats(wave, sr).beat_times(t / fps), change_env=av_offset.audio_change_envelope(wave, sr))


def video_side(frames: np.ndarray) -> VideoSide:
    return VideoSide(motion=M.motion_energy(frames), brightness=M.brightness(frames),
                     bright_area=loudness.bright_area_fraction(frames),
                     flow=rhythm.farneback_flow_magnitude(frames), colour=bands.colour_geometry_stats(frames),
                     summary=M.frame_statistics(frames))


@dataclass
class FileAudio:
    """A folder file's audio per frame: what its video is scored against (whole, cut, or circularly shifted)."""

    rms: np.ndarray          # (T,) linear frame RMS
    is_silent: np.ndarray    # (T,) 0/1 detected silence (the timeline's is_silent)
    onsets_s: np.ndarray     # librosa onset times (s)
    beats_s: np.ndarray      # the timeline's beat estimate (s): shared.timeline.estimate_beats
    fps: float
    change_env: np.ndarray | None = None  # spectral flux on the 10 ms grid (trainer.eval.av_offset); None: none

    @property
    def n_frames(self) -> int:
        return len(self.rms)

    def cut(self, n: int) -> "FileAudio":
        """The first ``n`` frames (and the events before them)."""
        d = n / self.fps
        env = None if self.change_env is None else self.change_env[:int(np.floor(d / av_offset.HOP_S + 1e-9))]
        return FileAudio(self.rms[:n], self.is_silent[:n], self.onsets_s[self.onsets_s < d],
                         self.beats_s[self.beats_s < d], self.fps, env)

    def rolled(self, k: int) -> "FileAudio":
        """Circularly shifted later by ``k`` frames (what was at frame t is at t + k, wrapping)."""
        d = self.n_frames / self.fps
        s = k / self.fps
        env = None if self.change_env is None else np.roll(self.change_env, int(round(s / av_offset.HOP_S)))
        return FileAudio(np.roll(self.rms, k), np.roll(self.is_silent, k), np.sort((self.onsets_s + s) % d),
                         np.sort((self.beats_s + s) % d), self.fps, env)

    def side(self, key: str = "") -> AudioSide:
        """The audio side the registry scores: detected silence as the silence spans, music frames from them."""
        spans = M.spans_from_mask(self.is_silent)
        return AudioSide(key=key, fps=self.fps, rms=self.rms, music=M.music_mask(self.n_frames, spans, self.fps,
                                                                                 MUSIC_GUARD_S),
                         silence_spans=spans, dropout_spans=[], onset_times=self.onsets_s, beat_times=self.beats_s,
                         change_env=self.change_env)


@dataclass
class FileRun:
    """One sampled file of a folder: its audio, the generated video's motion and flow, and where the mp4 is."""

    name: str
    audio: FileAudio
    video: VideoSide
    path: Path
    info: dict[str, Any] = field(default_factory=dict)


Pairs = list[list[tuple[AudioSide, VideoSide]]]  # per clip, per seed: (audio, video)


@dataclass(frozen=True)
class ClipMetric:
    name: str
    family: str
    fn: Callable[[AudioSide, VideoSide, Config], float]
    better: str
    definition: Callable[[Config], str]


@dataclass(frozen=True)
class PooledMetric:
    name: str
    family: str
    fn: Callable[[Pairs, Config], Callable[[np.ndarray], float]]
    better: str
    definition: Callable[[Config], str]
    chance: Callable[[int], float] | None = None


# ------------------------------------------------------------------ pooled metric functions


def ridge_r2(pairs: Pairs, cfg: Config) -> Callable[[np.ndarray], float]:
    """Bands -> colour/geometry ridge R^2 over the clips, music frames only, every seed's video a block of rows."""
    xs = [np.concatenate([a.band_inputs[a.music] for a, _ in clip]) for clip in pairs]
    ys = [np.concatenate([v.colour[a.music] for a, v in clip]) for clip in pairs]
    return bands.pooled_r2_statistic(xs, ys)


def _retrieval(pairs: Pairs, which: int) -> Callable[[np.ndarray], float]:
    """Per-clip retrieval values (0: rank of the true audio, 1: top-1 credit), averaged over seeds."""
    audio = [clip[0][0] for clip in pairs]
    per_seed = []
    for s in range(len(pairs[0])):
        sm = retrieval.score_matrix([clip[s][1].motion for clip in pairs], [a.rms for a in audio],
                                    [a.music for a in audio])
        per_seed.append(retrieval.true_audio_ranks(sm)[which])
    return stats.nanmean_of(np.mean(per_seed, axis=0))


def offset_curves(pairs: Pairs) -> np.ndarray:
    """(clips, lags) each clip's AV-offset cross-correlation curve (:func:`av_offset.offset_curve`), the mean over
    its seeds' videos; a row of NaN where the audio's change envelope was not measured."""
    n_lags = 2 * int(round(av_offset.MAX_LAG_S / av_offset.HOP_S)) + 1
    rows = []
    for clip in pairs:
        curves = [av_offset.offset_curve(a.change_env, v.motion, a.fps) for a, v in clip if a.change_env is not None]
        with np.errstate(all="ignore"):
            rows.append(np.nanmean(curves, axis=0) if curves else np.full(n_lags, np.nan))
    return np.stack(rows) if rows else np.zeros((0, n_lags))


def _offset(pairs: Pairs, which: int) -> Callable[[np.ndarray], float]:
    """The pooled AV offset (which 0: ms, 1: peak strength) of the clips ``idx``: the peak of their mean curve."""
    curves = offset_curves(pairs)
    return lambda idx: av_offset.pooled_offset(curves[idx])[which]


# ------------------------------------------------------------------ the registry

REGISTRY: list[ClipMetric | PooledMetric] = [
    ClipMetric("silence_settle_ratio", "settle",
               lambda a, v, c: M.silence_settle_ratio(v.motion, a.silence_spans, a.fps, c.eval.settle_delay_s)
               if a.silence_spans else float("nan"), "lower",
               lambda c: f"motion energy from {c.eval.settle_delay_s:g} s into labelled silence / motion energy "
                         "outside silence (1 = no settling; clips with a silence segment)"),
    ClipMetric("dropout_return", "settle",
               lambda a, v, c: M.dropout_return(v.motion, a.dropout_spans, a.fps, DROPOUT_WINDOW_S), "toward ceiling",
               lambda c: f"motion over {DROPOUT_WINDOW_S:g} s after a track-dropout segment ends / over "
                         f"{DROPOUT_WINDOW_S:g} s before it (> 1: motion steps up when the track returns)"),
    ClipMetric("loudness_motion_spearman", "loudness",
               lambda a, v, c: loudness.spearman_on(a.rms, v.motion, a.music), "higher",
               lambda c: "Spearman of audio RMS with motion energy (mean |frame difference|), music frames"),
    ClipMetric("loudness_brightness_spearman", "loudness",
               lambda a, v, c: loudness.spearman_on(a.rms, v.brightness, a.music), "higher",
               lambda c: "Spearman of audio RMS with mean luma (Rec. 601), music frames"),
    ClipMetric("loudness_bright_area_spearman", "loudness",
               lambda a, v, c: loudness.spearman_on(a.rms, v.bright_area, a.music), "higher",
               lambda c: f"Spearman of audio RMS with the fraction of pixels with luma > {loudness.BRIGHT_LUMA:g} "
                         "(size), music frames"),
    PooledMetric("bands_colour_geometry_r2", "bands", ridge_r2, "higher",
                 lambda c: f"variance-weighted out-of-fold R^2 of a ridge map (standardised inputs and targets, lambda = "
                           f"{bands.RIDGE_LAMBDA:g}) from log10 band energies to per-frame mean RGB, a "
                           f"{bands.HUE_BINS}-bin hue histogram and luma in 3 radial rings, each clip's own means "
                           f"removed; pooled over the variant's clips, {bands.N_FOLDS} clip-wise folds, music "
                           "frames (Hoerl & Kennard 1970)"),
    ClipMetric("av_align", "rhythm",
               lambda a, v, c: rhythm.av_align(a.onset_times, v.flow, a.music, a.fps), "higher",
               lambda c: "AV-Align (Yariv et al. 2024, TempoTokens av_align.py): librosa onsets at 22.05 kHz vs "
                         "local maxima of mean Farneback flow magnitude, matched strictly within +-1/fps, "
                         "IoU = matches / (|A| + |V| - matches); peaks on music frames"),
    ClipMetric("beat_alignment_score", "rhythm",
               lambda a, v, c: rhythm.beat_score(a.beat_times, v.motion, a.music, a.fps, c.eval.beat_sigma_s),
               "higher",
               lambda c: "beat alignment score (Bailando, Siyao et al. 2022): mean over the timeline's estimated "
                         f"beats of exp(-d^2 / 2 sigma^2), d = distance to the nearest local maximum of motion "
                         f"energy, sigma = {c.eval.beat_sigma_s:g} s; music frames"),
    ClipMetric("av_align_proxy", "rhythm",
               lambda a, v, c: rhythm.proxy_av_align(a.onset, v.motion, a.music, c.eval.av_align_tolerance_frames),
               "higher",
               lambda c: "PROXY, not the published AV-Align: timeline spectral-flux onset peaks vs frame-difference "
                         f"motion peaks, one-to-one within +-{c.eval.av_align_tolerance_frames} frame(s), music frames"),
    PooledMetric("retrieval_top1", "retrieval", lambda p, c: _retrieval(p, 1), "higher",
                 lambda c: "audio retrieval: share of videos whose own audio scores highest among the variant's "
                           "clips (score = Spearman of the video's motion with the candidate's RMS on its music "
                           "frames; ties split the credit); floor = chance 1/N",
                 chance=lambda n: retrieval.chance(n)[0]),
    PooledMetric("retrieval_mean_rank", "retrieval", lambda p, c: _retrieval(p, 0), "lower",
                 lambda c: "audio retrieval: mean rank of the video's own audio among the variant's N clips (1 = "
                           "best, ties averaged); floor = chance (N+1)/2",
                 chance=lambda n: retrieval.chance(n)[1]),
    ClipMetric("mean_motion_energy", "level", lambda a, v, c: float(v.motion[1:].mean()) if len(v.motion) > 1
               else float("nan"), "toward ceiling",
               lambda c: "mean absolute frame difference in [0, 1] (how much the picture moves at all)"),
    PooledMetric("av_offset_ms", "sync", lambda p, c: _offset(p, 0), "toward ceiling (0 = in sync)",
                 lambda c: av_offset.OFFSET_DEFINITION),
    PooledMetric("av_offset_peak", "sync", lambda p, c: _offset(p, 1), "higher (floor: chance)",
                 lambda c: av_offset.PEAK_DEFINITION),
]


def definitions(cfg: Config) -> dict[str, str]:
    return {m.name: m.definition(cfg) for m in REGISTRY}


def metric_statistic(metric: ClipMetric | PooledMetric, pairs: Pairs, cfg: Config
                     ) -> tuple[Callable[[np.ndarray], float], int]:
    """(stat(idx) over the clips, n = clips where the metric is defined)."""
    if isinstance(metric, ClipMetric):
        return stats.defined_mean([M.nanmean(metric.fn(a, v, cfg) for a, v in clip) for clip in pairs])
    return metric.fn(pairs, cfg), len(pairs)


def metric(name: str) -> ClipMetric | PooledMetric:
    """The registry's metric called ``name``."""
    return next(m for m in REGISTRY if m.name == name)
