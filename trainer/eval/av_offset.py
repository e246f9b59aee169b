"""AV offset: how far (ms) the picture lags the sound, from the cross-correlation of two change signals.

Not Synchformer's DeSync (Iashin et al., "Synchformer: Efficient Synchronization from Sparse Cues", ICASSP 2024,
used by MMAudio), which classifies the offset with learned audio-visual features: we cannot load those weights
here. This is the classic signal-processing estimate: the lag of the peak of the cross-correlation of an audio
onset envelope with a video change signal (generalised cross-correlation, Knapp & Carter 1976, with the peak
refined by a parabola through its three samples, e.g. Jacovitti & Scarano 1993). It measures *when* the picture
reacts, not *whether* it reacts to the right thing; a video that reacts to nothing has no peak (its strength is
at chance) and then its lag means nothing.

Both signals are changes between consecutive intervals, time-stamped at the boundary between them, on one 10 ms
grid (t_n = n * 10 ms):

* audio (:func:`audio_change_envelope`): the timeline's spectral flux (:func:`shared.timeline.spectral_flux`,
  mean half-wave-rectified dB rise per bin) between consecutive non-overlapping 10 ms hops, computed from the
  wave itself; value n is the change from hop n-1 to hop n, at their boundary t_n;
* video (:func:`video_change_on_grid`): motion energy (mean |frame difference|, which holds the brightness
  change too: |mean diff| <= mean |diff|), value t the change from frame t-1 to frame t, at the moment frame t
  appears (t / fps), linearly interpolated to the grid.

Each is high-passed (its moving average over :data:`DETREND_S` removed) so sustained loudness or steady motion
does not lean the peak, then :func:`normalised_xcorr` gives at each lag the correlation over the overlap
(cosine of the two centred segments, in [-1, 1]) for lags within +-:data:`MAX_LAG_S`. **Sign: positive = the
picture lags the sound** (the video's change comes after the audio's). A set of clips is scored by the mean
of their curves (:func:`pooled_offset`): the offset is the lag of its peak (parabolic, sub-hop), the strength the
peak's value; the eval's bootstrap resamples the clips.

Validated in tests/test_av_offset.py on real teacher renders (16 normal clips, 4 s, 32 px): at 12 fps the teacher's
own lag is -10.5 ms [-21.7, -4.2] (95% CI over clips), where its frame differencing and the drive's releases predict
-14 to -23 ms (a frame shows the audio of its own interval from its start, -1/2 frame; the flash, level and band
envelopes release over the next frames, 70-120 ms); at 8 fps +0.2 ms [-19.5, +10.0] (predicted -13 to -28), at
24 fps -2.0 ms [-4.1, +0.7] (predicted -10 to -12: later than one envelope alone, within half a frame). The same
videos shifted by +-2 and +-5 frames are recovered within 3.3 ms; each video against another clip's audio peaks
at 0.033, under chance (0.048, the largest over circular shifts of the audio), the teacher at 0.122.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import correlate

HOP_S = 0.01       # the grid: 10 ms
MAX_LAG_S = 1.0    # lags searched: +-1 s
DETREND_S = 0.5    # the moving average removed from both signals (a high-pass at about 2 Hz)
NULL_SHIFTS = 20   # circular shifts of a recording's chance level (recording_offset)


def audio_change_envelope(wave: np.ndarray, sr: float) -> np.ndarray:
    """Spectral flux (dB) of ``wave`` on the 10 ms grid: value n = rise from hop [n-1, n) to hop [n, n+1) (hops
    of 10 ms, Hamming-windowed, as the timeline's onset channel is at the video rate), at time n * 10 ms; value 0
    is 0. ``floor(duration / 10 ms)`` values."""
    from shared.timeline import frame_bounds, frame_count, frame_matrix, frame_spectra, spectral_flux

    x = np.asarray(wave, dtype=np.float32)
    n = frame_count(len(x), sr, 1.0 / HOP_S) if len(x) else 0
    if n == 0:
        return np.zeros(0)
    bounds = frame_bounds(n, sr, 1.0 / HOP_S)
    frames, lengths = frame_matrix(x, bounds)
    amplitude, _, _ = frame_spectra(frames, lengths, 0)
    flux, _ = spectral_flux(amplitude)
    return flux


def video_change_on_grid(motion: np.ndarray, fps: float, n: int) -> np.ndarray:
    """Motion energy ``motion[t]`` (change from frame t-1 to t, shown at t / fps) linearly interpolated to the
    ``n`` grid times k * 10 ms (held constant past the last frame). Frame 0's value is a copy (no change is
    known there), so the grid before frame 1 takes frame 1's value."""
    m = np.asarray(motion, dtype=np.float64)
    if m.size == 0:
        return np.zeros(n)
    t_frames = np.arange(m.size) / float(fps)
    return np.interp(np.arange(n) * HOP_S, t_frames, m)


