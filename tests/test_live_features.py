"""Live mode's causal features: streamed rows equal the offline causal timeline on real audio."""

from __future__ import annotations

import numpy as np
import pytest

from live_helpers import SPEECH, make_music
from shared.audio_io import load_audio
from shared.config import TimelineConfig
from shared.timeline import channel_index, compute_audio_timeline
from trainer.conditioning import causal_silence_mask
from trainer.live.features import StreamingTimeline, causal_timeline, estimate_from
from shared.timeline import BeatEstimate

PER_FRAME = ("log_rms", "rms", "onset", "centroid")  # the offline timeline's causal channels (and the bands)


def _stream(wave, sr, fps, tcfg, rng):
    """Push the wave in random-sized blocks (1 sample to ~1.5 frames), as a pipe delivers it."""
    st = StreamingTimeline(sr, fps, tcfg)
    rows, i = [], 0
    while i < len(wave):
        n = int(rng.integers(1, int(1.5 * sr / fps)))
        rows.append(st.push(wave[i:i + n]))
        i += n
    return np.concatenate(rows), st


@pytest.mark.parametrize("source,fps", [("speech", 8.0), ("music", 7.3)])
def test_streamed_equals_offline_causal(tmp_path, source, fps):
    if source == "speech":
        wave, sr = load_audio(SPEECH)
        wave = np.concatenate([wave, np.zeros(sr, np.float32)])  # a second of silence after the speech
    else:
        wave, sr = load_audio(make_music(tmp_path / "m.wav", seconds=5.0, music_s=4.0, sr=16000))
    tcfg = TimelineConfig(n_bands=8, n_fft=512)
    offline, names = causal_timeline(wave, sr, fps, tcfg)
    streamed, st = _stream(wave, sr, fps, tcfg, np.random.default_rng(0))
    assert streamed.shape == offline.shape and len(offline) == int(len(wave) / sr * fps)
    np.testing.assert_allclose(streamed, offline, rtol=1e-5, atol=1e-5)

    # The per-frame channels are the offline timeline's own (one implementation of each feature).
    full, full_names = compute_audio_timeline(wave, sr, fps, tcfg)
    assert full_names == names
    cols = [channel_index(names, n) for n in PER_FRAME] + [i for i, n in enumerate(names) if n.startswith("band_")]
    np.testing.assert_allclose(offline[:, cols], full[:, cols], rtol=1e-5, atol=1e-5)

    # Real audio exercises the causal channels: silence and speech/music frames, beats on the music.
    silent = offline[:, channel_index(names, "is_silent")]
    assert 0 < silent.sum() < len(silent)
    if source == "music":
        assert silent[-int(fps * 0.6):].all() and not silent[: int(3.5 * fps)].any()  # music then silence
        assert offline[:, channel_index(names, "downbeat")].sum() >= 1
    # bounded memory: the buffer holds at most the beat window and a couple of frames
    assert len(st._buf) <= 8.0 * sr + 3 * sr / fps


def test_causal_rows_do_not_see_the_future(tmp_path):
    """Changing the audio after frame t changes no row <= t (the offline timeline's is_silent does)."""
    wave, sr = load_audio(SPEECH)
    fps, tcfg = 8.0, TimelineConfig(n_bands=8, n_fft=512)
    t = 20
    edited = wave.copy()
    edited[(t + 1) * sr // 8:] = 0.0
    a, _ = causal_timeline(wave, sr, fps, tcfg)
    b, _ = causal_timeline(edited, sr, fps, tcfg)
    np.testing.assert_array_equal(a[: t + 1], b[: t + 1])
    assert not np.array_equal(a[t + 1:], b[t + 1:])


def test_causal_silence_mask_is_a_trailing_median():
    x = np.array([-90.0, -10.0, -90.0, -90.0, -10.0, -10.0, -90.0])
    # windows (frame 0 repeated before the start): [-90,-90,-90] [-90,-90,-10] [-90,-10,-90] [-10,-90,-90]
    # [-90,-90,-10] [-90,-10,-10] [-10,-10,-90]
    assert causal_silence_mask(x, -60.0, 3).tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert causal_silence_mask(x, -60.0, 1).tolist() == [1, 0, 1, 1, 0, 0, 1]


def test_estimate_from_moves_the_origin_not_the_beats():
    beats = BeatEstimate(bpm=100.0, phase_s=0.13, downbeat_index=2)  # period 0.6 s, window starts at 3.0 s
    moved = estimate_from(origin_s=4.1, window_start_s=3.0, beats=beats)
    old = 3.0 + beats.phase_s + 0.6 * np.arange(-10, 20)
    new = 4.1 + moved.phase_s + 0.6 * np.arange(-20, 20)
    assert 0 <= moved.phase_s < 0.6
    assert np.min(np.abs(new[:, None] - old[None, :]), axis=0).max() < 1e-9
    bars_old = {round(v, 6) for v in old[(np.arange(-10, 20) - 2) % 4 == 0]}
    bars_new = {round(v, 6) for v in new[(np.arange(-20, 20) - moved.downbeat_index) % 4 == 0]}
    assert bars_old <= bars_new
