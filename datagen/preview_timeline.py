"""The ``--view timeline`` drawing of ``datagen preview``: every timeline channel over time, a moving cursor.

The channels are drawn once into a static background (matplotlib's Agg canvas, one lane
per channel, silence segments shaded dark red and dropouts amber); each video frame is
then the background plus a cursor band over that frame's time span, drawn with numpy.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from shared.timeline import LOG_FLOOR_DB

BACKGROUND = "#101014"
CURSOR_RGB = np.array([255, 255, 255])
_CURSOR_ADD = (2 * CURSOR_RGB // 3).astype(np.uint8)  # cursor = pixel / 3 + 2/3 of the cursor colour
SHADE = {"silence": ("#a02030", 0.45), "dropout": ("#c08020", 0.22)}


def display_scale(channel: np.ndarray, name: str) -> np.ndarray:
    """Map one channel to [0, 1] for drawing: dBFS from the floor to 0, bounded channels as they are,
    the rest divided by their clip maximum (all-zero stays zero)."""
    x = channel.astype(np.float64)
    if name == "log_rms":
        return np.clip((x - LOG_FLOOR_DB) / -LOG_FLOOR_DB, 0.0, 1.0)
    if name in ("is_silent", "beat_phase", "downbeat", "centroid"):
        return np.clip(x, 0.0, 1.0)
    top = float(np.max(np.abs(x))) if x.size else 0.0
    return np.clip(x / top, 0.0, 1.0) if top > 0 else np.zeros_like(x)


def draw_background(features: np.ndarray, names: list[str], segments: list[dict], fps: float, resolution: int) -> np.ndarray:
    """Static picture of all channels (uint8 [R, R, 3]); x spans frames [0, T), lanes top to bottom in ``names`` order."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t_frames, n_ch = features.shape  # (T, C)
    dpi = 100
    fig = Figure(figsize=(resolution / dpi, resolution / dpi), dpi=dpi, facecolor=BACKGROUND)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_facecolor(BACKGROUND)
    ax.set_xlim(0, max(t_frames, 1))
    ax.set_ylim(0, n_ch)
    ax.axis("off")
    for seg in segments:  # the segment's exact time span, in frame units
        colour, alpha = SHADE.get(seg["kind"], ("#808080", 0.2))
        ax.axvspan(seg["start_s"] * fps, seg["end_s"] * fps, color=colour, alpha=alpha, lw=0)
    colours = matplotlib.colormaps["turbo"](np.linspace(0.08, 0.92, max(n_ch, 1)))
    x = np.arange(t_frames) + 0.5  # frame centres
    lane_px = resolution / max(n_ch, 1)
    for c, name in enumerate(names):
        base = n_ch - 1 - c  # first channel on top
        y = base + 0.08 + 0.84 * display_scale(features[:, c], name)
        ax.fill_between(x, base + 0.08, y, color=colours[c], alpha=0.35, lw=0, step="mid")
        ax.plot(x, y, color=colours[c], lw=max(0.6, resolution / 400), drawstyle="steps-mid")
        if lane_px >= 10:
            ax.text(0.5, base + 0.55, name, color="white", fontsize=max(4.0, min(9.0, lane_px * 0.45 * 72 / dpi)),
                    va="center", ha="left", alpha=0.8)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # (R, R, 4)
    return np.ascontiguousarray(rgba[..., :3])


def cursor_columns(t: int, t_frames: int, width: int) -> tuple[int, int]:
    """Pixel columns [a, b) covering frame t's span [t, t+1) of the x axis (at least one column)."""
    a = int(np.floor(t * width / t_frames))
    b = max(a + 1, int(np.floor((t + 1) * width / t_frames)))
    return min(a, width - 1), min(b, width)


def timeline_frames(background: np.ndarray, t_frames: int, chunk: int) -> Iterator[np.ndarray]:
    """The video: ``t_frames`` copies of ``background`` with a cursor on frame t, in chunks (uint8 [n, R, R, 3])."""
    width = background.shape[1]
    for start in range(0, t_frames, chunk):
        n = min(chunk, t_frames - start)
        out = np.repeat(background[None], n, axis=0)  # (n, R, R, 3)
        for i in range(n):
            a, b = cursor_columns(start + i, t_frames, width)
            out[i, :, a:b] = out[i, :, a:b] // 3 + _CURSOR_ADD
        yield out
