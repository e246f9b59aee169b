"""The one mp4 writer (and reader/prober) of the project, on the ffmpeg CLI (command lines built by ffmpeg-python).

Every mp4 the project writes: h264 (libx264) ``yuv420p``, ``-movflags +faststart``
(the ``moov`` atom before ``mdat``), AAC audio at 44.1 or 48 kHz (other rates are
resampled to 48 kHz), and, when audio is given, exactly ``floor(duration * fps)``
video frames (:func:`shared.timeline.frame_count`): missing frames repeat the
last one, extra frames are dropped.

Frames stream into ffmpeg's stdin as raw RGB, one ``write`` at a time, so a long
video never sits in memory whole. The output is written under a temporary name
and renamed when ffmpeg succeeds; on an error the partial file is removed and the
message carries ffmpeg's stderr tail.

libx264 with ``yuv420p`` needs even sizes: odd widths/heights are padded by one
black pixel column/row (``pad`` filter), so the file is ``even(width) x even(height)``.

A model's native frames are small (32 or 64 px): ``out_size`` scales them in ffmpeg to a size a player shows
(:data:`VIEW_PX` by default in ``trainer sample`` and ``trainer live --out``, :func:`view_size`), with a Lanczos
filter (:data:`SCALE_FLAGS`); the frames written stay native, so nothing upstream pays for the size.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import ffmpeg
import numpy as np

from shared.audio_io import QUIET, load_audio, require_tool, resample, stderr_tail, write_wav
from shared.timeline import frame_count

AAC_RATES = (44100, 48000)
DEFAULT_AAC_RATE = 48000
VIEW_PX = 512            # the default size of a generated video: viewable in any player, whatever the model's size
SCALE_FLAGS = "lanczos"  # ffmpeg's scaler for that resize (sharp, little blur on a 16x upscale)


def view_size(native: int, size: int | str | None) -> int:
    """The side of a written video: ``size`` px, ``"native"`` the model's own, None (the default) at least
    :data:`VIEW_PX` (a model larger than that keeps its size)."""
    if size is None:
        return max(int(native), VIEW_PX)
    if size == "native":
        return int(native)
    if int(size) < 1:
        raise ValueError(f"a video size must be >= 1 px, got {size}")
    return int(size)


def scale_filter(width: int, height: int) -> str:
    """The ``-vf`` text of the resize to ``width x height`` (:data:`SCALE_FLAGS`)."""
    return f"scale={int(width)}:{int(height)}:flags={SCALE_FLAGS}"


class VideoError(RuntimeError):
    """ffmpeg/ffprobe missing or failing, or frames that do not fit the writer; names the file."""


# ------------------------------------------------------------------ pure helpers


def passthrough_flag(version_text: str) -> list[str]:
    """ffmpeg's "keep every frame as it is" option for its version: ``-fps_mode`` from 5.1, ``-vsync`` before.

    ``version_text`` is the first line of ``ffmpeg -version``; unknown (git) builds get ``-fps_mode``.
    """
    m = re.search(r"version n?(\d+)\.(\d+)", version_text)
    if m and (int(m.group(1)), int(m.group(2))) < (5, 1):
        return ["-vsync", "passthrough"]
    return ["-fps_mode", "passthrough"]


@functools.lru_cache(maxsize=4)
def _ffmpeg_passthrough(ffmpeg_bin: str) -> dict[str, str]:
    """:func:`passthrough_flag` of the installed ffmpeg, as an ffmpeg-python output option."""
    proc = subprocess.run([ffmpeg_bin, "-version"], capture_output=True, check=False)
    flag, value = passthrough_flag(proc.stdout.decode("utf-8", "replace").splitlines()[0] if proc.stdout else "")
    return {flag.lstrip("-"): value}


def fps_fraction(fps: float) -> Fraction:
    """A rational frame rate for ffmpeg (29.97 -> 2997/100, 24 -> 24/1)."""
    if not (fps > 0 and np.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return Fraction(fps).limit_denominator(100000)


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size libx264/yuv420p gets: each side rounded up to even."""
    return width + (width % 2), height + (height % 2)


def aac_rate(sr: int) -> int:
    """The AAC sample rate for input at ``sr``: 44.1 or 48 kHz kept, anything else goes to 48 kHz."""
    return int(sr) if int(sr) in AAC_RATES else DEFAULT_AAC_RATE


