"""Snippet loader rate: snippets/s the diffusion loader delivers, against what a training step consumes.

Times ``trainer.data.ShardDataset`` (latent shards -> collated snippet batches, the loader `trainer diffusion`
uses) at the production clip shape (``Config()`` defaults: 8 s at 24 fps = 192 frames of 4x32x32 fp16
latents, F = 8, batch 32) and at configs/tiny.yaml's, for ``snippets_per_clip`` 1 and 4 and several worker
counts, on synthetic shards written once (bench/loader_vae_throughput.py's writer). ``--consumption`` also
times the tiny diffusion training step on the CPU (bench/loader_vae_throughput.py), for the loader/step ratio.

    python bench/snippet_loader_rate.py --write        # writes the "## Snippet loader" section of RESULTS.md

Machine load matters on a shared box: the load average before and after is part of the result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.config import build_config  # noqa: E402
from shared.markdown import replace_section  # noqa: E402
from trainer.data import ShardDataset, resolve_shards  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from loader_vae_throughput import diffusion_consumption, loader_rate, write_synthetic_shards  # noqa: E402

SECTION = "## Snippet loader"
RESULTS = ROOT / "bench" / "RESULTS.md"


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average %.2f, %.2f, %.2f" % os.getloadavg()


def supports_snippets_per_clip() -> bool:
    import inspect
    return "snippets_per_clip" in inspect.signature(ShardDataset.__init__).parameters


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="0,2", help="DataLoader worker counts to time.")
    p.add_argument("--per-clip", default="1,4", help="snippets_per_clip values to time.")
    p.add_argument("--batches", type=int, default=10, help="Timed batches per case (after the first).")
    p.add_argument("--shapes", default="full,tiny", help="Clip shapes: full (Config() defaults) and/or tiny.")
    p.add_argument("--consumption", action="store_true", help="Also time the tiny diffusion step on the CPU.")
    p.add_argument("--label", default="", help="A label for this run in the JSON (e.g. before/after).")
    p.add_argument("--json", default=None, help="Write the result as JSON here.")
    p.add_argument("--before", default=None, help="A JSON written by --json from the code before a change: the "
                   "section then shows both, side by side.")
    p.add_argument("--write", action="store_true", help="Write the section into bench/RESULTS.md.")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    shapes = {"full": build_config(), "tiny": build_config([ROOT / "configs" / "tiny.yaml"])}
    result: dict = {"label": args.label, "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
                    "uptime_before": uptime(), "rates": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.shapes.split(","):
            cfg = shapes[name]
            frames = int(cfg.data.clip_seconds * cfg.render.fps)
            # pixels at 16 px only: the writer makes both kinds, and only the latents are timed here
            _, latents = write_synthetic_shards(Path(tmp) / name, cfg, 4, 8, frames, 16)
            batch = cfg.diffusion.batch_size
            for per_clip in [int(x) for x in args.per_clip.split(",")]:
                for w in [int(x) for x in args.workers.split(",")]:
                    kw = {"snippets_per_clip": per_clip} if supports_snippets_per_clip() else {}
                    ds = ShardDataset(resolve_shards(latents), cfg, "snippets", source="latents", shuffle=64, **kw)
                    key = f"{name}_k{per_clip}_w{w}"
                    result["rates"][key] = round(loader_rate(ds, batch, w, args.batches), 1)
                    print(json.dumps({key: result["rates"][key]}), flush=True)
            if args.consumption and name == "tiny":
                result["tiny_step_consumption"] = round(diffusion_consumption(cfg, latents, torch.device("cpu"), 3), 2)
                print(json.dumps({"tiny_step_consumption": result["tiny_step_consumption"]}), flush=True)
    result["uptime_after"] = uptime()
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.write:
        before = json.loads(Path(args.before).read_text()) if args.before else None
        replace_section(RESULTS, SECTION, section_text(result, before, argv if argv is not None else sys.argv[1:]))
    return 0


def section_text(r: dict, before: dict | None, argv: list[str]) -> str:
    head = ["| case | " + ("before | after |" if before else "snippets/s |"), "|---|" + ("---:|---:|" if before else "---:|")]
    rows = []
    for key, rate in r["rates"].items():
        shape, k, w = key.split("_")
        label = f"{shape} clip, snippets_per_clip={k[1:]}, {w[1:]} workers"
        rows.append(f"| {label} | " + (f"{before['rates'].get(key, '-')} | {rate} |" if before else f"{rate} |"))
    lines = [SECTION, "", f"`python bench/snippet_loader_rate.py {' '.join(argv)}` on {r['machine']}, one torch thread; "
             f"`uptime` before: `{r['uptime_before']}`, after: `{r['uptime_after']}`"
             + (f" (before-run: `{before['uptime_before']}`)" if before else "") + ". full = Config() defaults "
             "(192 frames of 4x32x32 fp16 latents per clip, F=8, batch 32), tiny = configs/tiny.yaml; snippets/s of "
             "collated batches after the first.", "", *head, *rows, ""]
    if "tiny_step_consumption" in r:
        lines += [f"The tiny diffusion training step on this CPU consumes {r['tiny_step_consumption']} snippets/s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
