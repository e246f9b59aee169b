"""Causal, streamable audio features for live mode.

The offline timeline (``shared.timeline.compute_audio_timeline``) is mostly causal already: ``log_rms``,
``rms``, the bands, ``centroid`` (each a function of its frame alone) and ``onset`` (its frame and the
previous one). Two parts look into the future:

* ``is_silent`` is a *centred* median of ``log_rms`` over ``silence_smooth_frames`` frames;
* ``beat_phase`` / ``downbeat`` come from one tempo estimate over the whole clip.

The causal feature set replaces them, keeping the channel names and order of
:func:`shared.timeline.channel_names` (so a model trained on stored shards takes the same columns):

``is_silent`` (causal)
    1.0 where the *trailing* median of ``log_rms`` over frames ``t-S+1 .. t`` (``S =
    silence_smooth_frames``; frames before 0 repeat frame 0) is under ``silence_threshold_db``. It reads
    ``log_rms`` rounded to float32, as a timeline stores it, so :func:`causal_from_stored` recomputes it
    from a stored (offline) timeline.
``beat_phase``, ``downbeat`` (causal tracker, when ``timeline.beat_channels``)
    Every ``BEAT_UPDATE_S`` seconds of frames (update frames ``u = 0, U, 2U, ...``), the beats are
    re-estimated with :func:`shared.timeline.estimate_beats` on the audio received so far, at most the
    last ``BEAT_WINDOW_S`` seconds: samples ``[max(0, b[u+1] - W), b[u+1])`` where ``b`` are the frame
    bounds. Frames ``u .. u+U-1`` take their phase and bar starts from that estimate, extrapolated
    forward (:func:`shared.timeline.beat_channels` on an estimate whose time origin is frame ``u``).
    With less than ``BEAT_MIN_S`` seconds of audio, or before any onset, the tracker falls back to
    120 BPM with a beat at time 0, as the offline one does with no onsets (``estimate_beats`` is not
    asked about shorter audio: its 1 s moving average needs more than 1 s of envelope).

Frame t of the causal timeline depends only on samples before ``b[t+1]``, the end of frame t.
:func:`causal_timeline` computes it offline (whole arrays at once); :class:`StreamingTimeline` computes
the same rows incrementally as audio arrives (bounded memory: it keeps at most the beat window and one
frame of audio). The two are tested equal on real audio (tests/test_live_features.py).

A *causal model* (``diffusion.audio_context_future = 0``) is trained and sampled on these values: the loader,
offline sampling and the eval take a clip's stored offline timeline through
:meth:`trainer.conditioning.ConditioningSpec.causal_from_stored` (per-frame channels as stored, ``is_silent``
recomputed by the same :func:`trainer.conditioning.causal_silence_mask`), so it trains on existing shards. Its
beat channels cannot be recomputed that way (the causal tracker needs the audio, which latent shards do not
hold), so a causal model takes no beat channel (:mod:`trainer.conditioning`), and live the tracker is then not
run at all (:func:`live_timeline`).

Every per-frame quantity is computed by the pure functions of :mod:`shared.timeline` (one
implementation of each feature); this module only composes them causally.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from shared.config import TimelineConfig
from shared.timeline import (BeatEstimate, band_matrix, band_rms, beat_channels, channel_names, estimate_beats,
                             frame_bounds, frame_count, frame_matrix, frame_rms, frame_spectra, spectral_centroid,
                             spectral_flux, to_dbfs)
from trainer.conditioning import BEAT_CHANNELS, ConditioningSpec, causal_silence_mask, channel_selection

BEAT_WINDOW_S = 8.0   # seconds of past audio the causal tracker looks at
BEAT_UPDATE_S = 1.0   # seconds between tracker updates
BEAT_MIN_S = 2.0      # the tracker's first estimate waits for this much audio
_CHUNK_FRAMES = 256   # frames featurised per batch offline (bounded memory)


def causal_channel_names(tcfg: TimelineConfig) -> list[str]:
    """The causal timeline's channels: the names and order of the offline timeline."""
    return channel_names(tcfg)


def max_frame_length(sr: float, fps: float) -> int:
    """The longest frame in samples, ``ceil(sr / fps)``: the zero-padded width every frame is transformed at.

    The offline timeline pads to its clip's longest frame, which is this for any clip of two frames or more.
    """
    return int(math.ceil(sr / fps - 1e-9))


def beat_update_frames(fps: float) -> int:
    """U: frames between causal beat-tracker updates (at least 1)."""
    return max(1, int(round(BEAT_UPDATE_S * fps)))


def beat_window_samples(sr: float) -> int:
    """W: samples of past audio a causal beat estimate looks at."""
    return int(round(BEAT_WINDOW_S * sr))


# ------------------------------------------------------------------ pure per-frame pieces


