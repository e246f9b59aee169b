"""`--out FILE.mp4`: the live stream recorded as it plays, the audio muxed in when the stream ends.

Frames go through the project's mp4 writer (:class:`shared.video.Mp4Writer`, video only) as they are
emitted, dropped frames as the repeated frames they were shown as, at the model's size; the audio, whose length
is not known until the stream ends, is spooled to a float wav beside it. ``close`` muxes the two (AAC audio at
the writer's rate, ``+faststart``) into the target atomically: the mp4 appears complete or not at all. The video
stream is copied, or, for an ``out_size`` other than the model's, scaled there (:func:`shared.video.scale_filter`):
after the stream, so the live loop never pays for the size. The scheduler emits exactly ``frame_count(samples)`` frames, the writer's audio contract.

It also keeps each frame's motion energy, and on ``close`` measures the recording's AV offset from it and the spooled
audio (:func:`trainer.eval.av_offset.recording_offset`): ``av_offset`` (None until then), which ``trainer live``
adds to its summary.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from shared.audio_io import require_tool, stderr_tail
from shared.fsutil import atomic_path
from shared.video import Mp4Writer, VideoError, aac_rate, scale_filter


class Recorder:
    def __init__(self, path: str | Path, fps: float, width: int, height: int, sr: int,
                 out_size: tuple[int, int] | None = None):
        self.path = Path(path)
        self.out_size = (int(width), int(height)) if out_size is None else (int(out_size[0]), int(out_size[1]))
        self._scaled = self.out_size != (int(width), int(height))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.TemporaryDirectory(prefix="live-rec-", dir=self.path.parent)
        tmp = Path(self._tmp.name)
        self.sr = int(sr)
        self._video_path = tmp / "video.mp4"
        self._writer = Mp4Writer(self._video_path, fps, width, height).open()
        self._audio_path = tmp / "audio.wav"
        self._audio = sf.SoundFile(str(self._audio_path), "w", samplerate=self.sr, channels=1, subtype="FLOAT")
        self.frames = 0
        self.samples = 0
        from trainer.eval.generate import FrameCurves

        self._curves = FrameCurves(flow=False)
        self._fps = float(fps)
        self.av_offset: dict | None = None

    def on_audio(self, samples: np.ndarray) -> None:
        self._audio.write(np.asarray(samples, np.float32))
        self.samples += len(samples)

    def on_frames(self, first: int, frames: np.ndarray, infos: list[dict]) -> None:
        self._writer.write(frames)
        self._curves(frames)
        self.frames += len(frames)

    def on_status(self, status: dict) -> None:
        pass

    def close(self, summary: dict | None = None) -> Path:
        self._audio.close()
        try:
            self._writer.close()
            self.av_offset = self._offset()
            cmd = [require_tool("ffmpeg", VideoError), "-nostdin", "-hide_banner", "-v", "error", "-y",
                   "-i", str(self._video_path), "-i", str(self._audio_path), "-map", "0:v:0", "-map", "1:a:0",
                   *self._video_codec(), "-c:a", "aac", "-b:a", "192k", "-ar", str(aac_rate(self.sr)),
                   "-movflags", "+faststart", "-f", "mp4"]
            with atomic_path(self.path) as tmp:
                proc = subprocess.run(cmd + [str(tmp)], capture_output=True, check=False)
                if proc.returncode != 0:
                    raise VideoError(f"{self.path}: muxing the audio failed: {stderr_tail(proc.stderr)}")
        finally:
            self._tmp.cleanup()
        return self.path

    def _offset(self) -> dict:
        """The recording's AV offset (its one clip: no CI) from the spooled audio and the frames' motion."""
        from trainer.eval.av_offset import recording_offset

        wave, sr = sf.read(str(self._audio_path), dtype="float32")
        return recording_offset(wave, sr, self._curves.side().motion, self._fps)

    def _video_codec(self) -> list[str]:
        """Copy the recorded stream, or scale it to ``out_size`` (the writer's h264 settings)."""
        if not self._scaled:
            return ["-c:v", "copy"]
        w = self._writer
        return ["-vf", scale_filter(*self.out_size), "-c:v", "libx264", "-preset", w.preset, "-crf", str(w.crf),
                "-pix_fmt", "yuv420p"]

    def abort(self) -> None:
        """Stop without writing the mp4 (an error upstream)."""
        if not self._audio.closed:
            self._audio.close()
        self._writer.abort()
        self._tmp.cleanup()
