"""INTERIM: the metric functions ``trainer eval --audio-dir`` shares with the per-variant eval, until that eval's
metric modules (issue 12 item 9) are merged. Each function here has the name, signature and behaviour of its
counterpart there, listed below; at the merge, ``trainer/eval/audio_dir.py`` imports them from those modules
(the import block written out there) and this file and tests/test_eval_interim_metrics.py are deleted.

    rhythm.py     audio_onset_times, farneback_flow_magnitude, strict_local_maxima, av_align_iou,
                  beat_alignment_score, times_in_mask, frames_in_mask, av_align, beat_score
    metrics.py    music_mask
    loudness.py   spearman_on
    retrieval.py  true_audio_ranks, chance
    stats.py      nanmean_of, bootstrap_ci
    rows.py       entry, fixed

Definitions: AV-Align as TempoTokens' ``av_align.py`` computes it (Yariv et al., AAAI 2024); the beat
alignment score of Bailando (Siyao et al., CVPR 2022); the percentile bootstrap (Efron & Tibshirani 1993,
ch. 13); retrieval rank of the true pair with ties averaged (Arandjelovic & Zisserman, ECCV 2018).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from trainer.eval.metrics import spearman

AV_ALIGN_SR = 22050  # librosa.load's default rate, which the reference code uses
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)  # pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags


# ------------------------------------------------------------------ rhythm (AV-Align, beat alignment)


def audio_onset_times(wave: np.ndarray, sr: int) -> np.ndarray:
    """Audio peaks of AV-Align (seconds): librosa's default onset detector on the audio at 22 050 Hz."""
    import librosa

    y = np.asarray(wave, dtype=np.float32)
    if sr != AV_ALIGN_SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=AV_ALIGN_SR)  # what librosa.load(path) does
    if y.size == 0 or not np.any(y):
        return np.zeros(0)
    env = librosa.onset.onset_strength(y=y, sr=AV_ALIGN_SR)
    frames = librosa.onset.onset_detect(onset_envelope=env, sr=AV_ALIGN_SR)
    return np.asarray(librosa.frames_to_time(frames, sr=AV_ALIGN_SR), dtype=np.float64)


