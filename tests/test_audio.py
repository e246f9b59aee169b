"""Procedural audio: determinism, variants, silence/dropout labels, mix = sum of stems, tempo and key measured
from the stems, debug clips. Everything goes through the real synth and the real timeline at tiny sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from datagen.audio import TRACKS, choose_variant, synthesize_clip
from datagen.audio.dynamics import gain_curves
from datagen.audio.music import render_song
from datagen.audio.synth import PEAK_TARGET, song_plan
from datagen.audio.theory import hz_to_midi, scale_pitch_classes
from shared.config import build_config
from shared.timeline import channel_index, compute_audio_timeline

SEEDS = range(6)


# ----------------------------------------------------------------- measurement helpers (independent of the synth)


def onset_times(x: np.ndarray, sr: int, block_s: float = 0.005, ratio: float = 1.6, refractory_s: float = 0.03) -> np.ndarray:
    """Onsets (s) of a percussive stem: 5 ms blocks whose peak slope jumps past ``ratio`` x the two blocks before.

    The slope (first difference) favours a hit's bright attack over the low tail of the previous hit.
    """
    b = max(1, int(sr * block_s))
    slope = np.diff(x.astype(np.float64), prepend=0.0)
    nb = len(x) // b
    e = np.abs(slope[: nb * b].reshape(nb, b)).max(axis=1)
    prev = np.maximum(np.concatenate([[0.0], e[:-1]]), np.concatenate([[0.0, 0.0], e[:-2]]))
    out: list[float] = []
    for j in np.nonzero((e > 0.02 * e.max()) & (e > ratio * prev))[0]:
        t = j * b / sr
        if not out or t - out[-1] > refractory_s:
            out.append(t)
    return np.array(out)


def beat_period(onsets: np.ndarray, duration: float, tol: float = 0.012, lags: tuple[float, float] = (0.15, 1.5),
                need: float = 0.9) -> float:
    """The shortest lag whose pulse grid, anchored on some onset, finds an onset on (almost) every grid point.

    A kick on every beat fills the beat grid (and every coarser one, which comes later in the scan);
    finer grids (8ths, 16ths) stay half empty because the extra kicks are few. The lag is then refined
    by a least-squares fit of the matched onsets against their grid indices.
    """
    near = lambda t: np.abs(t[:, :, None] - onsets[None, None, :]).min(axis=2) < tol  # noqa: E731
    for lag in np.arange(lags[0], lags[1], 0.001):
        k = np.arange(-int(duration / lag) - 1, int(duration / lag) + 2)
        grid = onsets[:, None] + k[None, :] * lag  # (anchor, k)
        inside = (grid >= 0) & (grid <= duration - tol)
        if inside.sum(axis=1).max() < 3:
            continue
        coverage = (near(grid) & inside).sum(axis=1) / np.maximum(inside.sum(axis=1), 1)  # (anchor,)
        a = int(np.argmax(coverage))
        if coverage[a] >= need:
            hit = near(grid[a:a + 1])[0] & inside[a]
            times = np.array([onsets[np.abs(onsets - t).argmin()] for t in grid[a][hit]])
            return float(np.polyfit(k[hit], times, 1)[0])
    raise AssertionError(f"no periodic structure in onsets {np.round(onsets, 3).tolist()}")


def spectral_peaks_midi(x: np.ndarray, sr: int, rel: float = 0.5) -> np.ndarray:
    """MIDI pitches (fractional) of the notes sounding in ``x``: spectral peaks above ``rel`` x the highest
    (Hann window, zero-padded FFT) that are not harmonics (2x..8x, within 1%) of a lower peak."""
    n = 1 << 17
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x)), n=n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    is_peak = (spec[1:-1] > spec[:-2]) & (spec[1:-1] >= spec[2:])
    partials = f[np.nonzero(is_peak & (spec[1:-1] > 0.1 * spec.max()))[0] + 1]  # every clear partial
    strong = f[np.nonzero(is_peak & (spec[1:-1] > rel * spec.max()))[0] + 1]
    ratios = strong[:, None] / partials[None, :]  # (strong, partials)
    harmonic = np.any((ratios > 1.5) & (np.abs(ratios - np.round(ratios)) < 0.01 * ratios) & (np.round(ratios) <= 8), axis=1)
    return hz_to_midi(strong[~harmonic])


def timeline(clip, cfg):
    return compute_audio_timeline(clip.wave, clip.sr, cfg.render.fps, cfg.timeline)


def sample_range(start_s: float, end_s: float, sr: int) -> slice:
    """Samples n with start_s <= n/sr < end_s."""
    return slice(math.ceil(start_s * sr - 1e-9), math.ceil(end_s * sr - 1e-9))


# ------------------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("variant", ["normal", "silence", "debug"])
def test_same_seed_same_clip_and_timeline_different_seeds_differ(tiny_cfg, variant):
    a, b = synthesize_clip(tiny_cfg, 11, variant), synthesize_clip(tiny_cfg, 11, variant)
    assert a.wave.dtype == np.float32 and a.wave.shape == (int(tiny_cfg.data.clip_seconds * tiny_cfg.data.sample_rate),)
    assert np.array_equal(a.wave, b.wave) and a.meta == b.meta
    assert all(np.array_equal(a.stems[t], b.stems[t]) for t in TRACKS)
    fa, names = timeline(a, tiny_cfg)
    fb, _ = timeline(b, tiny_cfg)
    assert np.array_equal(fa, fb)
    other = synthesize_clip(tiny_cfg, 12, variant)
    assert not np.array_equal(a.wave, other.wave)
    assert not np.array_equal(fa, timeline(other, tiny_cfg)[0])


def test_variant_choice_follows_the_mix_knobs(tiny_cfg):
    d = tiny_cfg.data.model_copy(update={"audio_silence_mix_prob": 0.3, "audio_debug_mix_prob": 0.1})
    picks = [choose_variant(d, s) for s in range(3000)]
    assert abs(picks.count("silence") / 3000 - 0.3) < 0.03
    assert abs(picks.count("debug") / 3000 - 0.1) < 0.02
    assert picks == [choose_variant(d, s) for s in range(3000)]
    none = tiny_cfg.data.model_copy(update={"audio_silence_mix_prob": 0.0, "audio_debug_mix_prob": 0.0})
    assert {choose_variant(none, s) for s in range(500)} == {"normal"}
    debug = tiny_cfg.data.model_copy(update={"audio_debug_mode": True, "audio_silence_mix_prob": 1.0})
    assert {choose_variant(debug, s) for s in range(200)} == {"debug"}


def test_bad_variant_fails_clearly(tiny_cfg):
    with pytest.raises(ValueError, match="unknown audio variant 'loud'"):
        synthesize_clip(tiny_cfg, 0, "loud")


@pytest.mark.parametrize("variant", ["silence", "debug"])
def test_short_clips_still_get_a_silence_with_music_around_it(micro_cfg, variant):
    sr = micro_cfg.data.sample_rate  # 2 s clips at 8 kHz
    for seed in SEEDS:
        clip = synthesize_clip(micro_cfg, seed, variant)
        sil = [s for s in clip.meta["segments"] if s["kind"] == "silence"]
        assert sil and all(s["end_s"] - s["start_s"] >= 0.5 for s in sil)
        for s in sil:
            r = sample_range(s["start_s"], s["end_s"], sr)
            assert np.all(clip.wave[r] == 0.0)
            assert np.any(clip.wave[:r.start]) and np.any(clip.wave[r.stop:])


# ------------------------------------------------------------------------------------- mix, gain, meta


@pytest.mark.parametrize("variant", ["normal", "silence", "debug"])
def test_mix_is_sum_of_stems_within_full_scale_with_gain(tiny_cfg, variant):
    for seed in SEEDS:
        clip = synthesize_clip(tiny_cfg, seed, variant)
        assert set(clip.stems) == set(TRACKS)
        total = np.sum([clip.stems[t] for t in TRACKS], axis=0)
        np.testing.assert_allclose(clip.wave, total, atol=1e-6)
        peak = float(np.abs(clip.wave).max())
        assert peak <= 1.0
        g = clip.meta["gain_db"]
        assert tiny_cfg.data.gain_db_min <= g <= tiny_cfg.data.gain_db_max or variant == "debug"
        assert peak == pytest.approx(PEAK_TARGET * 10 ** (g / 20), rel=1e-3)  # gain applied by scaling, not clipping
        m = clip.meta
        assert m["variant"] == variant and m["seed"] == seed and m["tracks"] == list(TRACKS)
        assert len(m["track_mask"]) == len(TRACKS)
        for t, on in zip(TRACKS, m["track_mask"]):  # an inactive track is silent throughout
            assert on or not np.any(clip.stems[t])
        if variant != "debug":
            assert tiny_cfg.data.tempo_min <= m["tempo"] <= tiny_cfg.data.tempo_max
            assert m["key"] in ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B") and m["scale"]


def test_gain_above_0_db_is_scaled_not_clipped():
    cfg = build_config(overrides=["data.gain_db_min=0", "data.gain_db_max=6", "data.clip_seconds=4",
                                  "data.sample_rate=8000"])
    clip = next(c for c in (synthesize_clip(cfg, s, "normal") for s in range(20)) if c.meta["gain_db"] > 2.0)
    assert 0.98 < np.abs(clip.wave).max() <= 1.0
    peak = np.abs(clip.wave).max()
    assert np.count_nonzero(np.abs(clip.wave) >= 0.999 * peak) <= 3  # a clipped mix would sit flat at its ceiling
    np.testing.assert_allclose(clip.wave, np.sum([clip.stems[t] for t in TRACKS], axis=0), atol=1e-6)


# ------------------------------------------------------------------------------------- silence / dropout


def test_silence_segments_are_digital_silence_and_flagged_by_the_timeline(tiny_cfg):
    fps, sr = tiny_cfg.render.fps, tiny_cfg.data.sample_rate
    for seed in SEEDS:
        clip = synthesize_clip(tiny_cfg, seed, "silence")
        segs = clip.meta["segments"]
        silences = [s for s in segs if s["kind"] == "silence"]
        assert silences, "the silence variant has at least one full-silence segment"
        feats, names = timeline(clip, tiny_cfg)
        is_silent = feats[:, channel_index(names, "is_silent")]
        log_rms = feats[:, channel_index(names, "log_rms")]
        for s in silences:
            assert s["end_s"] - s["start_s"] >= 1.0
            assert s["tracks"] == list(TRACKS)
            r = sample_range(s["start_s"], s["end_s"], sr)
            assert np.all(clip.wave[r] == 0.0)
            assert all(np.all(clip.stems[t][r] == 0.0) for t in TRACKS)
            # music before and after
            before = clip.wave[max(0, r.start - int(0.4 * sr)): r.start]
            after = clip.wave[r.stop: r.stop + int(0.4 * sr)]
            assert np.sqrt(np.mean(before ** 2)) > 1e-3 and np.sqrt(np.mean(after ** 2)) > 1e-3
            assert s["start_frame"] == math.ceil(s["start_s"] * fps - 1e-9)
            assert s["end_frame"] == math.floor(s["end_s"] * fps + 1e-9)
            assert s["end_frame"] - s["start_frame"] >= 2
            assert np.all(is_silent[s["start_frame"]:s["end_frame"]] == 1.0)
        # Every frame away from the labelled silences is music (quiet sections of the song dynamics included):
        # above the silence threshold and never flagged silent.
        music = np.ones(len(log_rms), bool)
        for s in silences:
            music[max(0, s["start_frame"] - 1):s["end_frame"] + 1] = False
        assert music.sum() > len(music) // 3
        assert np.all(is_silent[music] == 0.0) and np.all(log_rms[music] > tiny_cfg.timeline.silence_threshold_db)


def test_normal_music_is_never_flagged_silent(tiny_cfg):
    for seed in SEEDS:
        clip = synthesize_clip(tiny_cfg, seed, "normal")
        assert clip.meta["segments"] == []
        feats, names = timeline(clip, tiny_cfg)
        assert np.all(feats[:, channel_index(names, "is_silent")] == 0.0)


def test_dropped_tracks_are_zero_in_their_segment_while_the_rest_plays(tiny_cfg):
    sr, fps = tiny_cfg.data.sample_rate, tiny_cfg.render.fps
    n_dropouts = 0
    for seed in range(12):
        clip = synthesize_clip(tiny_cfg, seed, "silence")
        active = [t for t, on in zip(TRACKS, clip.meta["track_mask"]) if on]
        for s in clip.meta["segments"]:
            if s["kind"] != "dropout":
                continue
            n_dropouts += 1
            r = sample_range(s["start_s"], s["end_s"], sr)
            assert s["tracks"] and set(s["tracks"]) < set(active)
            for t in s["tracks"]:
                assert np.all(clip.stems[t][r] == 0.0), (seed, t)
            playing = [t for t in active if t not in s["tracks"]]
            assert np.sqrt(np.mean(np.sum([clip.stems[t][r] for t in playing], axis=0) ** 2)) > 1e-3
            assert s["start_frame"] == math.ceil(s["start_s"] * fps - 1e-9)
            assert s["end_frame"] == math.floor(s["end_s"] * fps + 1e-9)
            np.testing.assert_allclose(clip.wave, np.sum([clip.stems[t] for t in TRACKS], axis=0), atol=1e-6)
    assert n_dropouts >= 6


# ------------------------------------------------------------------------------------- tempo and key


@pytest.mark.parametrize("config", ["tiny", "full_length"])
def test_tempo_measured_from_kick_onsets_matches_meta(tiny_cfg, config):
    cfg = tiny_cfg if config == "tiny" else build_config(overrides=["data.clip_seconds=8"])
    # The song as written (render_song), before the dynamics of synthesize_clip drop the kick out of a breakdown.
    for seed in SEEDS:
        clip = synthesize_clip(cfg, seed, "normal")
        stems, _ = render_song(song_plan(cfg.data, seed), cfg.data.clip_seconds, cfg.data.sample_rate)
        onsets = onset_times(stems["kick"], clip.sr)
        assert len(onsets) >= 4
        measured = 60.0 / beat_period(onsets, cfg.data.clip_seconds)
        assert measured == pytest.approx(clip.meta["tempo"], rel=0.02), (seed, clip.meta["song"]["kick_pattern"])


def test_tempo_measure_on_known_pulses():
    """The measure above can fail: it finds 100 BPM in a 100 BPM kick train with off-beat extras, not 200 or 50."""
    from datagen.audio.voices import kick_oneshot, place_oneshots

    sr, beat = 16000, 0.6
    times = np.concatenate([np.arange(0.1, 4.0, beat), np.arange(0.1 + 2.5 * beat, 4.0, 4 * beat)])
    x = place_oneshots(4 * sr, kick_oneshot(sr, 150, 50, 0.03, 0.25, 0.1), np.round(times * sr).astype(np.int64),
                       np.ones(len(times), np.float32))
    assert 60 / beat_period(onset_times(x, sr), 4.0) == pytest.approx(100, rel=0.005)
    with pytest.raises(AssertionError, match="no periodic structure"):
        beat_period(np.array([0.1, 0.37, 1.02, 1.13, 2.4, 3.3]), 4.0)


def test_chord_and_bass_pitches_lie_in_the_key(tiny_cfg):
    for seed in SEEDS:
        clip = synthesize_clip(tiny_cfg, seed, "normal")
        in_key = scale_pitch_classes(clip.meta["key_root"], clip.meta["scale"])
        seen: set[int] = set()
        measured = 0
        for track in ("bass", "chords"):
            for a, b, _ in clip.notes[track]:
                a, b = max(a, 0.0) + 0.03, min(b, tiny_cfg.data.clip_seconds)  # skip the attack
                if b - a < 0.1:
                    continue
                for m in spectral_peaks_midi(clip.stems[track][int(a * clip.sr):int(b * clip.sr)], clip.sr):
                    nearest = int(round(m))
                    assert abs(m - nearest) < 0.3, f"seed {seed} {track}: {m:.2f} is out of tune"
                    assert nearest % 12 in in_key, f"seed {seed} {track}: pitch class {nearest % 12} not in {clip.meta['key_name']}"
                    seen.add(nearest % 12)
                    measured += 1
        assert measured >= 8 and len(seen) >= 3  # a real progression was measured, not one drone


def test_pitch_measure_rejects_an_out_of_key_tone():
    """The key check above can fail: a C# tone is not in C major."""
    sr = 16000
    t = np.arange(int(0.3 * sr)) / sr
    peaks = spectral_peaks_midi(np.sin(2 * np.pi * 277.18 * t), sr)
    assert [int(round(m)) % 12 for m in peaks] == [1] and 1 not in scale_pitch_classes(0, "major")


