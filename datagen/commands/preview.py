"""`datagen preview`: one clip as an mp4 with its audio, plus ``<out>.json`` (the sample's meta.json object).

    datagen preview --seed 7 --silence-mix 1 --out clip.mp4
    datagen preview --seed 3 --debug --view timeline --out dbg.mp4 --config configs/tiny.yaml

The seed is the clip seed itself (``meta.json``'s ``seed`` of a shard sample reproduces
that sample's audio). Views are functions ``(cfg, seed, variant, clip, features, names) ->
(frame chunks, extra meta)`` registered in ``VIEWS``: ``visual`` (the default) renders the
clip's ground-truth visualizers (the plan ``datagen run`` draws for this seed), ``timeline``
draws the feature channels with a moving cursor. The sidecar records the visual plan either way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from shared.cli import ShortFlag, add_config_args, config_or_exit, fail
from shared.config import Config

NAME = "preview"
HELP = "Synthesize one clip, compute its timeline and write it as an mp4 with its audio plus a .json sidecar."

SHORT_FLAGS = [
    ShortFlag("--silence-mix", "data.audio_silence_mix_prob", float, "Fraction of silence/dropout clips."),
    ShortFlag("--seconds", "data.clip_seconds", float, "Clip length in seconds."),
]

View = Callable[..., tuple[Iterator[np.ndarray], dict[str, Any]]]


def timeline_view(cfg: Config, seed: int, variant: str, clip, features: np.ndarray,
                  names: list[str]) -> tuple[Iterator[np.ndarray], dict[str, Any]]:
    """Feature channels over time with a moving cursor; silence segments shaded."""
    from datagen.preview_timeline import draw_background, timeline_frames

    background = draw_background(features, names, clip.meta["segments"], cfg.render.fps, cfg.render.resolution)
    return timeline_frames(background, features.shape[0], cfg.render.chunk_frames), {}


def visual_view(cfg: Config, seed: int, variant: str, clip, features: np.ndarray,
                names: list[str]) -> tuple[Iterator[np.ndarray], dict[str, Any]]:
    """The clip's ground-truth visualizers: the plan `datagen run` draws for this clip seed (datagen/visual)."""
    from datagen.visual.preview import visual_view as view

    return view(cfg, seed, variant, clip, features, names)


VIEWS: dict[str, View] = {"timeline": timeline_view, "visual": visual_view}
DEFAULT_VIEW = "visual"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from datagen.audio import VARIANTS

    parser.add_argument("--seed", type=int, default=0, help="Clip seed (default: 0).")
    parser.add_argument("--debug", dest="flag__data.audio_debug_mode", action="store_const", const=True, default=None,
                        help="Debug clips only: sets data.audio_debug_mode=true (default: off).")
    parser.add_argument("--variant", choices=VARIANTS, default=None,
                        help="Force the audio variant instead of drawing it from the seed and the mix knobs "
                             "(default: drawn).")
    parser.add_argument("--view", choices=sorted(VIEWS), default=DEFAULT_VIEW,
                        help=f"What the video shows (default: {DEFAULT_VIEW}).")
    parser.add_argument("--out", default="preview.mp4", help="Output mp4; the sidecar is the same path with .json "
                                                             "(default: preview.mp4).")
    add_config_args(parser, SHORT_FLAGS)


def preview_meta(cfg: Config, clip, names: list[str], n_frames: int, view: str) -> dict[str, Any]:
    """The sidecar: the sample's meta.json object (ARCHITECTURE.md) without shard indices, plus the view."""
    from shared.shards import SCHEMA_VERSION

    meta = dict(clip.meta)
    meta.update({
        "schema_version": SCHEMA_VERSION,
        "fps": cfg.render.fps,
        "resolution": cfg.render.resolution,
        "sample_rate": clip.sr,
        "clip_seconds": cfg.data.clip_seconds,
        "n_frames": n_frames,
        "timeline_channels": list(names),
        "view": view,
    })
    return meta


def run(args: argparse.Namespace) -> int:
    cfg = config_or_exit(args)
    from datagen.audio import choose_variant, synthesize_clip
    from shared.timeline import compute_audio_timeline
    from datagen.visual import EGLContextError, ShaderError, sample_visual_plan, visual_meta
    from shared.video import Mp4Writer, VideoError

    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        fail(f"--out must name an .mp4 file, got {str(out)!r}")
    if args.seed < 0:
        fail(f"--seed must be >= 0, got {args.seed}")
    if args.variant and args.variant != "debug" and cfg.data.audio_debug_mode:
        fail(f"--variant {args.variant} contradicts data.audio_debug_mode=true (--debug): debug clips only")
    variant = args.variant or choose_variant(cfg.data, args.seed)
    t0 = time.perf_counter()
    try:
        clip = synthesize_clip(cfg, args.seed, variant)
    except ValueError as e:
        fail(str(e))
    features, names = compute_audio_timeline(clip.wave, clip.sr, cfg.render.fps, cfg.timeline)  # (T, C)
    t_audio = time.perf_counter() - t0
    chunks, extra = VIEWS[args.view](cfg, args.seed, variant, clip, features, names)
    meta = preview_meta(cfg, clip, names, int(features.shape[0]), args.view)
    meta.update(visual_meta(sample_visual_plan(cfg, args.seed, variant)))  # the sample's visuals, whatever the view
    meta.update(extra)
    out.parent.mkdir(parents=True, exist_ok=True)
    res = cfg.render.resolution
    try:
        with Mp4Writer(out, cfg.render.fps, res, res, audio=(clip.wave, clip.sr)) as writer:
            for chunk in chunks:  # (n, R, R, 3) uint8
                writer.write(chunk)
    except VideoError as e:
        fail(str(e), code=1)
    except (EGLContextError, ShaderError) as e:  # the visual view's renderer
        fail(str(e), code=1)
    sidecar = out.with_suffix(".json")
    sidecar.write_text(json.dumps(meta, indent=1))
    segs = ", ".join(f"{s['kind']} {s['start_s']:.2f}-{s['end_s']:.2f}s" for s in meta["segments"]) or "none"
    print(f"wrote {out} ({features.shape[0]} frames, {cfg.data.clip_seconds:g} s, variant {variant}, "
          f"tempo {meta['tempo']:.1f}, key {meta.get('key_name') or '-'}; segments: {segs}; "
          f"audio+timeline {1e3 * t_audio:.0f} ms) and {sidecar}", file=sys.stderr)
    return 0
