"""`trainer eval --audio-dir DIR`: sample every audio file in a folder and score what needs no ground truth.

Real music has no ground-truth frames, so this scores the generated video against its own audio only:

* ``settle_ratio``: motion energy from ``eval.settle_delay_s`` into *detected* silence (the timeline's
  ``is_silent``) over motion energy elsewhere (lower is better; files without silence are left out);
* ``loudness_motion_spearman``: Spearman of the audio frame RMS with motion energy, on music frames;
* ``av_align``: AV-Align as TempoTokens computes it (librosa onsets at 22.05 kHz vs local maxima of the mean
  Farneback flow magnitude, matched within +-1/fps), on music frames;
* ``beat_score``: Bailando's beat alignment score with the timeline's beats and motion-energy maxima as
  visual events, sigma = ``eval.beat_sigma_s``;
* retrieval across the folder: which audio file's loudness curve does each video's motion follow best;
* a shift test: the same video scored against its own audio circularly shifted by 1.5-6 s.

"Music frames" are frames outside detected silence and more than 0.5 s after it. Every metric row has a
**floor**: the same metric for the video scored against another file's audio (the next file in name
order), or against the shifted audio for the shift test. There is no ceiling (no ground truth).

Pipeline per file: the shared loader reads the audio (any format and rate; it is resampled to
``data.sample_rate`` exactly as ``trainer sample`` does), ``trainer.sample.sample_file`` writes the mp4
beside the report and hands each frame chunk to :class:`FrameCurves`, which keeps only the per-frame
curves (memory stays bounded for long files). A file that cannot be read is skipped and listed with
its reason; a folder with no readable audio file is an :class:`~shared.errors.AudioError` (exit 2).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from shared.audio_io import AudioLoadError, load_audio
from shared.errors import AudioError, OutputPathError
from shared.fsutil import atomic_write_json, atomic_write_text
from shared.timeline import frame_count

# Metric functions: the same ones the per-variant eval scores with.
from trainer.eval.loudness import spearman_on
from trainer.eval.metrics import music_mask
from trainer.eval.retrieval import chance, true_audio_ranks
from trainer.eval.rhythm import audio_onset_times, av_align, beat_score, farneback_flow_magnitude
from trainer.eval.rows import entry, fixed
from trainer.eval.stats import nanmean_of
from trainer.eval.metrics import motion_energy, silence_settle_ratio, spans_from_mask

VARIANT = "audio_dir"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".webm")
SHIFTS_S = (1.5, 2.25, 3.0, 3.75, 4.5, 5.25, 6.0)  # circular shifts of the shift test
MIN_SHIFT_MARGIN_S = 1.5   # a shift s is used only when s <= duration - this (else it wraps back near 0)
MUSIC_GUARD_S = 0.5       # detected silence and this long after it are not music frames
MAX_TIMELINE_PLOTS = 8

PER_FILE_METRICS = ("settle_ratio", "loudness_motion_spearman", "av_align", "beat_score")
SHIFT_METRICS = ("loudness_motion_spearman", "av_align", "beat_score")

DEFINITIONS = {
    "settle_ratio": "motion energy (mean |frame difference|) from eval.settle_delay_s into detected silence over "
                    "motion energy outside silence, (m_silent + 1e-4) / (m_loud + 1e-4); lower = settles; files "
                    "without detected silence are left out (trainer/eval/metrics.py silence_settle_ratio)",
    "loudness_motion_spearman": "Spearman rank correlation of the audio frame RMS with motion energy over music "
                                "frames (scipy.stats.spearmanr)",
    "av_align": "AV-Align (Yariv et al. 2024, TempoTokens av_align.py): librosa onset_detect on audio at 22.05 kHz "
                "vs local maxima of the mean Farneback optical-flow magnitude (OpenCV); an onset is matched when "
                "a video peak lies strictly within +-1/fps; IoU = I / (|A| + |V| - I); peaks on music frames only",
    "beat_score": "beat alignment score in Bailando's form (Li et al. 2022) for visualisers: mean over the "
                  "timeline's beats of exp(-d^2 / 2 sigma^2), d = distance to the nearest local maximum of motion "
                  "energy (s); music frames only",
    "retrieval_top1": "audio retrieval across the folder: s_ij = Spearman over audio j's music frames of video i's "
                      "motion with audio j's RMS (common length); the fraction of videos whose own audio scores "
                      "highest (ties count half a rank); floor = chance 1/N",
    "retrieval_mean_rank": "mean rank of the video's own audio among the N files (1 = best, ties averaged); "
                           "floor = chance (N + 1) / 2",
    "shift_test_win_rate": "per file, the fraction of (shift, metric) comparisons where the true alignment scores "
                           "higher than the audio circularly shifted by 1.5-6 s (ties count half; metrics: "
                           "loudness_motion_spearman, av_align, beat_score), averaged over files; floor = chance 0.5",
}
for _m in SHIFT_METRICS:
    DEFINITIONS[f"shift_test_{_m}"] = (f"{_m} with the true alignment (generated) vs the mean over circular shifts "
                                       "of the audio by 1.5-6 s (floor)")


# ------------------------------------------------------------------ the folder


def list_audio_files(folder: str | Path) -> list[Path]:
    """The audio files directly inside ``folder`` (by suffix, sorted by name). An error names the folder when
    it is missing, not a folder, unreadable or holds no audio file."""
    folder = Path(folder)
    if not folder.exists():
        raise AudioError(f"--audio-dir {folder}: not found")
    if not folder.is_dir():
        raise AudioError(f"--audio-dir {folder}: not a directory")
    try:
        entries = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    except OSError as e:
        raise AudioError(f"--audio-dir {folder}: cannot be read ({e.strerror or e})") from None
    if not entries:
        raise AudioError(f"--audio-dir {folder}: no audio files (looked for {' '.join(AUDIO_SUFFIXES)})")
    return entries


class FrameCurves:
    """Per-frame curves of a video that arrives in chunks: motion energy (frame difference) and the mean
    optical-flow magnitude. The last frame of each chunk is kept so the next chunk's first difference is right."""

    def __init__(self) -> None:
        self._prev: np.ndarray | None = None
        self._motion: list[np.ndarray] = []
        self._flow: list[np.ndarray] = []

    def __call__(self, chunk: np.ndarray) -> None:  # chunk uint8 (n, H, W, 3)
        if len(chunk) == 0:
            return
        x = chunk if self._prev is None else np.concatenate([self._prev[None], chunk])
        skip = 0 if self._prev is None else 1
        self._motion.append(motion_energy(x)[skip:])
        self._flow.append(farneback_flow_magnitude(x)[skip:])
        self._prev = chunk[-1]

    def curves(self) -> tuple[np.ndarray, np.ndarray]:
        """(motion [T], flow [T]); value 0 repeats value 1 as both definitions do (also across a 1-frame first chunk)."""
        m = np.concatenate(self._motion) if self._motion else np.zeros(0)
        f = np.concatenate(self._flow) if self._flow else np.zeros(0)
        if len(m) > 1:
            m[0], f[0] = m[1], f[1]
        return m, f


