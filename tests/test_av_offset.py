"""The AV offset (trainer/eval/av_offset.py): the cross-correlation and its sub-sample peak against numpy/scipy on
synthetic signals with a known fractional delay, then validated on real renders of the teacher (the synthesizer,
timeline, drive and EGL renderer of trainer.teacher.ground_truth at 32 px, 12 fps, 4 s clips, as the tiny preset):

* the teacher's own lag, against what its frame differencing and the drive's release times predict
  (:func:`drive_prediction_ms`): within half a frame;
* the same videos shifted by known whole frames (padded with the first / last frame): recovered within one frame;
* the eval's floor (each video against another clip's audio): its peak is not above chance, the largest peak of the
  same videos against their own audio circularly shifted out of the search window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.signal import correlate

from shared.config import build_config
from trainer.eval import av_offset as A
from trainer.eval import metrics as M
from trainer.eval.stats import bootstrap_ci
from trainer.teacher import ground_truth, renderer_scope

ROOT = Path(__file__).resolve().parents[1]
FPS = 12.0
FRAME_MS = 1000.0 / FPS
N_CLIPS = 16
SEED0 = 700
NULL_SHIFTS_S = np.arange(1.2, 2.81, 0.1)  # 4 s clips: the true alignment stays outside +-1 s of every lag searched


# ------------------------------------------------------------------ the math against numpy / scipy


def fractional_delay(x: np.ndarray, d: float) -> np.ndarray:
    """``x`` delayed by ``d`` samples (circularly, exact for a band-limited periodic signal): a phase ramp."""
    f = np.fft.rfftfreq(len(x))
    return np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * f * d), n=len(x))


def smooth_noise(n: int, seed: int, sigma: float = 3.0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(np.random.default_rng(seed).standard_normal(n), sigma, mode="wrap")


def test_normalised_xcorr_is_scipys_correlation_over_each_overlap():
    a, v = smooth_noise(300, 1), smooth_noise(300, 2)
    lags, c = A.normalised_xcorr(a, v, 40)
    full = correlate(v, a, mode="full", method="direct")
    for lag, got in zip(lags, c):
        i = np.arange(max(0, -lag), min(300, 300 - lag))
        want = np.dot(a[i], v[i + lag]) / np.sqrt(np.dot(a[i], a[i]) * np.dot(v[i + lag], v[i + lag]))
        assert got == pytest.approx(want, abs=1e-12)
        assert np.dot(a[i], v[i + lag]) == pytest.approx(full[len(a) - 1 + lag], abs=1e-9)
    assert np.all(np.abs(c) <= 1 + 1e-12)


@pytest.mark.parametrize("delay", [7.3, -12.6, 0.45, 31.7])
def test_the_parabolic_peak_finds_a_known_fractional_delay(delay):
    a = smooth_noise(2000, 3)
    v = fractional_delay(a, delay)  # v later than a: positive
    lags, c = A.normalised_xcorr(a, v, 60)
    pos, value = A.parabolic_peak(c)
    assert lags[0] + pos == pytest.approx(delay, abs=0.1)  # sub-sample: the parabola's bias on a smooth peak
    assert 0.95 < value <= 1.0
    # scipy's correlation finds the same whole-sample peak
    full = correlate(v, a, mode="full")
    assert int(np.argmax(full)) - (len(a) - 1) == int(round(lags[0] + pos))


def test_parabolic_peak_is_exact_on_a_parabola_and_the_sign_is_picture_late():
    x = np.arange(11.0)
    pos, value = A.parabolic_peak(2.0 - (x - 6.3) ** 2)
    assert pos == pytest.approx(6.3) and value == pytest.approx(2.0)
    curve = np.zeros(201)
    curve[100 + 4] = 1.0  # the video's change 4 hops after the audio's
    assert A.peak_of(curve) == (pytest.approx(40.0), 1.0)


def test_a_clean_impulse_train_and_a_video_that_follows_it_k_frames_late():
    fps, sr = 12.0, 16000
    wave = np.zeros(int(6 * sr), np.float32)
    rng = np.random.default_rng(0)
    onsets = np.sort(rng.uniform(0.5, 5.5, 14))
    for s in onsets:
        i = int(s * sr)
        wave[i:i + 800] += rng.standard_normal(800).astype(np.float32) * np.exp(-np.arange(800) / 200.0)
    env = A.audio_change_envelope(wave, sr)
    assert len(env) == 600 and env[0] == 0
    for k in (0, 2, -3):
        motion = np.zeros(int(6 * fps))
        for s in onsets:
            motion[int(np.floor(s * fps)) + k] += 1.0  # the change shows in the frame whose interval holds it
        ms, peak = A.peak_of(A.offset_curve(env, motion, fps))
        assert ms == pytest.approx(k * 1000 / fps - 0.5 * 1000 / fps, abs=0.5 * 1000 / fps), k  # quantised down
        assert peak > 0.2


# ------------------------------------------------------------------ the teacher


def drive_prediction_ms(fps: float, release_s: float, n_onsets: int = 200) -> float:
    """The teacher's offset as its frame differencing and one envelope of its drive predict it: an audio onset at
    time s (spread over a frame) shows in the audio envelope at the 10 ms boundary before it and in the frame whose
    interval [t, t+1) / fps holds it (instant attack); that frame's change is 1, then the envelope releases with time
    constant ``release_s`` (datagen/visual/drive.py), so frame t0 + k changes by (1 - r) r^(k-1), r = exp(-1 /
    (fps release_s)). The estimator (grid interpolation, parabolic peak) is applied to the mean response."""
    r = np.exp(-1.0 / (fps * release_s))
    lag = int(round(A.MAX_LAG_S / A.HOP_S))
    curve = np.zeros(2 * lag + 1)
    for s in 1.0 + (np.arange(n_onsets) + 0.5) / n_onsets / fps:
        t0 = int(np.floor(s * fps))
        motion = np.zeros(int(3 * fps))
        motion[t0] = 1.0
        k = np.arange(1, len(motion) - t0)
        motion[t0 + 1:] = (1.0 - r) * r ** (k - 1)
        grid = A.video_change_on_grid(motion, fps, int(3.0 / A.HOP_S))
        m = int(np.floor(s / A.HOP_S + 1e-9))
        curve += grid[m - lag:m + lag + 1]
    return A.peak_of(curve)[0]


def shifted(frames: np.ndarray, k: int) -> np.ndarray:
    """The video k frames later (k > 0: the first frame repeated in front) or earlier (the last repeated)."""
    if k >= 0:
        return np.concatenate([np.repeat(frames[:1], k, 0), frames[:len(frames) - k]])
    return np.concatenate([frames[-k:], np.repeat(frames[-1:], -k, 0)])


@pytest.fixture(scope="module")
def teacher():
    cfg = build_config([ROOT / "configs" / "tiny.yaml"], overrides=["render.resolution=32", f"render.fps={FPS}"])
    with renderer_scope(None, cfg.render.resolution) as r:
        clips = [ground_truth(cfg, SEED0 + i, "normal", r) for i in range(N_CLIPS)]
    envs = [A.audio_change_envelope(c.wave, c.sr) for c in clips]
    return clips, envs


def pooled(curves: list[np.ndarray]) -> tuple[float, float, tuple[float, float]]:
    c = np.stack(curves)
    ms, peak = A.pooled_offset(c)
    _, ci = bootstrap_ci(lambda idx: A.pooled_offset(c[idx])[0], len(c), 1000, 0)
    return ms, peak, ci


def test_the_teachers_lag_is_what_its_differencing_and_release_times_predict(teacher):
    clips, envs = teacher
    ms, peak, ci = pooled([A.offset_curve(e, M.motion_energy(c.frames), FPS) for c, e in zip(clips, envs)])
    from datagen.visual.drive import BAND_RELEASE_S, FLASH_RELEASE_S, LEVEL_RELEASE_S

    predictions = {tau: drive_prediction_ms(FPS, tau) for tau in (FLASH_RELEASE_S, LEVEL_RELEASE_S, BAND_RELEASE_S)}
    print(f"teacher at {FPS:g} fps, {N_CLIPS} clips: {ms:+.1f} ms [{ci[0]:+.1f}, {ci[1]:+.1f}], peak {peak:.3f}; "
          "predicted " + ", ".join(f"{p:+.1f} ms (release {t:g} s)" for t, p in predictions.items()))
    for p in predictions.values():
        assert abs(ms - p) <= FRAME_MS / 2
    assert ci[0] <= ms <= ci[1] and ci[1] - ci[0] < FRAME_MS


@pytest.mark.parametrize("k", [-5, -2, 2, 5])
def test_a_teacher_video_shifted_by_k_frames_is_recovered_within_one_frame(teacher, k):
    clips, envs = teacher
    base = A.pooled_offset(np.stack([A.offset_curve(e, M.motion_energy(c.frames), FPS)
                                     for c, e in zip(clips, envs)]))[0]
    ms = A.pooled_offset(np.stack([A.offset_curve(e, M.motion_energy(shifted(c.frames, k)), FPS)
                                   for c, e in zip(clips, envs)]))[0]
    print(f"shift {k:+d} frames ({k * FRAME_MS:+.1f} ms): measured {ms - base:+.1f} ms over the unshifted "
          f"({ms:+.1f} ms), error {ms - base - k * FRAME_MS:+.1f} ms")
    assert abs(ms - base - k * FRAME_MS) <= FRAME_MS


def test_the_floor_has_no_peak_above_chance(teacher):
    clips, envs = teacher
    motion = [M.motion_energy(c.frames) for c in clips]
    own = A.pooled_offset(np.stack([A.offset_curve(e, m, FPS) for e, m in zip(envs, motion)]))[1]
    floor = A.pooled_offset(np.stack([A.offset_curve(envs[(i + 1) % N_CLIPS], m, FPS)
                                      for i, m in enumerate(motion)]))[1]
    nulls = np.stack([A.circular_null(e, m, FPS, list(NULL_SHIFTS_S)) for e, m in zip(envs, motion)])
    chance = max(A.pooled_offset(nulls[:, j])[1] for j in range(len(NULL_SHIFTS_S)))
    print(f"peak strength: own audio {own:.3f}, floor (another clip's audio) {floor:.3f}, chance (largest over "
          f"{len(NULL_SHIFTS_S)} circular shifts) {chance:.3f}")
    assert floor <= chance < own / 2


def test_recording_offset_of_a_teacher_clip(teacher):
    clips, _ = teacher
    c = clips[0]
    o = A.recording_offset(c.wave, c.sr, M.motion_energy(c.frames), FPS)
    assert set(o) == {"ms", "peak", "chance_peak", "note"} and abs(o["ms"]) < 1000 and o["chance_peak"] is not None
    short = A.recording_offset(c.wave[:c.sr * 2], c.sr, M.motion_energy(c.frames[:24]), FPS)
    assert short["chance_peak"] is None and short["ms"] is not None