class _Spectral:
    """Per-frame spectral features of a batch of frames (composition of shared.timeline's functions)."""

    def __init__(self, sr: float, tcfg: TimelineConfig):
        self.sr, self.tcfg = sr, tcfg
        self._bands: dict[int, np.ndarray] = {}

    def __call__(self, frames: np.ndarray, lengths: np.ndarray, prev_db: np.ndarray | None):
        """Returns ``(rms, bands, onset, centroid, prev_db)`` for the frames (see shared.timeline)."""
        rms = frame_rms(frames, lengths)
        amplitude, power_scale, nfft = frame_spectra(frames, lengths, self.tcfg.n_fft)
        if nfft not in self._bands:
            self._bands[nfft] = band_matrix(self.sr, nfft, self.tcfg)
        bands = band_rms(amplitude, power_scale, self._bands[nfft])
        onset, prev_db = spectral_flux(amplitude, prev_db)
        centroid = spectral_centroid(amplitude, self.sr, nfft, rms)
        return rms, bands, onset, centroid, prev_db


def estimate_from(origin_s: float, window_start_s: float, beats: BeatEstimate) -> BeatEstimate:
    """Re-express ``beats`` (estimated on audio starting at ``window_start_s``) with its time origin at ``origin_s``.

    Beats at ``window_start_s + phase + n P`` (bars on ``n = j mod 4``) are the beats
    ``origin_s + phase' + m P`` with ``phase' = (window_start_s + phase - origin_s) mod P`` and
    ``m = n + q``, ``q = floor((window_start_s + phase - origin_s) / P)``, so bars fall on ``m = j + q mod 4``.
    Beats before the new origin are extrapolated the same way (``n`` may be negative).
    """
    period = beats.period_s
    first = window_start_s + beats.phase_s - origin_s
    q = math.floor(first / period)
    phase = first - q * period
    if phase >= period:  # float rounding
        phase, q = 0.0, q + 1
    return BeatEstimate(bpm=beats.bpm, phase_s=float(phase), downbeat_index=int((beats.downbeat_index + q) % 4))


def causal_beat_rows(segment: np.ndarray, segment_start: int, u: int, n_rows: int, sr: float,
                     fps: float) -> np.ndarray:
    """Beat channels (float64 [n_rows, 2]) of frames ``u .. u+n_rows-1`` from the estimate on ``segment``.

    ``segment`` is the audio ``[segment_start, b[u+1])`` (at most the beat window, see the module docstring).
    """
    if len(segment) < BEAT_MIN_S * sr:
        beats, segment_start = BeatEstimate(bpm=120.0, phase_s=0.0, downbeat_index=0), 0
    else:
        beats = estimate_beats(segment, sr)
    local = estimate_from(u / fps, segment_start / sr, beats)
    phase, down = beat_channels(local, n_rows, fps)
    return np.stack([phase, down], axis=1)


# ------------------------------------------------------------------ offline


def causal_timeline(wave: np.ndarray, sr: float, fps: float, tcfg: TimelineConfig) -> tuple[np.ndarray, list[str]]:
    """The causal timeline of a whole waveform at once: ``(float32 [T, C], names)`` (module docstring)."""
    wave = np.asarray(wave)
    if wave.ndim != 1 or not np.issubdtype(wave.dtype, np.floating):
        raise ValueError(f"causal_timeline wants a mono float waveform, got shape {wave.shape} dtype {wave.dtype}")
    names = causal_channel_names(tcfg)
    n_frames = frame_count(len(wave), sr, fps)
    if n_frames == 0:
        return np.zeros((0, len(names)), np.float32), names
    x = wave.astype(np.float32, copy=False)
    bounds = frame_bounds(n_frames, sr, fps)
    width = max_frame_length(sr, fps)
    spectral = _Spectral(sr, tcfg)
    rms, onset, centroid = np.empty(n_frames), np.empty(n_frames), np.empty(n_frames)
    bands = np.empty((n_frames, tcfg.n_bands))
    prev_db = None
    for a in range(0, n_frames, _CHUNK_FRAMES):
        b = min(n_frames, a + _CHUNK_FRAMES)
        frames, lengths = frame_matrix(x, bounds[a:b + 1], width)
        rms[a:b], bands[a:b], onset[a:b], centroid[a:b], prev_db = spectral(frames, lengths, prev_db)
    log_rms = to_dbfs(rms)
    silent = causal_silence_mask(log_rms.astype(np.float32), tcfg.silence_threshold_db, tcfg.silence_smooth_frames)
    cols = [log_rms[:, None], rms[:, None], bands, onset[:, None], centroid[:, None], silent[:, None]]
    if tcfg.beat_channels:
        beat = np.empty((n_frames, 2))
        step, w = beat_update_frames(fps), beat_window_samples(sr)
        for u in range(0, n_frames, step):
            end = int(bounds[u + 1])
            start = max(0, end - w)
            beat[u:u + step] = causal_beat_rows(x[start:end], start, u, min(step, n_frames - u), sr, fps)
        cols.append(beat)
    return np.concatenate(cols, axis=1).astype(np.float32), names