def detrend(x: np.ndarray, width: int) -> np.ndarray:
    """``x`` minus its centred moving average over ``width`` samples (edges: the mean over what exists)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or width <= 1:
        return x - (x.mean() if x.size else 0.0)
    k = np.ones(int(width))
    return x - np.convolve(x, k, "same") / np.convolve(np.ones_like(x), k, "same")


def normalised_xcorr(a: np.ndarray, v: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """(lags -max_lag..max_lag, c): ``c[lag] = sum a[i] v[i + lag] / sqrt(sum a[i]^2 sum v[i + lag]^2)`` over the
    indices where both exist (lag > 0: ``v`` later than ``a``); NaN where the overlap is under 2 samples or a
    segment is all zero. ``a`` and ``v`` must have the same length (and are used as given: centre them first)."""
    a, v = np.asarray(a, np.float64), np.asarray(v, np.float64)
    if a.shape != v.shape or a.ndim != 1:
        raise ValueError(f"normalised_xcorr: shapes differ or are not 1-D: {a.shape}, {v.shape}")
    n = a.size
    lags = np.arange(-max_lag, max_lag + 1)
    if n == 0:
        return lags, np.full(lags.size, np.nan)
    full = correlate(v, a, mode="full")   # full[n - 1 + lag] = sum_i a[i] v[i + lag]
    ca, cv = np.concatenate([[0.0], np.cumsum(a * a)]), np.concatenate([[0.0], np.cumsum(v * v)])
    out = np.full(lags.size, np.nan)
    for j, lag in enumerate(lags):
        lo, hi = max(0, -lag), min(n, n - lag)   # a's indices i with 0 <= i + lag < n
        if hi - lo < 2:
            continue
        den = np.sqrt((ca[hi] - ca[lo]) * (cv[hi + lag] - cv[lo + lag]))
        if den > 0:
            out[j] = full[n - 1 + lag] / den
    return lags, out


def parabolic_peak(c: np.ndarray) -> tuple[float, float]:
    """(position, value) of the maximum of the samples ``c`` refined by the parabola through it and its two
    neighbours (position in samples, fractional; the plain maximum at an edge). (NaN, NaN) when all are NaN."""
    c = np.asarray(c, np.float64)
    if not np.isfinite(c).any():
        return float("nan"), float("nan")
    i = int(np.nanargmax(c))
    if i == 0 or i == c.size - 1 or not (np.isfinite(c[i - 1]) and np.isfinite(c[i + 1])):
        return float(i), float(c[i])
    y0, y1, y2 = c[i - 1], c[i], c[i + 1]
    den = y0 - 2.0 * y1 + y2
    if den >= 0:
        return float(i), float(y1)
    d = 0.5 * (y0 - y2) / den
    return i + d, float(y1 - 0.25 * (y0 - y2) * d)


def offset_curve(envelope: np.ndarray, motion: np.ndarray, fps: float) -> np.ndarray:
    """One clip's normalised cross-correlation over lags -MAX_LAG_S..MAX_LAG_S (steps of 10 ms) of its audio
    change envelope (:func:`audio_change_envelope`) and its video's motion energy, both high-passed."""
    n = min(len(envelope), int(np.floor(len(motion) / fps / HOP_S + 1e-9)))
    a = detrend(np.asarray(envelope[:n], np.float64), int(round(DETREND_S / HOP_S)))
    v = detrend(video_change_on_grid(motion, fps, n), int(round(DETREND_S / HOP_S)))
    return normalised_xcorr(a, v, int(round(MAX_LAG_S / HOP_S)))[1]


