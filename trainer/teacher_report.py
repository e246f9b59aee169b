"""Writers of ``trainer teacher`` (:mod:`trainer.teacher`): ``report.json``, ``report.md``, ``contact_sheet.png`` and
``primitives_sheet.png`` (every primitive alone on the most dynamic normal clip).

``report.json``::

    {"kind": "teacher", "info": {fps, resolution, clip_seconds, sample_rate, ..., content_versions, datagen_path,
                                 datagen_commit, trainer_commit, renderer, machine, wall_s},
     "variants": {VARIANT: {"seeds": [int], "n_clips": int,
                            "metrics": {METRIC: {"mean", "ci", "n", "note"[, "chance"]}},
                            "loudness_std": {"median_db", "share_ge_threshold", "threshold_db", "n", ...},
                            "clips": [{"key", "seed", "loudness_std_db", "values": {METRIC: float}, ...}]}},
     "real_audio": {"n_clips", "metrics", "loudness_std", "clips": [...]}   (only with audio files),
     "definitions": {name: str}, "better": {METRIC: str}}

NaN never reaches the JSON (null). The contact sheet re-makes the first clips of each variant (the ground truth
is a pure function of config and seed) and shows evenly spaced frames above the clip's loudness (``log_rms``,
dB) and motion-energy curves, so a person can see the picture respond to loudness.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shared.config import Config
from shared.fsutil import atomic_write_text
from trainer.eval.report import fmt, json_number

REPORT_JSON, REPORT_MD, CONTACT_SHEET = "report.json", "report.md", "contact_sheet.png"
PRIMITIVES_SHEET = "primitives_sheet.png"
SHEET_FRAMES = 8
SHEET_CLIPS_PER_VARIANT = 2
SHEET_MAX_CLIPS = 4
PER_CLIP_COLUMNS = ("loudness_motion_spearman", "loudness_brightness_spearman", "loudness_bright_area_spearman",
                    "av_align", "beat_alignment_score", "silence_settle_ratio", "dropout_return")


def write_outputs(out: str | Path, cfg: Config, report: dict[str, Any], sheet: bool = True) -> dict[str, Path]:
    """report.json, report.md and (``sheet``) the contact sheet into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rep = json_number(report)
    png = contact_sheet(out / CONTACT_SHEET, cfg, rep) if sheet and rep.get("variants") else None
    prims = primitives_sheet(out / PRIMITIVES_SHEET, cfg, rep) if png and "normal" in rep["variants"] else None
    paths = {"json": atomic_write_text(out / REPORT_JSON, json.dumps(rep, indent=2, allow_nan=False) + "\n"),
             "md": atomic_write_text(out / REPORT_MD, markdown(rep, sheet=png is not None))}
    return paths | ({"png": png} if png else {}) | ({"primitives_png": prims} if prims else {})


# ------------------------------------------------------------------ markdown


def ci_text(e: dict[str, Any]) -> str:
    ci = e.get("ci")
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "n/a"


def metric_table(metrics: dict[str, dict[str, Any]], better: dict[str, str]) -> list[str]:
    lines = ["| metric | value | 95% CI | n | better | note |", "|---|---|---|---|---|---|"]
    for name, e in metrics.items():
        note = e.get("note") or ""
        if e.get("chance") is not None:
            note = (note + "; " if note else "") + f"chance {fmt(e['chance'])}"
        lines.append(f"| {name} | {fmt(e.get('mean'))} | {ci_text(e)} | {e.get('n', 0)} | {better.get(name, '')} "
                     f"| {note} |")
    return lines


def loudness_line(ls: dict[str, Any]) -> str:
    if not ls.get("n"):
        return "Loudness std: n/a (no clip with music frames)."
    return (f"Loudness std (log_rms, dB, music frames): median {fmt(ls['median_db'])} dB (min {fmt(ls['min_db'])}, "
            f"max {fmt(ls['max_db'])}); share of clips >= {ls['threshold_db']:g} dB: {fmt(ls['share_ge_threshold'])} "
            f"({round(ls['share_ge_threshold'] * ls['n'])} of {ls['n']}).")


