"""The GPU suite's results file -> the ``## GPU suite`` section of bench/RESULTS.md (machine, command, figures).

    python bench/gpu_results.py DIR/results.jsonl --write bench/RESULTS.md

``DIR/results.jsonl`` is what bench/gpu_suite.py writes, one JSON object per step. The section holds the
machine (the GPU as nvidia-smi names it), the command, each check with its measured error and tolerance,
and the figures beside the goals of issue 16; a step that failed or was skipped says so. Other sections of
the file are left as they are (shared.markdown.replace_section).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.markdown import replace_section  # noqa: E402

SECTION = "## GPU suite"
# The copy-and-paste command lines (issue 27), kept in the section whenever a results file rewrites it.
COMMANDS = """### Commands: prepare, rehearse, run

On a CPU machine with package access (the dev venv from scripts/setup.sh), then on the GPU machine
(no package access there; carry `.whl` and `.gl` with the tree):

```bash
bash bench/gpu_prepare.sh                       # -> .whl/ (cp312 wheels) and .gl/ (GL loader .debs), ~34 MiB, git-ignored
python bench/gpu_carry.py                       # what the calls import is in the image list or carried (tests/test_gpu_carry.py)
# the rehearsal: a Python 3.12 venv with image packages only (bench/gpu_image_packages.txt; no torch: its
# PyPI wheel is a CUDA build of several GB), the carried wheels installed as the GPU call installs them
~/.pyenv/versions/3.12.1/bin/python -m venv /tmp/py312img
/tmp/py312img/bin/pip install --only-binary=:all: numpy==2.5.2 scipy pillow opencv-python-headless numba \\
    safetensors==0.8.0 pyyaml tqdm psutil tensorboard matplotlib scikit-learn joblib lazy-loader msgpack \\
    requests packaging threadpoolctl typing-extensions
bash bench/gpu_rehearse.sh --python /tmp/py312img/bin/python --out /tmp/reh312
# the torch steps: the same on CPython 3.11, where the CPU torch wheel is at hand (cp311 carried wheels)
~/.pyenv/versions/3.11.7/bin/python -m venv /tmp/py311img
/tmp/py311img/bin/pip install --only-binary=:all: torch==2.13.0+cpu numpy scipy pillow opencv-python-headless \\
    numba safetensors==0.8.0 pyyaml tqdm psutil tensorboard matplotlib scikit-learn joblib lazy-loader msgpack \\
    requests packaging threadpoolctl typing-extensions
GPU_PYTHON_VERSION=3.11 GPU_WHL=/tmp/whl311 GPU_GL=/tmp/gl311 bash bench/gpu_prepare.sh
GPU_WHL=/tmp/whl311 bash bench/gpu_rehearse.sh --python /tmp/py311img/bin/python --out /tmp/reh311
# on the GPU machine: the two calls, then back here
bash bench/gpu_suite.sh --out OUT/suite         # ~4 min
bash bench/gpu_model.sh --out OUT/model         # <= 340 s of steps (--budget-s): OUT/model/model.tar (fp16 EMA weights, configs, eval report)
python bench/gpu_results.py OUT/suite/results.jsonl --write bench/RESULTS.md   # replaces this section
```
"""
# (figure key, label, goal text) in the order the table lists them; goals from issue 16 (on an H200).
FIGURES = [
    ("train_mfu", "training MFU vs measured bf16 matmul peak (full preset, shuffle pass)", ">= 45%"),
    ("train_mfu_datasheet", "training MFU vs datasheet dense bf16 peak", "reported"),
    ("train_samples_per_s", "training snippets/s", ""),
    ("train_peak_memory_gib", "training peak memory (GiB)", ""),
    ("matmul_peak_tflops", "measured matmul peak (TFLOP/s; 8192³ bf16 on a GPU)", ""),
    ("sample_single_fps", "sampling frames/s, one stream (mp4 written)", ">= 24"),
    ("sample_latency_ms", "snippet latency, one stream (ms, median)", "<= 150"),
    ("sample_batched_fps", "sampling frames/s, batched streams", ">= 100"),
    ("sample_batched_latency_ms", "snippet latency, batched streams (ms, median; one snippet of every stream)", ""),
    ("render_mean_fps", "EGL render limit, mean over primitives (frames/s, one process, draw+read)", ""),
    ("datagen_fps", "datagen run into shards, steady (frames/s, all workers)", ">= 15000"),
    ("datagen_render_limit_fps", "render-only limit of the same processes (frames/s)", ""),
]


def read_results(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _result(entries: list[dict], name: str) -> dict | None:
    for e in entries:
        if e["name"] == name and e.get("ok"):
            return e["result"]
    return None


def headline_figures(entries: list[dict]) -> dict[str, Any]:
    """The figures the goals are about, from whichever steps passed (missing ones are absent)."""
    f: dict[str, Any] = {}
    if (t := _result(entries, "train")) is not None:
        f.update(train_mfu=t["mfu"], train_mfu_datasheet=t.get("mfu_datasheet"), train_samples_per_s=t["samples_per_s"],
                 train_peak_memory_gib=t.get("peak_memory_gib"), matmul_peak_tflops=t["peak_tflops"])
    if (s := _result(entries, "sample")) is not None:
        f.update(sample_single_fps=s["single"], sample_latency_ms=s["snippet_latency_ms"], sample_batched_fps=s["batched"],
                 sample_batched_latency_ms=s.get("batched_snippet_latency_ms"))
    if (r := _result(entries, "render")) is not None:
        f["render_mean_fps"] = r["mean_draw_read"]
    if (d := _result(entries, "datagen")) is not None and d["rows"]:
        row = d["rows"][-1]
        f.update(datagen_fps=round(row["e2e"], 1), datagen_render_limit_fps=round(row["render"], 1))
    return f


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if "mfu" in key:
        return f"{v * 100:.1f}%"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 1 else f"{v:.3g}"
    return str(v)


def _check_line(e: dict) -> str:
    name = e["name"]
    if e.get("ok") is None:
        return f"| {name} | skipped | {e.get('skipped', '')} |"
    if not e["ok"]:
        return f"| {name} | FAILED | {e['error'].splitlines()[0][:300]} |"
    r = e["result"]
    detail = {
        "selftest": lambda: "; ".join(l.split(": ", 1)[1] for l in r["lines"]),
        "bf16": lambda: f"max rel. error {r['relative_error']:.2g} <= {r['tolerance']:g}, output {r['output_dtype']}",
        "ddp": lambda: f"{r['backend']}, world {r['world_size']}: grad rel. error {r['grad_relative_error']:.2g} <= {r['tolerance']:g}",
        "resume": lambda: (f"resumed from step {r['resumed_from']}: loss rel. error {r['loss_relative_error']:.2g} <= "
                           f"{r['tolerance']['loss']:g}, weights {r['weights_relative_error']:.2g} <= {r['tolerance']['weights']:g}"),
        "train": lambda: (f"{r['params_M']} M params, width {r['width']} x {r['depth']} blocks, batch {r['batch']} x "
                          f"{r['snippet_frames']} frames, {r['tokens_per_snippet']} tokens/snippet, {r['precision']}, "
                          f"compiled {r['compiled']}, {r['gflop_per_step']} GFLOP/step"
                          + (f"; out of memory at the default batch, measured at {r['batch']}"
                             if r.get("out_of_memory_at_default_batch") else "")),
        "sample": lambda: (f"{r['params_M']} M params, {r['resolution']}² @ {r['fps']:g} fps, {r['sampler']} x {r['steps']} "
                           f"steps, CFG {r['guidance']:g}, {r['frames']} frames, {r['batch']} batched streams; first snippet "
                           f"{r['first_snippet_ms']} ms"),
        "sampling_paths": lambda: (f"decode overlapped vs sequential: max |diff| {r['overlap_max_abs_diff']}; compiled "
                                   f"({r['compile_mode']}) vs eager: mean |diff| {r['compiled_mean_abs_diff']} <= "
                                   f"{r['tolerance']:g} levels"),
        "render": lambda: f"{r['gl'].get('renderer')}: min {r['min_draw_read']}, max {r['max_draw_read']} frames/s",
        "datagen": lambda: "; ".join(f"{x['resolution']}², {x['workers']} workers: wall {x['wall']:.0f}, steady {x['e2e']:.0f}, "
                                     f"render-only {x['render']:.0f}, JPEG-only {x['encode']:.0f} f/s" for x in r["rows"]),
    }.get(name, lambda: "")
    return f"| {name} | ok ({e['seconds']:.0f} s) | {detail()} |"


def section_text(entries: list[dict]) -> str:
    machine = next((e for e in entries if e["name"] == "machine"), None)
    m = machine["result"] if machine and machine.get("ok") else {}
    mode = entries[0].get("mode", "?") if entries else "?"
    gpu = m.get("gpu") or "no GPU"
    lines = [
        SECTION, "",
        f"`bash bench/gpu_suite.sh --out DIR` (bench/gpu_suite.py; bench/gpu_prepare.sh first, on a machine with package "
        f"access), then `python bench/gpu_results.py DIR/results.jsonl --write bench/RESULTS.md`. Mode: **{mode}**"
        + (" (tiny sizes on the CPU: proves the suite runs; not performance figures)." if mode == "smoke" else "."),
        f"Machine: {gpu}" + (f" (driver {m['driver']}, {m['gpu_memory']}, max SM clock {m['max_sm_clock']})" if m.get("driver") else "")
        + f"; {m.get('cpus', '?')} CPUs, 1-min load {m.get('load_1min', '?')}; Python {m.get('python', '?')}, torch "
        f"{m.get('torch', '?')} (CUDA {m.get('cuda')}).",
        f"Command: `{machine.get('command', '?') if machine else '?'}`", "",
        "| step | status | detail |", "|---|---|---|",
        *[_check_line(e) for e in entries if e["name"] != "machine"], "",
    ]
    figs = headline_figures(entries)
    lines += ["| figure | value | goal |", "|---|---:|---|"]
    lines += [f"| {label} | {_fmt(key, figs.get(key))} | {goal} |" for key, label, goal in FIGURES]
    lines += ["", COMMANDS.rstrip("\n")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="results.jsonl written by bench/gpu_suite.py")
    ap.add_argument("--write", type=Path, default=None, metavar="RESULTS.md", help="Replace the section in this file.")
    args = ap.parse_args(argv)
    if not args.results.is_file():
        print(f"error: {args.results}: no such results file", file=sys.stderr)
        return 2
    text = section_text(read_results(args.results))
    print(text)
    if args.write:
        replace_section(args.write, SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