def peak_of(curve: np.ndarray) -> tuple[float, float]:
    """(offset in ms, peak strength) of a curve over lags -MAX_LAG_S..MAX_LAG_S: its parabolic peak."""
    pos, value = parabolic_peak(curve)
    return (pos - round(MAX_LAG_S / HOP_S)) * HOP_S * 1000.0, value


def pooled_offset(curves: np.ndarray) -> tuple[float, float]:
    """(offset ms, strength) of the mean curve of clips ``curves`` (K, L); NaN without any defined curve."""
    c = np.asarray(curves, np.float64)
    if c.size == 0 or not np.isfinite(c).any():
        return float("nan"), float("nan")
    with np.errstate(all="ignore"):
        mean = np.nanmean(c, axis=0)
    return peak_of(mean)


def circular_null(envelope: np.ndarray, motion: np.ndarray, fps: float, shifts_s: list[float]) -> np.ndarray:
    """Curves (len(shifts), L) of the video against its audio envelope circularly shifted by each of ``shifts_s``
    (seconds, > MAX_LAG_S from 0 and from the clip's length, so the true alignment is outside the search): what a
    video unrelated to the audio but with its own dynamics scores (the chance of :func:`pooled_offset`)."""
    env = np.asarray(envelope, np.float64)
    return np.stack([offset_curve(np.roll(env, int(round(s / HOP_S))), motion, fps) for s in shifts_s])


_WHAT = ("the normalised cross-correlation (over each lag's overlap) of the audio's spectral flux on a 10 ms grid "
         "(computed from the wave: mean rectified dB rise per bin between consecutive 10 ms hops) with the video's "
         "motion energy (mean |frame difference|, brightness changes included; frame t's change placed at t / fps, "
         "interpolated to the grid), both minus their 0.5 s moving average, over the whole clip (silence included), "
         "lags within +-1 s, averaged over the "
         "variant's clips (and seeds); its peak refined by a parabola (sub-frame)")
OFFSET_DEFINITION = (
    f"AV offset (ms): the lag of the peak of {_WHAT}. Positive = the picture lags the sound. Read it only where "
    "av_offset_peak is above its floor (else there is no peak and the lag is arbitrary; +-1000 = the maximum sits at "
    "the edge of the search, no peak inside it). The ground truth's own "
    "value is the teacher's lag: its frame t shows the audio of [t, t+1) / fps from t / fps on (-1/2 frame) and its "
    "flashes release over the next frame(s) (datagen/visual/drive.py). A signal-processing estimate (Knapp & Carter "
    "1976), NOT Synchformer's DeSync (Iashin et al. 2024), which needs learned weights we cannot load here; it says "
    "when the picture reacts, not whether it reacts to the right sound")
PEAK_DEFINITION = (
    f"AV offset peak strength: the value at the peak of {_WHAT}, in [-1, 1]; chance = the floor column (the video "
    "against audio it was not made from), whose mean curve has no peak above the level circular shifts of the "
    "audio give")


def recording_offset(wave: np.ndarray, sr: float, motion: np.ndarray, fps: float) -> dict:
    """One recording's AV offset (``trainer live --out``'s summary): ``{"ms", "peak", "chance_peak", "note"}``;
    ``chance_peak`` is the 95th percentile of the peak over up to NULL_SHIFTS circular shifts of the audio, evenly
    in 1.5 s .. length - 1.5 s
    (None when the recording is too short for one); a peak under it means no measurable sync."""
    env = audio_change_envelope(wave, sr)
    ms, peak = peak_of(offset_curve(env, motion, fps))
    dur = len(env) * HOP_S
    shifts = list(np.linspace(1.5, dur - 1.5, min(NULL_SHIFTS, int((dur - 3.0) / 0.5) + 1))) if dur >= 3.0 else []
    null = [peak_of(c)[1] for c in circular_null(env, motion, fps, shifts)] if shifts else []
    chance = float(np.nanpercentile(null, 95)) if np.isfinite(null).any() else None
    return {"ms": _finite(ms), "peak": _finite(peak), "chance_peak": chance,
            "note": "positive = the picture lags the sound; the lag of the peak of the cross-correlation of the "
                    "audio's spectral flux (10 ms grid) with the video's motion energy, within +-1 s (not DeSync)"}


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