@dataclass
class FileAudio:
    """What a video is scored against: one audio file's per-frame curves and event times."""

    rms: np.ndarray          # (T,) linear frame RMS
    is_silent: np.ndarray    # (T,) 0/1 detected silence
    onsets_s: np.ndarray     # librosa onset times (s)
    beats_s: np.ndarray      # the timeline's beat estimate (s): shared.timeline.estimate_beats
    fps: float

    @property
    def n_frames(self) -> int:
        return len(self.rms)

    def cut(self, n: int) -> "FileAudio":
        """The first ``n`` frames (and the events before them)."""
        d = n / self.fps
        return FileAudio(self.rms[:n], self.is_silent[:n], self.onsets_s[self.onsets_s < d],
                         self.beats_s[self.beats_s < d], self.fps)

    def rolled(self, k: int) -> "FileAudio":
        """Circularly shifted later by ``k`` frames (what was at frame t is at t + k, wrapping)."""
        d = self.n_frames / self.fps
        s = k / self.fps
        return FileAudio(np.roll(self.rms, k), np.roll(self.is_silent, k), np.sort((self.onsets_s + s) % d),
                         np.sort((self.beats_s + s) % d), self.fps)


@dataclass
class FileRun:
    """One sampled file: its audio side, the generated video's curves and where the mp4 is."""

    name: str
    audio: FileAudio
    motion: np.ndarray
    flow: np.ndarray
    video: Path
    info: dict[str, Any] = field(default_factory=dict)


