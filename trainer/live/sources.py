"""Where live audio comes from, and the clock it is measured against.

A source yields mono float32 blocks at the model's sample rate, each stamped with the clock time its
last sample arrived. ``poll(timeout)`` returns the next block (or None when nothing arrived within
``timeout`` seconds); ``ended`` turns True once the stream is over and every block has been handed out.

- :class:`FileSource`: a decoded file, released at real-time pace against the clock (``realtime``), or
  all at once in blocks (flat out).
- :class:`PipeSource`: any format on a byte stream (stdin), decoded by ffmpeg as it arrives, so a fast
  pipe runs faster than real time and a live pipe paces itself.
- :class:`DeviceSource`: a capture device through the optional ``sounddevice`` package.

Clocks: :class:`RealClock` (``time.monotonic``) and :class:`SimClock`, whose time moves only when told
(``sleep``/``advance``): the scheduler's tests run on it.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from shared.audio_io import require_tool, stderr_tail
from shared.errors import AudioError


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class SimClock:
    """A clock that moves only when told: ``sleep(s)`` and ``advance(s)`` add ``s`` to ``now()``."""

    def __init__(self, start: float = 0.0):
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.t += max(0.0, float(seconds))


@dataclass
class Block:
    samples: np.ndarray  # mono float32 [n]
    arrived: float       # clock time the last sample arrived


class FileSource:
    """A whole decoded wave, released at real-time pace from ``start()`` (``realtime``) or flat out."""

    def __init__(self, wave: np.ndarray, sr: int, clock, realtime: bool = True, block_s: float = 0.02):
        self.wave = np.asarray(wave, np.float32)
        self.sr = int(sr)
        self.clock = clock
        self.realtime = realtime
        self.block = max(1, int(round(block_s * sr)))
        self.pos = 0
        self.t0: float | None = None

    def start(self) -> None:
        self.t0 = self.clock.now()

    @property
    def ended(self) -> bool:
        return self.pos >= len(self.wave)

    def poll(self, timeout: float) -> Block | None:
        if self.t0 is None:
            self.start()
        if self.ended:
            return None
        if not self.realtime:
            end = min(len(self.wave), self.pos + self.block * 16)
            arrived = self.clock.now()
        else:
            due = int((self.clock.now() - self.t0) * self.sr)  # samples that have "arrived" by now
            if due <= self.pos:  # wait for the next block, at most the timeout
                wait = (self.pos + self.block) / self.sr + self.t0 - self.clock.now()
                self.clock.sleep(min(timeout, max(wait, 0.0)))
                due = int((self.clock.now() - self.t0) * self.sr)
                if due <= self.pos:
                    return None
            end = min(len(self.wave), due, self.pos + self.block)  # one block a call: each keeps its arrival time
            arrived = self.t0 + end / self.sr
        out = Block(self.wave[self.pos:end], arrived)
        self.pos = end
        return out


def decode_command(sr: int) -> list[str]:
    """ffmpeg reading any format on stdin, writing float32 stereo at ``sr`` as it decodes (small probe, flushed).

    Out: two channels, ``FL + FC`` and ``FR + FC`` (a mono input is FC alone, so both copy it; a stereo one has
    no FC), mixed by their mean here: mono and stereo give exactly :func:`shared.audio_io.load_audio`'s mono
    mix (``-ac 2`` would upmix mono at -3 dB). Inputs of more channels keep only front left, right and centre.
    """
    return [require_tool("ffmpeg", AudioError), "-nostdin", "-hide_banner", "-v", "error",
            "-probesize", "32768", "-analyzeduration", "100000", "-i", "pipe:0",
            "-map", "0:a:0", "-af", "pan=stereo|c0=FL+FC|c1=FR+FC", "-ar", str(int(sr)), "-f", "f32le", "-flush_packets", "1", "pipe:1"]


class PipeSource:
    """Audio of any format from a byte stream (``sys.stdin.buffer``), decoded by ffmpeg as it arrives.

    ffmpeg holds back the start of a stream while it identifies it: a wav stream's first 64 KiB (its
    S/PDIF probe: 0.37 s of CD-rate stereo, 2 s of 16 kHz mono), then decodes with about 0.1 s of lag.
    """

    def __init__(self, stream: BinaryIO, sr: int, clock, name: str = "stdin"):
        self.sr, self.clock, self.name = int(sr), clock, name
        self._q: queue.Queue = queue.Queue()
        self._done = False
        self._stderr = b""
        self._proc = subprocess.Popen(decode_command(sr), stdin=stream, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
        self._thread = threading.Thread(target=self._read, name="live-decode", daemon=True)
        self._err_thread = threading.Thread(target=self._read_err, name="live-decode-err", daemon=True)
        self._thread.start()
        self._err_thread.start()

    def start(self) -> None:
        pass

    def _read_err(self) -> None:
        self._stderr = self._proc.stderr.read()

    def _read(self) -> None:
        fd, rest = self._proc.stdout.fileno(), b""
        while True:
            buf = os.read(fd, 1 << 14)
            if not buf:
                break
            buf = rest + buf
            n = len(buf) // 8 * 8  # whole stereo float32 frames
            rest = buf[n:]
            if n:
                stereo = np.frombuffer(buf[:n], np.float32).reshape(-1, 2)
                self._q.put(Block(stereo.mean(axis=1, dtype=np.float64).astype(np.float32), self.clock.now()))
        code = self._proc.wait()
        self._err_thread.join()
        self._q.put(code)

    @property
    def ended(self) -> bool:
        return self._done

    def poll(self, timeout: float) -> Block | None:
        if self._done:
            return None
        try:
            item = self._q.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None
        if isinstance(item, int):  # ffmpeg exited
            self._done = True
            if item != 0:
                raise AudioError(f"audio on {self.name}: ffmpeg could not decode it: "
                                 f"{stderr_tail(self._stderr) or f'exit code {item}'}")
            return None
        return item  # one decoded read at a time: each keeps its own arrival time

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()


class DeviceSource:
    """A capture device through the optional ``sounddevice`` package (mono, at the model's rate)."""

    def __init__(self, device: str | int | None, sr: int, clock):
        try:
            import sounddevice as sd
        except (ImportError, OSError) as e:
            raise AudioError(f"--input-device needs the optional sounddevice package and PortAudio "
                             f"(pip install sounddevice): {e}") from None
        self.sr, self.clock = int(sr), clock
        self._q: queue.Queue = queue.Queue()
        self._done = False

        def callback(indata, frames, time_info, status):  # noqa: ARG001 (sounddevice's signature)
            self._q.put(Block(indata.mean(axis=1).astype(np.float32).copy(), self.clock.now()))

        dev = int(device) if isinstance(device, str) and device.isdigit() else device
        try:
            self._stream = sd.InputStream(device=dev, channels=1, samplerate=self.sr, dtype="float32",
                                          blocksize=max(1, self.sr // 50), callback=callback)
        except Exception as e:  # PortAudioError and ValueError for an unknown device: both the user's to fix
            raise AudioError(f"input device {device!r}: {e}") from None

    def start(self) -> None:
        self._stream.start()

    @property
    def ended(self) -> bool:
        return self._done

    def poll(self, timeout: float) -> Block | None:
        try:
            item = self._q.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None
        return item

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()
        self._done = True
