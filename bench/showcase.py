"""One real song, side by side: the teacher | model 1 | model 2 | ... as an mp4 with the song, and a contact sheet.

The teacher is the ground-truth visualizers' composite on the song (:func:`trainer.teacher.file_ground_truth`, the
plan ``trainer eval --audio-dir`` takes as its ceiling), rendered at the first model's resolution and frame rate.
Each model's video is ``trainer sample``'s own path at its native size and saved settings
(:func:`bench.readme_picture.generated`). Sources at a lower frame rate are shown by holding each frame (the
video runs at the highest rate); every panel is scaled to ``--panel`` px with a Lanczos filter, its label above it.

The contact sheet has one strip per source (the teachers' and the README's :func:`trainer.teacher_report.draw_strip`:
evenly spaced frames above the song's loudness and the video's motion). A JSON beside them records the commit, the
command, and per source its step, size, frame rate and the Spearman of loudness against motion over the song.

    .venv/bin/python bench/showcase.py --model "arm A=runs/study/arms/A_s0" --model "shipped=models/synesthete-small-plan" \\
        --out docs/results/showcase/joplin      # -> joplin.mp4, joplin.png, joplin.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.readme_picture import TITLES, generated  # noqa: E402
from shared.timeline import channel_index  # noqa: E402
from trainer.eval.metrics import motion_energy, spearman  # noqa: E402

SONG = "tests/data/real_audio/joplin_maple_leaf_rag.mp3"
HEADER_PX = 22  # the label strip above each panel
GAP_PX = 4      # white between panels


def parse_model(spec: str) -> tuple[str, str]:
    """``LABEL=PATH`` (or a bare PATH, labelled by its folder name) -> (label, path)."""
    label, sep, path = spec.partition("=")
    if not sep:
        return Path(spec).name, spec
    if not label or not path:
        raise argparse.ArgumentTypeError(f"--model {spec!r}: expected LABEL=PATH")
    return label, path


def hold_index(n_out: int, fps_out: float, fps_src: float, n_src: int) -> np.ndarray:
    """For each output frame at ``fps_out``, the source frame at ``fps_src`` shown then (the last one started at or
    before its time), clipped to the source's length."""
    t = np.arange(n_out) / fps_out
    return np.minimum(np.floor(t * fps_src + 1e-9).astype(int), n_src - 1)


def panel(frame: np.ndarray, px: int) -> np.ndarray:
    """One frame (H, W, 3) uint8 -> (px, px, 3), Lanczos-resampled."""
    from PIL import Image

    if frame.shape[0] == px and frame.shape[1] == px:
        return frame
    return np.asarray(Image.fromarray(frame).resize((px, px), Image.LANCZOS))


def header(labels: list[str], px: int) -> np.ndarray:
    """The label strip above the panels: (HEADER_PX, width, 3) uint8, white text on black."""
    from PIL import Image, ImageDraw

    width = len(labels) * px + (len(labels) - 1) * GAP_PX
    im = Image.new("RGB", (width, HEADER_PX), (0, 0, 0))
    draw = ImageDraw.Draw(im)
    for i, label in enumerate(labels):
        draw.text((i * (px + GAP_PX) + 4, 4), label, fill=(255, 255, 255))
    return np.asarray(im)