def score_pair(motion: np.ndarray, flow: np.ndarray, audio: FileAudio, settle_delay_s: float,
               beat_sigma_s: float) -> dict[str, float]:
    """The per-file metrics of a video's curves against an audio side of the same length (NaN where undefined)."""
    fps = audio.fps
    n = min(len(motion), audio.n_frames)
    motion, flow, audio = motion[:n], flow[:n], audio.cut(n)
    spans = spans_from_mask(audio.is_silent)
    music = music_mask(n, spans, fps, MUSIC_GUARD_S)
    return {"settle_ratio": silence_settle_ratio(motion, spans, fps, settle_delay_s) if spans else float("nan"),
            "loudness_motion_spearman": spearman_on(audio.rms, motion, music),
            "av_align": av_align(audio.onsets_s, flow, music, fps),
            "beat_score": beat_score(audio.beats_s, motion, music, fps, beat_sigma_s)}


def retrieval_scores(runs: Sequence[FileRun]) -> np.ndarray:
    """s_ij (N, N): Spearman of video i's motion with audio j's RMS over audio j's music frames, on the first
    min(T_i, T_j) frames (files differ in length; the per-variant eval's clips do not); undefined -> 0 as there."""
    n = len(runs)
    s = np.zeros((n, n))
    for i, vi in enumerate(runs):
        for j, aj in enumerate(runs):
            t = min(len(vi.motion), aj.audio.n_frames)
            a = aj.audio.cut(t)
            v = spearman_on(a.rms, vi.motion[:t], music_mask(t, spans_from_mask(a.is_silent), a.fps, MUSIC_GUARD_S))
            s[i, j] = v if np.isfinite(v) else 0.0
    return s


def shift_frames(n_frames: int, fps: float) -> list[int]:
    """The shift test's shifts in frames: SHIFTS_S that leave MIN_SHIFT_MARGIN_S before wrapping around."""
    duration = n_frames / fps
    return sorted({int(round(s * fps)) for s in SHIFTS_S if s <= duration - MIN_SHIFT_MARGIN_S})


# ------------------------------------------------------------------ sampling


def sample_one(model, path: Path, video_path: Path, settings, progress: bool) -> FileRun:
    """Sample ``path`` to ``video_path`` and collect its curves. Raises SampleError for unusable audio."""
    from shared.audio_io import resample
    from shared.timeline import estimate_beats
    from trainer.sample import SampleError, audio_conditioning, one_line, sample_file

    cfg = model.cfg
    fps = cfg.render.fps
    try:
        wave, sr = load_audio(path)
    except AudioLoadError as e:
        raise SampleError(one_line(e)) from None
    n = frame_count(len(wave), sr, fps)
    if n == 0:
        raise SampleError(f"audio file {str(path)!r}: {len(wave) / sr:.4f} s is shorter than one frame at {fps:g} fps")
    _, _, info = audio_conditioning(wave, sr, cfg, n)  # resampled to data.sample_rate, as in training
    # scored against the audio's own (offline) silence, whatever a causal model is conditioned on
    silent = info["features"][:, info["names"].index("is_silent")].astype(np.float32)
    train_sr = cfg.data.sample_rate  # the timeline's beat estimate is made at the training rate
    beats = estimate_beats(resample(wave, sr, train_sr) if sr != train_sr else wave, train_sr).beat_times(n / fps)
    audio = FileAudio(rms=np.asarray(info["rms"], np.float64), is_silent=np.asarray(silent, np.float64),
                      onsets_s=audio_onset_times(wave, sr), beats_s=beats, fps=fps).cut(n)
    curves = FrameCurves()
    summary = sample_file(path, video_path, model, settings, progress=progress, on_frames=curves)
    motion, flow = curves.curves()
    return FileRun(name=path.name, audio=audio, motion=motion, flow=flow, video=video_path,
                   info={"duration_s": round(len(wave) / sr, 4), "sample_rate": sr, "frames": n,
                         "wall_s": round(summary["wall_s"], 3),
                         "detected_silences_s": [[round(a / fps, 4), round(b / fps, 4)]
                                                 for a, b in spans_from_mask(silent)]})


