"""Rhythm -> visual events: AV-Align as TempoTokens defines it, Bailando's beat alignment score, and the fast
frame-difference AV-Align proxy.

AV-Align (Yariv et al., "Diverse and Aligned Audio-to-Video Generation via Text-to-Video Model Adaptation",
AAAI 2024; reference code ``av_align.py`` in github.com/guyyariv/TempoTokens):

* audio peaks: ``librosa.onset.onset_detect`` (default parameters) on ``onset_strength`` of the audio loaded
  the way ``librosa.load`` loads it, i.e. mono and resampled to 22 050 Hz, as times in seconds
  (:func:`audio_onset_times`);
* video peaks: per-frame mean magnitude of OpenCV's Farneback optical flow between consecutive grayscale
  frames (parameters 0.5, 3, 15, 3, 5, 1.2, 0), the first value repeated so the curve has one value per frame
  (:func:`farneback_flow_magnitude`); peaks are the frames ``i`` with ``m[i-1] < m[i] > m[i+1]``, at time
  ``i / fps`` (:func:`strict_local_maxima`);
* an audio peak ``a`` is matched when some video peak ``v`` has ``v - 1/fps < a < v + 1/fps`` (strict); each
  audio peak counts once, a video peak may match several audio peaks; ``IoU = matches / (|A| + |V| - matches)``
  (:func:`av_align_iou`).

Beat alignment score (Siyao et al., "Bailando: 3D Dance Generation by Actor-Critic GPT with Choreographic
Memory", CVPR 2022, after Li et al.'s AIST++ BeatAlign): ``BAS = 1/|B| sum_b exp(-min_v (b - v)^2 / (2 sigma^2))``
over music beats ``b`` and visual events ``v``; here the beats are the timeline's beat estimate
(:func:`shared.timeline.estimate_beats`) and the visual events the local maxima of motion energy.

All functions are pure functions of numpy arrays; the only library calls are librosa's and OpenCV's own.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

AV_ALIGN_SR = 22050  # librosa.load's default rate, which the reference code uses
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)  # pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags


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
    """Per-frame mean Farneback optical-flow magnitude ``[T]`` of RGB frames (uint8 ``[T, H, W, 3]``), as the
    reference computes it: flow from frame i-1 to i, and frame 0 takes the value of frame 1."""
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
    """Indices ``i`` (1 <= i <= n-2) with ``curve[i-1] < curve[i] > curve[i+1]``.

    The reference ``find_local_max_indexes(arr, fps)`` loops ``for i in range(1, n - 1)`` with ``n`` never
    defined (a NameError, or whatever global ``n`` the caller happens to have); the fix is ``n = len(arr)``,
    which is what its docstring describes. A plateau is no strict maximum, as in the reference.
    """
    m = np.asarray(curve, dtype=np.float64)
    n = len(m)
    if n < 3:
        return np.zeros(0, dtype=np.int64)
    inner = (m[1:-1] > m[:-2]) & (m[1:-1] > m[2:])
    return np.flatnonzero(inner).astype(np.int64) + 1


def av_align_iou(audio_times: Sequence[float], video_times: Sequence[float], fps: float) -> float:
    """IoU of the reference: matches / (|A| + |V| - matches), an audio peak matched when a video peak lies
    strictly within +-1/fps of it (each audio peak counted once). NaN when there are no peaks at all (the
    reference divides by zero there). Like the reference it can exceed 1 when one video peak matches
    several audio peaks."""
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


def proxy_av_align(onset_env: np.ndarray, motion: np.ndarray, music: np.ndarray, tolerance: int) -> float:
    """The fast AV-Align proxy (not the published metric): onset peaks of the timeline's spectral-flux channel
    against frame-difference motion peaks, matched one to one within +-``tolerance`` frames, on music frames."""
    from trainer.eval import metrics as M

    a = frames_in_mask(M.audio_onset_peaks(onset_env), music)
    v = frames_in_mask(M.motion_peaks(motion), music)
    if a.size + v.size == 0:
        return float("nan")
    return M.av_align_from_peaks(a, v, tolerance)

