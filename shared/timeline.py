"""Frame-aligned audio features: the conditioning signal of every clip.

``compute_audio_timeline(wave, sr, fps, tcfg)`` turns a mono waveform into a
float32 array ``[T, C]`` with one row per video frame:

* ``T = floor(len(wave) / sr * fps)`` (see :func:`frame_count`), at least 1: audio shorter than one
  frame raises :class:`shared.errors.AudioError`; any longer audio works (down to one frame);
* frame ``t`` covers samples ``[floor(t*sr/fps), floor((t+1)*sr/fps))``
  exactly (see :func:`frame_bounds`); frames are not overlapping, and when
  ``sr/fps`` is not an integer their lengths differ by one sample. (So a sample
  at time ``t`` lies in frame ``floor(t*fps)``, except a sample less than one
  sample period before a frame's start time, which the floor puts in that frame.)

Channels, in order (:func:`channel_names`) and with their units:

``log_rms``
    dBFS of the frame RMS (full scale = amplitude 1.0), floored at -100.
``rms``
    Linear RMS of the frame's raw samples (amplitude units, 0..~1).
``band_00 .. band_{n-1}``
    Linear RMS amplitude of the frame inside each band; bands are log-spaced
    from ``band_min_hz`` to Nyquist (:func:`band_edges`). A sine of amplitude
    ``A`` inside a band gives about ``A/sqrt(2)`` there, like ``rms``.
``onset``
    Spectral flux: mean over frequency bins of the half-wave-rectified increase
    of the log magnitude (in dB, floored at -100 dBFS) versus the previous frame.
    Frame 0 has no previous frame and is 0 (as librosa's ``onset_strength``
    leaves its first frame): counting the audio before the clip as silence made
    frame 0 the loudest "onset" of any clip that starts mid-sound. Units: dB, >= 0.
``centroid``
    Magnitude-weighted mean frequency divided by Nyquist, in [0, 1]; 0 in
    frames quieter than the -100 dBFS floor.
``is_silent``
    1.0 where the median-smoothed (``silence_smooth_frames``) ``log_rms`` is
    under ``silence_threshold_db``, else 0.0.
``beat_phase`` (when ``beat_channels``)
    Position inside the estimated beat at the frame's start time, in [0, 1);
    0 on an estimated beat.
``downbeat`` (when ``beat_channels``)
    1.0 on the frame holding an estimated bar start (4/4 bars), else 0.0.

Spectra: each frame is zero-padded to ``max(n_fft, frame length)`` samples
(rounded up to a fast FFT size) after a Hamming window of the frame's own
length; frames go through one batched float32 real FFT per chunk of ~1M samples
(an 8 s clip is one chunk; long audio stays in bounded memory). The window never
reaches zero, so an impulse at a frame's edge still registers in its frame.
Magnitudes are scaled so a sine of amplitude A peaks at A (0 dBFS = amplitude 1).

Tempo: a band-wise onset envelope at ~50 Hz (independent of fps), lightly smoothed, is
matched against pulse trains on a fine grid of 60-200 BPM (fractional periods, no
rounding to whole envelope steps), scored by precision x recall so a steady beat beats
its own octaves (:func:`tempo_scores`), with a mild log-normal preference around
120 BPM for near-ties; the beat phase is the offset of the pulse train that collects the most
onset strength; bars are 4 beats, starting on the beat position (of 4) where the
harmony changes most (beat-synchronous chroma), the strongest onsets breaking ties
(pitchless material). With no onsets at all it falls back to 120 BPM, phase 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
from scipy.ndimage import gaussian_filter1d, median_filter

from shared.config import TimelineConfig
from shared.errors import AudioError

LOG_FLOOR_DB = -100.0
_AMP_FLOOR = 10.0 ** (LOG_FLOOR_DB / 20.0)  # 1e-5
PASS_THROUGH = ("is_silent", "beat_phase", "downbeat")
TEMPO_MIN_BPM = 60.0
TEMPO_MAX_BPM = 200.0
_ENV_RATE_HZ = 50.0  # target rate of the onset envelope used for tempo (20 ms hops)
_ENV_BANDS = 16  # log-spaced bands of the tempo envelope, from _ENV_MIN_HZ to Nyquist
_ENV_MIN_HZ = 40.0
_TEMPO_GRID = 400  # candidate tempi, log-spaced over [TEMPO_MIN_BPM, TEMPO_MAX_BPM]
_CHUNK_SAMPLES = 1 << 20  # frames are transformed in chunks of about this many samples: bounded memory

# Bump whenever a change alters the features of some audio (it is part of the shards' content
# fingerprint, so data from two versions never mix silently). History:
#   1  the timeline up to 2026-12-01.
#   2  onset[0] = 0 (was the rise over -100 dB silence); tempo by pulse-train precision x recall
#      on a smoothed envelope with fractional periods (was a whole-hop autocorrelation, which
#      halved fast tempi); audio of 0.08-1 s works (it crashed).
TIMELINE_VERSION = 2


# ---------------------------------------------------------------- frame layout


def channel_names(tcfg: TimelineConfig) -> list[str]:
    """Channel names in storage order (see the module docstring for units)."""
    names = ["log_rms", "rms"] + [f"band_{i:02d}" for i in range(tcfg.n_bands)] + ["onset", "centroid", "is_silent"]
    if tcfg.beat_channels:
        names += ["beat_phase", "downbeat"]
    return names


def channel_index(names: list[str], name: str) -> int:
    """Index of channel ``name`` in ``names``; a clear error when it is absent."""
    try:
        return list(names).index(name)
    except ValueError:
        raise KeyError(f"timeline channel {name!r} not in {list(names)}") from None


def frame_count(n_samples: int, sr: float, fps: float) -> int:
    """``T = floor(n_samples / sr * fps)``: whole frames that fit in the audio.

    A tiny tolerance absorbs float error when the product is a whole number
    (e.g. 29.97 fps), and the last frame never ends past the audio.
    """
    _check_rates(sr, fps)
    t = int(math.floor(n_samples / sr * fps + 1e-9))
    while t > 0 and math.floor(t * sr / fps) > n_samples:
        t -= 1
    return max(t, 0)


def frame_bounds(n_frames: int, sr: float, fps: float) -> np.ndarray:
    """Sample boundaries ``b`` (int64 [T+1]): frame t covers ``[b[t], b[t+1])``, ``b[t] = floor(t*sr/fps)``."""
    t = np.arange(n_frames + 1, dtype=np.float64)
    return np.floor(t * float(sr) / float(fps)).astype(np.int64)


def band_edges(sr: float, tcfg: TimelineConfig) -> np.ndarray:
    """Band edges in Hz (float64 [n_bands+1]), log-spaced from ``band_min_hz`` to Nyquist."""
    nyquist = sr / 2.0
    if tcfg.band_min_hz >= nyquist:
        raise ValueError(f"timeline.band_min_hz={tcfg.band_min_hz} must be below Nyquist ({nyquist} Hz at sr={sr})")
    return np.geomspace(tcfg.band_min_hz, nyquist, tcfg.n_bands + 1)


def _check_rates(sr: float, fps: float) -> None:
    if not (sr > 0 and math.isfinite(sr)):
        raise ValueError(f"sample rate must be a positive number, got {sr!r}")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps!r}")


# ------------------------------------------------------------------ the spectra


def _hamming_table(lengths: np.ndarray, width: int) -> np.ndarray:
    """Hamming windows of each frame's own length, zero beyond it (float64 [T, width], read-only: cached, since
    every clip of a run has the same frame layout)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return _hamming_table_cached(lengths.tobytes(), int(width))


