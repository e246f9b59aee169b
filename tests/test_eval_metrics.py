"""The evaluation metrics on constructed cases whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.eval import metrics as M

T, H, W = 96, 8, 8


def gray_video(levels: np.ndarray) -> np.ndarray:
    """A uniform video whose every pixel has the given per-frame level in [0, 1]: float [T, H, W, 3]."""
    return np.broadcast_to(np.asarray(levels, np.float32)[:, None, None, None], (len(levels), H, W, 3)).copy()


def rms_curve(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.convolve(rng.random(T), np.ones(5) / 5, mode="same"), 0.01, 1.0)


ONSETS = np.array([5, 14, 26, 33, 47, 58, 66, 79, 88])  # irregular gaps >= 7 frames


def onset_envelope() -> np.ndarray:
    env = np.full(T, 0.02)
    env[ONSETS] = 1.0
    return env


def flash_video(onsets: np.ndarray) -> np.ndarray:
    """Brightness jumps to 1 on each onset and decays: the motion peak is on the onset frame."""
    level = np.zeros(T)
    for o in onsets:
        for d in range(4):
            if o + d < T:
                level[o + d] = max(level[o + d], 0.8 * 0.5 ** d)
    return gray_video(level)


def test_motion_energy_is_mean_abs_frame_difference():
    v = gray_video(np.array([0.0, 0.5, 0.5, 0.25]))
    assert np.allclose(M.motion_energy(v), [0.5, 0.5, 0.0, 0.25])
    u8 = (v * 255).round().astype(np.uint8)
    assert np.allclose(M.motion_energy(u8), [0.5, 0.5, 0.0, 0.25], atol=2 / 255)
    assert np.allclose(M.brightness(v), [0.0, 0.5, 0.5, 0.25], atol=1e-6)


def test_brightness_copying_rms_correlates_near_one():
    rms = rms_curve()
    video = gray_video(rms / rms.max())
    assert M.spearman(rms, M.brightness(video)) > 0.99
    # and a random video does not
    other = gray_video(np.random.default_rng(7).random(T))
    assert abs(M.spearman(rms, M.brightness(other))) < 0.4


def test_motion_copying_rms_correlates_near_one():
    rms = rms_curve(1)
    video = gray_video(np.cumsum(rms) / np.sum(rms))  # each frame brightens by rms[t]: motion == rms
    assert M.rms_motion_spearman(rms, M.motion_energy(video)) > 0.99
    assert M.rms_motion_spearman(rms, M.motion_energy(video[::-1])) < 0.5


def test_spearman_constant_input_is_guarded():
    assert M.spearman(np.ones(10), np.arange(10)) == 0.0
    assert M.rms_motion_spearman(rms_curve(), np.zeros(T)) == 0.0


def test_av_align_flash_on_every_onset_and_shifted():
    env = onset_envelope()
    assert list(M.audio_onset_peaks(env)) == list(ONSETS)
    video = flash_video(ONSETS)
    assert list(M.motion_peaks(M.motion_energy(video))) == list(ONSETS)
    assert M.av_align(env, M.motion_energy(video), tolerance=1) >= 0.9
    shifted = flash_video(ONSETS + 5)
    assert M.av_align(env, M.motion_energy(shifted), tolerance=1) <= 0.2
    # a one-frame shift is inside the +-1 tolerance, two frames are not
    assert M.av_align(env, M.motion_energy(flash_video(ONSETS + 1)), tolerance=1) >= 0.9
    assert M.av_align(env, M.motion_energy(flash_video(ONSETS + 2)), tolerance=1) <= 0.2


def test_av_align_iou_counts_and_empty_case():
    assert M.av_align_from_peaks([10, 20, 30], [10, 31, 50], tolerance=1) == pytest.approx(2 / 4)
    # one video peak cannot match two audio peaks: IoU stays <= 1
    assert M.av_align_from_peaks([10, 11], [10], tolerance=1) == pytest.approx(1 / 2)
    assert M.av_align_from_peaks([], [], tolerance=1) == 1.0
    assert M.av_align_from_peaks([3], [], tolerance=1) == 0.0
    static = gray_video(np.full(T, 0.3))
    assert M.av_align(onset_envelope(), M.motion_energy(static)) == 0.0
    assert M.av_align(np.zeros(T), M.motion_energy(static)) == 1.0


def test_static_video_has_zero_motion_and_defined_ratios():
    static = gray_video(np.full(T, 0.6))
    motion = M.motion_energy(static)
    assert np.all(motion == 0)
    assert M.silence_settle_ratio(motion, [(40, 70)], fps=8, settle_delay_s=0.5) == pytest.approx(1.0)
    assert M.rms_motion_spearman(rms_curve(), motion) == 0.0
    assert M.style_diversity([static, static.copy()]) == 0.0


def test_silence_settle_ratio_known_values():
    fps = 8
    motion = np.full(T, 0.2)
    motion[40:70] = 0.05           # quieter during the silence
    motion[40:44] = 0.2            # but still moving for the first 0.5 s (4 frames): excluded by the delay
    r = M.silence_settle_ratio(motion, [(40, 70)], fps=fps, settle_delay_s=0.5, eps=0.0)
    assert r == pytest.approx(0.25)
    settled, loud = M.silence_masks(T, [(40, 70)], fps, 0.5)
    assert settled.sum() == 26 and not loud[40:70].any() and loud[1:40].all()
    stops = motion.copy()
    stops[44:70] = 0
    assert M.silence_settle_ratio(stops, [(40, 70)], fps=fps, settle_delay_s=0.5) < 1e-3
    assert math.isnan(M.silence_settle_ratio(motion, [], fps=fps))
    assert M.spans_from_mask(np.r_[np.zeros(3), np.ones(4), np.zeros(2), np.ones(1)]) == [(3, 7), (9, 10)]
    meta = {"segments": [{"kind": "dropout", "start_frame": 1, "end_frame": 5},
                         {"kind": "silence", "start_frame": 40, "end_frame": 70}]}
    assert M.silence_spans_from_meta(meta) == [(40, 70)]


def test_output_sensitivity():
    rng = np.random.default_rng(0)
    a = rng.random((4, 20))
    assert M.output_sensitivity(a, a.copy(), a + 0.1) == 0.0
    assert M.output_sensitivity(a, a.copy(), a.copy()) == 0.0       # identical everywhere: 0, not NaN
    assert M.output_sensitivity(a, a + 0.2, a + 0.1) == pytest.approx(2.0)
    assert M.output_sensitivity(a, a + 0.2, a) == math.inf


def test_style_diversity_and_frame_statistics():
    dark, light = gray_video(np.full(T, 0.1)), gray_video(np.full(T, 0.9))
    stats = M.frame_statistics(dark)
    assert stats.shape == (3 + 3 + 1 + 16,)
    d = M.style_diversity([dark, light])
    # mean RGB differs by 0.8 in 3 channels and the 16 luma cells by 0.8 each
    assert d == pytest.approx(0.8 * math.sqrt(3 + 16), rel=1e-5)
    assert M.style_diversity([dark, light, dark]) == pytest.approx(2 / 3 * d, rel=1e-5)
    assert M.nanmean([1.0, float("nan"), 3.0]) == 2.0 and math.isnan(M.nanmean([]))