# ------------------------------------------------------------------------------------------ debug clips


def test_debug_set_is_small_deterministic_and_reactive(tiny_cfg):
    size, sr = tiny_cfg.data.debug_set_size, tiny_cfg.data.sample_rate
    clips = [synthesize_clip(tiny_cfg, s, "debug") for s in range(size)]
    for i in range(size):  # distinct members
        for j in range(i + 1, size):
            assert not np.array_equal(clips[i].wave, clips[j].wave)
    again = synthesize_clip(tiny_cfg, 3 + 5 * size, "debug")  # the seed picks member seed % size
    assert np.array_equal(again.wave, clips[3].wave) and again.meta["debug_index"] == 3
    fps, n_bands = tiny_cfg.render.fps, tiny_cfg.timeline.n_bands
    for clip in clips:
        feats, names = timeline(clip, tiny_cfg)
        band0 = channel_index(names, "band_00")
        events = clip.meta["events"]
        assert {e["type"] for e in events} == {"hit", "burst"}
        for e in events:
            if e["type"] == "hit":  # nothing on the kick stem just before, a strong hit just after
                i = round(e["time_s"] * sr)
                assert np.all(clip.stems["kick"][max(0, i - int(0.02 * sr)):i] == 0.0)
                assert np.abs(clip.stems["kick"][i:i + int(0.02 * sr)]).max() > 0.3
            else:  # the burst's tone is where meta says, on the track meta names
                seg = clip.stems[e["track"]][round(e["start_s"] * sr):round(e["end_s"] * sr)]
                m = spectral_peaks_midi(seg, sr, rel=0.9)
                assert len(m) == 1 and abs(float(m[0]) - float(hz_to_midi(e["freq_hz"]))) < 0.2
                bands = feats[math.ceil(e["start_s"] * fps):math.floor(e["end_s"] * fps), band0:band0 + n_bands]
                assert np.all(bands.argmax(axis=1) == e["timeline_band"])  # the burst's band is the loudest
        gaps = [s for s in clip.meta["segments"] if s["kind"] == "silence"]
        assert gaps
        for s in gaps:
            assert np.all(clip.wave[sample_range(s["start_s"], s["end_s"], sr)] == 0.0)
        for s in gaps:
            assert np.all(feats[s["start_frame"]:s["end_frame"], channel_index(names, "is_silent")] == 1.0)


