"""`datagen visualize`: visualizers for any audio file, as an mp4 with the audio muxed in.

What it renders (its first output line says which):

* ``--visualizer all`` (the default): every primitive alone, side by side in a labelled grid on the same
  timeline, in the order of ``datagen visualizers`` (row-major: 4 columns for the 12 primitives, each tile
  resolution/4 pixels). A look at the building blocks, not what a model is trained on.
* ``--visualizer NAME``: one primitive alone, full frame (a debug one too).
* ``--composite``: the composite a model learns from: the seed's visual plan (2-3 layered primitives, blend
  modes, style, augmentation) rendered by the code of ``datagen preview`` (:func:`datagen.visual.preview.visual_view`),
  the same plan and ``Renderer.render`` call that ``datagen run`` writes into shards for a clip with this seed.
  ``--visualizer mix`` is its older spelling.

The seed picks the style (palette, symmetry, line width, speed, ...). The timeline comes from the audio
resampled to ``data.sample_rate``, exactly as ``trainer sample`` and the training data get it, so the video is
the ground truth the model learns for that audio; the mp4 carries the file's own audio. ``--out`` must not be
the input (also via a link); bad input and output problems (audio shorter than one frame, an unwritable folder,
a file where a folder should be, a full disk) are one-line errors with exit status 2, and an existing ``--out``
is replaced only on success.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from shared.cli import ShortFlag, add_config_args, config_or_exit, fail

NAME = "visualize"
HELP = ("Render an audio file's visualizers to an mp4 with its audio: "
        "by default a labelled grid of every primitive alone; "
        "--composite for the layered composite a model is trained on.")

SHORT_FLAGS = [
    ShortFlag("--resolution", "render.resolution", int, "Frame size in pixels (the grid's full width for 'all')."),
    ShortFlag("--fps", "render.fps", float, "Frames per second."),
]
COMPOSITE = "composite"
NOT_COMPOSITE = "not the layered composite a model is trained on (--composite renders that)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audio", required=True, metavar="FILE", help="Audio file (wav/flac/ogg/mp3/m4a/...).")
    parser.add_argument("--out", required=True, metavar="FILE.mp4", help="Output mp4.")
    parser.add_argument("--visualizer", default=None, metavar="all|NAME",
                        help="'all' (the default): a labelled grid of every primitive, each alone; NAME: one "
                             "primitive alone, full frame (see `datagen visualizers`). Neither is what a model "
                             "is trained on: see --composite.")
    parser.add_argument("--composite", action="store_true",
                        help="Render the composite a model learns from: the seed's visual plan (layered primitives, "
                             "blend modes, style, augmentation), drawn as `datagen run` draws it into shards "
                             "(`--visualizer mix` is the same).")
    parser.add_argument("--seed", type=int, default=0,
                        help="Style seed (palette, symmetry, speed, ...); with --composite the clip seed whose plan "
                             "is drawn. Default: 0.")
    parser.add_argument("--gpu", type=int, default=None, help="GPU ordinal for the EGL device (default: first visible, or Mesa).")
    parser.epilog = ("Default: the grid of primitives, row-major in the order of `datagen visualizers`. The first "
                     "output line says what is rendered.")
    add_config_args(parser, SHORT_FLAGS)


def resolve_choice(args: argparse.Namespace) -> str:
    """'all', 'composite' or a primitive's name, from --visualizer and --composite; one-line errors."""
    from datagen.visual import PRIMITIVES
    from datagen.visual.plan import DEBUG_PRIMITIVES

    name = COMPOSITE if args.visualizer == "mix" else args.visualizer
    if args.composite:
        if name not in (None, COMPOSITE):
            fail(f"--composite renders the layered composite; drop --visualizer {args.visualizer} (one or the other)")
        return COMPOSITE
    name = name or "all"
    if name not in ("all", COMPOSITE) + PRIMITIVES + DEBUG_PRIMITIVES:
        fail(f"unknown visualizer '{name}'; choose all, one of {', '.join(PRIMITIVES + DEBUG_PRIMITIVES)}, "
             "or --composite")
    return name


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


class Frames(NamedTuple):
    """What ``datagen visualize`` writes: chunks ``[n, height, width, 3]`` (the GL context is made on the first)
    and the line that says what they show."""

    chunks: Iterator[np.ndarray]
    width: int
    height: int
    what: str


