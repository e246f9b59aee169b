"""Live scheduling on a simulated clock: frames keep pace with the audio, degrading instead of drifting."""

from __future__ import annotations

import numpy as np

from shared.config import TimelineConfig
from trainer.live.generator import SnippetTimings, lookahead_frames, window_indices
from trainer.live.scheduler import CostModel, LiveScheduler, choose_steps
from trainer.live.sources import FileSource, SimClock

SR, FPS = 8000, 8.0
TCFG = TimelineConfig(n_bands=4, n_fft=256, beat_channels=False)


class TimedGenerator:
    """Stands in for the model: each snippet costs ``fixed + steps * per_step`` seconds of simulated time."""

    snippet_frames, past, future, full_steps = 4, 2, 2, 10

    def __init__(self, clock, fixed, per_step):
        self.clock, self.fixed, self.per_step = clock, fixed, per_step
        self.lookahead = lookahead_frames(self.snippet_frames, self.future)
        self.calls = []

    def warm_up(self):
        self.clock.advance(self.fixed + self.full_steps * self.per_step)
        return SnippetTimings(self.full_steps * self.per_step, self.fixed)

    def generate(self, start, windows, silent, steps):
        assert windows.shape[:2] == (4, 5) and silent.shape == (4,)
        self.calls.append((start, steps, windows.copy()))
        self.clock.advance(self.fixed + steps * self.per_step)
        return np.full((4, 2, 2, 3), start, np.uint8), SnippetTimings(steps * self.per_step, self.fixed)


class Collect:
    def __init__(self):
        self.frames, self.infos, self.status, self.summary, self.audio = [], [], [], None, 0

    def on_audio(self, samples):
        self.audio += len(samples)

    def on_frames(self, first, frames, infos):
        assert first == len(self.frames)
        self.frames += list(frames)
        self.infos += infos

    def on_status(self, status):
        self.status.append(status)

    def close(self, summary):
        self.summary = summary


def _run(per_step, seconds=10.0, realtime=True, paced=True, fixed=0.01, source=None, clock=None):
    clock = clock or SimClock(100.0)
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32)
    source = source or FileSource(wave, SR, clock, realtime=paced)
    gen = TimedGenerator(clock, fixed, per_step)
    sink = Collect()
    summary = LiveScheduler(source, gen, [sink], clock, SR, FPS, TCFG, realtime=realtime, min_steps=2).run()
    return summary, sink, gen, clock


def test_fast_generation_keeps_full_steps_and_drops_nothing():
    summary, sink, gen, _ = _run(per_step=0.01)
    assert summary["frames"] == len(sink.frames) == 80 and summary["dropped"] == 0
    assert {s for _, s, _ in gen.calls} == {10}
    # latency: the look-ahead (5 frames) + one frame of its own audio at most, plus compute and polling
    assert max(summary["latency_max_s"], 0) <= (gen.lookahead + 1) / FPS + 0.11 + 0.05
    assert sink.audio == 80000


def test_slower_generation_uses_fewer_steps_without_falling_behind():
    summary, sink, gen, clock = _run(per_step=0.06)  # 10 steps = 0.61 s per 0.5 s snippet
    steps = [s for _, s, _ in gen.calls]
    assert summary["dropped"] == 0 and set(steps) == {8}  # 8 steps (0.49 s) keep pace with 0.5 s snippets
    lat = np.array([i["latency_s"] for i in sink.infos])
    assert lat[-20:].max() <= lat[:20].max() + 0.05  # no drift: the last frames are no later than the first


def test_much_slower_generation_repeats_frames_as_dropped_and_stays_in_time():
    summary, sink, gen, clock = _run(per_step=0.3)  # even 2 steps (0.61 s) miss a 0.5 s snippet
    assert summary["frames"] == 80 and 0 < summary["dropped"] <= 0.3 * 80  # about 1 - 0.5/0.61 of them
    assert {s for _, s, _ in gen.calls} == {2}
    assert summary["generated"] + summary["dropped"] == 80
    dropped = [i for i in sink.infos if i["dropped"]]
    for info in dropped:  # a dropped frame repeats the last generated one
        assert sink.frames[info["t"]][0, 0, 0] == sink.frames[info["t"] - 1][0, 0, 0]
    lat = np.array([i["latency_s"] for i in sink.infos])
    assert lat.max() <= (gen.lookahead + 1) / FPS + 2 * 0.5 + 0.05  # bounded: at most two snippet periods behind
    assert lat[-20:].max() <= lat.max()


def test_flat_out_never_degrades():
    summary, sink, gen, _ = _run(per_step=0.3, realtime=False, paced=False)
    assert summary["dropped"] == 0 and {s for _, s, _ in gen.calls} == {10} and summary["frames"] == 80


