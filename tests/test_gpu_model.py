"""The GPU model call (bench/gpu_model.sh, bench/gpu_model.py): its --smoke mode runs the whole chain at tiny
size on the CPU (data -> VAE -> latents -> diffusion -> eval -> tar), and its full plan fits the issue's limits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_model  # noqa: E402

STEPS = ["datagen", "vae", "cache-latents", "diffusion", "eval"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_smoke_runs_the_chain_and_tars_fp16_weights_configs_and_report(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_model.sh"), "--out", str(out), "--smoke"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    entries = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [e["name"] for e in entries] == [*STEPS, "tar"] and all(e["ok"] for e in entries), entries
    with tarfile.open(out / "model.tar") as tar:
        names = set(tar.getnames())
        tar.extractall(tmp_path / "x", filter="data")
    for run in ("vae", "diffusion"):
        assert {f"{run}/config.yaml", f"{run}/summary.json"} <= names
        assert any(n.startswith(f"{run}/ckpt/") and n.endswith("/ema.fp16.safetensors") for n in names)
        assert not any(n.endswith(("optim.safetensors", "model.safetensors")) for n in names)
    assert json.loads((tmp_path / "x" / "eval" / "report.json").read_text())

    # the float16 copy holds the run's EMA weights to float16 precision
    from safetensors.torch import load_file

    half = next((tmp_path / "x" / "diffusion" / "ckpt").glob("*/ema.fp16.safetensors"))
    full = load_file(str(out / "work" / "diffusion" / "latest" / "ema.safetensors"))
    got = load_file(str(half))
    assert got.keys() == full.keys()
    for k, v in full.items():
        if v.is_floating_point():
            assert got[k].dtype.itemsize == 2 and (got[k].float() - v).abs().max() <= 1e-3 * (1 + v.abs().max())


def test_full_plan_is_128px_processes_executor_and_under_five_million_parameters(tmp_path):
    import torch

    from shared.config import build_config
    from trainer.diffusion.model import Denoiser
    from trainer.diffusion.synthetic import n_audio_channels
    from trainer.vae.model import FrameVAE

    steps = gpu_model.plan(tmp_path, gpu_model.FULL, py="python")
    assert [s.name for s in steps] == STEPS
    datagen = steps[0].argv
    assert datagen[:4] == ["python", "-m", "datagen", "run"] and datagen[datagen.index("--executor") + 1] == "processes"
    assert steps[-1].argv[3] == "eval" and steps[-1].done == tmp_path / "eval" / "report.json"
    cfg = build_config([gpu_model.CONFIG], overrides=gpu_model.FULL)
    assert cfg.render.resolution == 128
    with torch.device("meta"):
        denoiser = Denoiser(cfg, cfg.vae.latent_channels, cfg.render.resolution // cfg.vae.downsample,
                            n_audio_channels(cfg))
        vae = FrameVAE(cfg.vae)
    params = sum(p.numel() for m in (denoiser, vae) for p in m.parameters())
    assert params <= 5_000_000, params
    assert params * 2 <= 10 * 2**20  # their float16 weights fit the 10 MiB share


def test_plan_mode_prints_the_command_lines_and_runs_nothing(tmp_path, capsys):
    assert gpu_model.main(["--out", str(tmp_path / "out"), "--smoke", "--plan"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(STEPS) and all(" -m " in line for line in lines)
    assert not (tmp_path / "out").exists()


def test_full_mode_refuses_a_machine_without_an_nvidia_driver(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU machine: the full mode would run (and unpack the carried .debs into /)")
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_model.sh"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no nvidia-smi here"), proc.stderr
    assert not (tmp_path / "out" / "steps.jsonl").exists()


def test_steps_option_selects_steps_and_refuses_unknown_ones(tmp_path, capsys):
    assert gpu_model.main(["--out", str(tmp_path), "--smoke", "--plan", "--steps", "datagen", "eval"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[3] for line in lines] == ["run", "eval"]
    with pytest.raises(SystemExit):
        gpu_model.main(["--out", str(tmp_path), "--plan", "--steps", "nosuchstep"])


def test_the_results_section_keeps_the_command_lines_of_both_calls_and_the_rehearsal():
    import gpu_results

    text = gpu_results.section_text([])
    for line in ("bash bench/gpu_prepare.sh", "bash bench/gpu_rehearse.sh --python /tmp/py312img/bin/python",
                 "bash bench/gpu_suite.sh --out OUT/suite", "bash bench/gpu_model.sh --out OUT/model"):
        assert line in text
    for script in ("gpu_prepare.sh", "gpu_rehearse.sh", "gpu_suite.sh", "gpu_model.sh", "gpu_carry.py"):
        assert (ROOT / "bench" / script).is_file()
    assert gpu_results.COMMANDS in (ROOT / "bench" / "RESULTS.md").read_text()


def test_full_call_renders_with_one_worker_per_cpu(tmp_path, capsys):
    assert gpu_model.main(["--out", str(tmp_path), "--plan", "--steps", "datagen"]) == 0
    assert f"run.workers={os.cpu_count()}" in capsys.readouterr().out.split()
