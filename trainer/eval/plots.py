"""Evaluation plots (matplotlib, Agg backend: no display needed).

* :func:`plot_clip_timeline`: audio RMS with onset markers over time, against the motion energy of
  the generated video and of the ground truth, silence segments shaded.
* :func:`plot_metric_bars`: each metric's floor, generated value and ground-truth ceiling, with CIs.
* :func:`plot_shift_test` and :func:`plot_retrieval`: a folder of audio's shift test and retrieval scores.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _shade(ax, spans: Sequence[tuple[int, int]], fps: float, label: bool) -> None:
    for i, (start, end) in enumerate(spans):
        ax.axvspan(start / fps, end / fps, color="0.85", zorder=0, label="silence" if (label and i == 0) else None)


def plot_clip_timeline(path: str | Path, fps: float, rms: np.ndarray, onset_frames: Sequence[int],
                       motion: Mapping[str, np.ndarray], silent_spans: Sequence[tuple[int, int]] = (),
                       title: str = "") -> Path:
    """Two stacked panels sharing time (s): audio RMS with onsets (top) and motion energy (mean abs
    frame difference) of each named video, e.g. ``{"ground truth": m_gt, "generated": m_gen}`` (bottom)."""
    path = Path(path)
    t = np.arange(len(rms)) / fps
    fig, (ax_a, ax_v) = plt.subplots(2, 1, figsize=(9, 4.5), sharex=True)
    _shade(ax_a, silent_spans, fps, label=True)
    ax_a.plot(t, rms, color="tab:blue", lw=1.2, label="audio RMS")
    onset_frames = [int(o) for o in onset_frames if 0 <= int(o) < len(rms)]
    if onset_frames:
        ax_a.plot(np.asarray(onset_frames) / fps, np.asarray(rms)[onset_frames], "v", color="tab:red", ms=5,
                  label="onsets")
    ax_a.set_ylabel("RMS")
    ax_a.legend(loc="upper right", fontsize=8)
    _shade(ax_v, silent_spans, fps, label=False)
    for (name, m), color in zip(motion.items(), ("k", "tab:orange", "tab:green", "tab:purple")):
        m = np.asarray(m)
        ax_v.plot(np.arange(len(m)) / fps, m, color=color, lw=1.2, label=name)
    ax_v.set_ylabel("motion energy\n(mean |frame diff|)")
    ax_v.set_xlabel("time (s)")
    ax_v.legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_metric_bars(path: str | Path, metrics: Mapping[str, Mapping[str, float | None]],
                     series: Sequence[str] = ("generated", "ground_truth"),
                     cis: Mapping[str, Mapping[str, Sequence[float] | None]] | None = None) -> Path:
    """One small bar panel per metric: the value of each series (missing / non-finite drawn as absent), with its
    confidence interval ``cis[metric][series] = (lo, hi)`` as an error bar where one is given."""
    path = Path(path)
    names = list(metrics)
    cols = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.6 * rows), squeeze=False)
    colors = ("tab:orange", "0.4", "tab:blue", "tab:green")
    for ax, name in zip(axes.ravel(), names):
        vals = [metrics[name].get(s) for s in series]
        heights = [v if (v is not None and math.isfinite(v)) else 0.0 for v in vals]
        bars = ax.bar(range(len(series)), heights, color=colors[: len(series)])
        for x, (s_name, h) in enumerate(zip(series, heights)):
            ci = ((cis or {}).get(name) or {}).get(s_name)
            if ci is not None:
                ax.errorbar(x, h, yerr=[[max(0.0, h - ci[0])], [max(0.0, ci[1] - h)]], color="k", capsize=3, lw=1)
        for b, v in zip(bars, vals):
            text = "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"
            ax.annotate(text, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(series)), [s.replace("_", " ") for s in series], fontsize=8)
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.axhline(0, color="k", lw=0.5)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_shift_test(path: str | Path, per_file: list[dict[str, Any]]) -> Path:
    """Loudness-motion Spearman of each file against its audio shifted by s seconds (s = 0: true alignment)."""
    path = Path(path)
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


def plot_retrieval(path: str | Path, names: list[str], scores: np.ndarray) -> Path:
    """The retrieval score matrix: row = video, column = candidate audio (the diagonal is the true pairing)."""
    path = Path(path)
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