def test_a_fast_pipe_gives_slack_not_backlog():
    """All audio at once (a fast pipe) with generation faster than real time: full steps, nothing dropped."""
    summary, sink, gen, _ = _run(per_step=0.02, paced=False)
    assert summary["dropped"] == 0 and {s for _, s, _ in gen.calls} == {10}
    assert summary["speed_x_realtime"] > 1.5


class StallingSource:
    """Real-time audio with a gap: nothing arrives between ``gap`` seconds for ``gap_s`` seconds."""

    def __init__(self, wave, clock, gap=2.0, gap_s=3.0):
        self.inner = FileSource(wave, SR, clock, realtime=True)
        self.clock, self.gap, self.gap_s, self.t0 = clock, gap, gap_s, None

    def start(self):
        self.inner.start()
        self.t0 = self.clock.now()

    @property
    def ended(self):
        return self.inner.ended

    def poll(self, timeout):
        el = self.clock.now() - self.t0
        if self.gap <= el < self.gap + self.gap_s:
            self.clock.sleep(timeout)
            return None
        block = self.inner.poll(timeout)
        if block is not None and el >= self.gap + self.gap_s:
            self.inner.t0 = self.t0 + self.gap_s  # the rest arrives late, in real time
        return block


def test_a_stall_says_waiting_for_audio_then_resumes():
    clock = SimClock(0.0)
    wave = (0.1 * np.random.default_rng(1).standard_normal(5 * SR)).astype(np.float32)
    summary, sink, gen, _ = _run(per_step=0.01, clock=clock, source=StallingSource(wave, clock))
    waits = [s for s in sink.status if s.get("waiting")]
    assert waits and waits[0]["message"] == "waiting for audio"
    assert sink.status[-1] == {"waiting": False}
    assert summary["frames"] == 40


def test_choose_steps_and_cost_model():
    cost = CostModel()
    cost.update(10, sample_s=1.0, fixed_s=0.1)  # 0.1 s per step
    assert cost.steps_within(0.65, 10) == 5
    assert choose_steps(0.65, 5.0, cost, 10, 2, True, True) == 5  # what fits before it is due
    assert choose_steps(5.0, 5.0, cost, 10, 2, True, True) == 10
    assert choose_steps(5.0, 0.45, cost, 10, 2, True, True) == 3  # what keeps pace, even with time to spare
    assert choose_steps(5.0, 0.1, cost, 10, 2, True, True) == 2  # pace below min steps: min steps
    assert choose_steps(0.2, 5.0, cost, 10, 2, True, True) == 0  # under min steps: drop
    assert choose_steps(0.2, 5.0, cost, 10, 2, True, False) == 2  # nothing to repeat yet: generate at min steps
    assert choose_steps(0.0, 0.0, cost, 10, 2, False, True) == 10  # flat out


def test_window_indices_match_the_offline_context_windows():
    from shared.timeline import context_windows

    feats = np.arange(7, dtype=np.float32)[:, None]
    offline = context_windows(feats, 2)[:, :, 0]
    live = np.stack([feats[window_indices(t, 2, 2, 7), 0] for t in range(7)])
    np.testing.assert_array_equal(live, offline)
    assert window_indices(0, 2, 0, 7).tolist() == [0, 0, 0]


class InterruptedSource(FileSource):
    """Real-time audio that the user stops with Ctrl-C after ``after_s`` seconds."""

    def __init__(self, wave, clock, after_s):
        super().__init__(wave, SR, clock, realtime=True)
        self.after_s = after_s

    def poll(self, timeout):
        if self.clock.now() - self.t0 >= self.after_s:
            raise KeyboardInterrupt
        return super().poll(timeout)


def test_ctrl_c_ends_the_stream_like_the_end_of_the_audio():
    clock = SimClock(0.0)
    wave = (0.1 * np.random.default_rng(2).standard_normal(10 * SR)).astype(np.float32)
    source = InterruptedSource(wave, clock, after_s=3.0)
    summary, sink, gen, _ = _run(per_step=0.01, clock=clock, source=source)
    assert sink.summary is summary  # the sinks were closed (the recorder finalises its mp4)
    assert summary["frames"] == len(sink.frames) == int(sink.audio / SR * FPS)  # every frame whose audio came
    assert 2.9 * FPS <= summary["frames"] <= 3.1 * FPS


def test_latency_histogram_matches_numpy_within_a_bin():
    from trainer.live.scheduler import LatencyHistogram

    x = np.random.default_rng(3).gamma(2.0, 0.1, 5000)
    h = LatencyHistogram()
    for v in x:
        h.add(float(v))
    assert abs(h.mean - x.mean()) < 1e-9 and h.max == x.max()
    assert abs(h.quantile(0.95) - np.percentile(x, 95)) <= 1.5e-3
    assert abs(h.quantile(0.5) - np.median(x)) <= 1.5e-3