def farneback_flow_magnitude(frames: np.ndarray) -> np.ndarray:
    """Per-frame mean Farneback optical-flow magnitude ``[T]`` of RGB uint8 frames, as the reference computes it:
    flow from frame i-1 to i (grey frames), and frame 0 takes the value of frame 1."""
    import cv2

    x = np.asarray(frames)
    if x.dtype != np.uint8:
        x = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
    if len(x) < 2:
        return np.zeros(len(x), dtype=np.float64)
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in x]  # ours are RGB, theirs BGR
    mags = []
    for a, b in zip(gray[:-1], gray[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, *FARNEBACK)
        mags.append(float(cv2.magnitude(flow[..., 0], flow[..., 1]).mean()))
    return np.asarray(mags[:1] + mags, dtype=np.float64)


def strict_local_maxima(curve: Sequence[float]) -> np.ndarray:
    """Indices ``i`` (1 <= i <= n-2) with ``curve[i-1] < curve[i] > curve[i+1]`` (the reference's
    ``find_local_max_indexes`` with its undefined ``n`` set to ``len(arr)``); a plateau is no strict maximum."""
    m = np.asarray(curve, dtype=np.float64)
    if len(m) < 3:
        return np.zeros(0, dtype=np.int64)
    inner = (m[1:-1] > m[:-2]) & (m[1:-1] > m[2:])
    return np.flatnonzero(inner).astype(np.int64) + 1


def av_align_iou(audio_times: Sequence[float], video_times: Sequence[float], fps: float) -> float:
    """matches / (|A| + |V| - matches); an audio peak is matched when a video peak lies strictly within +-1/fps
    of it (each audio peak counted once). NaN when there are no peaks at all (the reference divides by zero)."""
    a = np.asarray(audio_times, dtype=np.float64)
    v = np.asarray(video_times, dtype=np.float64)
    if a.size + v.size == 0:
        return float("nan")
    tol = 1.0 / fps
    matches = int(sum(bool(np.any((v - tol < t) & (t < v + tol))) for t in a))
    return matches / (a.size + v.size - matches)


def beat_alignment_score(beat_times: Sequence[float], event_times: Sequence[float], sigma_s: float) -> float:
    """Bailando's BAS: mean over beats of ``exp(-d^2 / (2 sigma^2))``, d the distance (s) to the nearest visual
    event. No visual event: every term is 0. NaN when there is no beat."""
    b = np.asarray(beat_times, dtype=np.float64)
    e = np.asarray(event_times, dtype=np.float64)
    if b.size == 0:
        return float("nan")
    if e.size == 0:
        return 0.0
    d = np.abs(b[:, None] - e[None, :]).min(axis=1)
    return float(np.exp(-(d ** 2) / (2.0 * sigma_s ** 2)).mean())


def times_in_mask(times: Sequence[float], mask: np.ndarray, fps: float) -> np.ndarray:
    """The times (s) whose video frame ``floor(t * fps)`` lies inside the clip and is True in ``mask``."""
    t = np.asarray(times, dtype=np.float64)
    f = np.floor(t * fps + 1e-9).astype(np.int64)
    ok = (f >= 0) & (f < len(mask))
    keep = np.zeros(len(t), dtype=bool)
    keep[ok] = np.asarray(mask, dtype=bool)[f[ok]]
    return t[keep]


def frames_in_mask(frames: Sequence[int], mask: np.ndarray) -> np.ndarray:
    f = np.asarray(frames, dtype=np.int64)
    return f[np.asarray(mask, dtype=bool)[f]] if f.size else f


def av_align(audio_times: np.ndarray, flow: np.ndarray, music: np.ndarray, fps: float) -> float:
    """AV-Align of one clip on its music frames: audio onsets and flow peaks outside the music mask dropped."""
    video = frames_in_mask(strict_local_maxima(flow), music) / fps
    return av_align_iou(times_in_mask(audio_times, music, fps), video, fps)


def beat_score(beat_times: np.ndarray, motion: np.ndarray, music: np.ndarray, fps: float, sigma_s: float) -> float:
    """Beat alignment score of one clip: beats on music frames against local maxima of motion energy."""
    events = frames_in_mask(strict_local_maxima(motion), music) / fps
    return beat_alignment_score(times_in_mask(beat_times, music, fps), events, sigma_s)


# ------------------------------------------------------------------ music frames, loudness


def music_mask(n_frames: int, silent_spans: Iterable[tuple[int, int]], fps: float, guard_s: float = 0.5) -> np.ndarray:
    """Music frames ``[T]`` bool: every frame except silence and the ``guard_s`` seconds after each silence span."""
    keep = np.ones(n_frames, dtype=bool)
    guard = int(math.ceil(guard_s * fps))
    for start, end in silent_spans:
        keep[max(0, int(start)):min(n_frames, int(end) + guard)] = False
    return keep


def spearman_on(audio: np.ndarray, video: np.ndarray, music: np.ndarray) -> float:
    """Spearman correlation of two per-frame curves over the music frames (frame 0 dropped: its motion is a
    copy of frame 1's). NaN when fewer than 3 music frames remain."""
    keep = np.asarray(music, dtype=bool).copy()
    keep[:1] = False
    if keep.sum() < 3:
        return float("nan")
    return spearman(np.asarray(audio)[keep], np.asarray(video)[keep])


# ------------------------------------------------------------------ retrieval


def true_audio_ranks(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row i: (rank of s[i, i] among s[i, :], ties averaged; top-1 credit, ties splitting it)."""
    n = len(s)
    ranks, top1 = np.zeros(n), np.zeros(n)
    for i in range(n):
        higher = int(np.sum(s[i] > s[i, i]))
        ties = int(np.sum(s[i] == s[i, i])) - 1
        ranks[i] = 1 + higher + ties / 2
        top1[i] = 1.0 / (1 + ties) if higher == 0 else 0.0
    return ranks, top1


def chance(n: int) -> tuple[float, float]:
    """(top-1 accuracy, mean rank) of a video that carries no audio information: (1/N, (N+1)/2)."""
    return 1.0 / n, (n + 1) / 2.0


# ------------------------------------------------------------------ statistics and report entries


def nanmean_of(values: np.ndarray) -> Callable[[np.ndarray], float]:
    """``stat(idx)`` = mean of the finite ``values[idx]`` (NaN when none is finite)."""
    v = np.asarray(values, dtype=np.float64)

    def stat(idx: np.ndarray) -> float:
        x = v[idx]
        x = x[np.isfinite(x)]
        return float(x.mean()) if x.size else float("nan")
    return stat


def bootstrap_ci(stat: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int,
                 level: float = 0.95) -> tuple[float, tuple[float, float] | None]:
    """(point estimate, (lo, hi) percentile interval or None when fewer than 2 clips or no finite resample)."""
    point = stat(np.arange(n))
    if n < 2 or not np.isfinite(point):
        return point, None
    rng = np.random.default_rng(seed)
    draws = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)])
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return point, None
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(draws, [a, 1.0 - a])
    return point, (float(lo), float(hi))


def entry(stat: Callable[[np.ndarray], float] | None, n: int, cfg, seed: int) -> dict[str, Any]:
    """mean, 95% percentile-bootstrap CI over clips (``eval.bootstrap`` resamples) and n."""
    if stat is None or n == 0:
        return {"mean": None, "ci": None, "n": int(n)}
    point, ci = bootstrap_ci(stat, n, getattr(cfg.eval, "bootstrap", 1000), seed)
    finite = point is not None and math.isfinite(point)
    return {"mean": float(point) if finite else None, "ci": list(ci) if (ci and finite) else None,
            "n": int(n) if finite else 0}


def fixed(value: float | None, n: int) -> dict[str, Any]:
    """An entry without sampling error (chance levels)."""
    ok = value is not None and math.isfinite(value)
    return {"mean": float(value) if ok else None, "ci": None, "n": int(n)}
