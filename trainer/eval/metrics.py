"""Per-frame video signals and the settle family (silence settle, dropout return), style diversity and output
sensitivity: pure numpy functions on frames and timelines. The other metric families live in
:mod:`trainer.eval.loudness`, :mod:`~trainer.eval.bands`, :mod:`~trainer.eval.rhythm` and
:mod:`~trainer.eval.retrieval`; :mod:`trainer.eval.registry` lists them all.

Conventions used throughout:

* ``frames`` are ``uint8 [T, H, W, 3]`` (0..255) or float ``[T, H, W, 3]`` already in [0, 1]
  (see :func:`to_unit`). Every statistic is in [0, 1] pixel units.
* **Motion energy** is the *mean absolute frame difference* (not optical flow):
  ``m[t] = mean |x[t] - x[t-1]|`` over pixels and channels, for t >= 1, and
  ``m[0] = m[1]`` (the AV-Align reference code repeats its first flow value the same way),
  so ``m`` has one value per frame and frame t's value says how much frame t changed.
* Silence segments are ``(start_frame, end_frame)`` half-open spans (the ``segments`` of
  ``meta.json`` with ``kind == "silence"``).

Undefined cases are guarded and documented on each function; aggregates over clips
use :func:`nanmean` so a clip without e.g. a silence segment does not poison the mean.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy.signal import find_peaks
from scipy.stats import spearmanr

# Rec. 601 luma weights for brightness.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


# ------------------------------------------------------------------ per-frame signals


def to_unit(frames: np.ndarray) -> np.ndarray:
    """Frames as float32 in [0, 1]: uint8 is divided by 255, floats are taken as already in [0, 1]."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {frames.shape}")
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    return frames.astype(np.float32, copy=False)


def motion_energy(frames: np.ndarray) -> np.ndarray:
    """Per-frame motion energy ``[T]``: mean absolute difference to the previous frame (frame difference,
    not optical flow), in [0, 1]. ``m[0] = m[1]``; a single frame has zero motion."""
    x = to_unit(frames)  # (T, H, W, 3)
    if len(x) < 2:
        return np.zeros(len(x), dtype=np.float64)
    diff = np.abs(x[1:] - x[:-1]).mean(axis=(1, 2, 3), dtype=np.float64)  # (T-1,)
    return np.concatenate([diff[:1], diff])


def brightness(frames: np.ndarray) -> np.ndarray:
    """Per-frame mean luma ``[T]`` in [0, 1] (Rec. 601 weights)."""
    x = to_unit(frames)
    return x.mean(axis=(1, 2), dtype=np.float64) @ LUMA


