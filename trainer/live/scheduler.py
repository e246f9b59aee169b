"""Frames generated as audio arrives; when generation falls behind it degrades instead of drifting.

Timing model. Snippet j (frames ``s = jF .. s+F-1``) can start once the timeline holds frame
``s + F - 1 + f`` (the look-ahead, :func:`trainer.live.generator.lookahead_frames`), or the stream has
ended. Its *ready time* is ``max(arrival of that frame's audio, ready time of snippet j-1 + F/fps)``: a
snippet is never due before its audio arrived, nor sooner after the previous one than real time allows
(a pipe that delivers faster than real time gives slack, not a backlog). It is due ``2F/fps`` after its
ready time: one snippet period to keep pace with the audio and one of slack, so a generator slightly
slower than real time loses a few steps or an occasional snippet rather than every one. Latency stays
bounded by the look-ahead plus two snippet periods and the polling interval.

Degrading (realtime mode). From the measured costs (an EMA of seconds per sampling step and of the fixed
per-snippet cost: conditioning and VAE decode), ``fit(s)`` is the most steps whose cost fits in ``s``
seconds. A snippet gets ``steps = min(fit(remaining), max(min_steps, fit(F/fps)), full)`` with
``remaining = due - now``: never more steps than keep pace with the audio (the slack absorbs jitter, it
does not buy quality), never more than fit before the snippet is due. Below
``inference.live_min_steps`` it is not generated: its frames repeat the last frame shown and count as
dropped (the first snippet is always generated, there is nothing to repeat yet). So falling behind
first costs quality, then frames, and never accumulates delay. Flat out (``realtime=False``: a file with
``--no-realtime``) every snippet gets the full steps and nothing is dropped.

Every frame ``t < T = frame_count(samples)`` is emitted exactly once, in order, so a recording is as long
as the audio. Ctrl-C (KeyboardInterrupt) ends the stream like the end of the audio: the frames whose
audio has arrived are finished and the sinks closed (a device source only ends this way). Sinks get ``on_audio(samples)``, ``on_frames(first, frames, infos)`` and ``on_status(dict)``
("waiting for audio" after ``stall_s`` without audio), then ``close(summary)``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from shared.errors import AudioError
from shared.timeline import channel_index
from trainer.live.features import StreamingTimeline
from trainer.live.generator import window_indices


class Sink(Protocol):
    def on_audio(self, samples: np.ndarray) -> None: ...
    def on_frames(self, first: int, frames: np.ndarray, infos: list[dict]) -> None: ...
    def on_status(self, status: dict) -> None: ...
    def close(self, summary: dict) -> None: ...


@dataclass
class CostModel:
    """EMA estimates of one snippet's cost: ``fixed + steps * per_step`` seconds (alpha: weight of a new sample)."""

    per_step: float = 0.0
    fixed: float = 0.0
    alpha: float = 0.3
    seen: int = 0

    def update(self, steps: int, sample_s: float, fixed_s: float) -> None:
        ps = sample_s / max(steps, 1)
        if self.seen == 0:
            self.per_step, self.fixed = ps, fixed_s
        else:
            self.per_step += self.alpha * (ps - self.per_step)
            self.fixed += self.alpha * (fixed_s - self.fixed)
        self.seen += 1

    def steps_within(self, seconds: float, full: int) -> int:
        """Most steps (<= full) whose predicted cost fits in ``seconds``."""
        if self.per_step <= 0:
            return full
        return int(min(full, math.floor((seconds - self.fixed) / self.per_step)))


def choose_steps(remaining_s: float, period_s: float, cost: CostModel, full: int, min_steps: int, realtime: bool,
                 have_frame: bool) -> int:
    """Sampling steps for a snippet due in ``remaining_s`` (snippets every ``period_s``); 0 means drop (repeat frames)."""
    if not realtime:
        return full
    pace = max(min_steps, cost.steps_within(period_s, full))
    steps = min(cost.steps_within(remaining_s, full), pace)
    if steps >= min_steps:
        return steps
    return 0 if have_frame else min_steps


