"""Issue 24 step 1: the study's frame VAE, measured on every val clip and shipped as ``models/synesthete-vae-64``.

    python bench/study_vae.py --vae runs/study/vae --data runs/study/data --package models/synesthete-vae-64

Reads every clip of the val split (all variants), reconstructs each frame with the VAE's posterior mean (EMA
weights) and reports the PSNR per clip (its frames' mean squared error on the [0, 1] scale,
``10 log10(1 / MSE)``), per variant and over all clips, with 95% percentile-bootstrap CIs over clips
(trainer/eval/stats.py). The normal-music clips are the figure that matters (the model is judged on them); the issue's
goal (val PSNR >= 28 dB) is read on them. Writes a JSON report (``--report``), a picture of
originals above their reconstructions (``--picture``), and with ``--package DEST`` the packaged VAE
(trainer.checkpoint.package_vae: config and EMA weights only) with its MODEL_CARD.md written from the report.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOAL_DB = 28.0  # issue 24: "val PSNR >= 28 dB" at 64 px on the study's data
PICTURE_CLIPS = 8
DEFAULT_TRAIN = "python -m trainer vae --config runs/ablation-cpu/ablation.yaml --data runs/study/data --out runs/study/vae"
N_BOOT = 1000


def clip_psnr(originals: np.ndarray, recons: np.ndarray) -> float:
    """PSNR in dB of one clip: ``10 log10(1 / MSE)`` with MSE over all its frames on the [0, 1] scale (uint8 / 255
    both; ``inf`` for an exact reconstruction)."""
    a = originals.astype(np.float64) / 255.0
    b = recons.astype(np.float64) / 255.0
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def summarise(values: list[float], seed: int = 0) -> dict[str, Any]:
    """Mean of the per-clip PSNRs with its bootstrap CI, min and n."""
    from trainer.eval.stats import bootstrap_ci, nanmean_of

    v = np.asarray([min(x, 99.0) for x in values], dtype=np.float64)  # an exact (black) clip counts as 99 dB
    point, ci = bootstrap_ci(nanmean_of(v), len(v), N_BOOT, seed)
    return {"mean_db": round(point, 3), "ci95": None if ci is None else [round(ci[0], 3), round(ci[1], 3)],
            "min_db": round(float(v.min()), 3) if len(v) else None, "n": int(len(v))}


def reconstruct(model, frames_uint8: np.ndarray, batch: int = 64) -> np.ndarray:
    """Posterior-mean reconstructions of ``(T, H, W, 3)`` uint8 frames, as uint8."""
    import torch

    from trainer.data import frame_to_unit, unit_to_frame

    x = torch.from_numpy(frame_to_unit(frames_uint8))
    outs = []
    with torch.no_grad():
        for chunk in x.split(batch):
            recon, _, _ = model(chunk)
            outs.append(recon.float().clamp(-1, 1))
    return unit_to_frame(torch.cat(outs))


def measure(vae: Path, data: Path, limit: int | None = None) -> tuple[dict[str, Any], list[tuple[np.ndarray, np.ndarray]]]:
    """Per-clip PSNR of every val clip (or the first ``limit``); the report and the first normal clips' middle
    frames (original, reconstruction) for the picture."""
    from shared.shards import VARIANTS, decode_pixel_sample, iter_tar_samples
    from trainer.data import resolve_shards
    from trainer.vae.model import load_vae

    model, cfg, step_dir = load_vae(vae)
    per: dict[str, list[float]] = {v: [] for v in VARIANTS}
    shown: list[tuple[np.ndarray, np.ndarray]] = []
    n, t0 = 0, time.perf_counter()
    for url in resolve_shards(str(data), "val"):
        for _, members in iter_tar_samples(url):
            clip = decode_pixel_sample(members)
            recon = reconstruct(model, clip["frames"])
            variant = clip["meta"].get("variant", "normal")
            per.setdefault(variant, []).append(clip_psnr(clip["frames"], recon))
            if variant == "normal" and len(shown) < PICTURE_CLIPS:
                mid = len(clip["frames"]) // 2
                shown.append((clip["frames"][mid], recon[mid]))
            n += 1
            if limit is not None and n >= limit:
                break
        if limit is not None and n >= limit:
            break
    report = {
        "vae": {"path": str(vae), "checkpoint": step_dir.name, "params": sum(p.numel() for p in model.parameters()),
                "config": cfg.vae.model_dump(mode="json"), "resolution": cfg.render.resolution},
        "data": str(data), "split": "val", "clips": n, "seconds": round(time.perf_counter() - t0, 1),
        "psnr_db": {v: summarise(vals) for v, vals in per.items() if vals},
        "psnr_db_all": summarise([x for vals in per.values() for x in vals]),
        "goal": {"metric": "normal-music val clips' mean PSNR", "threshold_db": GOAL_DB},
    }
    normal = report["psnr_db"].get("normal")
    report["goal"]["met"] = bool(normal and normal["mean_db"] >= GOAL_DB)
    return report, shown


def picture(pairs: list[tuple[np.ndarray, np.ndarray]], out: Path, scale: int = 2) -> None:
    """Originals (top row) above their reconstructions (bottom row), each frame scaled up ``scale``x (nearest)."""
    from PIL import Image

    top = np.concatenate([a for a, _ in pairs], axis=1)
    bottom = np.concatenate([b for _, b in pairs], axis=1)
    grid = np.concatenate([top, bottom], axis=0).repeat(scale, axis=0).repeat(scale, axis=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out, optimize=True)


def training_facts(run: Path) -> dict[str, Any]:
    """Steps, wall time and throughput of the VAE run (its summary.json), when there."""
    f = run / "summary.json"
    if not f.is_file():
        return {}
    s = json.loads(f.read_text())
    keep = ("steps", "seconds_this_session", "samples_per_s", "val", "skipped")
    return {k: s[k] for k in keep if k in s}


def card(report: dict[str, Any], pic: str, commit: str, report_path: str, command: str) -> str:
    """MODEL_CARD.md of the packaged VAE, from its report."""
    rows = []
    for v, s in [*report["psnr_db"].items(), ("all clips", report["psnr_db_all"])]:
        ci = f"[{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]" if s["ci95"] else "n/a"
        rows.append(f"| {v} | {s['mean_db']:.2f} {ci} | {s['min_db']:.2f} | {s['n']} |")
    vc = report["vae"]["config"]
    tr = report.get("training", {})
    normal = report["psnr_db"].get("normal", {})
    verdict = "met" if report["goal"]["met"] else "not met"
    return "\n".join([
        "# synesthete-vae-64: the evidence study's frame VAE (issue 24)",
        "",
        f"A frame VAE for 64×64 px visualizer frames (thin neon curves on black): {report['vae']['params']:,} "
        f"parameters, {vc['downsample']}× down-sampling to {vc['latent_channels']} latent channels "
        f"(base {vc['base_channels']}, max {vc['max_channels']} channels), EMA weights of step "
        f"{report['vae']['checkpoint'].split('-')[-1].lstrip('0')}. It is trained once on the `cpu` preset's data "
        "(`bench/responsiveness_ablation.py --preset cpu`: 1,024 training clips at 12 fps) and reused by every arm "
        "of the study and by the model it ships: data and latents are remade from the config, the VAE is not.",
        "",
        f"**Goal (issue 24): val PSNR ≥ {GOAL_DB:.0f} dB on normal-music clips: {verdict}** "
        f"({normal.get('mean_db', float('nan')):.2f} dB, the mean over clips"
        + (f"; its 95% CI [{normal['ci95'][0]:.2f}, {normal['ci95'][1]:.2f}] "
           + ("reaches below the goal" if normal["ci95"][0] < GOAL_DB else "is above the goal")
           if normal.get("ci95") else "") + ").",
        "",
        f"Val split, every clip, PSNR per clip (MSE over its frames on the [0, 1] scale), mean and 95% bootstrap CI "
        f"over clips (an exact reconstruction would count as 99 dB). "
        f"Measured at commit {commit}; raw report `{report_path}`.",
        "",
        "| variant | PSNR dB, mean [95% CI] | worst clip dB | clips |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Originals (top) above their reconstructions (bottom), the middle frame of the first {PICTURE_CLIPS} "
        "normal-music val clips, shown 2× (nearest neighbour):",
        "",
        f"![originals above reconstructions]({pic})",
        "",
        f"Training: {tr.get('steps', '?')} steps at batch {vc['batch_size']} on the 2-core CPU box"
        + (f"; {report['schedule']}" if report.get("schedule") else "") + " (the commands below).",
        "",
        "Reproduce:",
        "",
        "```",
        "python bench/responsiveness_ablation.py --preset cpu --config-only   # writes runs/ablation-cpu/ablation.yaml",
        "python -m datagen run --config runs/ablation-cpu/ablation.yaml --out runs/study/data",
        *report.get("train_commands", [DEFAULT_TRAIN]),
        command,
        "```",
        "",
    ])


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when under it, else as given."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return str(p.relative_to(r)) if p.is_relative_to(r) else str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vae", required=True, type=Path, help="the trained VAE (a `trainer vae` run dir or a packaged VAE)")
    ap.add_argument("--data", required=True, type=Path, help="pixel shards with a val split (the study's data)")
    ap.add_argument("--report", type=Path, default=REPO / "docs/results/reports/synesthete-vae-64/psnr.json")
    ap.add_argument("--picture", type=Path, default=None,
                    help="originals above reconstructions (default: recon.png in --package, else beside --report)")
    ap.add_argument("--package", type=Path, default=None, metavar="DEST",
                    help="package --vae (a run dir) here with its MODEL_CARD.md")
    ap.add_argument("--limit", type=int, default=None, help="only the first N val clips (for a quick check)")
    ap.add_argument("--train-command", action="append", default=[], metavar="CMD",
                    help="a command that trained --vae, in order (repeatable; the card's reproduce block; default: one "
                         "`trainer vae` run of the preset)")
    ap.add_argument("--schedule", default=None, help="one line on the training schedule, for the card")
    args = ap.parse_args(argv)
    if not args.vae.exists():
        raise SystemExit(f"--vae {args.vae}: not found")
    report, shown = measure(args.vae, args.data, args.limit)
    report["training"] = training_facts(args.vae)
    report["train_commands"] = args.train_command or [DEFAULT_TRAIN]
    if args.schedule:
        report["schedule"] = args.schedule
    from shared.provenance import code_commit

    report["commit"] = code_commit(REPO) or "unknown"
    report["command"] = "python bench/study_vae.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    pic = args.picture or ((args.package / "recon.png") if args.package else args.report.with_name("vae_recon.png"))
    if args.package:
        from trainer.checkpoint import package_vae

        files = package_vae(args.vae, args.package)
        report["packaged"] = {"dest": str(args.package), "bytes": sum(f.stat().st_size for f in files)}
    picture(shown, pic)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.package:
        pic_ref = relative(pic, args.package) if Path(pic).resolve().is_relative_to(args.package.resolve()) \
            else relative(pic, REPO)
        (args.package / "MODEL_CARD.md").write_text(
            card(report, pic_ref, report["commit"], relative(args.report, REPO), report["command"]), encoding="utf-8")
    normal = report["psnr_db"].get("normal")
    print(f"study_vae: {report['clips']} val clips; normal-music PSNR "
          f"{normal['mean_db'] if normal else float('nan'):.2f} dB (goal {GOAL_DB:.0f}: "
          f"{'met' if report['goal']['met'] else 'not met'}); all clips {report['psnr_db_all']['mean_db']:.2f} dB; "
          f"report {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