def as_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Validate uint8 ``[H, W, 3]`` or ``[n, H, W, 3]`` and return ``[n, H, W, 3]`` (C-contiguous)."""
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise ValueError(f"Mp4Writer.write wants uint8 frames, got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1:] != (height, width, 3):
        raise ValueError(f"Mp4Writer.write wants [H, W, 3] or [n, H, W, 3] with H={height}, W={width}, "
                         f"got shape {tuple(np.asarray(frames).shape)}")
    return np.ascontiguousarray(arr)


def mp4_top_level_atoms(path: str | Path) -> list[str]:
    """Types of the top-level atoms (boxes) of an mp4 file, in file order (e.g. ftyp, moov, mdat)."""
    atoms = []
    size_total = os.path.getsize(path)
    with open(path, "rb") as f:
        pos = 0
        while pos + 8 <= size_total:
            f.seek(pos)
            head = f.read(16)
            size = int.from_bytes(head[:4], "big")
            kind = head[4:8].decode("latin-1")
            if size == 1:  # 64-bit size follows
                size = int.from_bytes(head[8:16], "big")
            elif size == 0:  # to the end of the file
                size = size_total - pos
            if size < 8:
                raise VideoError(f"{path}: malformed mp4 atom {kind!r} of size {size} at byte {pos}")
            atoms.append(kind)
            pos += size
    return atoms


# ------------------------------------------------------------------------ writer


class Mp4Writer:
    """Stream RGB frames into an h264/AAC mp4 (see the module docstring).

    ``audio``: ``None``, ``(wave, sr)`` with ``wave`` float ``[N]`` or ``[N, channels]``, or a path to any
    audio file (read with :func:`shared.audio_io.load_audio`, mono). With audio the file gets exactly
    ``floor(N / sr * fps)`` frames; without, the frames written.

    Use as a context manager::

        with Mp4Writer("out.mp4", fps=24, width=256, height=256, audio=(wave, sr)) as w:
            for chunk in chunks:          # uint8 [n, H, W, 3]
                w.write(chunk)
    """

    def __init__(self, path: str | Path, fps: float, width: int, height: int,
                 audio: None | tuple[np.ndarray, int] | str | Path = None,
                 crf: int = 18, preset: str = "veryfast", audio_bitrate: str = "192k",
                 out_size: tuple[int, int] | None = None):
        if int(width) < 1 or int(height) < 1:
            raise ValueError(f"Mp4Writer: width and height must be >= 1, got {width}x{height}")
        if out_size is not None and (int(out_size[0]) < 1 or int(out_size[1]) < 1):
            raise ValueError(f"Mp4Writer: out_size must be >= 1 px, got {out_size}")
        if not 0 <= int(crf) <= 51:
            raise ValueError(f"Mp4Writer: crf must be in [0, 51], got {crf}")
        self.path = Path(path)
        self.fps = float(fps)
        self.rate = fps_fraction(self.fps)
        self.width, self.height = int(width), int(height)  # the frames written
        self.out_size = (self.width, self.height) if out_size is None else (int(out_size[0]), int(out_size[1]))
        self.crf, self.preset, self.audio_bitrate = int(crf), preset, audio_bitrate
        self.audio = self._resolve_audio(audio)  # (wave [N] or [N, ch] float32, sr) or None
        self.target_frames = frame_count(len(self.audio[0]), self.audio[1], self.fps) if self.audio else None
        self.frames_written = 0
        self._last: np.ndarray | None = None
        self._proc: subprocess.Popen | None = None
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self._stderr = None
        self._partial = self.path.with_name(self.path.name + ".partial")

    # -- audio

    def _resolve_audio(self, audio) -> tuple[np.ndarray, int] | None:
        if audio is None:
            return None
        if isinstance(audio, (str, Path)):
            return load_audio(audio)
        try:
            wave, sr = audio
        except (TypeError, ValueError):
            raise TypeError("Mp4Writer: audio must be None, (wave, sr) or a path to an audio file") from None
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim not in (1, 2) or (wave.ndim == 2 and wave.shape[1] > 8):
            raise ValueError(f"Mp4Writer: audio wave must be [N] or [N, channels], got shape {wave.shape}")
        if len(wave) == 0:
            raise ValueError("Mp4Writer: audio wave is empty")
        if int(sr) <= 0:
            raise ValueError(f"Mp4Writer: audio sample rate must be positive, got {sr}")
        return wave, int(sr)

    def _write_audio_wav(self, folder: Path) -> Path:
        """The audio at an AAC rate as a float wav in ``folder`` (resampled per channel when needed)."""
        wave, sr = self.audio
        out_sr = aac_rate(sr)
        if out_sr != sr:
            wave = (resample(wave, sr, out_sr) if wave.ndim == 1
                    else np.stack([resample(wave[:, c], sr, out_sr) for c in range(wave.shape[1])], axis=1))
        return write_wav(folder / "audio.wav", wave, out_sr)

    # -- process

    def _command(self, audio_wav: Path | None) -> list[str]:
        w2, h2 = even_size(*self.out_size)
        ffmpeg_bin = require_tool("ffmpeg", VideoError)
        video = ffmpeg.input("pipe:0", format="rawvideo", pix_fmt="rgb24", s=f"{self.width}x{self.height}",
                             framerate=f"{self.rate.numerator}/{self.rate.denominator}")["v:0"]
        if self.out_size != (self.width, self.height):
            video = video.filter("scale", self.out_size[0], self.out_size[1], flags=SCALE_FLAGS)
        if (w2, h2) != self.out_size:
            video = video.filter("pad", w2, h2, 0, 0, "black")
        streams = [video]
        options: dict = {"vcodec": "libx264", "preset": self.preset, "crf": self.crf, "pix_fmt": "yuv420p",
                         **_ffmpeg_passthrough(ffmpeg_bin)}
        if audio_wav is not None:
            streams.append(ffmpeg.input(str(audio_wav))["a:0"])
            options.update(acodec="aac", audio_bitrate=self.audio_bitrate, ar=aac_rate(self.audio[1]))
        out = ffmpeg.output(*streams, str(self._partial), movflags="+faststart", format="mp4", **options)
        return out.global_args(*QUIET).overwrite_output().compile(cmd=ffmpeg_bin)

    def open(self) -> "Mp4Writer":
        if self._proc is not None:
            raise VideoError(f"{self.path}: writer already open")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = tempfile.TemporaryDirectory(prefix="mp4writer-")
        try:
            tmp = Path(self._tmpdir.name)
            audio_wav = self._write_audio_wav(tmp) if self.audio else None
            cmd = self._command(audio_wav)
            self._stderr = open(tmp / "ffmpeg.stderr", "w+b")  # a file: a chatty ffmpeg never blocks on a pipe
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr)
        except BaseException:
            self._cleanup()
            raise
        return self

    def __enter__(self) -> "Mp4Writer":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _ffmpeg_error(self, what: str) -> VideoError:
        tail = ""
        if self._stderr is not None:
            self._stderr.flush()
            self._stderr.seek(0)
            tail = stderr_tail(self._stderr.read())
        return VideoError(f"{self.path}: {what}: ffmpeg said: {tail or '(nothing)'}")

    def _feed(self, frames: np.ndarray) -> None:
        buf = memoryview(frames).cast("B") if frames.flags.c_contiguous else frames.tobytes()
        try:
            self._proc.stdin.write(buf)
        except (BrokenPipeError, OSError):
            self._proc.wait()
            err = self._ffmpeg_error(f"ffmpeg exited (code {self._proc.returncode}) while frames were written")
            self.abort()
            raise err from None

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 ``[H, W, 3]`` or ``[n, H, W, 3]`` frames (extras beyond the audio's length are dropped)."""
        if self._proc is None:
            raise VideoError(f"{self.path}: write() on a writer that is not open (use it as a context manager)")
        arr = as_frames(frames, self.height, self.width)  # (n, H, W, 3)
        if len(arr) == 0:
            return
        self._last = arr[-1].copy()
        if self.target_frames is not None:
            arr = arr[: max(0, self.target_frames - self.frames_written)]
        if len(arr):
            self._feed(arr)
            self.frames_written += len(arr)

    def close(self) -> Path:
        """Pad to the target frame count, finish the file and rename it into place; returns the path."""
        if self._proc is None:
            raise VideoError(f"{self.path}: close() on a writer that is not open")
        if self.target_frames is not None and self.frames_written < self.target_frames:
            if self._last is None:
                self.abort()
                raise VideoError(f"{self.path}: no frames were written (the audio wants {self.target_frames})")
            missing = self.target_frames - self.frames_written
            for start in range(0, missing, 64):  # bounded memory: at most 64 repeated frames at a time
                n = min(64, missing - start)
                self._feed(np.broadcast_to(self._last, (n,) + self._last.shape))
                self.frames_written += n
        if self.frames_written == 0:
            self.abort()
            raise VideoError(f"{self.path}: no frames were written")
        self._proc.stdin.close()
        code = self._proc.wait()
        if code != 0:
            err = self._ffmpeg_error(f"ffmpeg failed with exit code {code}")
            self.abort()
            raise err
        os.replace(self._partial, self.path)
        self._cleanup()
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial output (used on errors)."""
        if self._proc is not None:
            if self._proc.stdin and not self._proc.stdin.closed:
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
        self._partial.unlink(missing_ok=True)
        self._cleanup()

    def __del__(self) -> None:  # a writer dropped without close(): stop ffmpeg, leave no partial file
        if getattr(self, "_proc", None) is not None:
            try:
                self.abort()
            except Exception:
                pass

    def _cleanup(self) -> None:
        self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None


# ------------------------------------------------------------- probe and read


def _ffprobe_json(path: Path, count_frames: bool) -> dict:
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        return ffmpeg.probe(str(path), cmd=require_tool("ffprobe", VideoError), v="error",
                            **({"count_frames": None} if count_frames else {}))
    except ffmpeg.Error as e:
        raise VideoError(f"{path}: ffprobe failed: {stderr_tail(e.stderr or b'')}") from e


def _rate(text: str | None) -> float | None:
    if not text or text in ("0/0",):
        return None
    return float(Fraction(text))


def probe(path: str | Path, count_frames: bool = True) -> dict:
    """ffprobe's ``-show_streams -show_format`` JSON plus convenience keys.

    Added keys: ``video`` / ``audio`` (the first stream of each kind or None), ``codec``, ``pix_fmt``,
    ``width``, ``height``, ``fps``, ``n_frames`` (decoded count with ``count_frames``, else the
    container's ``nb_frames``), ``duration`` (container, seconds), ``video_duration``, ``has_audio``,
    ``audio_codec``, ``audio_sample_rate``, ``audio_channels``, ``audio_duration``.
    """
    path = Path(path)
    info = _ffprobe_json(path, count_frames)
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    fmt = info.get("format", {})

    def num(d, key, cast=float):
        return cast(d[key]) if d and d.get(key) not in (None, "N/A") else None

    info.update(
        video=video, audio=audio,
        codec=video.get("codec_name") if video else None,
        pix_fmt=video.get("pix_fmt") if video else None,
        width=num(video, "width", int), height=num(video, "height", int),
        fps=_rate(video.get("avg_frame_rate")) if video else None,
        n_frames=(num(video, "nb_read_frames", int) if count_frames else None) or num(video, "nb_frames", int),
        duration=num(fmt, "duration"), video_duration=num(video, "duration"),
        has_audio=audio is not None,
        audio_codec=audio.get("codec_name") if audio else None,
        audio_sample_rate=num(audio, "sample_rate", int), audio_channels=num(audio, "channels", int),
        audio_duration=num(audio, "duration"),
    )
    return info


def read_video_frames(path: str | Path, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Decode a video's frames one at a time as uint8 ``[H, W, 3]`` RGB (streamed from ffmpeg).

    ``size=(width, height)`` scales them (bicubic) on the way out.
    """
    path = Path(path)
    info = probe(path, count_frames=False)
    if info["video"] is None:
        raise VideoError(f"{path}: no video stream")
    width, height = size if size is not None else (info["width"], info["height"])
    ffmpeg_bin = require_tool("ffmpeg", VideoError)
    video = ffmpeg.input(str(path))["v:0"]
    if size is not None:
        video = video.filter("scale", int(width), int(height), flags="bicubic")
    cmd = (ffmpeg.output(video, "pipe:1", format="rawvideo", pix_fmt="rgb24", **_ffmpeg_passthrough(ffmpeg_bin))
           .global_args(*QUIET).compile(cmd=ffmpeg_bin))
    frame_bytes = int(width) * int(height) * 3
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        try:
            while True:
                buf = proc.stdout.read(frame_bytes)
                if len(buf) < frame_bytes:
                    break
                yield np.frombuffer(buf, np.uint8).reshape(int(height), int(width), 3)
            code = proc.wait()
            if code != 0:
                err.seek(0)
                raise VideoError(f"{path}: ffmpeg failed decoding frames: {stderr_tail(err.read())}")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()