# ------------------------------------------------------------------------------------- song dynamics


def _db(x: np.ndarray) -> float:
    return 20 * math.log10(max(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))), 1e-10))


def test_dynamics_scale_the_written_song_and_stems_still_sum_to_the_mix():
    """Oracle: every stem is the song as written x its section gain curve x the master scale, exactly."""
    cfg = build_config(overrides=["data.clip_seconds=4", "data.sample_rate=8000"])
    sr, n = cfg.data.sample_rate, 4 * cfg.data.sample_rate
    for seed in range(8):
        clip = synthesize_clip(cfg, seed, "normal")
        dyn = clip.meta["dynamics"]
        written, _ = render_song(song_plan(cfg.data, seed), cfg.data.clip_seconds, sr)
        active = [t for t, m in zip(TRACKS, clip.meta["track_mask"]) if m]
        gains = gain_curves(dyn, active, n, sr)
        for t in active:
            np.testing.assert_allclose(clip.stems[t], written[t] * gains[t] * np.float32(clip.meta["master_scale"]),
                                       rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(clip.wave, np.sum([clip.stems[t] for t in TRACKS], axis=0), atol=1e-6)


def test_a_clips_loudness_follows_its_sections():
    """Measured from the mix: the loudest section is louder than the quietest by most of the planned range, and
    a track that a section leaves out is silent there (past the entry/exit ramps)."""
    cfg = build_config(overrides=["data.clip_seconds=8", "data.sample_rate=8000"])
    sr = cfg.data.sample_rate
    checked = 0
    for seed in range(40):
        clip = synthesize_clip(cfg, seed, "normal")
        dyn = clip.meta["dynamics"]
        secs = [s for s in dyn["sections"] if s["end_s"] - s["start_s"] > 0.4]
        for s in secs:
            a, b = int((s["start_s"] + 0.05) * sr), int(s["end_s"] * sr)
            for t in TRACKS:
                if t not in s["tracks"]:
                    assert not np.any(clip.stems[t][a:b]), (seed, t, s)
        if dyn["profile"] not in ("terraced", "breakdown") or len(secs) < 2:
            continue
        level = {i: _db(clip.wave[int(s["start_s"] * sr):int(s["end_s"] * sr)]) for i, s in enumerate(secs)}
        loud = max(range(len(secs)), key=lambda i: secs[i]["start_db"])
        soft = min(range(len(secs)), key=lambda i: secs[i]["start_db"])
        planned = secs[loud]["start_db"] - secs[soft]["start_db"]
        if planned >= 6:
            assert level[loud] - level[soft] > 0.6 * planned, (seed, dyn["profile"], level, planned)
            checked += 1
    assert checked >= 5


def test_clips_spread_from_steady_to_strongly_dynamic(tiny_cfg):
    """The set covers real music's steady few dB and plain loud/quiet contrast: per-frame log_rms std over
    48 normal 4 s clips: median >= 4 dB, some >= 8 dB, some steady (< 3 dB); no frame reads as silence."""
    stds = []
    for seed in range(48):
        clip = synthesize_clip(tiny_cfg, seed, "normal")
        feats, names = timeline(clip, tiny_cfg)
        assert not feats[:, channel_index(names, "is_silent")].any(), seed
        stds.append(float(feats[1:, channel_index(names, "log_rms")].std()))
    stds = np.array(stds)
    assert np.median(stds) >= 4.0 and (stds >= 8.0).mean() >= 0.05 and (stds < 3.0).mean() >= 0.05, np.round(stds, 1)


def test_dynamics_profiles_are_all_drawn_and_quiet_sections_stay_audible():
    from datagen.audio.dynamics import MIN_SECTION_DBFS, PROFILES

    cfg = build_config(overrides=["data.clip_seconds=4", "data.sample_rate=8000"])
    seen = set()
    for seed in range(120):
        clip = synthesize_clip(cfg, seed, "normal")
        dyn = clip.meta["dynamics"]
        seen.add(dyn["profile"])
        assert all("chords" in s["tracks"] for s in dyn["sections"])  # the bed never leaves
        assert dyn["range_db"] <= -17.0 + clip.meta["gain_db"] - MIN_SECTION_DBFS + 1e-3  # both rounded in meta
    assert seen == set(PROFILES)