@lru_cache(maxsize=16)
def _hamming_table_cached(lengths_bytes: bytes, width: int) -> np.ndarray:
    lengths = np.frombuffer(lengths_bytes, dtype=np.int64)
    out = np.zeros((len(lengths), width))
    for length in np.unique(lengths):  # at most two distinct lengths
        n = int(length)
        if n <= 0:
            continue
        j = np.arange(n)
        w = 0.54 - 0.46 * np.cos(2.0 * np.pi * (j + 0.5) / n)
        out[lengths == length, :n] = w
    out.flags.writeable = False
    return out


def frame_matrix(wave: np.ndarray, bounds: np.ndarray, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gather frames into a zero-padded matrix ([T, width], wave's dtype) and their lengths (int64 [T]).

    ``width`` defaults to the longest frame; pass the clip's longest when gathering a chunk of frames.
    """
    starts, lengths = bounds[:-1], np.diff(bounds)
    width = int(lengths.max()) if width is None else int(width)
    idx = np.minimum(starts[:, None] + np.arange(width)[None, :], len(wave) - 1)  # (T, Lmax)
    frames = wave[idx]
    short = np.nonzero(lengths < width)[0]
    if len(short):  # lengths differ by at most one sample: zero what lies past each frame's end
        frames[short] *= np.arange(width)[None, :] < lengths[short, None]
    return frames, lengths


def _fft_size(n_fft: int, frame_len: int) -> int:
    return scipy.fft.next_fast_len(max(int(n_fft), int(frame_len)), real=True)


def frame_spectra(frames: np.ndarray, lengths: np.ndarray, n_fft: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Magnitude spectra of zero-padded frames (from :func:`frame_matrix`), one batched float32 rfft.

    Returns ``(amplitude float32 [T, F], power_scale float64 [T], nfft)``: ``amplitude`` is the
    magnitude scaled so a sine of amplitude A peaks at about A; ``amplitude**2 * c_k * power_scale``
    (``c_k`` = 1 at DC and Nyquist, else 2) sums over all bins to the windowed frame's mean square
    (Parseval, compensated for the window's energy). See :func:`band_rms`.
    """
    win = _hamming_table(lengths, frames.shape[1])  # (T, Lmax), zero past each frame's end
    nfft = _fft_size(n_fft, frames.shape[1])
    w_sum = np.maximum(win.sum(axis=1), 1e-12)
    w_energy = np.maximum(np.einsum("tl,tl->t", win, win), 1e-12)
    spec = scipy.fft.rfft((frames * win).astype(np.float32), n=nfft, axis=1)  # (T, F) complex64
    amplitude = np.abs(spec)
    amplitude *= (2.0 / w_sum).astype(np.float32)[:, None]
    power_scale = w_sum ** 2 / (4.0 * nfft * w_energy)
    return amplitude, power_scale, nfft


def band_matrix(sr: float, nfft: int, tcfg: TimelineConfig) -> np.ndarray:
    """Matrix (float32 [F, n_bands]) mapping rfft bins to the timeline's bands (:func:`band_edges`)."""
    return _bins_to_bands(sr, nfft, band_edges(sr, tcfg))


def _bins_to_bands(sr: float, nfft: int, edges: np.ndarray) -> np.ndarray:
    """Matrix (float32 [F, len(edges)-1], read-only, cached) mapping rfft bins to bands ``[edges[k], edges[k+1])``,
    holding the one-sided weight c_k (1 at DC and Nyquist, else 2); bins under ``edges[0]`` belong to no band."""
    return _bins_to_bands_cached(sr, int(nfft), np.asarray(edges, dtype=np.float64).tobytes())


@lru_cache(maxsize=16)
def _bins_to_bands_cached(sr: float, nfft: int, edges_bytes: bytes) -> np.ndarray:
    edges = np.frombuffer(edges_bytes, dtype=np.float64)
    n_bands = len(edges) - 1
    freqs = np.arange(nfft // 2 + 1) * sr / nfft
    band = np.searchsorted(edges, freqs, side="right") - 1  # band k holds [edges[k], edges[k+1])
    band[freqs >= edges[-1]] = n_bands - 1  # Nyquist bin into the top band
    c = np.full(len(freqs), 2.0)
    c[0] = 1.0
    if nfft % 2 == 0:
        c[-1] = 1.0
    m = np.zeros((len(freqs), n_bands), np.float32)
    ok = np.nonzero(band >= 0)[0]
    m[ok, band[ok]] = c[ok]
    m.flags.writeable = False
    return m


def band_rms(amplitude: np.ndarray, power_scale: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """Linear RMS amplitude in each band (float64 [T, n_bands]) from :func:`frame_spectra`'s output."""
    power = (np.square(amplitude) @ bands).astype(np.float64) * power_scale[:, None]  # (T, n_bands)
    return np.sqrt(np.maximum(power, 0.0))


def spectral_flux(amplitude: np.ndarray, prev_db: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean half-wave-rectified increase of the dB magnitude vs the previous row.

    Returns ``(flux float64 [T], db of the last row float32 [F])``. ``prev_db`` is the dB row before
    the first (the previous chunk's last row); None means there is none (the start of the audio):
    the first row's flux is then 0, since nothing is known about what came before it.
    """
    # 20*log10 through the natural log: float32 np.log is several times faster than np.log10.
    floor = np.float32(_AMP_FLOOR)
    scale = np.float32(20.0 / math.log(10.0))
    db = np.log(np.maximum(amplitude.astype(np.float32, copy=False), floor))
    db *= scale  # (T, F)
    if prev_db is None:  # the first row against itself: exactly 0
        prev_db = db[0]
    rise = np.empty_like(db)
    rise[0] = db[0] - prev_db
    np.subtract(db[1:], db[:-1], out=rise[1:])
    np.maximum(rise, 0, out=rise)
    return rise.mean(axis=1, dtype=np.float64), db[-1].copy()


def spectral_centroid(amplitude: np.ndarray, sr: float, nfft: int, rms: np.ndarray) -> np.ndarray:
    """Magnitude-weighted mean frequency / Nyquist (float64 [T]); 0 where rms is under the -100 dB floor."""
    freqs = np.arange(amplitude.shape[1]) * sr / nfft
    total = amplitude.sum(axis=1)
    cen = (amplitude @ freqs.astype(amplitude.dtype)) / np.maximum(total, 1e-20) / (sr / 2.0)
    return np.where(rms > _AMP_FLOOR, np.clip(cen, 0.0, 1.0), 0.0)


def frame_rms(frames: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """RMS of each frame's raw samples (float64 [T]) from the zero-padded frame matrix."""
    sq = np.einsum("tl,tl->t", frames, frames, dtype=np.float64)
    return np.sqrt(sq / np.maximum(lengths, 1))


def to_dbfs(rms: np.ndarray) -> np.ndarray:
    """20*log10(rms) floored at -100 dBFS."""
    return 20.0 * np.log10(np.maximum(rms, _AMP_FLOOR))


def silence_mask(log_rms: np.ndarray, threshold_db: float, smooth_frames: int) -> np.ndarray:
    """1.0 where the median-smoothed log RMS is under ``threshold_db`` (float64 [T])."""
    smoothed = median_filter(log_rms, size=int(smooth_frames), mode="nearest") if smooth_frames > 1 else log_rms
    return (smoothed < threshold_db).astype(np.float64)


# ------------------------------------------------------------------------ tempo


@dataclass(frozen=True)
class BeatEstimate:
    """A tempo estimate: beats at ``phase_s + n * period_s``, bars start at beats ``n = downbeat_index (mod 4)``."""

    bpm: float
    phase_s: float
    downbeat_index: int

    @property
    def period_s(self) -> float:
        return 60.0 / self.bpm

    def beat_times(self, duration_s: float) -> np.ndarray:
        """All beat times in [0, duration_s) (float64)."""
        n = np.arange(int(math.ceil((duration_s - self.phase_s) / self.period_s)) + 1)
        t = self.phase_s + n * self.period_s
        return t[(t >= 0) & (t < duration_s)]

    def downbeat_times(self, duration_s: float) -> np.ndarray:
        """Bar starts in [0, duration_s): every 4th beat, starting at beat ``downbeat_index``."""
        return self.beat_times(duration_s)[self.downbeat_index::4]


def onset_envelope(wave: np.ndarray, sr: float) -> tuple[np.ndarray, float]:
    """Band-wise spectral-flux onset envelope at about 50 Hz, for tempo only.

    Returns ``(env float64 [M], rate_hz)``: ``env[m]`` is the mean over 16 log-spaced
    bands (40 Hz to Nyquist) of the rectified increase of the band's level (dB) from
    hop m-1 to hop m (hops of ``round(sr/50)`` samples, non-overlapping, Hamming
    window), minus its moving average over 1 s, rectified. Log-spaced bands weigh
    kick, snare and bass like the hi-hats (a per-bin flux is dominated by the many
    high bins and pulls the tempo to double). An onset anywhere in hop m shows in
    ``env[m]``: the hop spans ``[m / rate, (m + 1) / rate)``.
    """
    hop = max(1, int(round(sr / _ENV_RATE_HZ)))
    rate = sr / hop
    n_env = len(wave) // hop
    if n_env < 4:
        return np.zeros(max(n_env, 0)), rate
    win = _hamming_table(np.array([hop]), hop)[0].astype(np.float32)
    nfft = 1 << (hop - 1).bit_length()
    to_bands = _bins_to_bands(sr, nfft, np.geomspace(min(_ENV_MIN_HZ, sr / 4), sr / 2, _ENV_BANDS + 1))
    power_scale = float(win.sum()) ** 2 / (4.0 * nfft * float(win @ win))
    flux, prev_db = np.empty(n_env), None
    step = max(1, _CHUNK_SAMPLES // hop)
    for a in range(0, n_env, step):  # chunks of hops: bounded memory for long audio
        b = min(n_env, a + step)
        frames = wave[a * hop: b * hop].astype(np.float32).reshape(b - a, hop)  # (m, hop)
        amp = np.abs(scipy.fft.rfft(frames * win, n=nfft, axis=1)) * np.float32(2.0 / win.sum())  # (m, F)
        band_amp = np.sqrt(np.square(amp) @ to_bands * np.float32(power_scale))  # (m, bands): band RMS
        flux[a:b], prev_db = spectral_flux(band_amp, prev_db)
    local = moving_average(flux, max(1, int(round(rate))))  # over 1 s
    return np.maximum(flux - local, 0.0), rate


def moving_average(x: np.ndarray, k: int) -> np.ndarray:
    """Centred k-point moving average of ``x`` (float64, same length as ``x`` for any length), with zeros
    beyond the ends: ``np.convolve(x, ones(k)/k, mode="same")`` where ``len(x) >= k``. (Its ``"same"`` mode
    returns ``max(len(x), k)`` values, which broke audio shorter than the window.)"""
    x = np.asarray(x, dtype=np.float64)
    full = np.convolve(x, np.ones(k) / k, mode="full")  # (len(x) + k - 1,)
    start = (k - 1) // 2
    return full[start:start + len(x)]


def tempo_scores(env: np.ndarray, rate: float, bpm: np.ndarray, max_elements: int = 1 << 15) -> np.ndarray:
    """How well a pulse train at each tempo explains the onset envelope (float64, one score per ``bpm``).

    For a period ``L = 60/bpm`` s and the best phase ``phi``, ``E = sum_n env(phi + n L)`` is the onset
    strength the train collects (``env`` read between its samples by linear interpolation: fractional
    periods, no rounding to whole hops). The score is precision x recall: the strength per pulse,
    ``E / (duration / L)``, times the fraction of all onset strength collected, ``E / sum(env)``, which up
    to a constant per clip is ``L * E**2``. A steady beat at period P scores twice as high as its
    sub-multiple 2P (which collects half the onsets with as strong pulses) and as P/2 (every other pulse
    is empty), so neither the slower nor the faster octave wins a tie; a plain autocorrelation scores
    P, 2P and 3P alike and leaves the choice to the prior. (Our formulation; pulse-train scoring of
    tempo candidates follows Percival & Tzanetakis, "Streamlined tempo estimation based on
    autocorrelation and cross-correlation with pulses", IEEE/ACM TASLP 22(12), 2014.)
    """
    n = len(env)
    duration = n / rate
    bpm = np.asarray(bpm, dtype=np.float64)
    if n < 2:
        return np.zeros(len(bpm))
    period = 60.0 / bpm  # (B,) seconds
    n_phase = max(1, int(math.ceil(period.max() * rate)))  # phases one envelope step apart at the slowest tempo
    n_pulse = int(math.ceil(duration / period.min())) + 1
    frac = np.arange(n_phase) / n_phase  # (K,) phase as a fraction of the period
    pulse_phase = frac[:, None] + np.arange(n_pulse)[None, :]  # (K, N) pulse positions in periods
    # Interpolation taps, zero where the right tap env[i0 + 1] would lie past the end (no pulse there):
    # left[i] = env[i], right[i] = env[i + 1] for i <= n - 2, both 0 beyond, long enough for every
    # position, so no clipping or masking per element (positions are >= 0: their floor is a truncation).
    taps = int(math.ceil(pulse_phase[-1, -1] * period.max() * rate)) + 2
    left, right = np.zeros(max(taps, n)), np.zeros(max(taps, n))
    left[:n - 1], right[:n - 1] = env[:-1], env[1:]
    out = np.empty(len(bpm))
    step = max(1, max_elements // (n_phase * n_pulse))
    for a in range(0, len(bpm), step):  # chunks of tempi: bounded memory (and cache-sized) for long audio
        pos = pulse_phase[None] * period[a:a + step, None, None]  # (b, K, N)
        pos *= rate  # in envelope steps
        i0 = pos.astype(np.int64)
        w = pos
        w -= i0  # in place: the interpolation weight of the right tap
        val = left[i0]
        val *= 1.0 - w
        w *= right[i0]
        val += w  # env(pos) by linear interpolation
        collected = val.sum(axis=2).max(axis=1)  # (b,) E at the best phase
        out[a:a + step] = period[a:a + step] * collected ** 2
    return out


def _tempo_from_envelope(env: np.ndarray, rate: float) -> float:
    """BPM in [60, 200]: the best :func:`tempo_scores` on a fine log grid of tempi, weighted toward 120 BPM.

    The envelope is smoothed (Gaussian, sigma one step: an onset near a step's edge counts in both) and
    the prior is log-normal around 120 BPM with a 1-octave sigma, as librosa's ``beat.tempo``; it only
    breaks near-ties, since the score already halves a steady beat's octaves. The peak is refined by
    a parabola through the grid's three best points (log-tempo axis).
    """
    if len(env) < 4 or not np.any(env > 0):
        return 120.0
    x = gaussian_filter1d(np.asarray(env, np.float64), 1.0, mode="constant")
    log_bpm = np.linspace(math.log(TEMPO_MIN_BPM), math.log(TEMPO_MAX_BPM), _TEMPO_GRID)  # 0.3% steps
    bpm = np.exp(log_bpm)
    prior = np.exp(-0.5 * (np.log2(bpm / 120.0) / 1.0) ** 2)
    score = tempo_scores(x, rate, bpm) * prior
    i = int(np.argmax(score))
    if 0 < i < len(bpm) - 1:
        a, b, c = score[i - 1], score[i], score[i + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
        return float(np.exp(log_bpm[i] + np.clip(shift, -0.5, 0.5) * (log_bpm[1] - log_bpm[0])))
    return float(bpm[i])


def _pulse_sums(env: np.ndarray, rate: float, period_s: float, phases_s: np.ndarray) -> np.ndarray:
    """Onset strength collected by pulse trains ``phase + n*period`` (float64 [P, N])."""
    duration = len(env) / rate
    n = np.arange(int(math.ceil(duration / period_s)) + 1)
    t = phases_s[:, None] + n[None, :] * period_s  # (P, N)
    pos = t * rate
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0
    inside = (i0 >= 0) & (i0 + 1 < len(env))
    i0c = np.clip(i0, 0, len(env) - 2)
    val = env[i0c] * (1.0 - frac) + env[i0c + 1] * frac  # linear interpolation
    return np.where(inside, val, 0.0)


def harmonic_novelty(wave: np.ndarray, sr: float, beat_times: np.ndarray, period_s: float,
                     fmin: float = 80.0, fmax: float = 2000.0, max_len: int = 8192) -> np.ndarray:
    """Chord-change strength entering each beat (float64 [n_beats], NaN for the first beat).

    The chroma (12 pitch classes of the power in ``fmin..fmax``, unit norm) of the audio from a
    beat to the next (at most its first ``max_len`` samples); ``novelty[n] = 1 - cos(chroma[n-1],
    chroma[n])``, in [0, 1]: near 0 while the harmony holds (or for pitchless noise), large where it
    changes (music changes chords at bar starts).
    """
    out = np.full(len(beat_times), np.nan)
    seg_len = min(int(period_s * sr), int(max_len))
    starts = (np.asarray(beat_times) * sr).astype(np.int64)
    starts = starts[starts + seg_len <= len(wave)]  # whole segments only
    if seg_len < 64 or len(starts) < 2:
        return out
    segs = wave[starts[:, None] + np.arange(seg_len)[None, :]].astype(np.float32)  # (n, seg_len)
    nfft = scipy.fft.next_fast_len(seg_len, real=True)
    power = np.abs(scipy.fft.rfft(segs * np.hanning(seg_len).astype(np.float32), n=nfft, axis=1)) ** 2  # (n, F)
    freqs = np.arange(power.shape[1]) * sr / nfft
    keep = np.nonzero((freqs >= fmin) & (freqs <= min(fmax, sr / 2)))[0]
    to_chroma = np.zeros((power.shape[1], 12), np.float32)
    to_chroma[keep, np.mod(np.round(12 * np.log2(freqs[keep] / 440.0)), 12).astype(np.int64)] = 1.0
    chroma = (power @ to_chroma).astype(np.float64)  # (n, 12)
    norm = np.linalg.norm(chroma, axis=1)
    chroma /= np.maximum(norm, 1e-12)[:, None]
    nov = 1.0 - np.sum(chroma[1:] * chroma[:-1], axis=1)
    nov[(norm[1:] <= 1e-12) | (norm[:-1] <= 1e-12)] = np.nan  # no pitched energy: no verdict
    out[1:len(starts)] = nov
    return out


def downbeat_position(novelty: np.ndarray, strength: np.ndarray, onset_weight: float = 0.2,
                      min_contrast: float = 0.1) -> int:
    """Which beat (0-3) of each 4 starts the bar: the most harmonic change, else the strongest onsets.

    ``harm[j]`` = mean novelty on beats ``j::4``; ``share[j]`` = their fraction of the onset strength.
    When the harmony term has contrast (``max - min >= min_contrast``; procedural music measured
    0.22-0.69, click tracks <= 0.03) the score is ``harm + onset_weight * share``, else ``share``.
    """
    means = np.array([strength[j::4].mean() if len(strength[j::4]) else 0.0 for j in range(4)])
    share = means / means.sum() if means.sum() > 0 else np.zeros(4)
    harm = np.zeros(4)
    for j in range(4):
        nov = novelty[j::4]
        nov = nov[np.isfinite(nov)]
        harm[j] = nov.mean() if len(nov) else 0.0
    score = harm + onset_weight * share if harm.max() - harm.min() >= min_contrast else share
    return int(np.argmax(score))


def estimate_beats(wave: np.ndarray, sr: float) -> BeatEstimate:
    """Tempo, beat phase and downbeat position of a mono waveform (see the module docstring)."""
    wave = np.asarray(wave, dtype=np.float64)
    env, rate = onset_envelope(wave, sr)
    if len(env) < 4 or not np.any(env > 0):
        return BeatEstimate(bpm=120.0, phase_s=0.0, downbeat_index=0)
    bpm = _tempo_from_envelope(env, rate)
    period = 60.0 / bpm
    phases = np.arange(0.0, period, 1.0 / rate)  # one envelope step
    sums = _pulse_sums(env, rate, period, phases)  # (P, N)
    p = int(np.argmax(sums.sum(axis=1)))
    # env[m] sums onsets anywhere in hop m: the hop's centre is the unbiased time of a detected onset
    beats = BeatEstimate(bpm=bpm, phase_s=float((phases[p] + 0.5 / rate) % period), downbeat_index=0)
    times = beats.beat_times(len(wave) / sr)
    strength = env[np.minimum((times * rate).astype(np.int64), len(env) - 1)]  # onset strength at each beat
    j = downbeat_position(harmonic_novelty(wave, sr, times, period), strength)
    return BeatEstimate(bpm=bpm, phase_s=beats.phase_s, downbeat_index=j)


def beat_channels(beats: BeatEstimate, n_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """``beat_phase`` at each frame's start time and the ``downbeat`` indicator (float64 [T] each)."""
    t = np.arange(n_frames) / fps
    phase = np.mod((t - beats.phase_s) / beats.period_s, 1.0)
    phase = np.where(phase >= 1.0, 0.0, phase)
    down = np.zeros(n_frames)
    frames = np.floor(beats.downbeat_times(n_frames / fps) * fps + 1e-9).astype(np.int64)
    down[frames[(frames >= 0) & (frames < n_frames)]] = 1.0
    return phase, down


# --------------------------------------------------------------------- timeline


def compute_audio_timeline(wave: np.ndarray, sr: float, fps: float, tcfg: TimelineConfig) -> tuple[np.ndarray, list[str]]:
    """Frame-aligned features of a mono waveform: ``(float32 [T, C], names)``; see the module docstring."""
    _check_rates(sr, fps)
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"compute_audio_timeline wants a mono 1-D waveform, got shape {wave.shape}")
    if not np.issubdtype(wave.dtype, np.floating):
        raise ValueError(f"compute_audio_timeline wants float samples in [-1, 1], got dtype {wave.dtype}")
    if not np.all(np.isfinite(wave)):
        raise ValueError("compute_audio_timeline: waveform holds NaN or inf")
    names = channel_names(tcfg)
    n_frames = frame_count(len(wave), sr, fps)
    if n_frames == 0:
        raise AudioError(f"the audio is {len(wave) / sr:.4f} s long ({len(wave)} samples at {sr:g} Hz), shorter "
                         f"than one video frame ({1.0 / fps:.4f} s at {fps:g} fps)")
    x = wave.astype(np.float32, copy=False)
    bounds = frame_bounds(n_frames, sr, fps)  # (T+1,)
    width = int(np.diff(bounds).max())  # the longest frame, Lmax
    nfft = _fft_size(tcfg.n_fft, width)
    to_bands = band_matrix(sr, nfft, tcfg)  # (F, n_bands)

    rms, bands, onset, centroid = (np.empty(n_frames), np.empty((n_frames, tcfg.n_bands)),
                                   np.empty(n_frames), np.empty(n_frames))
    prev_db = None
    step = max(1, _CHUNK_SAMPLES // width)
    for a in range(0, n_frames, step):  # chunks of frames: bounded memory for long audio
        b = min(n_frames, a + step)
        frames, lengths = frame_matrix(x, bounds[a:b + 1], width)  # (t, Lmax) zero-padded, (t,)
        rms[a:b] = frame_rms(frames, lengths)
        amplitude, power_scale, _ = frame_spectra(frames, lengths, tcfg.n_fft)  # (t, F), (t,)
        bands[a:b] = band_rms(amplitude, power_scale, to_bands)
        onset[a:b], prev_db = spectral_flux(amplitude, prev_db)
        centroid[a:b] = spectral_centroid(amplitude, sr, nfft, rms[a:b])
    log_rms = to_dbfs(rms)
    silent = silence_mask(log_rms, tcfg.silence_threshold_db, tcfg.silence_smooth_frames)

    cols = [log_rms[:, None], rms[:, None], bands, onset[:, None], centroid[:, None], silent[:, None]]
    if tcfg.beat_channels:
        phase, down = beat_channels(estimate_beats(x, sr), n_frames, fps)
        cols += [phase[:, None], down[:, None]]
    features = np.concatenate(cols, axis=1).astype(np.float32)  # (T, C)
    assert features.shape[1] == len(names)
    return features, names


# ----------------------------------------------------------- model-side helpers


def context_windows(features: np.ndarray, k: int, future: int | None = None) -> np.ndarray:
    """Windows of k frames before and ``future`` frames after each frame (default k: symmetric), edge-padded:
    ``[T, C] -> [T, k + 1 + future, C]``.

    ``out[t, j] = features[clip(t - k + j, 0, T-1)]``, ``j = 0 .. k + future``. ``future = 0`` (a live model:
    ``diffusion.audio_context_future``) holds no row after t; trainer.live.generator.window_indices is the
    streaming twin of this indexing.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"context_windows wants [T, C], got shape {features.shape}")
    future = k if future is None else future
    if k < 0 or future < 0:
        raise ValueError(f"context_windows: k and future must be >= 0, got k={k}, future={future}")
    n, c = features.shape
    width = k + 1 + future
    if n == 0:
        return np.zeros((0, width, c), features.dtype)
    idx = np.clip(np.arange(n)[:, None] - k + np.arange(width)[None, :], 0, n - 1)  # (T, k+1+future)
    return features[idx]


def normalize_per_clip(features: np.ndarray, names: list[str], eps: float = 1e-10) -> np.ndarray:
    """Z-score each channel over the clip (float32 [T, C]); ``is_silent``, ``beat_phase``, ``downbeat`` pass through.

    A (numerically) constant channel, std <= eps, becomes 0.
    """
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != len(names):
        raise ValueError(f"normalize_per_clip: features {features.shape} do not match {len(names)} channel names")
    x = features.astype(np.float64)
    mean = x.mean(axis=0, keepdims=True) if len(x) else np.zeros((1, x.shape[1]))
    std = x.std(axis=0, keepdims=True) if len(x) else np.ones((1, x.shape[1]))
    out = np.where(std > eps, (x - mean) / np.maximum(std, eps), 0.0)
    keep = [i for i, n in enumerate(names) if n in PASS_THROUGH]
    out[:, keep] = x[:, keep]
    return out.astype(np.float32)
