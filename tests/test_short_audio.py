"""Audio of any length from one video frame up works in every command; shorter is a one-line error.

Through the real commands (`datagen visualize` with EGL and ffmpeg, `trainer sample` with the shipped
model models/synesthete-tiny) at the lengths where the timeline used to crash, ~0.08-1.0 s (issue 15,
item 8: the tempo envelope's 1 s moving average returned more values than the audio had).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from shared.video import probe

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "synesthete-tiny"  # 16 kHz, 8 fps, 32 px


def beats(seconds: float, sr: int) -> np.ndarray:
    """Noise bursts every 0.1 s over a low tone: onsets for the tempo envelope from the first frames on."""
    t = np.arange(int(round(seconds * sr))) / sr
    burst = (t % 0.1) < 0.02
    noise = np.random.default_rng(0).standard_normal(len(t))
    return (0.2 * np.sin(2 * np.pi * 110 * t) + 0.3 * noise * burst).astype(np.float32)


def call(main, argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    return code or 0, capsys.readouterr().err


def frames_of(path: Path) -> int:
    return int(probe(path)["n_frames"])


def test_datagen_visualize_any_length_from_one_frame(tmp_path, capsys):
    from datagen.cli import main

    fps, sr = 24, 22050
    for seconds in (1 / fps, 0.1, 0.5, 0.99):
        audio = tmp_path / f"a{seconds:.3f}.wav"
        sf.write(audio, beats(seconds + 1e-4, sr), sr)
        out = audio.with_suffix(".mp4")
        code, err = call(main, ["visualize", "--audio", str(audio), "--out", str(out), "--visualizer", "rings",
                                "--resolution", "32", "--fps", str(fps), "timeline.n_fft=256"], capsys)
        assert code == 0, err
        assert frames_of(out) == max(1, math.floor(seconds * fps + 1e-6)), seconds
    audio = tmp_path / "blip.wav"
    sf.write(audio, beats(0.02, sr), sr)  # half a frame
    code, err = call(main, ["visualize", "--audio", str(audio), "--out", str(tmp_path / "blip.mp4"),
                            "--fps", str(fps)], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"audio file {str(audio)!r}: " in err and "shorter than one video frame" in err
    assert not (tmp_path / "blip.mp4").exists()


@pytest.mark.usefixtures("one_torch_thread")
def test_trainer_sample_any_length_from_one_frame(tmp_path, capsys):
    from trainer.cli import main

    sr, fps = 16000, 8  # the shipped model's rate and fps: one frame is 0.125 s
    for seconds in (1 / fps, 0.3, 0.6, 0.99):
        audio = tmp_path / f"a{seconds:.3f}.wav"
        sf.write(audio, beats(seconds + 1e-4, sr), sr)
        out = audio.with_suffix(".mp4")
        code, err = call(main, ["sample", "--no-progress", "--checkpoint", str(SHIPPED), "--audio", str(audio),
                                "--out", str(out), "--steps", "2"], capsys)
        assert code == 0, err
        assert frames_of(out) == max(1, math.floor(seconds * fps + 1e-6)), seconds
    audio = tmp_path / "blip.wav"
    sf.write(audio, beats(0.05, sr), sr)
    code, err = call(main, ["sample", "--no-progress", "--checkpoint", str(SHIPPED), "--audio", str(audio),
                            "--out", str(tmp_path / "blip.mp4")], capsys)
    assert code == 2 and "Traceback" not in err and "shorter than one" in err
    assert not (tmp_path / "blip.mp4").exists()
