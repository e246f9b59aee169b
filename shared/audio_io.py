"""The one audio loader for all user audio (and a small wav writer).

``load_audio(path, sr=None) -> (mono float32 [N], sr)``:

* ``.wav``, ``.flac``, ``.ogg``/``.oga`` go through soundfile (libsndfile);
  should libsndfile refuse one (an exotic wav codec, say) it falls back to ffmpeg;
* everything else (mp3, m4a, aac, opus, webm, mp4, ...) goes through the ffmpeg
  CLI (driven through ffmpeg-python): ``ffprobe`` finds the first audio stream's rate and channel count, then
  ``ffmpeg`` decodes it at that rate to raw float32 (``f32le``) on a pipe;
* several channels are mixed down by their mean (ffmpeg's own ``-ac 1`` would
  scale stereo by 1/sqrt(2); the mean keeps both paths identical);
* when ``sr`` is given and differs, ``scipy.signal.resample_poly`` resamples
  (the same code for both paths).

Every failure raises :class:`AudioLoadError` whose message names the file and
the reason (missing, a directory, not audio, zero-length, ffmpeg's stderr tail).
"""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import ffmpeg
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from shared.errors import AudioError

SOUNDFILE_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga"})
# what a folder of audio yields (`trainer sample --audio DIR`, `trainer eval --audio-dir DIR`): soundfile's
# suffixes above, then what ffmpeg decodes
AUDIO_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma",
                  ".webm")
_STDERR_TAIL = 800  # characters of ffmpeg's stderr quoted in errors
QUIET = ("-nostdin", "-hide_banner", "-v", "error")  # global options of every ffmpeg run: errors only, never stdin


class AudioLoadError(AudioError):
    """An audio file could not be read; the message names the file and the reason."""


def load_audio(path: str | Path, sr: int | None = None) -> tuple[np.ndarray, int]:
    """Read any audio file as mono float32 ``[N]`` at its own rate, or at ``sr`` when given."""
    path = Path(path)
    if sr is not None:
        if isinstance(sr, (float, np.floating)) and float(sr).is_integer():
            sr = int(sr)
        if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool) or sr <= 0:
            raise ValueError(f"load_audio: sr must be a positive integer or None, got {sr!r}")
    if not path.exists():
        raise AudioLoadError(f"audio file {str(path)!r}: not found")
    if not path.is_file():
        raise AudioLoadError(f"audio file {str(path)!r}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioLoadError(f"audio file {str(path)!r}: empty file (0 bytes)")

    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            data, native_sr = _read_soundfile(path)
        except (sf.LibsndfileError, RuntimeError, TypeError) as sf_err:
            try:
                data, native_sr = _read_ffmpeg(path)
            except AudioLoadError as ff_err:
                raise AudioLoadError(f"{ff_err} (soundfile also failed: {sf_err})") from None
    else:
        data, native_sr = _read_ffmpeg(path)

    wave = mix_to_mono(data)
    if wave.size == 0:
        raise AudioLoadError(f"audio file {str(path)!r}: zero-length audio (no samples decoded)")
    if not np.all(np.isfinite(wave)):
        raise AudioLoadError(f"audio file {str(path)!r}: decoded samples hold NaN or inf")
    if sr is not None and sr != native_sr:
        wave = resample(wave, native_sr, int(sr))
        native_sr = int(sr)
    return wave, int(native_sr)


def audio_files_in(folder: str | Path) -> list[Path]:
    """The audio files directly inside ``folder``: regular files with a suffix in :data:`AUDIO_SUFFIXES` (any
    case), in name order. An unreadable folder raises the listing's OSError."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def mix_to_mono(data: np.ndarray) -> np.ndarray:
    """``[N]`` or ``[N, channels]`` -> float32 ``[N]``, the mean over channels."""
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 1:
        return np.ascontiguousarray(data)
    if data.ndim != 2:
        raise ValueError(f"mix_to_mono wants [N] or [N, channels], got shape {data.shape}")
    return np.ascontiguousarray(data.mean(axis=1, dtype=np.float64).astype(np.float32))


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``) from ``sr_in`` to ``sr_out``; float32 out.

    The output holds ``ceil(len(wave) * sr_out / sr_in)`` samples.
    """
    if sr_in == sr_out:
        return np.asarray(wave, dtype=np.float32)
    ratio = Fraction(int(sr_out), int(sr_in))
    out = resample_poly(np.asarray(wave, dtype=np.float64), ratio.numerator, ratio.denominator)
    return out.astype(np.float32)


def write_wav(path: str | Path, wave: np.ndarray, sr: int, subtype: str = "FLOAT") -> Path:
    """Write ``[N]`` (mono) or ``[N, channels]`` float audio to a wav file (32-bit float by default)."""
    path = Path(path)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim not in (1, 2):
        raise ValueError(f"write_wav wants [N] or [N, channels], got shape {wave.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, int(sr), subtype=subtype, format="WAV")
    return path


# ---------------------------------------------------------------- the readers


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    data, native_sr = sf.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    return data, int(native_sr)


def require_tool(name: str, error: type[Exception] = AudioLoadError) -> str:
    """Full path of an ffmpeg-suite tool, or ``error`` telling how to install it."""
    found = shutil.which(name)
    if found is None:
        raise error(f"{name} not found on PATH: install it (Debian: apt-get install ffmpeg)")
    return found


def stderr_tail(stderr: bytes | str, limit: int = _STDERR_TAIL) -> str:
    """The last ``limit`` characters of a tool's stderr, stripped, for error messages."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _probe_audio_stream(path: Path) -> tuple[int, int]:
    """(sample rate, channels) of the first audio stream, via ffprobe."""
    try:
        info = ffmpeg.probe(str(path), cmd=require_tool("ffprobe"), v="error", select_streams="a:0")
    except ffmpeg.Error as err:
        raise AudioLoadError(f"audio file {str(path)!r}: not readable as audio (ffprobe: {stderr_tail(err.stderr or b'')})"
                             ) from err
    except json.JSONDecodeError as err:
        raise AudioLoadError(f"audio file {str(path)!r}: ffprobe gave unreadable output ({err})") from err
    streams = info.get("streams", [])
    if not streams:
        raise AudioLoadError(f"audio file {str(path)!r}: not audio (no audio stream found)")
    rate, channels = int(streams[0].get("sample_rate") or 0), int(streams[0].get("channels") or 0)
    if rate <= 0 or channels <= 0:
        raise AudioLoadError(f"audio file {str(path)!r}: not readable as audio "
                             "(ffprobe found no sample rate or channel count)")
    return rate, channels


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream at its own rate and channel count to float32 ``[N, channels]``."""
    rate, channels = _probe_audio_stream(path)
    decode = (ffmpeg.input(str(path))["a:0"]
              .output("pipe:", vn=None, ac=channels, ar=rate, format="f32le", acodec="pcm_f32le")
              .global_args(*QUIET))
    try:
        raw, _ = decode.run(cmd=require_tool("ffmpeg"), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as err:
        raise AudioLoadError(f"audio file {str(path)!r}: ffmpeg could not decode it: {stderr_tail(err.stderr or b'')}"
                             ) from err
    usable = (len(raw) // (4 * channels)) * 4 * channels
    data = np.frombuffer(raw[:usable], dtype="<f4").reshape(-1, channels)  # (N, channels)
    return data, rate