# ------------------------------------------------------------------ rows


def stat(values: Sequence[float | None], cfg, seed: int = 0) -> dict[str, Any]:
    """A report entry {"mean", "ci", "n"} over the files where the value is defined (bootstrap over them)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(float(x))], dtype=np.float64)
    return entry(nanmean_of(v), len(v), cfg, seed)


def row(generated: Sequence[float | None], floor: Sequence[float | None] | None, cfg, note: str | None = None
        ) -> dict[str, Any]:
    return {"generated": stat(generated, cfg), "floor": None if floor is None else stat(floor, cfg),
            "ceiling": None, "note": note}


def build_report(runs: list[FileRun], skipped: list[dict[str, str]], cfg, checkpoint: str, folder: Path,
                 videos: list[dict[str, str]], plots: list[dict[str, str]], seconds: float) -> dict[str, Any]:
    """The report dict (schema of report.json) for the scored files."""
    ev = cfg.eval
    delay = ev.settle_delay_s
    sigma = float(ev.beat_sigma_s)
    boots = int(ev.bootstrap)
    n = len(runs)
    per_file, true_scores, floor_scores = [], [], []
    for i, r in enumerate(runs):
        true = score_pair(r.motion, r.flow, r.audio, delay, sigma)
        if n >= 2:  # floor: the next file's audio (different audio), cut to the common length
            other = runs[(i + 1) % n]
            floor = score_pair(r.motion, r.flow, other.audio, delay, sigma)
        else:
            floor = {m: None for m in PER_FILE_METRICS}
        shifts = shift_frames(r.audio.n_frames, r.audio.fps)
        shifted = [score_pair(r.motion, r.flow, r.audio.rolled(k), delay, sigma) for k in shifts]
        true_scores.append(true)
        floor_scores.append(floor)
        per_file.append({"file": r.name, **r.info, "video": videos[i]["path"] if i < len(videos) else None,
                         "metrics": true, "floor_audio": runs[(i + 1) % n].name if n >= 2 else None, "floor": floor,
                         "shift_test": {"shifts_s": [round(k / r.audio.fps, 4) for k in shifts],
                                        **{m: [s[m] for s in shifted] for m in SHIFT_METRICS}}})

    one_file_note = "one file: no other audio for the floor" if n < 2 else None
    metrics: dict[str, Any] = {}
    for m in PER_FILE_METRICS:
        note = one_file_note
        if m == "settle_ratio":
            with_sil = sum(1 for p in per_file if p["detected_silences_s"])
            note = f"{with_sil} of {n} files have detected silence" + (f"; {one_file_note}" if one_file_note else "")
        metrics[m] = row([t[m] for t in true_scores], None if n < 2 else [f[m] for f in floor_scores], cfg, note)

    # retrieval across the folder
    retrieval: dict[str, Any]
    if n < 2:
        retrieval = {"skipped": f"{n} file: retrieval needs at least 2 audio files in the folder"}
        metrics["retrieval_top1"] = {"generated": {"mean": None, "ci": None, "n": 0}, "floor": None, "ceiling": None,
                                     "note": retrieval["skipped"]}
        metrics["retrieval_mean_rank"] = dict(metrics["retrieval_top1"])
    else:
        s = retrieval_scores(runs)
        ranks, top1 = true_audio_ranks(s)
        chance_top1, chance_rank = chance(n)
        retrieval = {"skipped": None, "files": [r.name for r in runs], "scores": s.tolist(), "ranks": ranks.tolist(),
                     "top1_credit": top1.tolist()}
        metrics["retrieval_top1"] = {"generated": stat(top1, cfg), "floor": fixed(chance_top1, n), "ceiling": None,
                                     "note": f"floor = chance 1/{n}"}
        metrics["retrieval_mean_rank"] = {"generated": stat(ranks, cfg), "floor": fixed(chance_rank, n),
                                          "ceiling": None, "note": f"lower is better; floor = chance ({n}+1)/2"}

    # shift test: per file, the share of its (shift, metric) comparisons the true alignment wins; the CI is over
    # files (comparisons within a file are not independent)
    win_rates, n_comparisons = [], 0
    for p in per_file:
        wins = [1.0 if t > v else 0.5 if t == v else 0.0
                for m in SHIFT_METRICS for t in [p["metrics"][m]] for v in p["shift_test"][m]
                if math.isfinite(t) and math.isfinite(v)]
        p["shift_test"]["win_rate"] = float(np.mean(wins)) if wins else None
        win_rates.append(p["shift_test"]["win_rate"])
        n_comparisons += len(wins)
    for m in SHIFT_METRICS:
        shifted_means = [float(np.nanmean(p["shift_test"][m])) if np.isfinite(p["shift_test"][m]).any() else None
                         for p in per_file if p["shift_test"][m]]
        metrics[f"shift_test_{m}"] = row([p["metrics"][m] for p in per_file if p["shift_test"][m]], shifted_means,
                                         cfg, "floor = the same video against its audio circularly shifted")
    no_shift = [p["file"] for p in per_file if not p["shift_test"]["shifts_s"]]
    scored = sum(r is not None for r in win_rates)
    metrics["shift_test_win_rate"] = {
        "generated": stat(win_rates, cfg), "floor": fixed(0.5, scored), "ceiling": None,
        "note": (f"per file over its {n_comparisons // max(1, scored)} (shift, metric) comparisons on average; "
                 "floor = chance" +
                 (f"; too short for a shift of {SHIFTS_S[0]:g} s + {MIN_SHIFT_MARGIN_S:g} s: {', '.join(no_shift)}"
                  if no_shift else ""))}

    definitions = dict(DEFINITIONS)
    definitions["beat_score"] += f" (sigma = {sigma:g} s)"
    definitions["settle_ratio"] += f" (eval.settle_delay_s = {delay:g} s)"
    return {
        "title": f"Synesthete evaluation on a folder of audio: {folder}",
        "config": {"eval": cfg.eval.model_dump(), "inference": cfg.inference.model_dump(),
                   "render": {"fps": cfg.render.fps, "resolution": cfg.render.resolution},
                   "data": {"sample_rate": cfg.data.sample_rate}, "beat_sigma_s": sigma, "bootstrap": boots,
                   "music_after_silence_s": MUSIC_GUARD_S, "shifts_s": list(SHIFTS_S)},
        "checkpoint": checkpoint,
        "audio_dir": str(folder),
        "variants": {VARIANT: {"n_clips": n, "clips": [r.name for r in runs], "metrics": metrics}},
        "per_file": per_file,
        "skipped": skipped,
        "retrieval": retrieval,
        "videos": videos,
        "plots": plots,
        "definitions": definitions,
        "notes": ["No ground truth exists for real audio: every ceiling is n/a. Floors: the video scored against "
                  "another file's audio (the next file by name), chance for retrieval, circularly shifted audio "
                  "for the shift test.",
                  "Silence is detected by the timeline (is_silent); music frames exclude it and the "
                  f"{MUSIC_GUARD_S:g} s after it."],
        "seconds": round(seconds, 2),
    }


# ------------------------------------------------------------------ plots


def plot_shift_test(path: Path, per_file: list[dict[str, Any]]) -> Path:
    """Loudness-motion Spearman of each file against its audio shifted by s seconds (s = 0: true alignment)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for p in per_file:
        xs = [0.0] + p["shift_test"]["shifts_s"]
        ys = [p["metrics"]["loudness_motion_spearman"]] + p["shift_test"]["loudness_motion_spearman"]
        ax.plot(xs, [np.nan if y is None else y for y in ys], "o-", ms=3, lw=1, label=p["file"])
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("circular shift of the audio (s); 0 = true alignment")
    ax.set_ylabel("loudness-motion Spearman")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_retrieval(path: Path, names: list[str], scores: np.ndarray) -> Path:
    """The retrieval score matrix: row = video, column = candidate audio (the diagonal is the true pairing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    fig, ax = plt.subplots(figsize=(2.2 + 0.7 * n, 1.6 + 0.6 * n))
    im = ax.imshow(scores, cmap="viridis", vmin=-1, vmax=1)
    ax.set_xticks(range(n), [f"audio {i}" for i in range(n)], fontsize=7)
    ax.set_yticks(range(n), [f"video {i}: {nm[:24]}" for i, nm in enumerate(names)], fontsize=7)
    for i in range(n):
        for j in range(n):
            if np.isfinite(scores[i, j]):
                ax.text(j, i, f"{scores[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ markdown


def _fmt(s: dict[str, Any] | None) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    ci = s.get("ci")
    return f"{s['mean']:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")


def report_markdown(report: dict[str, Any]) -> str:
    """report.md of an audio-folder report: the metric table, then one line per file."""
    lines = [f"# {report['title']}", "", f"- checkpoint: {report['checkpoint']}"]
    for name, v in report["variants"].items():
        lines += ["", f"## {name} ({v['n_clips']} files)", "",
                  "| metric | n | generated (mean [95% CI]) | floor | ceiling | note |", "|---|---|---|---|---|---|"]
        for m, r in v["metrics"].items():
            lines.append(f"| {m} | {r['generated']['n']} | {_fmt(r['generated'])} | {_fmt(r['floor'])} | "
                         f"{_fmt(r['ceiling'])} | {r['note'] or ''} |")
    lines += ["", "## Files", "", "| file | s | rate | detected silences (s) | " + " | ".join(PER_FILE_METRICS) + " |",
              "|---|---|---|---|" + "---|" * len(PER_FILE_METRICS)]
    for p in report["per_file"]:
        vals = " | ".join("n/a" if p["metrics"][m] is None or not math.isfinite(p["metrics"][m])
                          else f"{p['metrics'][m]:.3g}" for m in PER_FILE_METRICS)
        lines.append(f"| {p['file']} | {p['duration_s']:.2f} | {p['sample_rate']} | {p['detected_silences_s']} | {vals} |")
    for s in report["skipped"]:
        lines.append(f"- skipped {s['file']}: {s['reason']}")
    if report["retrieval"].get("skipped"):
        lines += ["", f"Retrieval skipped: {report['retrieval']['skipped']}"]
    lines += ["", "## Definitions", ""] + [f"- **{k}**: {v}" for k, v in report["definitions"].items()]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    lines += ["", "## Plots", ""] + [f"![{p['title']}]({p['path']})" for p in report["plots"]]
    lines += ["", "## Videos", ""] + [f"- [{v['clip']}]({v['path']})" for v in report["videos"]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the driver


def evaluate_audio_dir(model, folder: str | Path, out: str | Path, seed: int | None = None, progress: bool = True,
                       log: Callable[[str], None] = print) -> tuple[dict[str, Any], Path]:
    """Sample every audio file in ``folder`` into ``out``/videos, score them, write report.json, report.md and
    report.html into ``out``; returns (report dict, report.json path)."""
    from trainer.eval import plots as P
    from trainer.eval.html import write_report_html
    from trainer.eval.report import json_number
    from trainer.sample import SampleError, SampleSettings

    t0 = time.perf_counter()
    folder, out = Path(folder), Path(out)
    files = list_audio_files(folder)
    try:
        (out / "videos").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"--out {out}: cannot be created ({e.strerror or e})") from None
    cfg = model.cfg
    settings = SampleSettings(seed=cfg.inference.seed if seed is None else seed)
    runs, skipped, videos, seen = [], [], [], {}
    for k, path in enumerate(files):
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as e:
            skipped.append({"file": path.name, "reason": f"cannot be read ({e.strerror or e})"})
            continue
        if digest in seen:  # retrieval and floors need different audio
            skipped.append({"file": path.name, "reason": f"the same bytes as {seen[digest]}"})
            continue
        video = out / "videos" / f"{k:03d}_{path.stem}.mp4"
        log(f"eval --audio-dir: [{k + 1}/{len(files)}] {path.name}")
        try:
            run = sample_one(model, path, video, settings, progress)
        except SampleError as e:
            skipped.append({"file": path.name, "reason": str(e)})
            log(f"eval --audio-dir: skipped {path.name}: {e}")
            continue
        seen[digest] = path.name
        runs.append(run)
        videos.append({"variant": VARIANT, "clip": path.name, "kind": "generated",
                       "path": str(video.relative_to(out))})
    if not runs:
        raise AudioError(f"--audio-dir {folder}: none of the {len(files)} audio files could be used "
                         f"({'; '.join(s['file'] + ': ' + s['reason'] for s in skipped)})")
    report = build_report(runs, skipped, cfg, str(model.step_dir), folder, videos, [], 0.0)
    plots = []
    for i, (r, p) in enumerate(zip(runs, report["per_file"])):
        if i >= MAX_TIMELINE_PLOTS:
            break
        onset_frames = np.floor(r.audio.onsets_s * r.audio.fps).astype(int)
        path = P.plot_clip_timeline(out / "plots" / f"timeline_{i:03d}.png", r.audio.fps, r.audio.rms, onset_frames,
                                    {"generated": r.motion}, spans_from_mask(r.audio.is_silent),
                                    title=f"{r.name}: audio RMS and the generated video's motion")
        plots.append({"title": f"{r.name}: loudness and motion", "path": str(path.relative_to(out))})
    plots.append({"title": "shift test: loudness-motion Spearman against shifted audio",
                  "path": str(plot_shift_test(out / "plots" / "shift_test.png", report["per_file"]).relative_to(out))})
    if report["retrieval"].get("scores"):
        path = plot_retrieval(out / "plots" / "retrieval.png", [r.name for r in runs],
                              np.asarray(report["retrieval"]["scores"], dtype=np.float64))
        plots.append({"title": "retrieval scores (rows: videos, columns: audio)", "path": str(path.relative_to(out))})
    report["plots"] = plots
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report = json_number(report)
    pj = atomic_write_json(out / "report.json", report, indent=2, allow_nan=False)
    atomic_write_text(out / "report.md", report_markdown(report))
    write_report_html(report, out)
    return report, pj


# ------------------------------------------------------------------ the command


def run_command(args, checkpoint: Path, out: Path) -> int:
    """``trainer eval --audio-dir DIR``: check the folder first (exit 2 before any model is loaded), sample and
    score every file, write the report, log the scalars to TensorBoard under the evaluated run."""
    import sys

    import torch

    from shared.cli import config_or_exit, fail
    from shared.errors import SynestheteError
    from trainer.eval.scalars import log_eval_scalars
    from trainer.runtime import pick_device
    from trainer.sample import SampleError, load_sampling_model, one_line

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    try:
        files = list_audio_files(args.audio_dir)
        model = load_sampling_model(checkpoint, "cpu", overrides=lambda saved: config_or_exit(args, base=saved))
        model.to(pick_device(model.cfg.run.device))
        log(f"eval --audio-dir: {len(files)} audio files in {args.audio_dir} -> {out}")
        with torch.no_grad():
            report, pj = evaluate_audio_dir(model, args.audio_dir, out, log=log)
    except (SynestheteError, SampleError) as e:
        fail(one_line(e))
    tb = log_eval_scalars(report, model.step_dir, model.step)  # tags eval/audio_dir/METRIC/{generated,floor}
    v = report["variants"][VARIANT]
    log(f"eval --audio-dir: wrote {pj}, report.md and report.html ({v['n_clips']} files, "
        f"{len(report['skipped'])} skipped)" + (f"; TensorBoard scalars in {tb}" if tb else
                                                 "; no TensorBoard scalars (the shipped model is never written)"))
    for name, r in v["metrics"].items():
        g, f = r["generated"], r["floor"]
        log(f"  {name:38s} generated {_fmt(g):>24s}   floor {_fmt(f):>24s}   n={g['n']}")
    return 0