def frame_statistics(frames: np.ndarray, grid: int = 4) -> np.ndarray:
    """A clip's summary vector of frame statistics (for style diversity), all in [0, 1] units:
    per-channel spatial mean (3), per-channel spatial std (3), mean motion energy (1) and a
    ``grid x grid`` layout of mean luma (geometry; grid**2), each averaged over time."""
    x = to_unit(frames)  # (T, H, W, 3)
    t, h, w, _ = x.shape
    mean_rgb = x.mean(axis=(0, 1, 2), dtype=np.float64)
    std_rgb = x.std(axis=(1, 2), dtype=np.float64).mean(axis=0)
    luma = x.astype(np.float64) @ LUMA  # (T, H, W)
    gh, gw = max(1, h // grid), max(1, w // grid)
    cells = luma[:, : gh * grid, : gw * grid].reshape(t, grid, gh, grid, gw).mean(axis=(0, 2, 4)).ravel()
    return np.concatenate([mean_rgb, std_rgb, [motion_energy(frames).mean()], cells])


# ------------------------------------------------------------------ correlation


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (scipy.stats.spearmanr). Guard: a constant series carries no rank
    information, so it scores 0.0 (no monotone relation) instead of scipy's NaN; fewer than 3 points -> 0.0."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"spearman: series lengths differ ({x.shape} vs {y.shape})")
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(spearmanr(x, y).statistic)


# ------------------------------------------------------------------ peaks of the AV-Align proxy (trainer.eval.rhythm)


def audio_onset_peaks(onset_env: np.ndarray, delta: float = 0.07, pre_max: int = 1, post_max: int = 1,
                      pre_avg: int = 3, post_avg: int = 3, wait: int = 1) -> np.ndarray:
    """Onset frames from a per-frame onset envelope (the timeline's ``onset`` channel, spectral flux).

    The peak picking of librosa's ``onset_detect`` (which AV-Align uses), at the video frame rate:
    the envelope is min-max normalised, and frame n is an onset when it is the maximum of
    ``[n-pre_max, n+post_max]``, at least ``delta`` over the mean of ``[n-pre_avg, n+post_avg]``,
    and at least ``wait`` frames after the previous onset. A flat envelope (e.g. silence) has none.
    """
    env = np.asarray(onset_env, dtype=np.float64)
    if env.size == 0 or np.ptp(env) == 0:
        return np.zeros(0, dtype=np.int64)
    x = (env - env.min()) / np.ptp(env)
    peaks: list[int] = []
    for n in range(len(x)):
        lo_m, hi_m = max(0, n - pre_max), min(len(x), n + post_max + 1)
        lo_a, hi_a = max(0, n - pre_avg), min(len(x), n + post_avg + 1)
        if x[n] <= 0 or x[n] < x[lo_m:hi_m].max() or x[n] < x[lo_a:hi_a].mean() + delta:
            continue
        if n > 0 and x[n - 1] == x[n]:
            continue  # a flat top counts once, at its start
        if peaks and n - peaks[-1] < wait:
            continue
        peaks.append(n)
    return np.asarray(peaks, dtype=np.int64)


def motion_peaks(motion: np.ndarray, min_height: float = 1e-3) -> np.ndarray:
    """Video peaks: local maxima of per-frame motion magnitude above ``min_height`` (AV-Align uses
    local maxima of optical-flow magnitude over a small threshold; here magnitude is frame difference
    in [0, 1] units). A flat top (e.g. a one-frame flash switching on then off) counts once, at its start."""
    m = np.asarray(motion, dtype=np.float64)
    if m.size < 3:
        return np.zeros(0, dtype=np.int64)
    peaks, _ = find_peaks(m, height=min_height)
    return peaks.astype(np.int64)


def match_peaks(audio_peaks: Iterable[int], video_peaks: Iterable[int], tolerance: int) -> int:
    """Number of audio peaks with a video peak within +-tolerance frames, each video peak used at most
    once (greedy in time order, which is optimal for equal-width windows). The one-to-one matching keeps
    IoU <= 1; the reference code lets one video peak match several audio peaks."""
    a = sorted(int(p) for p in audio_peaks)
    v = sorted(int(p) for p in video_peaks)
    matched, j = 0, 0
    for p in a:
        while j < len(v) and v[j] < p - tolerance:
            j += 1
        if j < len(v) and v[j] <= p + tolerance:
            matched += 1
            j += 1
    return matched


def av_align_from_peaks(audio_peaks: Sequence[int], video_peaks: Sequence[int], tolerance: int = 1) -> float:
    """AV-Align: intersection over union of matched peaks, ``I / (|A| + |V| - I)``.
    Guard: no peaks on either side (e.g. silence and a still video) is perfect agreement, 1.0."""
    na, nv = len(audio_peaks), len(video_peaks)
    if na == 0 and nv == 0:
        return 1.0
    i = match_peaks(audio_peaks, video_peaks, tolerance)
    return i / (na + nv - i)


# ------------------------------------------------------------------ silence settle


def silence_masks(n_frames: int, silent_spans: Iterable[tuple[int, int]], fps: float,
                  settle_delay_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(settled, loud) boolean masks ``[T]``: settled = inside a silence span from ``settle_delay_s``
    after it starts; loud = outside every silence span. Frame 0 is in neither (its motion is a copy)."""
    settled = np.zeros(n_frames, dtype=bool)
    silent = np.zeros(n_frames, dtype=bool)
    delay = int(math.ceil(settle_delay_s * fps))
    for start, end in silent_spans:
        start, end = max(0, int(start)), min(n_frames, int(end))
        silent[start:end] = True
        settled[min(end, start + delay):end] = True
    loud = ~silent
    settled[:1] = False
    loud[:1] = False
    return settled, loud


def silence_settle_ratio(motion: np.ndarray, silent_spans: Iterable[tuple[int, int]], fps: float,
                         settle_delay_s: float = 0.5, eps: float = 1e-4) -> float:
    """Motion energy in silent segments (from ``settle_delay_s`` after they start) over motion energy in
    loud ones: ``(mean_settled + eps) / (mean_loud + eps)``. Lower is better; a video that stops in
    silence scores ~0. The eps keeps it defined: a static video scores exactly 1 (it does not settle
    *more* in silence than elsewhere). NaN when the clip has no settled or no loud frames."""
    m = np.asarray(motion, dtype=np.float64)
    settled, loud = silence_masks(len(m), silent_spans, fps, settle_delay_s)
    if not settled.any() or not loud.any():
        return float("nan")
    return float((m[settled].mean() + eps) / (m[loud].mean() + eps))


def spans_from_mask(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open (start, end) runs of True in a boolean/0-1 mask, e.g. the timeline's ``is_silent``."""
    m = np.asarray(mask) > 0.5
    edges = np.diff(np.concatenate([[0], m.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def silence_spans_from_meta(meta: dict) -> list[tuple[int, int]]:
    """The ``kind == "silence"`` segments of a clip's meta.json as (start_frame, end_frame) spans."""
    return segment_spans_from_meta(meta, "silence")


def segment_spans_from_meta(meta: dict, kind: str) -> list[tuple[int, int]]:
    """The ``kind`` ("silence" or "dropout") segments of a clip's meta.json as (start_frame, end_frame) spans."""
    return [(int(s["start_frame"]), int(s["end_frame"])) for s in meta.get("segments", []) if s.get("kind") == kind]


def music_mask(n_frames: int, silent_spans: Iterable[tuple[int, int]], fps: float, guard_s: float = 0.5) -> np.ndarray:
    """Music frames ``[T]`` bool: every frame except labelled silence and the ``guard_s`` seconds after each
    silence span ends (where the music is only coming back and a visualizer's decay is still legitimate)."""
    keep = np.ones(n_frames, dtype=bool)
    guard = int(math.ceil(guard_s * fps))
    for start, end in silent_spans:
        keep[max(0, int(start)):min(n_frames, int(end) + guard)] = False
    return keep


def dropout_return(motion: np.ndarray, dropout_spans: Iterable[tuple[int, int]], fps: float,
                   window_s: float = 0.5, eps: float = 1e-4) -> float:
    """Motion step when a dropped-out track comes back: mean motion over ``window_s`` after the segment end
    over the mean over ``window_s`` before it, ``(after + eps) / (before + eps)``, averaged over the clip's
    dropout segments whose both windows fit in the clip (frame 0 excluded: its motion is a copy). > 1: motion
    rises when the track returns. NaN when no segment fits."""
    m = np.asarray(motion, dtype=np.float64)
    w = max(1, int(round(window_s * fps)))
    ratios = []
    for _, end in dropout_spans:
        end = int(end)
        if end - w < 1 or end + w > len(m):
            continue
        ratios.append((m[end:end + w].mean() + eps) / (m[end - w:end].mean() + eps))
    return float(np.mean(ratios)) if ratios else float("nan")


# ------------------------------------------------------------------ sensitivity and diversity


def output_sensitivity(f_true: np.ndarray, f_shuffled: np.ndarray, f_reseeded: np.ndarray) -> float:
    """Output sensitivity ``S = E||f(G(a,z)) - f(G(pi(a),z))|| / E||f(G(a,z)) - f(G(a,z'))||``.

    Rows are samples (clips), columns the feature f (e.g. a motion-energy curve). S compares how much
    the output moves when the audio is swapped to how much it moves when only the seed changes;
    S ~ 0 means the audio is ignored. Guards: identical outputs under the audio swap give S = 0 (even
    when the seed has no effect either); a numerator > 0 over a zero seed effect gives +inf.
    """
    a, b, c = (np.atleast_2d(np.asarray(v, dtype=np.float64)) for v in (f_true, f_shuffled, f_reseeded))
    if not (a.shape == b.shape == c.shape):
        raise ValueError(f"output_sensitivity: feature shapes differ {a.shape}, {b.shape}, {c.shape}")
    num = float(np.linalg.norm(a - b, axis=1).mean())
    den = float(np.linalg.norm(a - c, axis=1).mean())
    if num <= 1e-12:
        return 0.0
    if den <= 1e-12:
        return float("inf")
    return num / den


def mean_pairwise_distance(vectors: np.ndarray) -> float:
    """Mean Euclidean distance over all unordered pairs of rows; 0.0 for fewer than two rows."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or len(v) < 2:
        return 0.0
    d = np.linalg.norm(v[:, None, :] - v[None, :, :], axis=-1)  # (K, K)
    iu = np.triu_indices(len(v), k=1)
    return float(d[iu].mean())


def style_diversity(clips: Sequence[np.ndarray]) -> float:
    """Style diversity: mean pairwise distance of the clips' :func:`frame_statistics` vectors
    (same audio, different style latents for generated video; different clips for ground truth)."""
    return mean_pairwise_distance(np.stack([frame_statistics(c) for c in clips]))


def nanmean(values: Iterable[float]) -> float:
    """Mean over the finite values; NaN when there are none (e.g. no clip had a silence segment)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) between two uint8 videos."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
