"""Metric functions that ``trainer eval --audio-dir`` needs and that the per-variant eval (issue 12, its
metric modules) defines too. They live here until those modules land; then ``trainer/eval/audio_dir.py``
imports them from there (one import line) and this file goes.

Each is a pure function of arrays and names the definition it follows.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

TEMPOTOKENS_SR = 22050  # AV-Align's audio rate: librosa.load's default in TempoTokens' av_align.py


# ------------------------------------------------------------------ music frames


def music_mask(is_silent: np.ndarray, fps: float, after_s: float = 0.5) -> np.ndarray:
    """Frames that are music: not silent, not within ``after_s`` after a silent run, and not frame 0
    (its motion is a copy of frame 1's). ``is_silent`` is the timeline's 0/1 channel (or labels)."""
    silent = np.asarray(is_silent) > 0.5
    mask = ~silent
    tail = int(math.ceil(after_s * fps))
    ends = np.flatnonzero(silent[:-1] & ~silent[1:]) + 1  # first frame after each silent run
    for e in ends:
        mask[e:e + tail] = False
    mask[:1] = False
    return mask


# ------------------------------------------------------------------ AV-Align as TempoTokens computes it


def flow_magnitude(frames: np.ndarray) -> np.ndarray:
    """Per-frame mean Farneback optical-flow magnitude ``[T]`` (TempoTokens ``av_align.py``: grey frames,
    ``cv2.calcOpticalFlowFarneback(prev, cur, None, 0.5, 3, 15, 3, 5, 1.2, 0)``, mean of the magnitude);
    value 0 is the flow from frame 0 to 1, repeated, as the reference does. Frames are RGB uint8."""
    import cv2

    x = np.asarray(frames)
    if len(x) < 2:
        return np.zeros(len(x), dtype=np.float64)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in x]
    flow = []
    for a, b in zip(grey[:-1], grey[1:]):
        f = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        flow.append(float(cv2.magnitude(f[..., 0], f[..., 1]).mean()))
    return np.asarray(flow[:1] + flow, dtype=np.float64)


def local_maxima(x: np.ndarray) -> np.ndarray:
    """Indices i with ``x[i-1] < x[i] > x[i+1]`` (TempoTokens' ``find_local_max_indexes``, which loops over
    ``range(1, n - 1)``; the first and last samples are never peaks)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 3:
        return np.zeros(0, dtype=np.int64)
    return (np.flatnonzero((x[1:-1] > x[:-2]) & (x[1:-1] > x[2:])) + 1).astype(np.int64)


def audio_onset_times(wave: np.ndarray, sr: int) -> np.ndarray:
    """Onset times (s): librosa ``onset_strength`` + ``onset_detect`` with defaults on the audio resampled
    to 22.05 kHz (TempoTokens ``av_align.py`` loads with ``librosa.load``, whose default rate that is)."""
    import librosa

    y = np.asarray(wave, dtype=np.float32)
    if sr != TEMPOTOKENS_SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=TEMPOTOKENS_SR)
    env = librosa.onset.onset_strength(y=y, sr=TEMPOTOKENS_SR)
    frames = librosa.onset.onset_detect(onset_envelope=env, sr=TEMPOTOKENS_SR)
    return librosa.frames_to_time(frames, sr=TEMPOTOKENS_SR).astype(np.float64)


def av_align_iou(audio_peaks_s: Sequence[float], video_peaks_s: Sequence[float], fps: float) -> float:
    """AV-Align IoU (Yariv et al. 2024, TempoTokens ``calc_iou``): an audio peak is matched when some video
    peak lies strictly within +-1/fps of it, each audio peak counted once; IoU = I / (|A| + |V| - I),
    0 when both sets are empty (the reference's guard)."""
    a = np.asarray(audio_peaks_s, dtype=np.float64)
    v = np.asarray(video_peaks_s, dtype=np.float64)
    tol = 1.0 / fps
    matched = int(sum(bool(np.any((v - tol < p) & (p < v + tol))) for p in a))
    union = len(a) + len(v) - matched
    return matched / union if union > 0 else 0.0


# ------------------------------------------------------------------ beat alignment (Bailando, adapted)


def beat_times_from_phase(beat_phase: np.ndarray, fps: float) -> np.ndarray:
    """Beat times (s) from the timeline's ``beat_phase`` channel (phase at each frame's start, 0 at a beat).

    The phase advances by ``d = 1 / (period * fps)`` a frame; where it wraps (frame b), the beat fell
    ``phase[b] / d`` frames before frame b's start, so it is at ``(b - phase[b] / d) / fps``. A beat exactly on
    frame 0 (phase 0) counts too."""
    p = np.asarray(beat_phase, dtype=np.float64)
    if len(p) < 2:
        return np.zeros(0)
    step = np.diff(p)
    step = step[step > 0]
    if step.size == 0:
        return np.zeros(0)
    d = float(np.median(step))
    wraps = np.flatnonzero(p[1:] < p[:-1]) + 1
    times = (wraps - p[wraps] / d) / fps
    if p[0] == 0.0:
        times = np.concatenate([[0.0], times])
    return times


def beat_alignment_score(beat_times_s: Sequence[float], event_times_s: Sequence[float], sigma_s: float) -> float:
    """Beat alignment score in Bailando's form (Li et al. 2022), adapted to visualisers: the mean over beats of
    ``exp(-d^2 / (2 sigma^2))`` with d the distance (s) from the beat to the nearest visual event (here the
    local maxima of motion energy). NaN without beats; 0 when there are beats but no events."""
    b = np.asarray(beat_times_s, dtype=np.float64)
    e = np.asarray(event_times_s, dtype=np.float64)
    if b.size == 0:
        return float("nan")
    if e.size == 0:
        return 0.0
    d = np.abs(b[:, None] - e[None, :]).min(axis=1)
    return float(np.exp(-(d ** 2) / (2 * sigma_s ** 2)).mean())


# ------------------------------------------------------------------ retrieval


def retrieval_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of the true audio for each video: row i of ``scores`` (N, N) holds s_ij for candidate
    audio j, the true audio is j = i; ties are averaged (a tie with one other candidate ranks 1.5)."""
    s = np.asarray(scores, dtype=np.float64)
    true = np.diag(s)[:, None]
    off = ~np.eye(len(s), dtype=bool)
    above = ((s > true) & off).sum(axis=1)
    tied = ((s == true) & off).sum(axis=1)
    return 1.0 + above + 0.5 * tied


# ------------------------------------------------------------------ confidence intervals


def bootstrap_ci(values: Sequence[float], n_resamples: int = 1000, level: float = 0.95, seed: int = 0
                 ) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean over the finite values (resampled with replacement; Efron &
    Tibshirani 1993, ch. 13). None for fewer than 2 values."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_resamples, v.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
