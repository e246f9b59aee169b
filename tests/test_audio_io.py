"""shared/audio_io.py: real files written by soundfile and by the ffmpeg CLI, read back through the loader."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest
import soundfile as sf

from shared.audio_io import AudioLoadError, load_audio, mix_to_mono, resample, write_wav

SECONDS = 0.5


def reference(sr: int, channels: int) -> np.ndarray:
    """float32 [N, channels]: 440 Hz left, 660 Hz right (smooth fade-in/out so lossy codecs keep the shape)."""
    t = np.arange(int(SECONDS * sr)) / sr
    fade = np.minimum(1.0, np.minimum(t, SECONDS - t) / 0.05)
    left = 0.5 * np.sin(2 * np.pi * 440 * t) * fade
    right = 0.3 * np.sin(2 * np.pi * 660 * t + 0.5) * fade
    return np.stack([left, right][:channels], axis=1).astype(np.float32)


def make_file(tmp_path, fmt: str, sr: int, channels: int):
    data = reference(sr, channels)
    path = tmp_path / f"ref_{sr}_{channels}.{fmt}"
    if fmt == "wav":
        sf.write(path, data, sr, subtype="FLOAT")
    elif fmt == "flac":
        sf.write(path, data, sr, subtype="PCM_24")
    elif fmt == "ogg":
        sf.write(path, data, sr, format="OGG", subtype="VORBIS")
    else:  # mp3 / m4a through the ffmpeg CLI, from a wav
        src = write_wav(tmp_path / f"src_{sr}_{channels}.wav", data, sr)
        codec = {"mp3": ["-c:a", "libmp3lame", "-b:a", "128k"], "m4a": ["-c:a", "aac", "-b:a", "128k"]}[fmt]
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), *codec, str(path)], check=True)
    return path, data.mean(axis=1)


def aligned_error(got: np.ndarray, want: np.ndarray, max_shift: int) -> float:
    """Smallest relative RMS error over integer shifts |s| <= max_shift (lossy codecs may shift a little)."""
    best = math.inf
    n = min(len(got), len(want)) - 2 * max_shift
    for s in range(-max_shift, max_shift + 1):
        a = got[max_shift + s: max_shift + s + n]
        b = want[max_shift: max_shift + n]
        best = min(best, float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b ** 2))))
    return best


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_formats_rates_and_channels_give_the_same_mono_array(tmp_path, fmt, sr, channels):
    path, want = make_file(tmp_path, fmt, sr, channels)
    wave, got_sr = load_audio(path)
    assert got_sr == sr
    assert wave.dtype == np.float32 and wave.ndim == 1
    if fmt in ("wav", "flac"):  # lossless: the same samples (24-bit flac: within its quantisation)
        assert len(wave) == len(want)
        np.testing.assert_allclose(wave, want, atol=1e-6 if fmt == "wav" else 1e-6 + 2.0 ** -22)
    else:  # lossy: same length within a codec frame, same waveform within codec tolerance
        assert abs(len(wave) - len(want)) <= 2048
        assert aligned_error(wave, want, max_shift=64) < 0.1


def test_m4a_goes_through_ffmpeg(tmp_path):
    path, want = make_file(tmp_path, "m4a", 44100, 2)
    wave, sr = load_audio(path)
    assert sr == 44100 and abs(len(wave) - len(want)) <= 2048
    assert aligned_error(wave, want, max_shift=64) < 0.1


def test_stereo_is_the_mean_of_the_channels_on_both_paths(tmp_path):
    """ffmpeg's own -ac 1 would scale by 1/sqrt(2); both readers must give (L + R) / 2."""
    data = np.zeros((8000, 2), np.float32)
    data[:, 0] = 0.5
    wav = tmp_path / "dc.wav"
    sf.write(wav, data, 8000, subtype="FLOAT")
    caf = tmp_path / "dc.caf"  # not a soundfile suffix here: decoded by ffmpeg
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), "-c:a", "pcm_f32le", str(caf)],
                   check=True)
    for path in (wav, caf):
        wave, _ = load_audio(path)
        np.testing.assert_allclose(wave, 0.25, atol=1e-7)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_resampling_to_a_requested_rate(tmp_path, fmt):
    path, _ = make_file(tmp_path, fmt, 44100, 2)
    wave, sr = load_audio(path, sr=16000)
    assert sr == 16000
    if fmt == "wav":
        assert len(wave) == math.ceil(int(SECONDS * 44100) * 16000 / 44100)
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    freqs = np.fft.rfftfreq(len(wave), 1 / 16000)
    assert abs(freqs[np.argmax(spectrum)] - 440) < 5  # the louder tone keeps its pitch
    same, sr_same = load_audio(path, sr=44100)
    assert sr_same == 44100 and len(same) >= len(wave)


def test_resample_and_mixdown_helpers():
    x = np.sin(2 * np.pi * 100 * np.arange(8000) / 8000).astype(np.float32)
    y = resample(x, 8000, 48000)
    assert y.dtype == np.float32 and len(y) == 48000
    np.testing.assert_allclose(y[3000:3100], np.sin(2 * np.pi * 100 * np.arange(3000, 3100) / 48000), atol=1e-3)
    assert resample(x, 8000, 8000) is not None and len(resample(x, 8000, 8000)) == 8000
    assert mix_to_mono(np.ones((4, 3))).tolist() == [1.0] * 4
    with pytest.raises(ValueError):
        mix_to_mono(np.ones((2, 2, 2)))


# -------------------------------------------------------------------- errors


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nowhere.wav"
    with pytest.raises(AudioLoadError, match="nowhere.wav.*not found"):
        load_audio(path)


@pytest.mark.parametrize("name", ["garbage.wav", "garbage.mp3", "garbage.flac", "garbage.m4a"])
def test_unreadable_file_names_the_file_and_reason(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not audio at all, just some text " * 20)
    with pytest.raises(AudioLoadError) as err:
        load_audio(path)
    assert name in str(err.value) and "not readable as audio" in str(err.value)


def test_empty_and_zero_length_and_directory(tmp_path):
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(AudioLoadError, match="empty.mp3.*0 bytes"):
        load_audio(empty)
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(AudioLoadError, match="zero.wav.*zero-length"):
        load_audio(zero)
    with pytest.raises(AudioLoadError, match="not a regular file"):
        load_audio(tmp_path)


def test_video_without_audio_is_not_audio(tmp_path):
    path = tmp_path / "silent_video.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=32x32:d=0.5",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True)
    with pytest.raises(AudioLoadError, match="silent_video.mp4.*no audio stream"):
        load_audio(path)


def test_missing_ffmpeg_is_a_clear_error(tmp_path, monkeypatch):
    path, _ = make_file(tmp_path, "mp3", 8000, 1)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(AudioLoadError, match="ffprobe not found on PATH"):
        load_audio(path)


def test_rate_argument(tmp_path):
    path, _ = make_file(tmp_path, "wav", 8000, 1)
    assert load_audio(path, sr=16000.0)[1] == 16000  # a whole-number float is fine
    for bad in (0, -8000, 8000.5, "8000"):
        with pytest.raises(ValueError, match="sr"):
            load_audio(path, sr=bad)
