"""The prepared GPU suite (bench/gpu_suite.sh, bench/gpu_suite.py, bench/gpu_results.py) in its --smoke mode:
the same entry points at tiny size on the CPU, so that the suite cannot rot between GPU runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_results  # noqa: E402
import gpu_suite  # noqa: E402
from train_throughput import datasheet_bf16_tflops  # noqa: E402

STEPS = [name for name, _ in gpu_suite.STEPS]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_smoke_suite_runs_every_step_and_writes_a_results_section(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_suite.sh"), "--out", str(out), "--smoke"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    entries = gpu_results.read_results(out / "results.jsonl")
    assert [e["name"] for e in entries] == STEPS
    failed = {e["name"]: e.get("error") for e in entries if not e["ok"]}
    assert not failed, failed
    by = {e["name"]: e["result"] for e in entries}
    assert by["ddp"]["backend"] == "gloo" and by["ddp"]["grad_relative_error"] <= gpu_suite.DDP_TOLERANCE
    assert by["resume"]["resumed_from"] == 2 and by["resume"]["weights_relative_error"] == 0.0  # exact on the CPU
    assert by["bf16"]["output_dtype"] == "bfloat16"
    assert by["train"]["samples_per_s"] > 0 and 0 < by["train"]["mfu"] < 1
    assert by["sample"]["frames"] > 0 and by["sample"]["snippet_latency_ms"] > 0
    assert by["datagen"]["rows"][0]["frames"] > 0 and "llvmpipe" in by["datagen"]["gl"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] and summary["figures"]["datagen_fps"] > 0
    section = (out / "RESULTS_section.md").read_text()
    assert section.startswith("## GPU suite\n") and "Mode: **smoke**" in section and "FAILED" not in section

    # the results file -> bench/RESULTS.md's section, other sections kept
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Benchmark results\n\n## Render throughput\n\nkeep me\n")
    assert gpu_results.main([str(out / "results.jsonl"), "--write", str(results_md)]) == 0
    text = results_md.read_text()
    assert "## Render throughput\n\nkeep me" in text and text.count("## GPU suite") == 1
    assert "| training snippets/s |" in text and "Command: `bash bench/gpu_suite.sh --out DIR --smoke`" in text


def test_steps_past_the_time_budget_are_skipped_and_reported(tmp_path):
    assert gpu_suite.main(["--out", str(tmp_path), "--smoke", "--budget-s", "0"]) == 0
    entries = gpu_results.read_results(tmp_path / "results.jsonl")
    assert [e["name"] for e in entries] == STEPS and all(e["ok"] is None for e in entries)
    assert "| train | skipped | time budget of 0 s spent" in (tmp_path / "RESULTS_section.md").read_text()


def test_datasheet_peaks_pick_the_most_specific_name():
    assert datasheet_bf16_tflops("NVIDIA H200") == 989.5
    assert datasheet_bf16_tflops("NVIDIA H100 PCIe") == 756.5
    assert datasheet_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.5
    assert datasheet_bf16_tflops("NVIDIA L40S") == 362.05 and datasheet_bf16_tflops("NVIDIA L4") == 121.0
    assert datasheet_bf16_tflops("Some Future GPU") is None


def test_full_mode_refuses_a_machine_without_an_nvidia_driver(tmp_path):
    import shutil

    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU machine: the full mode would run (and unpack the carried .debs into /)")
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_suite.sh"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no nvidia-smi here"), proc.stderr
    assert not (tmp_path / "out" / "results.jsonl").exists()
