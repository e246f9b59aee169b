"""The model shipped under models/: within the size limits, and `trainer sample --audio FILE` uses it by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from shared.video import probe
from trainer.models import MODELS_DIR as SHIPPED_MODEL, SAMPLE30_RECORD, SHIPPED, cpu_default_order, model_parameters

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / SHIPPED_MODEL / SHIPPED[0]


def test_shipped_model_files_fit_the_repository_limits():
    files = [p for p in MODEL.rglob("*") if p.is_file() and not p.is_symlink()]
    assert (MODEL / "MODEL_CARD.md").is_file() and (MODEL / "config.yaml").is_file()
    assert (MODEL / "latest" / "ema.safetensors").is_file() and (MODEL / "vae" / "latest" / "ema.safetensors").is_file()
    assert max(p.stat().st_size for p in files) <= 16 << 20
    assert sum(p.stat().st_size for p in files) <= 48 << 20


def test_sample_without_checkpoint_uses_the_shipped_model(tmp_path):
    # a working dir without runs/diffusion, where models/ is the repository's
    (tmp_path / "models").symlink_to(ROOT / "models", target_is_directory=True)
    sr = 16000
    t = np.arange(2 * sr) / sr
    beat = (t % 0.5) < 0.2  # four bursts, silence between them
    wave = (0.4 * np.sin(2 * np.pi * 110 * t) * beat + 0.2 * np.random.default_rng(0).standard_normal(len(t)) * beat)
    sf.write(tmp_path / "song.wav", wave.astype(np.float32), sr)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "trainer", "sample", "--audio", "song.wav", "--no-progress"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{SHIPPED_MODEL}/{SHIPPED[0]}" in r.stderr
    info = probe(tmp_path / "song.mp4")
    fps = info["fps"]
    assert info["has_audio"] and info["codec"] == "h264"
    assert info["n_frames"] == int(2 * fps)
    # the pictures move: decode and compare the frames
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "song.mp4"), "-f", "rawvideo", "-pix_fmt",
                          "rgb24", "-"], capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, info["height"], info["width"], 3).astype(np.float32)
    assert frames.std() > 1.0
    assert np.abs(np.diff(frames, axis=0)).mean() > 0.1


def test_shipped_config_spells_out_every_field_so_schema_defaults_do_not_reach_it():
    import yaml

    from shared.config import SECTIONS, Config

    saved = yaml.safe_load((MODEL / "config.yaml").read_text())["config"]
    for section in SECTIONS:
        fields = set(type(getattr(Config(), section)).model_fields)
        assert set(saved[section]) == fields, f"{section}: missing {sorted(fields - set(saved[section]))}"


def test_cpu_default_order_puts_the_largest_model_within_the_limit_first():
    sizes = {"a": 10, "b": 30, "c": 20, "d": 40}
    secs = {"a": 5.0, "b": 70.0, "c": 59.0, "d": 61.0}
    assert cpu_default_order(sizes, secs) == ("c", "a", "d", "b")
    assert cpu_default_order(sizes, secs, limit_s=80.0) == ("d", "b", "c", "a")


def test_the_shipped_order_is_the_cpu_rule_over_the_committed_timings():
    """SHIPPED is what the rule makes of each shipped model's size and its committed 30 s sampling record."""
    sizes, secs = {}, {}
    for name in SHIPPED:
        record = json.loads((ROOT / SAMPLE30_RECORD.format(name=name)).read_text())
        assert record["rc"] == 0 and f"models/{name}" in record["command"]
        sizes[name], secs[name] = model_parameters(ROOT / SHIPPED_MODEL / name)["total"], float(record["wall_s"])
    assert SHIPPED == cpu_default_order(sizes, secs)
    assert secs[SHIPPED[0]] <= 60.0