def clip_table(clips: list[dict[str, Any]], first: str) -> list[str]:
    """One line per clip: its id, loudness std and the main per-clip metrics."""
    lines = [f"| {first} | visualizers | loudness std (dB) | " + " | ".join(PER_CLIP_COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(PER_CLIP_COLUMNS)]
    for c in clips:
        ident = c.get("file") or c.get("seed")
        vals = " | ".join(fmt(c["values"].get(m)) for m in PER_CLIP_COLUMNS)
        vis = ", ".join(c.get("visualizers") or [])
        lines.append(f"| {ident} | {vis} | {fmt(c.get('loudness_std_db'))} | {vals} |")
    return lines


def header(info: dict[str, Any]) -> list[str]:
    return ["# Teacher: the ground-truth visualizers scored with the eval's metrics", "",
            f"- config: {info['fps']:g} fps, {info['resolution']} px, {info['clip_seconds']:g} s clips, "
            f"{info['sample_rate']} Hz, JPEG quality {info['jpeg_quality']}; visualizers {info['visualizers']}",
            f"- every metric: the ground-truth frames against their own audio (the eval's ceiling kind), music "
            f"frames; 95% percentile-bootstrap CIs over clips ({info['bootstrap']} resamples, seed {info['seed0']})",
            f"- generator: `{info['datagen_path']}` at {info['datagen_commit']}; trainer metrics at "
            f"{info['trainer_commit']}; content versions {info['content_versions']}",
            f"- renderer: {info['renderer'].get('renderer', '?')}; machine: {info['machine']}",
            f"- wall time: {info['wall_s']:.1f} s", ""]


def markdown(rep: dict[str, Any], sheet: bool = True) -> str:
    """report.md: a metric table per variant, its loudness summary and clips, the real-audio files, definitions."""
    better = rep.get("better", {})
    lines = header(rep["info"])
    for variant, v in rep["variants"].items():
        seeds = v["seeds"]
        lines += [f"## {variant}: {v['n_clips']} clips (seeds {seeds[0]}..{seeds[-1]})", ""]
        lines += metric_table(v["metrics"], better) + ["", loudness_line(v["loudness_std"]), ""]
        lines += clip_table(v["clips"], "seed") + [""]
    ra = rep.get("real_audio")
    if ra:
        lines += [f"## Real audio: {ra['n_clips']} files (per file the mean over {ra.get('plans', 1)} visual plan(s) "
                  "seeded by its name; detected silence)", ""]
        lines += metric_table(ra["metrics"], better) + ["", loudness_line(ra["loudness_std"]), ""]
        lines += clip_table(ra["clips"], "file") + [""]
    if sheet:
        lines += [f"![contact sheet]({CONTACT_SHEET})", ""]
    lines += ["## Definitions", ""] + [f"- **{k}**: {d}" for k, d in rep["definitions"].items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the contact sheet


def sheet_clips(rep: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(variant, clip record) of the clips on the sheet: the first few of each variant."""
    picked = [(v, c) for v, sec in rep["variants"].items() for c in sec["clips"][:SHEET_CLIPS_PER_VARIANT]]
    return picked[:SHEET_MAX_CLIPS]


def draw_clip(fig, grid, row: int, cfg: Config, variant: str, rec: dict[str, Any], gt) -> None:
    """One teacher clip (:func:`draw_strip` of its frames, loudness and labelled silence)."""
    from shared.timeline import channel_index
    from trainer.eval import metrics as M

    rho = rec["values"].get("loudness_motion_spearman")
    title = (f"{variant} seed {rec['seed']} ({', '.join(rec.get('visualizers') or [])}): loudness std "
             f"{fmt(rec.get('loudness_std_db'))} dB, loudness-motion rho {fmt(rho)}; grey = labelled silence")
    draw_strip(fig, grid, row, gt.frames, gt.timeline[:, channel_index(gt.names, "log_rms")], cfg.render.fps,
               M.silence_spans_from_meta(gt.meta), title)


def draw_strip(fig, grid, row: int, frames: np.ndarray, loudness_db: np.ndarray, fps: float,
               spans: list[tuple[int, int]], title: str) -> None:
    """A row of evenly spaced frames (uint8 (T, H, W, 3)), beneath them the loudness (dB) and the motion energy over
    the clip; ``spans`` (frame ranges) are shaded grey. Grid rows ``2 row`` and ``2 row + 1`` of ``SHEET_FRAMES``
    columns. Used for the teacher's sheets and the README's picture of a generated video (bench/readme_picture.py)."""
    from trainer.eval import metrics as M

    n = len(frames)
    idx = np.unique(np.linspace(0, n - 1, SHEET_FRAMES).round().astype(int))
    for j, k in enumerate(idx):
        ax = fig.add_subplot(grid[2 * row, j])
        ax.imshow(frames[k], interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{k / fps:.2f} s", fontsize=6, pad=1)
    ax = fig.add_subplot(grid[2 * row + 1, :])
    t = np.arange(n) / fps
    for a, b in spans:
        ax.axvspan(a / fps, b / fps, color="0.88", zorder=0)
    ax.plot(t, loudness_db[:n], color="tab:blue", lw=1)
    ax.set_ylabel("log_rms (dB)", fontsize=6, color="tab:blue")
    for k in idx:
        ax.axvline(k / fps, color="0.4", lw=0.6, ls=":")
    ax2 = ax.twinx()
    ax2.plot(t, M.motion_energy(frames), color="tab:orange", lw=1)
    ax2.set_ylabel("motion", fontsize=6, color="tab:orange")
    for a_ in (ax, ax2):
        a_.tick_params(labelsize=5, pad=1)
    ax.set_xlim(0, max(t[-1], 1e-3))
    ax.set_title(title, fontsize=6.5, pad=2)


def save_png(fig, path: Path) -> Path:
    """Write a matplotlib figure as a small PNG (dpi 80) atomically (temp file renamed) and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
    return path


def contact_sheet(path: Path, cfg: Config, rep: dict[str, Any]) -> Path:
    """The contact sheet PNG (a few clips, remade from their seeds); small (dpi 80, about 0.2-0.5 MB)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainer.teacher import ground_truth, renderer_scope

    picked = sheet_clips(rep)
    fig = plt.figure(figsize=(10, 2.45 * len(picked)))
    grid = fig.add_gridspec(2 * len(picked), SHEET_FRAMES, height_ratios=[1.25, 1.0] * len(picked),
                            hspace=0.55, wspace=0.06, left=0.06, right=0.94, top=0.98, bottom=0.03)
    with renderer_scope(None, cfg.render.resolution) as r:
        for row, (variant, rec) in enumerate(picked):
            draw_clip(fig, grid, row, cfg, variant, rec, ground_truth(cfg, rec["seed"], variant, r))
    return save_png(fig, path)


def most_dynamic(rep: dict[str, Any]) -> dict[str, Any]:
    """The normal clip with the widest loudness range (its record)."""
    clips = rep["variants"]["normal"]["clips"]
    return max(clips, key=lambda c: c.get("loudness_std_db") or -1.0)


def primitives_sheet(path: Path, cfg: Config, rep: dict[str, Any]) -> Path:
    """Every primitive alone (its seed-0 style) on the most dynamic normal clip's audio: a row of frames each,
    under the clip's loudness curve, so a person can check that each keeps its character and breathes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from datagen.visual import PRIMITIVES, single_plan
    from shared.timeline import channel_index
    from trainer.teacher import ground_truth, render_frames, renderer_scope

    rec = most_dynamic(rep)
    fps = cfg.render.fps
    fig = plt.figure(figsize=(10, 0.95 * (len(PRIMITIVES) + 1.5)))
    grid = fig.add_gridspec(len(PRIMITIVES) + 1, SHEET_FRAMES, height_ratios=[1.4] + [1.0] * len(PRIMITIVES),
                            hspace=0.25, wspace=0.04, left=0.1, right=0.98, top=0.97, bottom=0.01)
    with renderer_scope(None, cfg.render.resolution) as r:
        gt = ground_truth(cfg, rec["seed"], "normal", r)
        n = len(gt.timeline)
        idx = np.unique(np.linspace(0, n - 1, SHEET_FRAMES).round().astype(int))
        ax = fig.add_subplot(grid[0, :])
        ax.plot(np.arange(n) / fps, gt.timeline[:, channel_index(gt.names, "log_rms")], color="tab:blue", lw=1)
        for k in idx:
            ax.axvline(k / fps, color="0.4", lw=0.6, ls=":")
        ax.set_xlim(0, max((n - 1) / fps, 1e-3))
        ax.tick_params(labelsize=5, pad=1)
        ax.set_title(f"normal seed {rec['seed']}: log_rms (dB), loudness std {fmt(rec.get('loudness_std_db'))} dB; "
                     "each primitive alone below", fontsize=6.5, pad=2)
        for row, name in enumerate(PRIMITIVES, start=1):
            frames = render_frames(cfg, gt.timeline, gt.names, single_plan(name, 0), r)
            for j, k in enumerate(idx):
                a = fig.add_subplot(grid[row, j])
                a.imshow(frames[k], interpolation="nearest")
                a.set_xticks([])
                a.set_yticks([])
                if j == 0:
                    a.set_ylabel(name, fontsize=6, rotation=0, ha="right", va="center")
    return save_png(fig, path)


def headline(rep: dict[str, Any]) -> list[str]:
    """The lines ``trainer teacher`` prints: per variant every metric with its CI, then the loudness summary."""
    lines = []
    sections = dict(rep["variants"])
    if rep.get("real_audio"):
        sections["real audio"] = rep["real_audio"]
    for name, v in sections.items():
        unit = "files" if name == "real audio" else "clips"
        lines.append(f"{name} ({v['n_clips']} {unit}): value [95% CI] n")
        for m, e in v["metrics"].items():
            lines.append(f"  {m:32s} {fmt(e.get('mean')):>7s} {ci_text(e):>18s} n={e.get('n', 0)}")
        lines.append("  " + loudness_line(v["loudness_std"]))
    return lines
