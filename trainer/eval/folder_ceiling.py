"""The ceiling of a folder of audio (``trainer eval --audio-dir``): the teacher on the same files.

Real audio has no ground-truth video, but the ground-truth *visualizers* can be rendered on it: the composite
plan a model learns from (``datagen visualize --visualizer mix``), on the file's timeline, as a shard stores it
(:func:`trainer.teacher.file_ground_truth`, which the command passes in as ``teacher``; this package does not
import the generator). Each file's teacher video is measured exactly as its generated video is (motion and flow
of the frames, :class:`~trainer.eval.generate.FrameCurves`) and scored against the same audio by the same rows
(:func:`trainer.eval.rows.folder_section`): per file, the shift test, retrieval across the folder, each with its
95% CI over files. Those entries are the ceiling column of the report; per file, ``ceiling`` holds its values.

The same frames, encoded and decoded by the model's VAE, give the VAE's reconstruction PSNR on these files (the
verdict's warning floor).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from trainer.eval import metrics as M
from trainer.eval import rows
from trainer.eval.generate import FrameCurves
from trainer.eval.registry import FileRun

# an audio file -> (its teacher frames uint8 (T, R, R, 3), what to record about them, e.g. the plan's seed)
Teacher = Callable[[Path], tuple[np.ndarray, dict[str, Any]]]

NOTE = ("Ceiling: the ground-truth visualizers (the teacher: the composite plan a model learns from, seeded by the "
        "file name, as `datagen visualize --visualizer mix --seed PLAN_SEED` renders it, JPEG-coded as in the shards) "
        "rendered on each file and scored against the same audio by the same rows; the CI is over files.")
NO_CEILING = "No ground truth exists for real audio: every ceiling is n/a."  # the note without a teacher


def teacher_runs(model, runs: list[FileRun], paths: dict[str, Path], teacher: Teacher
                 ) -> tuple[list[FileRun], list[float], list[dict[str, Any]]]:
    """Per generated run: the teacher's run on the same file and audio, the VAE's PSNR on its frames, its info."""
    out, psnrs, infos = [], [], []
    for r in runs:
        frames, info = teacher(paths[r.name])
        n = min(len(frames), r.audio.n_frames)
        curves = FrameCurves()
        curves(frames[:n])
        out.append(FileRun(name=r.name, audio=r.audio.cut(n), video=curves.side(), path=r.path, info=dict(r.info)))
        with torch.no_grad():
            psnrs.append(M.psnr(model.decode(model.encode(frames)), frames))
        infos.append({**info, "frames": int(n), "vae_psnr_db": psnrs[-1]})
    return out, psnrs, infos


def add_ceiling(rep: dict[str, Any], truth: list[FileRun], infos: list[dict[str, Any]], cfg) -> None:
    """Fill the folder report's ceiling entries and each file's ``ceiling`` values from the teacher's runs."""
    section, per_file, _ = rows.folder_section(truth, [], cfg)
    for name, row in rep["variants"][rows.FOLDER_VARIANT]["metrics"].items():
        row["ceiling"] = section["metrics"][name]["generated"]
    for p, t, info in zip(rep["per_file"], per_file, infos):
        p["ceiling"] = t["metrics"]
        p["teacher"] = {**info, "shift_test_win_rate": t["shift_test"]["win_rate"]}


def folder_teacher(model, rep: dict[str, Any], runs: list[FileRun], files: list[Path], teacher: Teacher | None,
                   log) -> float | None:
    """The teacher's ceiling into ``rep`` (and its note and timing); returns the VAE's mean PSNR on its frames
    (None without a teacher)."""
    if teacher is None:
        return None
    t0 = time.perf_counter()
    log(f"eval --audio-dir: the teacher (ground-truth visualizers) on {len(runs)} file(s) for the ceiling")
    truth, psnrs, infos = teacher_runs(model, runs, {p.name: p for p in files}, teacher)
    add_ceiling(rep, truth, infos, model.cfg)
    rep["notes"] = [rep["notes"][0].replace(NO_CEILING, NOTE), *rep["notes"][1:]]
    rep["teacher"] = {"seconds": round(time.perf_counter() - t0, 2), "vae_psnr_db": M.nanmean(psnrs)}
    return M.nanmean(psnrs)
