"""Oracle checks of trainer/eval/_interim_metrics.py (AV-Align as TempoTokens computes it, the beat score,
retrieval ranks, music frames, bootstrap CI). INTERIM: this file goes with that module when the per-variant
eval's metric modules (which have their own tests) are merged."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.eval._interim_metrics import (audio_onset_times, av_align_iou, beat_alignment_score, bootstrap_ci,
                                           farneback_flow_magnitude, music_mask, nanmean_of, strict_local_maxima,
                                           true_audio_ranks)


def test_av_align_iou_by_hand():
    fps = 8.0  # tolerance 1/8 s, strict
    # 0.5 ~ 0.55 matched; 1.0 vs 1.125 sits exactly on the tolerance: not matched; 2.0 has no partner
    assert av_align_iou([0.5, 1.0, 2.0], [0.55, 1.125, 3.0], fps) == pytest.approx(1 / (3 + 3 - 1))
    # an audio peak is counted once even with two video peaks near it
    assert av_align_iou([1.0], [0.95, 1.05], fps) == pytest.approx(1 / (1 + 2 - 1))
    assert math.isnan(av_align_iou([], [], fps)) and av_align_iou([1.0], [], fps) == 0.0


def test_local_maxima_are_strict_and_never_at_the_ends():
    assert strict_local_maxima(np.array([3, 1, 2, 1, 2, 2, 1, 5])).tolist() == [2]


def test_beat_alignment_score_by_hand():
    assert beat_alignment_score([1.0, 2.0], [1.1, 2.0, 5.0], 0.1) == pytest.approx((math.exp(-0.5) + 1) / 2)
    assert beat_alignment_score([1.0], [], 0.1) == 0.0
    assert math.isnan(beat_alignment_score([], [1.0], 0.1))


def test_retrieval_ranks_average_ties():
    s = np.array([[0.9, 0.1, 0.2],    # own audio best: rank 1, credit 1
                  [0.5, 0.5, 0.1],    # tied with one other: rank 1.5, credit 1/2
                  [0.3, 0.4, 0.2]])   # two better: rank 3, credit 0
    ranks, top1 = true_audio_ranks(s)
    assert ranks.tolist() == [1.0, 1.5, 3.0] and top1.tolist() == [1.0, 0.5, 0.0]


def test_music_mask_drops_silence_and_the_half_second_after():
    assert np.flatnonzero(music_mask(12, [(3, 6)], fps=4.0, guard_s=0.5)).tolist() == [0, 1, 2, 8, 9, 10, 11]


def test_bootstrap_ci():
    one = nanmean_of(np.array([0.3]))
    assert bootstrap_ci(one, 1, 100, 0) == (0.3, None)
    v = np.random.default_rng(0).normal(1.0, 0.5, 40)
    point, (lo, hi) = bootstrap_ci(nanmean_of(v), len(v), 2000, 0)
    half = 1.96 * v.std(ddof=1) / math.sqrt(len(v))  # the normal-theory interval it should approximate
    assert point == pytest.approx(v.mean()) and lo < point < hi and abs((hi - lo) / 2 - half) < 0.25 * half


def test_onsets_of_a_click_track():
    sr = 16000
    wave = np.zeros(3 * sr, np.float32)
    clicks = [0.5, 1.25, 2.0]
    for c in clicks:
        i = int(c * sr)
        wave[i:i + 160] = np.hanning(160) * np.sin(2 * np.pi * 2000 * np.arange(160) / sr)
    got = audio_onset_times(wave, sr)
    assert len(got) == len(clicks) and np.abs(got - clicks).max() < 0.05, got


def test_flow_magnitude_of_a_moving_square():
    frames = np.zeros((5, 32, 32, 3), np.uint8)
    for t in range(5):
        frames[t, 10:18, 6 + 2 * t: 14 + 2 * t] = 255  # 2 px a frame to the right
    f = farneback_flow_magnitude(frames)
    assert f.shape == (5,) and f[0] == f[1] and (f > 0.05).all()
    assert farneback_flow_magnitude(np.repeat(frames[:1], 3, axis=0)).max() < 1e-3
