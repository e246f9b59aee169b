"""`datagen visualize`: the ground-truth visualizers for any audio file, as an mp4 with the audio muxed in.

``--visualizer NAME`` renders one primitive full-frame (a debug one too). ``--visualizer all`` (the
default) renders every primitive side by side in a grid on the same timeline, in the order of
``datagen visualizers`` (row-major: 4 columns for the 12 primitives, each tile resolution/4 pixels).
``--visualizer mix`` renders the seed's composite plan (layers, blend modes, augmentation) as a
training clip would get it. The seed picks the style (palette, symmetry, line width, speed, ...).

The timeline comes from the audio resampled to ``data.sample_rate``, exactly as ``trainer sample`` and
the training data get it, so the video is the ground truth the model learns for that audio; the mp4
carries the file's own audio. ``--out`` must not be the input (also via a link); bad input and output
problems (audio shorter than one frame, an unwritable folder, a file where a folder should be, a full
disk) are one-line errors with exit status 2, and an existing ``--out`` is replaced only on success.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from shared.cli import ShortFlag, add_config_args, config_or_exit, fail

NAME = "visualize"
HELP = "Render the ground-truth visualizers for an audio file (any format) to an mp4 with the audio muxed in."

SHORT_FLAGS = [
    ShortFlag("--resolution", "render.resolution", int, "Frame size in pixels (the grid's full width for 'all')."),
    ShortFlag("--fps", "render.fps", float, "Frames per second."),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audio", required=True, metavar="FILE", help="Audio file (wav/flac/ogg/mp3/m4a/...).")
    parser.add_argument("--out", required=True, metavar="FILE.mp4", help="Output mp4.")
    parser.add_argument("--visualizer", default="all", metavar="NAME|all|mix",
                        help="A primitive (see `datagen visualizers`), 'all' (grid of every primitive) or "
                             "'mix' (the seed's composite plan). Default: all.")
    parser.add_argument("--seed", type=int, default=0, help="Style seed (palette, symmetry, speed, ...). Default: 0.")
    parser.add_argument("--gpu", type=int, default=None, help="GPU ordinal for the EGL device (default: first visible, or Mesa).")
    parser.epilog = ("'all' draws the primitives side by side on the same timeline, row-major in the order of "
                     "`datagen visualizers`; 'mix' draws the composite (layers, blend modes, augmentation) a "
                     "training clip with this seed would get.")
    add_config_args(parser, SHORT_FLAGS)


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of a near-square grid holding n tiles."""
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def tile_grid(tiles: list[np.ndarray], rows: int, cols: int) -> np.ndarray:
    """``rows*cols`` (or fewer, padded black) chunks ``[n, h, w, 3]`` -> ``[n, rows*h, cols*w, 3]``."""
    n, h, w, _ = tiles[0].shape
    out = np.zeros((n, rows * h, cols * w, 3), np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        out[:, r * h:(r + 1) * h, c * w:(c + 1) * w] = t
    return out


def label_overlay(labels: list[str], rows: int, cols: int, tile: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A static name label in each tile's corner: (alpha [H, W, 1], rgb [H, W, 3]) in [0, 1]; None for tiles
    too small to read (< 64 px)."""
    if tile < 64:
        return None
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGBA", (cols * tile, rows * tile), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(9, tile // 12))
    for k, text in enumerate(labels):
        r, c = divmod(k, cols)
        draw.text((c * tile + 3, r * tile + 2), text, font=font, fill=(255, 255, 255, 200),
                  stroke_width=1, stroke_fill=(0, 0, 0, 200))
    rgba = np.asarray(img, np.float32) / 255.0
    return rgba[..., 3:], rgba[..., :3]


def render_grid(renderer, features, names, plans: list[dict], fps: float, chunk: int, rows: int, cols: int):
    """Interleave one render stream per plan (each has its own trail buffers), tile and label their chunks."""
    streams = [renderer.render(features, names, p, fps, chunk) for p in plans]
    overlay = label_overlay([p["layers"][0]["visualizer"] for p in plans], rows, cols, renderer.size[0])
    for tiles in zip(*streams):
        grid = tile_grid(list(tiles), rows, cols)  # (n, H, W, 3)
        if overlay is not None:
            alpha, rgb = overlay
            grid = (grid * (1.0 - alpha) + 255.0 * rgb * alpha + 0.5).astype(np.uint8)
        yield grid


def visualize_timeline(wave: np.ndarray, sr: int, cfg) -> tuple[np.ndarray, list[str]]:
    """The timeline the training pipeline would give this audio: resampled to ``data.sample_rate`` first (band
    edges, flux and centroid depend on the rate), as ``trainer sample`` does. Raises AudioError when it is
    shorter than one frame."""
    from shared.audio_io import resample
    from shared.timeline import compute_audio_timeline

    rate = cfg.data.sample_rate
    x = resample(wave, sr, rate) if sr != rate else wave
    return compute_audio_timeline(np.asarray(x, np.float32), rate, cfg.render.fps, cfg.timeline)  # (T, C)


def run(args: argparse.Namespace) -> int:
    cfg = config_or_exit(args)
    from datagen.visual import PRIMITIVES, EGLContextError, Renderer, ShaderError, sample_visual_plan, single_plan
    from datagen.visual.plan import DEBUG_PRIMITIVES
    from shared.audio_io import load_audio
    from shared.errors import AudioError, OutputPathError
    from shared.outputs import output_error, prepare_output_file
    from shared.video import Mp4Writer, VideoError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    choice = args.visualizer
    if choice not in ("all", "mix") + PRIMITIVES + DEBUG_PRIMITIVES:
        fail(f"unknown visualizer '{choice}'; choose all, mix or one of {', '.join(PRIMITIVES + DEBUG_PRIMITIVES)}")
    out = Path(args.out)
    try:
        wave, sr = load_audio(args.audio)  # at its own rate: the mp4 gets the original audio
    except AudioError as e:
        fail(str(e))  # names the file
    try:
        features, names = visualize_timeline(wave, sr, cfg)  # (T, C) at data.sample_rate
    except AudioError as e:
        fail(f"audio file {str(args.audio)!r}: {e}")
    try:
        prepare_output_file(out, inputs=[args.audio])  # before any rendering
    except OutputPathError as e:
        fail(str(e))
    if sr != cfg.data.sample_rate:
        print(f"timeline from the audio resampled {sr} -> {cfg.data.sample_rate} Hz (data.sample_rate), as in training")
    fps, res = cfg.render.fps, cfg.render.resolution
    t0 = time.time()
    try:
        if choice == "all":
            rows, cols = grid_shape(len(PRIMITIVES))
            tile = max(16, res // cols // 2 * 2)
            renderer = Renderer(tile, gpu_index=args.gpu)
            plans = [single_plan(p, args.seed) for p in PRIMITIVES]
            chunks = render_grid(renderer, features, names, plans, fps, cfg.render.chunk_frames, rows, cols)
            width, height = cols * tile, rows * tile
            print("grid (row-major): " + ", ".join(PRIMITIVES))
        else:
            renderer = Renderer(res, gpu_index=args.gpu)
            plan = sample_visual_plan(cfg, args.seed, "normal") if choice == "mix" else single_plan(choice, args.seed)
            if choice == "mix":
                print("layers: " + ", ".join(f"{lay['visualizer']} ({lay['blend']})" for lay in plan["layers"]))
            chunks = renderer.render(features, names, plan, fps, cfg.render.chunk_frames)
            width, height = res, res
        with Mp4Writer(out, fps, width, height, audio=(wave, sr)) as writer:  # written as .partial, renamed
            for chunk in chunks:  # (n, H, W, 3)
                writer.write(chunk)
    except (EGLContextError, ShaderError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (OSError, VideoError) as e:  # unwritable, vanished folder, full disk, ffmpeg refusing the file
        fail(str(output_error(e, out)))
    dt = time.time() - t0
    print(f"wrote {out} ({len(features)} frames, {width}x{height} at {fps:g} fps, {len(features) / max(dt, 1e-9):.1f} frames/s)")
    return 0
