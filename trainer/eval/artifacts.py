"""Plots and videos beside the report: per-variant metric bars, per-clip timelines, side-by-side mp4s; for a
folder of audio, per-file timelines, the shift test and the retrieval matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainer.eval import plots
from trainer.eval.clips import Clip
from trainer.eval.metrics import spans_from_mask
from trainer.eval.registry import FileRun

BAR_METRICS = ("loudness_motion_spearman", "loudness_brightness_spearman", "bands_colour_geometry_r2", "av_align",
               "beat_alignment_score", "silence_settle_ratio", "retrieval_top1", "style_diversity")


SIDE_BY_SIDE_PX = 256  # each panel's side in the report's videos (scaled by the encoder: watchable, and cheap)


def write_side_by_side(path: Path, gt: np.ndarray, gen: np.ndarray, floor: np.ndarray, clip: Clip, fps: float) -> Path:
    """mp4: ground truth | generated (own audio) | floor (generated from other audio), the clip's audio muxed; each
    panel scaled to :data:`SIDE_BY_SIDE_PX` (never down) by the encoder."""
    from shared.video import Mp4Writer

    t = min(len(gt), len(gen), len(floor))
    h = gt.shape[1]
    sep = np.full((t, h, 2, 3), 255, np.uint8)
    video = np.concatenate([gt[:t], sep, gen[:t], sep, floor[:t]], axis=2)  # (T, H, 3W+4, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    k = max(1.0, SIDE_BY_SIDE_PX / h)
    size = (int(round(video.shape[2] * k)), int(round(h * k)))
    with Mp4Writer(path, fps, video.shape[2], h, audio=(clip.wave, clip.sr), out_size=size) as wr:
        for i in range(0, t, 64):
            wr.write(video[i:i + 64])
    return path


def metric_bar_plot(out: Path, variant: str, metrics: dict[str, dict[str, Any]]) -> dict[str, str] | None:
    chosen = {name: {k: metrics[name][k]["mean"] for k in ("floor", "generated", "ceiling")}
              for name in BAR_METRICS if name in metrics and metrics[name]["generated"]["mean"] is not None}
    if not chosen:
        return None
    cis = {name: {k: metrics[name][k]["ci"] for k in ("floor", "generated", "ceiling")} for name in chosen}
    p = plots.plot_metric_bars(out / f"metrics_{variant}.png", chosen, series=("floor", "generated", "ceiling"), cis=cis)
    return {"title": f"{variant}: floor / generated / ceiling (95% CI)", "path": str(p.relative_to(out))}


def timeline_plot(out: Path, stem: str, fps: float, rms: np.ndarray, onset_frames: np.ndarray,
                  motion: dict[str, np.ndarray], spans: list[tuple[int, int]], title: str, caption: str
                  ) -> dict[str, str]:
    """plots/timeline_STEM.png (``title`` on the figure); its report entry (``caption``)."""
    p = plots.plot_clip_timeline(out / "plots" / f"timeline_{stem}.png", fps, rms, onset_frames, motion, spans,
                                 title=title)
    return {"title": caption, "path": str(p.relative_to(out))}


def folder_plots(out: Path, runs: list[FileRun], per_file: list[dict[str, Any]], retrieval: dict[str, Any],
                 max_timelines: int) -> list[dict[str, str]]:
    """A folder's plots: the first ``max_timelines`` files' loudness and motion, the shift test, retrieval."""
    entries = []
    for i, r in enumerate(runs[:max_timelines]):
        onset_frames = np.floor(r.audio.onsets_s * r.audio.fps).astype(int)
        entries.append(timeline_plot(out, f"{i:03d}", r.audio.fps, r.audio.rms, onset_frames,
                                     {"generated": r.video.motion}, spans_from_mask(r.audio.is_silent),
                                     f"{r.name}: audio RMS and the generated video's motion",
                                     f"{r.name}: loudness and motion"))
    p = plots.plot_shift_test(out / "plots" / "shift_test.png", per_file)
    entries.append({"title": "shift test: loudness-motion Spearman against shifted audio",
                    "path": str(p.relative_to(out))})
    if retrieval.get("scores"):
        p = plots.plot_retrieval(out / "plots" / "retrieval.png", [r.name for r in runs],
                                 np.asarray(retrieval["scores"], dtype=np.float64))
        entries.append({"title": "retrieval scores (rows: videos, columns: audio)", "path": str(p.relative_to(out))})
    return entries