def compose(sources: list[dict], labels: list[str], fps_out: float, n_out: int, px: int, t0: int, t1: int
            ) -> np.ndarray:
    """Output frames ``t0:t1`` (uint8 (t1 - t0, HEADER_PX + px, width, 3)): the header over the panels side by side."""
    top = header(labels, px)
    idx = [hold_index(n_out, fps_out, s["fps"], len(s["frames"])) for s in sources]
    gap = np.full((px, GAP_PX, 3), 255, np.uint8)
    out = []
    for t in range(t0, t1):
        row = []
        for k, s in enumerate(sources):
            if k:
                row.append(gap)
            row.append(panel(s["frames"][idx[k][t]], px))
        out.append(np.concatenate([top, np.concatenate(row, axis=1)], axis=0))
    return np.stack(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--audio", default=str(ROOT / SONG), help="The song (any audio file). Default: %(default)s.")
    ap.add_argument("--model", action="append", required=True, type=parse_model, metavar="LABEL=PATH",
                    help="A model (run or step dir) and its panel's label; repeat, in panel order after the teacher.")
    ap.add_argument("--seconds", type=float, default=20.0, help="Length shown, from the start. Default: %(default)s.")
    ap.add_argument("--panel", type=int, default=256, help="Each panel's side in px. Default: %(default)s.")
    ap.add_argument("--no-teacher", action="store_true", help="Models only (no EGL needed).")
    ap.add_argument("--out", required=True, help="Output stem: STEM.mp4, STEM.png and STEM.json.")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.panel < 8:
        ap.error("--seconds must be > 0 and --panel >= 8")
    audio = Path(args.audio)
    if not audio.is_file():
        ap.error(f"--audio {str(audio)!r}: not found")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.audio_io import load_audio
    from shared.video import Mp4Writer
    from trainer.sample import load_sampling_model
    from trainer.teacher_report import SHEET_FRAMES, draw_strip, save_png

    sources: list[dict] = []
    first_cfg = None
    for label, path in args.model:
        model = load_sampling_model(path, "cpu")
        first_cfg = first_cfg or model.cfg
        frames, loud = generated(model, audio)
        n = min(len(frames), int(args.seconds * model.cfg.render.fps))
        sources.append({"label": label, "path": path, "step": model.step, "frames": frames[:n], "loudness": loud[:n],
                        "fps": float(model.cfg.render.fps), "resolution": int(model.cfg.render.resolution)})
        print(f"showcase: {label}: {n} frames at {model.cfg.render.fps:g} fps", flush=True)
    if not args.no_teacher:
        from trainer.teacher import file_ground_truth

        gt = file_ground_truth(first_cfg, audio)
        n = min(len(gt.frames), int(args.seconds * first_cfg.render.fps))
        sources.insert(0, {"label": "teacher", "path": "ground-truth visualizers", "step": None,
                           "frames": gt.frames[:n], "loudness": gt.timeline[:n, channel_index(gt.names, "log_rms")],
                           "fps": float(first_cfg.render.fps), "resolution": int(first_cfg.render.resolution),
                           "plan_seed": gt.meta["seed"]})
    labels = [f"{s['label']} ({s['resolution']} px, {s['fps']:g} fps)" for s in sources]

    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    fps_out = max(s["fps"] for s in sources)
    n_out = int(min(len(s["frames"]) / s["fps"] for s in sources) * fps_out)
    wave, sr = load_audio(audio)
    wave = wave[:int(np.ceil(n_out / fps_out * sr))]
    width = len(sources) * args.panel + (len(sources) - 1) * GAP_PX
    with Mp4Writer(stem.with_suffix(".mp4"), fps_out, width, HEADER_PX + args.panel, audio=(wave, sr), crf=23) as wr:
        for t0 in range(0, n_out, 32):
            wr.write(compose(sources, labels, fps_out, n_out, args.panel, t0, min(n_out, t0 + 32)))

    fig = plt.figure(figsize=(10, 2.45 * len(sources)))
    grid = fig.add_gridspec(2 * len(sources), SHEET_FRAMES, height_ratios=[1.25, 1.0] * len(sources),
                            hspace=0.55, wspace=0.06, left=0.06, right=0.94, top=0.97, bottom=0.03)
    rows = []
    for row, s in enumerate(sources):
        rho = spearman(s["loudness"][1:], motion_energy(s["frames"])[1:])  # motion of frame t: the change from t-1
        draw_strip(fig, grid, row, s["frames"], s["loudness"], s["fps"], [],
                   f"{TITLES.get(audio.stem, audio.stem)}: {labels[row]}; loudness (blue) vs motion (orange), "
                   f"Spearman {rho:.2f}")
        rows.append({k: s[k] for k in ("label", "path", "step", "resolution", "fps") if k in s}
                    | {"frames": int(len(s["frames"])), "loudness_motion_spearman": round(float(rho), 4)}
                    | ({"plan_seed": s["plan_seed"]} if "plan_seed" in s else {}))
    save_png(fig, stem.with_suffix(".png"))
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    doc = {"command": "python bench/showcase.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "commit": commit, "audio": str(audio.relative_to(ROOT)) if audio.is_relative_to(ROOT) else str(audio),
           "seconds": round(n_out / fps_out, 3), "fps": fps_out, "panel_px": args.panel, "sources": rows}
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {stem}.mp4, .png, .json: " + ", ".join(f"{r['label']} rho {r['loudness_motion_spearman']}"
                                                         for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