# ------------------------------------------------------------------ streaming


class StreamingTimeline:
    """The causal timeline computed incrementally: ``push(samples)`` returns the rows of newly complete frames.

    Frame t is complete once samples ``[0, b[t+1])`` have arrived (``b`` = :func:`shared.timeline.frame_bounds`).
    ``finish()`` ends the stream; a trailing part-frame is not a frame (``T = frame_count(total samples)``),
    as offline. Memory is bounded: the audio kept is at most the beat window plus one frame.
    """

    def __init__(self, sr: float, fps: float, tcfg: TimelineConfig):
        self.sr, self.fps, self.tcfg = float(sr), float(fps), tcfg
        self.names = causal_channel_names(tcfg)
        self.width = max_frame_length(sr, fps)
        self._spectral = _Spectral(sr, tcfg)
        self._keep = (beat_window_samples(sr) if tcfg.beat_channels else 0) + 2 * self.width
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0          # absolute sample index of _buf[0]
        self.samples_received = 0
        self.frames_done = 0
        self._prev_db: np.ndarray | None = None
        self._recent_db: deque[float] = deque(maxlen=max(1, tcfg.silence_smooth_frames))
        self._beat_rows: np.ndarray | None = None  # rows of the current tracker update
        self._beat_u = -1

    def _bound(self, t: int) -> int:
        return int(math.floor(t * self.sr / self.fps))

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Append mono float samples; returns float32 [n, C] rows for the frames they completed (n may be 0)."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        if samples.size and not np.all(np.isfinite(samples)):
            raise ValueError("StreamingTimeline.push: samples hold NaN or inf")
        self._buf = np.concatenate([self._buf, samples])
        self.samples_received += len(samples)
        first = self.frames_done
        last = first
        while self._bound(last + 1) <= self.samples_received:
            last += 1
        if last == first:
            return np.zeros((0, len(self.names)), np.float32)
        rows = self._rows(first, last)
        self.frames_done = last
        self._trim()
        return rows

    def _rows(self, a: int, b: int) -> np.ndarray:
        bounds = frame_bounds(b, self.sr, self.fps)[a:] - self._buf_start  # (b-a+1,) relative to the buffer
        frames, lengths = frame_matrix(self._buf, bounds, self.width)
        rms, bands, onset, centroid, self._prev_db = self._spectral(frames, lengths, self._prev_db)
        log_rms = to_dbfs(rms)
        silent = np.empty(b - a)
        for i, v in enumerate(log_rms.astype(np.float32)):  # the stored (float32) log_rms, as causal_timeline
            if not self._recent_db:  # frames before 0 repeat frame 0
                self._recent_db.extend([float(v)] * self._recent_db.maxlen)
            self._recent_db.append(float(v))
            silent[i] = float(np.median(np.asarray(self._recent_db)) < self.tcfg.silence_threshold_db)
        cols = [log_rms[:, None], rms[:, None], bands, onset[:, None], centroid[:, None], silent[:, None]]
        if self.tcfg.beat_channels:
            cols.append(np.stack([self._beat_row(t) for t in range(a, b)]))
        return np.concatenate(cols, axis=1).astype(np.float32)

    def _beat_row(self, t: int) -> np.ndarray:
        step = beat_update_frames(self.fps)
        u = (t // step) * step
        if u != self._beat_u:
            end = self._bound(u + 1)
            start = max(0, end - beat_window_samples(self.sr))
            seg = self._buf[start - self._buf_start:end - self._buf_start]
            assert start >= self._buf_start, "beat window trimmed away"
            self._beat_rows = causal_beat_rows(seg, start, u, step, self.sr, self.fps)
            self._beat_u = u
        return self._beat_rows[t - u]

    def _trim(self) -> None:
        """Drop audio no later frame or beat update can need."""
        cut = max(0, self.samples_received - self._keep)
        cut = min(cut, self._bound(self.frames_done))  # never past the next frame's start
        if cut > self._buf_start:
            self._buf = self._buf[cut - self._buf_start:]
            self._buf_start = cut


def live_timeline(cfg) -> tuple[TimelineConfig, list[int] | None]:
    """What a live stream computes for a model: ``(timeline settings, the columns its denoiser takes)``.

    The settings are the model's own, without the beat tracker when the model takes no beat channel (its update,
    once a second on the frame path, costs a block of audio several ms, more under load: bench/RESULTS.md, and
    nothing would read it); the columns are :meth:`trainer.conditioning.ConditioningSpec.columns` of the streamed
    names (None: all).
    """
    tcfg = cfg.timeline
    if tcfg.beat_channels:
        names = channel_names(tcfg)
        picked = channel_selection(names, cfg.diffusion.audio_channels)
        if picked is not None and not any(names[i] in BEAT_CHANNELS for i in picked):
            tcfg = tcfg.model_copy(update={"beat_channels": False})
    return tcfg, ConditioningSpec.from_config(cfg).columns(causal_channel_names(tcfg))
