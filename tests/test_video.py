"""shared/video.py: real ffmpeg/ffprobe on tiny clips (32-34 px, a few seconds of audio)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared.audio_io import load_audio, write_wav
from shared.video import (
    Mp4Writer,
    VideoError,
    aac_rate,
    even_size,
    fps_fraction,
    mp4_top_level_atoms,
    passthrough_flag,
    probe,
    read_video_frames,
    view_size,
)

H = W = 32


def tone(sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    mono = 0.4 * np.sin(2 * np.pi * 440 * t)
    return (mono if channels == 1 else np.stack([mono, 0.5 * mono], axis=1)).astype(np.float32)


def solid(value: int, n: int = 1, h: int = H, w: int = W) -> np.ndarray:
    return np.full((n, h, w, 3), value, np.uint8)


def assert_house_format(info: dict, fps: float, audio_seconds: float | None) -> None:
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["fps"] == pytest.approx(fps, rel=1e-3)
    if audio_seconds is not None:
        assert info["has_audio"] and info["audio_codec"] == "aac"
        assert info["audio_sample_rate"] in (44100, 48000)
        assert info["n_frames"] == math.floor(audio_seconds * fps + 1e-9)
        assert abs(info["duration"] - audio_seconds) <= 1.0 / fps


def assert_faststart(path) -> None:
    atoms = mp4_top_level_atoms(path)
    assert "moov" in atoms and "mdat" in atoms
    assert atoms.index("moov") < atoms.index("mdat"), atoms


@pytest.mark.parametrize("sr,channels,fps,seconds,n_written", [
    (16000, 1, 8.0, 2.3, 10),    # too few frames written: padded with the last one
    (44100, 2, 24.0, 1.37, 50),  # too many: extras dropped
    (22050, 1, 29.97, 1.0, 29),  # NTSC rate, 22.05 kHz resampled to 48 kHz for AAC
])
def test_writer_output_format_and_frame_count(tmp_path, sr, channels, fps, seconds, n_written):
    out = tmp_path / "clip.mp4"
    wave = tone(sr, seconds, channels)
    with Mp4Writer(out, fps, W, H, audio=(wave, sr)) as writer:
        for i in range(n_written):
            writer.write(solid(min(255, 5 * i)))  # one [H, W, 3]-shaped frame at a time works too
    target = math.floor(len(wave) / sr * fps + 1e-9)
    assert writer.frames_written == target
    assert not (tmp_path / "clip.mp4.partial").exists()
    info = probe(out)
    assert_house_format(info, fps, len(wave) / sr)
    assert info["audio_sample_rate"] == aac_rate(sr) == (44100 if sr == 44100 else 48000)
    assert info["audio_channels"] == channels
    assert_faststart(out)


def test_padding_repeats_the_last_frame_and_frames_read_back(tmp_path):
    out = tmp_path / "pad.mp4"
    with Mp4Writer(out, 8.0, W, H, audio=(tone(16000, 1.0), 16000)) as writer:
        writer.write(np.concatenate([solid(30, 2), solid(200, 1)]))  # 3 of 8 frames
    frames = list(read_video_frames(out))
    assert len(frames) == 8 and frames[0].shape == (H, W, 3) and frames[0].dtype == np.uint8
    means = [float(f.mean()) for f in frames]
    assert abs(means[0] - 30) < 4 and abs(means[1] - 30) < 4
    assert all(abs(m - 200) < 4 for m in means[2:])
    small = list(read_video_frames(out, size=(16, 8)))
    assert len(small) == 8 and small[0].shape == (8, 16, 3)


def test_audio_survives_the_round_trip(tmp_path):
    sr = 16000
    wave = tone(sr, 1.5)
    out = tmp_path / "a.mp4"
    with Mp4Writer(out, 8.0, W, H, audio=(wave, sr)) as writer:
        writer.write(solid(0, 12))
    back, back_sr = load_audio(out, sr=sr)  # mp4 goes through the loader's ffmpeg path
    assert back_sr == sr and abs(len(back) - len(wave)) <= sr // 8  # within a frame
    n = min(len(back), len(wave))
    seg = slice(2000, n - 2000)
    assert np.corrcoef(back[seg], wave[seg])[0, 1] > 0.98


def test_audio_from_a_file_path(tmp_path):
    wav = write_wav(tmp_path / "in.wav", tone(44100, 0.8, channels=2), 44100)
    out = tmp_path / "p.mp4"
    with Mp4Writer(out, 24.0, W, H, audio=wav) as writer:
        writer.write(solid(90, 5))
    info = probe(out)
    assert_house_format(info, 24.0, 0.8)
    assert info["audio_sample_rate"] == 44100


def test_without_audio_the_frames_written_count(tmp_path):
    out = tmp_path / "silent.mp4"
    with Mp4Writer(out, 24.0, W, H) as writer:
        for _ in range(3):
            writer.write(solid(120, 4))
    info = probe(out)
    assert info["n_frames"] == 12 and not info["has_audio"]
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["duration"] == pytest.approx(12 / 24.0, abs=1 / 24.0)
    assert_faststart(out)


def test_odd_sizes_are_padded_to_even(tmp_path):
    out = tmp_path / "odd.mp4"
    with Mp4Writer(out, 8.0, 33, 31) as writer:
        writer.write(np.full((4, 31, 33, 3), 180, np.uint8))
    info = probe(out)
    assert (info["width"], info["height"]) == even_size(33, 31) == (34, 32)
    first = next(read_video_frames(out))
    assert abs(float(first[:31, :33].mean()) - 180) < 4  # the picture sits top-left, padding beside it


def test_out_size_scales_in_the_encoder_like_opencvs_lanczos(tmp_path):
    """A model's 32 px frames written as a 128 px video: the picture is OpenCV's Lanczos resize of the frames
    (up to h264 / yuv420p rounding), the frames written stay native."""
    import cv2

    rng = np.random.default_rng(0)
    small = np.repeat(np.repeat(rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8), 4, axis=1), 4, axis=2)  # (1, 32, 32, 3)
    out = tmp_path / "big.mp4"
    with Mp4Writer(out, 8.0, W, H, out_size=(128, 128), crf=0) as writer:
        writer.write(np.repeat(small, 3, axis=0))
    info = probe(out)
    assert (info["width"], info["height"], info["n_frames"]) == (128, 128, 3)
    got = next(read_video_frames(out)).astype(np.float32)

    def luma_error(interpolation: int) -> float:  # luma: yuv420p halves the chroma, whatever the scaler
        want = cv2.resize(small[0], (128, 128), interpolation=interpolation).astype(np.float32)
        return float(np.abs((got - want) @ np.array([0.299, 0.587, 0.114], np.float32)).mean())

    lanczos = luma_error(cv2.INTER_LANCZOS4)  # measured 1.6 grey levels; bilinear 3.7, nearest 7.4
    assert lanczos < 2.5 and lanczos < 0.7 * luma_error(cv2.INTER_LINEAR) < luma_error(cv2.INTER_NEAREST)
    with Mp4Writer(tmp_path / "odd.mp4", 8.0, W, H, out_size=(75, 75)) as writer:
        writer.write(small)
    assert (probe(tmp_path / "odd.mp4")["width"], probe(tmp_path / "odd.mp4")["height"]) == (76, 76)  # padded even


def test_view_size_default_native_and_explicit():
    assert view_size(32, None) == 512 and view_size(1024, None) == 1024  # at least viewable, never smaller
    assert view_size(32, "native") == 32 and view_size(32, 256) == 256
    with pytest.raises(ValueError):
        view_size(32, 0)


def test_bad_frames_are_refused(tmp_path):
    with Mp4Writer(tmp_path / "x.mp4", 8.0, W, H) as writer:
        with pytest.raises(ValueError, match="uint8"):
            writer.write(np.zeros((H, W, 3), np.float32))
        with pytest.raises(ValueError, match=r"H=32, W=32"):
            writer.write(np.zeros((H, W + 1, 3), np.uint8))
        writer.write(solid(0))


def test_error_inside_the_block_leaves_no_file(tmp_path):
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with Mp4Writer(out, 8.0, W, H) as writer:
            writer.write(solid(0, 2))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_dropped_writer_stops_ffmpeg(tmp_path):
    import gc

    writer = Mp4Writer(tmp_path / "dropped.mp4", 8.0, W, H).open()
    writer.write(solid(0, 2))
    proc = writer._proc
    del writer
    gc.collect()
    assert proc.poll() is not None  # ffmpeg was stopped, not left waiting on its stdin
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_failure_carries_its_stderr(tmp_path):
    out = tmp_path / "bad.mp4"
    with pytest.raises(VideoError) as err:
        with Mp4Writer(out, 8.0, W, H, preset="no-such-preset") as writer:
            for _ in range(20):
                writer.write(solid(0, 8))
    msg = str(err.value)
    assert "bad.mp4" in msg and "ffmpeg" in msg and "preset" in msg.lower()
    assert not out.exists() and not (tmp_path / "bad.mp4.partial").exists()


def test_no_frames_with_audio_is_an_error(tmp_path):
    with pytest.raises(VideoError, match="no frames"):
        with Mp4Writer(tmp_path / "none.mp4", 8.0, W, H, audio=(tone(8000, 1.0), 8000)):
            pass
    assert not (tmp_path / "none.mp4").exists()


def test_missing_ffmpeg_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(VideoError, match="ffmpeg not found on PATH"):
        with Mp4Writer(tmp_path / "y.mp4", 8.0, W, H) as writer:
            writer.write(solid(0))
    assert not (tmp_path / "y.mp4").exists()


def test_small_helpers():
    assert fps_fraction(29.97) == fps_fraction(2997 / 100) and fps_fraction(24.0).denominator == 1
    assert even_size(33, 32) == (34, 32)
    assert passthrough_flag("ffmpeg version 5.1.9-0+deb12u1 Copyright") == ["-fps_mode", "passthrough"]
    assert passthrough_flag("ffmpeg version 4.4.2-0ubuntu0.22.04.1") == ["-vsync", "passthrough"]
    assert passthrough_flag("ffmpeg version n7.0 Copyright") == ["-fps_mode", "passthrough"]
    assert passthrough_flag("ffmpeg version N-112233-gabcdef") == ["-fps_mode", "passthrough"]
    assert [aac_rate(r) for r in (8000, 16000, 44100, 48000, 96000)] == [48000, 48000, 44100, 48000, 48000]
    with pytest.raises(ValueError):
        fps_fraction(0)
    with pytest.raises(VideoError, match="no such file"):
        probe("/nonexistent/clip.mp4")