def frames_for(choice: str, cfg, seed: int, gpu: int | None, features: np.ndarray, names: list[str]) -> Frames:
    """The frames of ``choice`` ('all', 'composite' or a primitive) for a timeline ``features`` (T, C)."""
    from datagen.visual import PRIMITIVES, single_plan
    from datagen.visual.preview import lazy_render, visual_view

    fps, res, chunk = cfg.render.fps, cfg.render.resolution, cfg.render.chunk_frames
    if choice == COMPOSITE:
        chunks, meta = visual_view(cfg, seed, "normal", None, features, names, gpu_index=gpu)
        layers = ", ".join(f"{lay['visualizer']} ({lay['blend']})" for lay in meta["visual_plan"]["layers"])
        return Frames(chunks, res, res, f"renders: the composite a model learns from: seed {seed}'s visual plan as "
                                         f"`datagen run` renders it into shards; layers: {layers}")
    if choice == "all":
        rows, cols = grid_shape(len(PRIMITIVES))
        tile = max(16, res // cols // 2 * 2)
        plans = [single_plan(p, seed) for p in PRIMITIVES]
        chunks = lazy_render(tile, lambda r: render_grid(r, features, names, plans, fps, chunk, rows, cols), gpu)
        return Frames(chunks, cols * tile, rows * tile,
                      f"renders: the {len(PRIMITIVES)} visualizer primitives, each alone (seed {seed}'s style), in a "
                      f"labelled grid of {cols} x {rows} tiles, {NOT_COMPOSITE}; grid (row-major): {', '.join(PRIMITIVES)}")
    plan = single_plan(choice, seed)
    chunks = lazy_render(res, lambda r: r.render(features, names, plan, fps, chunk), gpu)
    return Frames(chunks, res, res, f"renders: the primitive '{choice}' alone, full frame (seed {seed}'s style), "
                                    f"{NOT_COMPOSITE}")


def read_timeline(audio: str, cfg) -> tuple[np.ndarray, int, np.ndarray, list[str]]:
    """(wave at its own rate, its rate, timeline (T, C), channel names); a one-line error for a bad file."""
    from shared.audio_io import load_audio
    from shared.errors import AudioError

    try:
        wave, sr = load_audio(audio)  # at its own rate: the mp4 gets the original audio
    except AudioError as e:
        fail(str(e))  # names the file
    try:
        features, names = visualize_timeline(wave, sr, cfg)  # (T, C) at data.sample_rate
    except AudioError as e:
        fail(f"audio file {str(audio)!r}: {e}")
    return wave, sr, features, names


def run(args: argparse.Namespace) -> int:
    cfg = config_or_exit(args)
    from datagen.visual import EGLContextError, ShaderError
    from shared.errors import OutputPathError
    from shared.outputs import output_error, prepare_output_file
    from shared.video import Mp4Writer, VideoError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    choice = resolve_choice(args)
    out = Path(args.out)
    wave, sr, features, names = read_timeline(args.audio, cfg)
    try:
        prepare_output_file(out, inputs=[args.audio])  # before any rendering
    except OutputPathError as e:
        fail(str(e))
    frames = frames_for(choice, cfg, args.seed, args.gpu, features, names)
    print(frames.what)  # the first line: what the video shows
    if sr != cfg.data.sample_rate:
        print(f"timeline from the audio resampled {sr} -> {cfg.data.sample_rate} Hz (data.sample_rate), as in training")
    fps = cfg.render.fps
    t0 = time.time()
    try:
        with Mp4Writer(out, fps, frames.width, frames.height, audio=(wave, sr)) as writer:  # .partial, renamed
            for chunk in frames.chunks:  # (n, H, W, 3)
                writer.write(chunk)
    except (EGLContextError, ShaderError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (OSError, VideoError) as e:  # unwritable, vanished folder, full disk, ffmpeg refusing the file
        fail(str(output_error(e, out)))
    dt = time.time() - t0
    print(f"wrote {out} ({len(features)} frames, {frames.width}x{frames.height} at {fps:g} fps, "
          f"{len(features) / max(dt, 1e-9):.1f} frames/s)")
    return 0