class LatencyHistogram:
    """Per-frame latencies in 1 ms bins up to 60 s (bounded memory for a stream of any length): mean, max, quantiles."""

    def __init__(self, max_s: float = 60.0, bin_s: float = 1e-3):
        self.bin_s = bin_s
        self.counts = np.zeros(int(max_s / bin_s) + 1, np.int64)  # the last bin holds everything beyond max_s
        self.n, self.total, self.max = 0, 0.0, float("-inf")

    def add(self, seconds: float) -> None:
        self.counts[min(max(int(seconds / self.bin_s), 0), len(self.counts) - 1)] += 1
        self.n += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    def quantile(self, q: float) -> float:
        """The upper edge of the bin holding the q-quantile (within 1 ms of it)."""
        if not self.n:
            return 0.0
        i = int(np.searchsorted(np.cumsum(self.counts), q * self.n))
        return min((i + 1) * self.bin_s, self.max)


@dataclass
class LiveStats:
    frames: int = 0
    generated: int = 0
    dropped: int = 0
    snippets: int = 0
    degraded_snippets: int = 0
    generated_snippets: int = 0
    steps_total: int = 0  # sampling steps summed over generated snippets
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)  # emit time - the frame's audio arrival


class LiveScheduler:
    """Runs one live stream: source -> causal timeline -> snippets -> sinks (module docstring)."""

    def __init__(self, source, generator, sinks: list, clock, sr: int, fps: float, tcfg, realtime: bool = True,
                 min_steps: int = 2, stall_s: float = 2.0, channels: list[int] | None = None, poll_s: float = 0.02):
        self.source, self.gen, self.sinks, self.clock = source, generator, list(sinks), clock
        self.sr, self.fps, self.realtime = int(sr), float(fps), realtime
        self.min_steps, self.stall_s, self.poll_s = int(min_steps), float(stall_s), poll_s
        self.timeline = StreamingTimeline(sr, fps, tcfg)
        self.silent_col = channel_index(self.timeline.names, "is_silent")
        self.channels = channels  # columns the model sees (diffusion.audio_channels), None = all
        self.cost = CostModel()
        self.stats = LiveStats()
        keep = generator.past + generator.snippet_frames + generator.future + 2
        self._rows: deque[np.ndarray] = deque(maxlen=keep)  # the last timeline rows (bounded memory)
        self._arrivals: deque[float] = deque(maxlen=keep)
        self._row0 = 0  # absolute frame index of _rows[0]
        self._last_frame: np.ndarray | None = None
        self._prev_ready: float | None = None
        self._waiting = False
        self._start = 0    # the next snippet's first frame
        self._samples = 0  # samples received
        self.interrupted = False

    # -------------------------------------------------------------- helpers

    @property
    def n_rows(self) -> int:
        return self._row0 + len(self._rows)

    def _add_row(self, row: np.ndarray, arrived: float) -> None:
        if len(self._rows) == self._rows.maxlen:
            self._row0 += 1
        self._rows.append(row)
        self._arrivals.append(arrived)

    def _row(self, t: int) -> np.ndarray:
        if t < self._row0:
            raise AssertionError(f"timeline row {t} was dropped (kept from {self._row0})")
        return self._rows[t - self._row0]

    def _ready(self, start: int, ended: bool) -> bool:
        need = start + self.gen.snippet_frames - 1 + self.gen.future
        return self.n_rows > need or (ended and start < self.n_rows)

    def _status(self, **status) -> None:
        for s in self.sinks:
            s.on_status(status)

    # -------------------------------------------------------------- the loop

    def run(self) -> dict:
        """Stream until the source ends; returns the summary (also handed to every sink's ``close``).

        The generator's ``warm_up`` (one snippet on silence) runs first: it pays first-call costs before the
        audio starts and gives the cost model its first measurement.
        """
        warm = self.gen.warm_up()
        self.cost.update(self.gen.full_steps, warm.sample_s, warm.decode_s)
        self.source.start()
        t_start = self.clock.now()
        try:
            self._stream()
        except KeyboardInterrupt:  # Ctrl-C ends a live stream (a device never does): finish what has arrived
            self.interrupted = True
        while self._ready(self._start, True):
            self._snippet(self._start, True)
            self._start += self.gen.snippet_frames
        samples = self._samples
        if self.n_rows == 0:
            raise AudioError(f"the audio stream ended after {samples / self.sr:.3f} s, shorter than one frame "
                             f"at {self.fps:g} fps")
        summary = self.summary(samples, self.clock.now() - t_start)
        for s in self.sinks:
            s.close(summary)
        return summary

    def _stream(self) -> None:
        """Read, featurise and generate until the source ends."""
        last_audio = self.clock.now()
        ended = False
        while True:
            block = self.source.poll(self.poll_s)
            now = self.clock.now()
            if block is not None and len(block.samples):
                self._samples += len(block.samples)
                for s in self.sinks:
                    s.on_audio(block.samples)
                for row in self.timeline.push(block.samples):  # one row at a time: the row buffer stays bounded
                    self._add_row(row, block.arrived)
                    while self._ready(self._start, False):
                        self._snippet(self._start, False)
                        self._start += self.gen.snippet_frames
                last_audio = now
                if self._waiting:
                    self._waiting = False
                    self._status(waiting=False)
            elif self.source.ended:
                ended = True
            if not ended and not self._waiting and now - last_audio > self.stall_s:
                self._waiting = True
                self._status(waiting=True, message="waiting for audio")
            if ended:
                return

    def _snippet(self, start: int, ended: bool) -> None:
        f, n_rows = self.gen.snippet_frames, self.n_rows
        need = min(start + f - 1 + self.gen.future, n_rows - 1)
        arrived = self._arrivals[need - self._row0]
        ready = arrived if self._prev_ready is None else max(arrived, self._prev_ready + f / self.fps)
        self._prev_ready = ready
        now = self.clock.now()
        steps = choose_steps(ready + 2 * f / self.fps - now, f / self.fps, self.cost, self.gen.full_steps, self.min_steps,
                             self.realtime, self._last_frame is not None)
        n_out = min(f, n_rows - start) if ended else f  # frames past the end are not emitted
        if steps == 0:
            frames = np.repeat(self._last_frame[None], n_out, axis=0)
            self.stats.dropped += n_out
        else:
            total = n_rows if ended else None
            win, sil = self._windows(start, total)
            frames, timings = self.gen.generate(start, win, sil, steps)
            self.cost.update(steps, timings.sample_s, timings.decode_s)
            frames = frames[:n_out]
            self.stats.generated += n_out
            self.stats.steps_total += int(steps)
            self.stats.generated_snippets += 1
            self.stats.degraded_snippets += int(steps < self.gen.full_steps)
            self._last_frame = frames[-1].copy()
        self.stats.snippets += 1
        emit = self.clock.now()
        infos = []
        for i in range(n_out):
            t = start + i
            latency = emit - self._arrivals[min(t, n_rows - 1) - self._row0]
            self.stats.latency.add(latency)
            infos.append({"t": t, "ts": t / self.fps, "latency_s": latency, "steps": int(steps),
                          "dropped": steps == 0, "emitted": emit})
        self.stats.frames += n_out
        for s in self.sinks:
            s.on_frames(start, frames, infos)

    def _windows(self, start: int, total: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Audio windows (F, k+1+f, Ch) and is_silent (F,) of the snippet at ``start`` (edge rows repeated)."""
        f, g = self.gen.snippet_frames, self.gen
        last = (total if total is not None else self.n_rows)
        rows = []
        for t in range(start, start + f):
            tt = min(t, last - 1)  # frames past the end repeat the last audio (as offline sampling does)
            idx = window_indices(tt, g.past, g.future, last)
            rows.append(np.stack([self._row(int(i)) for i in idx]))
        win = np.stack(rows)  # (F, win, C)
        sil = win[:, g.past, self.silent_col].astype(np.float32)
        if self.channels is not None:
            win = win[:, :, self.channels]
        return win.astype(np.float32), sil

    def summary(self, samples: int, wall_s: float) -> dict:
        st = self.stats
        lat = st.latency
        audio_s = samples / self.sr
        return {"frames": st.frames, "generated": st.generated, "dropped": st.dropped, "snippets": st.snippets,
                "degraded_snippets": st.degraded_snippets, "audio_s": audio_s, "wall_s": wall_s, "fps": self.fps,
                "realtime": self.realtime, "speed_x_realtime": audio_s / max(wall_s, 1e-9),
                "latency_mean_s": lat.mean, "latency_p95_s": lat.quantile(0.95),
                "latency_max_s": lat.max if lat.n else 0.0, "lookahead_frames": self.gen.lookahead,
                "steps_full": self.gen.full_steps,
                "steps_mean": st.steps_total / max(st.generated_snippets, 1)}
