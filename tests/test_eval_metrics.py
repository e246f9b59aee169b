"""The evaluation metrics on constructed cases whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.eval import metrics as M
from trainer.eval.loudness import spearman_on
from trainer.eval.rhythm import proxy_av_align

T, H, W = 96, 8, 8


def rms_spearman(rms, motion):
    return spearman_on(rms, motion, np.ones(len(rms), bool))


def proxy(env, motion):
    return proxy_av_align(env, motion, np.ones(len(env), bool), tolerance=1)


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
    assert rms_spearman(rms, M.motion_energy(video)) > 0.99
    assert rms_spearman(rms, M.motion_energy(video[::-1])) < 0.5


def test_spearman_constant_input_is_guarded():
    assert M.spearman(np.ones(10), np.arange(10)) == 0.0
    assert rms_spearman(rms_curve(), np.zeros(T)) == 0.0


def test_av_align_flash_on_every_onset_and_shifted():
    env = onset_envelope()
    assert list(M.audio_onset_peaks(env)) == list(ONSETS)
    video = flash_video(ONSETS)
    assert list(M.motion_peaks(M.motion_energy(video))) == list(ONSETS)
    assert proxy(env, M.motion_energy(video)) >= 0.9
    shifted = flash_video(ONSETS + 5)
    assert proxy(env, M.motion_energy(shifted)) <= 0.2
    # a one-frame shift is inside the +-1 tolerance, two frames are not
    assert proxy(env, M.motion_energy(flash_video(ONSETS + 1))) >= 0.9
    assert proxy(env, M.motion_energy(flash_video(ONSETS + 2))) <= 0.2


def test_av_align_iou_counts_and_empty_case():
    assert M.av_align_from_peaks([10, 20, 30], [10, 31, 50], tolerance=1) == pytest.approx(2 / 4)
    # one video peak cannot match two audio peaks: IoU stays <= 1
    assert M.av_align_from_peaks([10, 11], [10], tolerance=1) == pytest.approx(1 / 2)
    assert M.av_align_from_peaks([], [], tolerance=1) == 1.0
    assert M.av_align_from_peaks([3], [], tolerance=1) == 0.0
    static = gray_video(np.full(T, 0.3))
    assert proxy(onset_envelope(), M.motion_energy(static)) == 0.0
    assert math.isnan(proxy(np.zeros(T), M.motion_energy(static)))  # no peaks at all: undefined, left out


def test_static_video_has_zero_motion_and_defined_ratios():
    static = gray_video(np.full(T, 0.6))
    motion = M.motion_energy(static)
    assert np.all(motion == 0)
    assert M.silence_settle_ratio(motion, [(40, 70)], fps=8, settle_delay_s=0.5) == pytest.approx(1.0)
    assert rms_spearman(rms_curve(), motion) == 0.0
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


# ------------------------------------------------------------------ the metric families (trainer.eval.*)


def click_track(times_s, sr: int = 16000, seconds: float = 4.0) -> np.ndarray:
    """10 ms decaying 1 kHz clicks at the given times, silence elsewhere."""
    w = np.zeros(int(seconds * sr), np.float32)
    t = np.arange(int(0.01 * sr)) / sr
    click = (0.8 * np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.003)).astype(np.float32)
    for s in times_s:
        i = int(s * sr)
        w[i:i + len(click)] += click
    return w


def jumping_square(jump_frames, n: int = 32, res: int = 32) -> np.ndarray:
    """A textured square that jumps between two places on the given frames and stands still otherwise."""
    tex = (np.random.default_rng(0).random((10, 10, 3)) * 255).astype(np.uint8)
    frames, pos = np.zeros((n, res, res, 3), np.uint8), 4
    for f in range(n):
        if f in jump_frames:
            pos = 18 if pos == 4 else 4
        frames[f, pos:pos + 10, pos:pos + 10] = tex
    return frames


def test_av_align_and_beat_score_reproduce_a_hand_derived_click_track():
    """Clicks every 0.5 s from 0.25 s (8 beats at 120 BPM, 16 kHz audio, so the 22.05 kHz resampling runs);
    8 fps video whose square jumps on every other click (frames 6, 14, 22, 30). By hand: 8 audio peaks, 4
    video peaks, all 4 within +-1/8 s of a click -> IoU = 4 / (8 + 4 - 4) = 0.5; beats on events score 1,
    the others are 0.5 s from the nearest event -> BAS = (4 + 4 exp(-0.25 / 0.02)) / 8."""
    from shared.timeline import estimate_beats
    from trainer.eval import rhythm

    clicks = 0.25 + 0.5 * np.arange(8)
    wave, fps = click_track(clicks), 8.0
    frames = jumping_square({6, 14, 22, 30})
    onsets = rhythm.audio_onset_times(wave, 16000)
    assert len(onsets) == 8 and np.all(np.abs(onsets - clicks) < 2 * 512 / 22050)  # within two librosa hops
    flow = rhythm.farneback_flow_magnitude(frames)
    assert list(rhythm.strict_local_maxima(flow)) == [6, 14, 22, 30]
    music = np.ones(32, bool)
    assert rhythm.av_align(onsets, flow, music, fps) == pytest.approx(0.5, abs=1e-12)
    beats = estimate_beats(wave, 16000).beat_times(4.0)
    assert np.allclose(beats, clicks, atol=0.006)  # the timeline's tempo estimate: within 6 ms of the clicks
    bas = rhythm.beat_score(beats, M.motion_energy(frames), music, fps, sigma_s=0.1)
    assert bas == pytest.approx((4 + 4 * math.exp(-0.25 / 0.02)) / 8, abs=1e-3)  # 6 ms off costs < 1e-3
    # frames outside the music mask drop their peaks: only the clicks/jumps in the first half remain
    half = np.arange(32) < 16
    assert rhythm.av_align(onsets, flow, half, fps) == pytest.approx(2 / (4 + 2 - 2))


def test_av_align_matches_the_reference_definition():
    from trainer.eval.rhythm import av_align_iou, beat_alignment_score, strict_local_maxima

    # strict window: a peak exactly 1/fps away does not match
    assert av_align_iou([1.0], [1.125], fps=8) == 0.0
    assert av_align_iou([1.0], [1.12], fps=8) == 1.0
    # each audio peak counted once; one video peak may match several audio peaks (as in the reference)
    assert av_align_iou([1.0, 1.05], [1.02], fps=8) == 2 / (2 + 1 - 2)
    assert av_align_iou([1.0, 3.0], [1.02, 2.0], fps=8) == 1 / 3
    assert math.isnan(av_align_iou([], [], fps=8))
    assert list(strict_local_maxima([0, 1, 1, 0, 2, 0])) == [4]  # a plateau is not a strict maximum
    assert beat_alignment_score([1.0], [], 0.1) == 0.0 and math.isnan(beat_alignment_score([], [1.0], 0.1))


def test_loudness_spearman_uses_music_frames_only():
    rms = rms_curve(2)
    bright = gray_video(rms / rms.max())
    music = np.ones(T, bool)
    music[30:60] = False
    garbage = M.brightness(bright).copy()
    garbage[30:60] = np.random.default_rng(3).random(30)  # what happens in silence does not count
    assert spearman_on(rms, garbage, music) == pytest.approx(spearman_on(rms, M.brightness(bright), music))
    assert spearman_on(rms, garbage, music) > 0.99
    assert math.isnan(spearman_on(rms, garbage, np.zeros(T, bool)))
    mask = M.music_mask(T, [(10, 20)], fps=8, guard_s=0.5)
    assert not mask[10:24].any() and mask[:10].all() and mask[24:].all()


def test_bright_area_fraction_counts_lit_pixels():
    from trainer.eval.loudness import bright_area_fraction

    x = np.zeros((2, 4, 4, 3), np.float32)
    x[1, :2] = 1.0
    assert list(bright_area_fraction(x)) == [0.0, 0.5]


def test_ridge_r2_is_high_for_a_linear_map_and_low_for_noise():
    from trainer.eval import bands

    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(40, 8)) for _ in range(6)]
    w = rng.normal(size=(8, 5))
    ys_linear = [x @ w for x in xs]
    ys_noise = [rng.normal(size=(40, 5)) for _ in xs]
    stat_lin, stat_noise = bands.pooled_r2_statistic(xs, ys_linear), bands.pooled_r2_statistic(xs, ys_noise)
    assert stat_lin(np.arange(6)) > 0.99
    assert stat_noise(np.arange(6)) < 0.05
    assert stat_lin(np.array([2, 2, 2])) > 0.99  # a resample scores its clips' held-out predictions
    assert math.isnan(bands.pooled_r2_statistic(xs[:1], ys_linear[:1])(np.array([0])))  # one clip: nothing held out
    # a clip's own offset (its style) is not scored: shifting every frame of a clip changes nothing
    shifted = [y + 10 * i for i, y in enumerate(ys_linear)]
    assert bands.pooled_r2_statistic(xs, shifted)(np.arange(6)) == pytest.approx(stat_lin(np.arange(6)))
    # sorted groups 1, 3, 5, 7, 9 dealt into folds 0, 1, 2, 3, 0; copies of a group share its fold
    assert list(bands.folds_of(np.array([5, 5, 1, 7, 9, 3, 3]), k=4)) == [2, 2, 0, 3, 0, 1, 1]


def test_colour_geometry_stats_on_a_red_centre():
    from trainer.eval.bands import HUE_BINS, colour_geometry_stats

    x = np.zeros((1, 30, 30, 3), np.float32)
    x[0, 12:18, 12:18, 0] = 1.0  # a red square in the middle ring
    s = colour_geometry_stats(x)[0]
    assert s[:3] == pytest.approx([36 / 900, 0, 0])
    assert s[3] == pytest.approx(36 / 900) and s[4:3 + HUE_BINS].sum() == 0  # red = hue sector 0
    rings = s[3 + HUE_BINS:]
    assert rings[0] > 0 and rings[1] == 0 and rings[2] == 0


def test_retrieval_ranks_ties_and_chance():
    from trainer.eval.retrieval import chance, true_audio_ranks

    s = np.array([[0.9, 0.1, 0.2], [0.5, 0.4, 0.0], [0.3, 0.3, 0.3]])
    ranks, top1 = true_audio_ranks(s)
    assert list(ranks) == [1.0, 2.0, 2.0] and list(top1) == [1.0, 0.0, pytest.approx(1 / 3)]
    # identical rows (a video that carries no audio information): exactly chance
    row = np.array([0.2, -0.1, 0.5, 0.5])
    r, t1 = true_audio_ranks(np.tile(row, (4, 1)))
    assert (r.mean(), t1.mean()) == (pytest.approx(chance(4)[1]), pytest.approx(chance(4)[0]))


def test_dropout_return_and_bootstrap_ci():
    from trainer.eval.stats import bootstrap_ci, nanmean_of

    motion = np.full(T, 0.1)
    motion[40:44] = 0.3  # the 0.5 s (4 frames at 8 fps) after the dropout ends at 40
    assert M.dropout_return(motion, [(30, 40)], fps=8, eps=0.0) == pytest.approx(3.0)
    assert math.isnan(M.dropout_return(motion, [(90, 95)], fps=8))  # no room after it
    point, ci = bootstrap_ci(nanmean_of(np.array([1.0, 2.0, 3.0, np.nan])), 4, 500, seed=0)
    assert point == 2.0 and 1.0 <= ci[0] <= 2.0 <= ci[1] <= 3.0
    assert bootstrap_ci(nanmean_of(np.array([5.0])), 1, 500, seed=0) == (5.0, None)


def test_clip_metric_ci_resamples_only_the_clips_where_it_is_defined():
    from shared.config import Config
    from trainer.eval.registry import ClipMetric, metric_statistic
    from trainer.eval.rows import entry

    values = {0: float("nan"), 1: 0.5, 2: 0.7}  # clip 0: undefined (e.g. no music frames)
    metric = ClipMetric("m", "test", lambda a, v, cfg: values[a], "higher", lambda cfg: "test metric")
    pairs = [[(i, None)] for i in range(3)]
    stat, n = metric_statistic(metric, pairs, Config())
    e = entry(stat, n, Config(), seed=0)
    assert e["n"] == 2 and e["mean"] == pytest.approx(0.6)
    assert 0.5 <= e["ci"][0] <= e["ci"][1] <= 0.7
