"""The studio's background worker: one job at a time (one song, one or two models), never on the page's thread.

A job samples the song with each model (:func:`trainer.eval.generate.generate_file`, as ``trainer eval
--audio-dir`` does), renders the teacher's video of the song once (the ``teacher`` callable the command passes:
:func:`trainer.teacher.file_ground_truth`'s frames), and scores every video against the song with the eval's
per-file rows (:func:`trainer.eval.rows.score_pair`, the AV offset included). Its result holds the timeline the
page draws: loudness, band energies, onsets, beats, detected silence, each video's motion and brightness.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trainer.eval import metrics as M
from trainer.eval.report import json_number
from trainer.studio.catalog import Catalog, slug

Teacher = Callable[[Any, Path], np.ndarray]  # (cfg, audio path) -> the ground-truth frames uint8 (T, R, R, 3)


@dataclass
class Job:
    id: int
    audio: str
    models: list[str]
    guidance: float | None
    style_seed: int | None
    status: str = "queued"        # queued, running, done, error
    progress: float = 0.0
    message: str = "queued"
    result: dict[str, Any] | None = None
    started: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "audio": self.audio, "models": self.models, "status": self.status,
                "progress": round(self.progress, 3), "message": self.message, "result": self.result}


def curve(x: np.ndarray, digits: int = 5) -> list[float]:
    return [round(float(v), digits) for v in np.asarray(x, np.float64)]


class Worker:
    """Jobs in a queue, run by one daemon thread; models stay loaded between jobs."""

    def __init__(self, catalog: Catalog, teacher: Teacher | None, log: Callable[[str], None] = print,
                 overrides: Callable[[dict], Any] | None = None):
        """``overrides``: the saved config tree -> the config a model runs with (the command's --config and
        dotted overrides layered over it); None: as saved."""
        self.catalog, self.teacher, self.log, self.overrides = catalog, teacher, log, overrides
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._queue: queue.Queue[Job] = queue.Queue()
        self._models: dict[Path, Any] = {}
        self._teacher_cache: dict[tuple, dict[str, Any]] = {}
        self._thread = threading.Thread(target=self._loop, name="studio-worker", daemon=True)
        self._thread.start()

    def submit(self, audio: str, models: list[str], guidance: float | None, style_seed: int | None) -> Job:
        """A new job (the names checked now: a refused one raises before anything is queued)."""
        self.catalog.audio_path(audio)
        for m in models:
            self.catalog.model_path(m)
        job = Job(next(self._ids), audio, list(models), guidance, style_seed)
        self.jobs[job.id] = job
        self._queue.put(job)
        return job

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            job.status, job.message = "running", "starting"
            try:
                import torch  # here, not before the first job: torch takes seconds to import

                with torch.no_grad():
                    job.result = json_number(self.run(job))
                job.status, job.progress, job.message = "done", 1.0, "done"
            except Exception as e:  # noqa: BLE001 (the page shows it; the worker goes on with the next job)
                job.status, job.message = "error", f"{type(e).__name__}: {e}".splitlines()[0]
                self.log(f"studio: job {job.id} failed: {job.message}")

    def model(self, path: Path):
        if path not in self._models:
            from trainer.runtime import pick_device
            from trainer.sample import load_sampling_model

            model = load_sampling_model(path, "cpu", overrides=self.overrides)
            self._models[path] = model.to(pick_device(model.cfg.run.device))
        return self._models[path]

    def run(self, job: Job) -> dict[str, Any]:
        """Every model's video and scores, the teacher's, and the song's timeline."""
        path = self.catalog.audio_path(job.audio)
        steps = len(job.models) + (1 if self.teacher is not None else 0)
        videos, first = [], None
        for k, model_id in enumerate(job.models):
            job.message = f"loading {model_id}"
            model = self.model(self.catalog.model_path(model_id))

            def tick(frac: float, k=k) -> None:
                job.progress = (k + frac) / steps

            run, entry = self.generate(job, model, model_id, path, tick)
            videos.append(entry)
            first = first or (model, run)
        model, run = first
        timeline = song_timeline(model.cfg, path, run)
        teacher, why = None, None if self.teacher is not None else "not asked for (--no-teacher)"
        if self.teacher is not None:
            job.message = "rendering the teacher"
            try:
                teacher = self.teacher_video(model.cfg, path, run)
            except Exception as e:  # noqa: BLE001 (no renderer here, say: the generated video still plays)
                why = f"{type(e).__name__}: {e}".splitlines()[0]
                self.log(f"studio: no teacher video: {why}")
        return {"audio": job.audio, "fps": model.cfg.render.fps, "videos": videos, "teacher": teacher,
                "teacher_error": why, "timeline": timeline}

    def generate(self, job: Job, model, model_id: str, path: Path, tick: Callable[[float], None]):
        from shared.audio_io import load_audio
        from shared.timeline import frame_count
        from trainer.eval.generate import generate_file
        from trainer.eval.rows import score_pair
        from trainer.sample import SampleSettings

        cfg = model.cfg
        wave, sr = load_audio(path)
        total = max(1, frame_count(len(wave), sr, cfg.render.fps))
        bright: list[np.ndarray] = []

        def on_frames(chunk: np.ndarray) -> None:
            bright.append(M.brightness(chunk))
            tick(min(1.0, sum(len(b) for b in bright) / total))

        guidance = job.guidance if job.guidance is not None else cfg.inference.audio_guidance_scale
        settings = SampleSettings(seed=cfg.inference.seed, style_seed=job.style_seed, guidance=guidance)
        out = self.catalog.out_dir / f"{job.id:04d}_{slug(str(Path(job.audio).with_suffix('')))}_{slug(model_id)}.mp4"
        job.message = f"generating with {model_id}"
        run = generate_file(model, path, out, settings, progress=False, on_frames=on_frames)
        entry = {"model": model_id, "guidance": guidance, "style_seed": job.style_seed,
                 "url": f"/files/{out.name}", "file": out.name,
                 "metrics": score_pair(run.video, run.audio, cfg, offset=True),
                 "motion": curve(run.video.motion), "brightness": curve(np.concatenate(bright) if bright else [])}
        return run, entry

    def teacher_video(self, cfg, path: Path, run) -> dict[str, Any]:
        """The teacher's mp4 of the song (rendered once per song and frame rate) and its scores."""
        from shared.video import Mp4Writer
        from trainer.eval.generate import FrameCurves
        from trainer.eval.rows import score_pair

        key = (str(path.resolve()), cfg.render.fps, cfg.render.resolution)
        if key not in self._teacher_cache:
            from shared.audio_io import load_audio

            frames = self.teacher(cfg, path)
            tag = f"{zlib.crc32(key[0].encode()):08x}"  # a folder song and an upload may share a name
            out = self.catalog.out_dir / f"teacher_{slug(path.stem)}_{tag}_{cfg.render.resolution}px.mp4"
            wave, sr = load_audio(path)
            with Mp4Writer(out, cfg.render.fps, frames.shape[2], frames.shape[1], audio=(wave, sr)) as w:
                w.write(frames)
            curves = FrameCurves()
            curves(frames)
            self._teacher_cache[key] = {"model": "teacher", "url": f"/files/{out.name}", "file": out.name,
                                        "video": curves.side(), "motion": curve(curves.side().motion),
                                        "brightness": curve(M.brightness(frames))}
        cached = self._teacher_cache[key]
        scores = score_pair(cached["video"], run.audio, cfg, offset=True)
        return {k: v for k, v in cached.items() if k != "video"} | {"metrics": scores}


def song_timeline(cfg, path: Path, run) -> dict[str, Any]:
    """What the page draws under the videos, per frame unless noted: loudness (log RMS), the band energies
    (log10, one row per band), detected silence, and the onset and beat times (s) the eval scores against."""
    from shared.audio_io import load_audio
    from trainer.sample import audio_conditioning

    wave, sr = load_audio(path)
    n = run.audio.n_frames
    _, _, info = audio_conditioning(wave, sr, cfg, n)
    feats, names = np.asarray(info["features"], np.float64)[:n], list(info["names"])
    bands = [i for i, name in enumerate(names) if name.startswith("band_")]
    return {"n": n, "fps": cfg.render.fps, "duration_s": n / cfg.render.fps,
            "loudness": curve(feats[:, names.index("log_rms")], 4),
            "bands": [curve(np.log10(feats[:, i] + 1e-5), 3) for i in bands],
            "silent": [int(v > 0.5) for v in feats[:, names.index("is_silent")]],
            "onsets_s": curve(run.audio.onsets_s, 3), "beats_s": curve(run.audio.beats_s, 3)}
