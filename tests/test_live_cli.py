"""`trainer live` end to end with the shipped model: stdin through ffmpeg to an mp4, and its bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from live_helpers import ROOT, make_music
from shared.video import probe, read_video_frames
from trainer.cli import main
from trainer.eval.metrics import motion_energy

MODEL = ROOT / "models" / "synesthete-tiny"
LIVE_MODEL = ROOT / "models" / "synesthete-tiny-live"  # 1-frame snippets, no look-ahead
TRAINER = [sys.executable, "-m", "trainer"]


def test_stdin_pipe_to_mp4_as_long_as_the_audio_settling_in_silence(tmp_path):
    """`ffmpeg -i song.flac -f wav - | trainer live --audio - --out live.mp4` (the issue's done-when)."""
    song = make_music(tmp_path / "song.flac", seconds=6.0, music_s=3.5, sr=22050)  # 3.5 s music, 2.5 s silence
    out = tmp_path / "live.mp4"
    summary = tmp_path / "live.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    feed = subprocess.Popen(["ffmpeg", "-nostdin", "-v", "error", "-i", str(song), "-f", "wav", "-"],
                            stdout=subprocess.PIPE)
    proc = subprocess.run(TRAINER + ["live", "--audio", "-", "--out", str(out), "--size", "native", "--checkpoint",
                                     str(MODEL), "--summary", str(summary)], stdin=feed.stdout, capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    feed.stdout.close()
    assert feed.wait() == 0
    assert proc.returncode == 0, proc.stderr
    assert "look-ahead 5 frames (625 ms)" in proc.stderr
    info = probe(out)
    assert info["n_frames"] == 48 and info["has_audio"]  # floor(6.0 s * 8 fps)
    assert abs(info["audio_duration"] - 6.0) < 0.05
    frames = np.stack(list(read_video_frames(out)))
    motion = motion_energy(frames)
    # the pictures follow the audio: once the silence has settled (0.5 s in, and past the 5-frame look-ahead)
    # they move much less than during the music
    assert motion[34:].mean() < 0.5 * motion[2:28].mean()


def test_stdin_closed_before_any_audio_is_a_one_line_error(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(TRAINER + ["live", "--audio", "-", "--out", str(tmp_path / "x.mp4"), "--checkpoint",
                                     str(MODEL)], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "stdin" in err[0] and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # no partial mp4, no temp folder left


@pytest.mark.parametrize("model,lookahead", [(MODEL, "look-ahead 5 frames"), (LIVE_MODEL, "look-ahead 0 frames")])
def test_a_file_flat_out_records_every_frame(tmp_path, one_torch_thread, capsys, model, lookahead):
    wav = make_music(tmp_path / "a.wav", seconds=2.0, music_s=2.0, sr=16000)
    out = tmp_path / "a.mp4"
    with pytest.raises(SystemExit) as e:
        main(["live", "--audio", str(wav), "--no-realtime", "--out", str(out), "--checkpoint", str(model),
              "--steps", "2", "--summary", str(tmp_path / "s.json")])
    assert e.value.code == 0
    err = capsys.readouterr().err
    info = probe(out)
    assert "16 frames" in err and lookahead in err and info["n_frames"] == 16
    # the recording's AV offset (trainer/eval/av_offset.py): 2 s is too short for the circular-shift chance level
    off = json.loads((tmp_path / "s.json").read_text())["av_offset"]
    assert set(off) == {"ms", "peak", "chance_peak", "note"} and off["chance_peak"] is None
    assert off["ms"] is None or (abs(off["ms"]) <= 1000 and "AV offset" in err)
    assert info["width"] == info["height"] == 512  # the default --size: scaled from the model's 32 px at the end


def test_a_port_in_use_is_a_one_line_error(tmp_path, capsys):
    wav = make_music(tmp_path / "a.wav", seconds=1.0, music_s=1.0, sr=16000)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(SystemExit) as e:
            main(["live", "--audio", str(wav), "--serve", f"127.0.0.1:{port}", "--checkpoint", str(MODEL)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: --serve 127.0.0.1:{port}: the port is in use (pick another with --serve PORT)"


@pytest.mark.parametrize("argv,msg", [
    (["--audio", "nope.wav"], "audio file 'nope.wav': not found"),
    (["--audio", "-", "--serve", "localhost:99999"], "port 99999 is out of range"),
    (["--audio", "-", "--serve", "a:b:c"], "expected PORT or HOST:PORT"),
    (["--audio", "-", "--exit-at-end"], "--exit-at-end only applies with --serve"),
])
def test_bad_arguments(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        main(["live", "--checkpoint", str(MODEL)] + argv)
    assert e.value.code == 2 and msg in capsys.readouterr().err


@pytest.mark.skipif(__import__("importlib").util.find_spec("sounddevice") is not None,
                    reason="sounddevice is installed: the capture path is not testable here (no device on CI)")
def test_input_device_without_sounddevice_says_what_to_install(capsys):
    with pytest.raises(SystemExit) as e:
        main(["live", "--input-device", "--checkpoint", str(MODEL)])
    assert e.value.code == 2
    assert "--input-device needs the optional sounddevice package" in capsys.readouterr().err


def test_the_default_model_is_the_live_one_unless_there_is_a_run(tmp_path, monkeypatch):
    from trainer.models import LIVE_PREFERENCE, resolve_model

    def resolve_live_checkpoint(path):
        return resolve_model(path, prefer=LIVE_PREFERENCE)

    monkeypatch.chdir(tmp_path)  # no models/ here: the checkout's shipped live model, found from any directory
    assert resolve_live_checkpoint(None).resolve() == LIVE_MODEL.resolve()
    (tmp_path / "models").symlink_to(ROOT / "models", target_is_directory=True)
    assert resolve_live_checkpoint(None) == Path("models/synesthete-tiny-live")
    (tmp_path / "runs" / "diffusion").mkdir(parents=True)
    assert resolve_live_checkpoint(None).as_posix() == "runs/diffusion"
    assert resolve_live_checkpoint("elsewhere").as_posix() == "elsewhere"


class _FakeInputStream:
    """sounddevice.InputStream's interface: after start(), a thread delivers blocks of music to the callback at
    real-time pace (as PortAudio does), then interrupts the main thread (the user's Ctrl-C)."""

    made: list["_FakeInputStream"] = []
    wave: np.ndarray = np.zeros(0, np.float32)  # what the "microphone" hears, at the stream's rate

    def __init__(self, device=None, channels=None, samplerate=None, dtype=None, blocksize=None, callback=None):
        self.kwargs = dict(device=device, channels=channels, samplerate=samplerate, dtype=dtype, blocksize=blocksize)
        self.callback, self.stopped, self.closed = callback, False, False
        self.made.append(self)

    def start(self) -> None:
        import _thread
        import threading
        import time

        sr, block, wave = self.kwargs["samplerate"], self.kwargs["blocksize"], self.wave

        def feed() -> None:
            t0 = time.monotonic()
            try:
                for i in range(0, len(wave) - block + 1, block):
                    if self.stopped:
                        return
                    time.sleep(max(0.0, t0 + i / sr - time.monotonic()))
                    self.callback(np.stack([wave[i:i + block]] * self.kwargs["channels"], axis=1), block, None, None)
            finally:  # the user's Ctrl-C, even when a block failed (else the live loop would wait forever)
                _thread.interrupt_main()

        threading.Thread(target=feed, daemon=True).start()

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        self.closed = True


@pytest.fixture()
def default_sigint():
    """Python's own SIGINT handler for the test: the fake's Ctrl-C (``_thread.interrupt_main``) runs whatever
    handler the process has, and a test run earlier in the same process (embedded Ray) may have replaced the
    default one that a real `trainer live` process has."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.timeout(240)  # a lost Ctrl-C must fail the test, not hang the suite
def test_input_device_captures_through_sounddevice_to_a_recording(tmp_path, monkeypatch, capsys, default_sigint):
    """`--input-device 3` through a fake sounddevice module (CI has no capture device): the stream is opened mono
    at the model's rate on device 3, its blocks drive the live loop, Ctrl-C ends it and the recording is kept."""
    import types

    fake = types.ModuleType("sounddevice")
    fake.InputStream = _FakeInputStream
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    from shared.audio_io import load_audio

    _FakeInputStream.made.clear()
    _FakeInputStream.wave = load_audio(make_music(tmp_path / "mic.wav", 2.0, 2.0), 16000)[0]
    out = tmp_path / "device.mp4"
    with pytest.raises(SystemExit) as e:
        main(["live", "--input-device", "3", "--checkpoint", str(LIVE_MODEL), "--out", str(out),
              "--summary", str(tmp_path / "s.json")])
    assert e.value.code == 0, capsys.readouterr().err
    (stream,) = _FakeInputStream.made
    assert stream.kwargs["device"] == 3 and stream.kwargs["channels"] == 1 and stream.kwargs["dtype"] == "float32"
    assert stream.stopped and stream.closed
    info = probe(out)
    sr_fps = 8  # the shipped live model's render.fps
    assert info["has_audio"] and 8 <= info["n_frames"] <= 2.0 * sr_fps + 1, info
