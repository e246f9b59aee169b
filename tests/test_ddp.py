"""`torchrun --nproc_per_node 2` (gloo on the CPU): VAE steps with DDP and rank-0 checkpointing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.config import build_config
from trainer.checkpoint import list_checkpoints, load_checkpoint
from trainer_shards import write_pixel_shards

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = ["render.resolution=32", "render.fps=8", "data.sample_rate=8000", "data.clip_seconds=2.0", "timeline.n_fft=256",
        "vae.base_channels=8", "vae.max_channels=16", "vae.batch_size=4", "vae.warmup_steps=1",
        "run.num_workers=0", "run.log_every=1", "run.sample_every=100", "run.checkpoint_every=100", "run.device=cpu"]


def torchrun(*argv: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "trainer"), *argv]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_torchrun_two_ranks_train_two_vae_steps_and_write_one_checkpoint(tmp_path):
    cfg = build_config([ROOT / "configs" / "tiny.yaml"], overrides=TINY)
    # 4 train shards: each rank reads its own shards (resampled per rank)
    write_pixel_shards(tmp_path / "pixels", cfg, train_shards=2, val_shards=1, samples_per_shard=2)
    out = tmp_path / "run"
    proc = torchrun("vae", "--data", str(tmp_path / "pixels"), "--out", str(out), "--steps", "2", *TINY)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.name for p in list_checkpoints(out)] == ["step-00000002"]
    step, tensors, state = load_checkpoint(out)
    assert step == 2 and state["samples_seen"] == 2 * 2 * 4  # steps x ranks x per-rank batch
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines if "train/loss" in l] == [1, 2]  # rank 0 logs alone
    assert all(torch.isfinite(v).all() for v in tensors["model"].values())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_torchrun_cache_latents_splits_shards_across_ranks(tmp_path):
    from shared import shards as S
    from trainer.checkpoint import prepare_run_dir, save_checkpoint
    from trainer.vae import FrameVAE

    cfg = build_config([ROOT / "configs" / "tiny.yaml"], overrides=TINY)
    keys = write_pixel_shards(tmp_path / "pixels", cfg, train_shards=3, val_shards=1, samples_per_shard=1)
    # an untrained VAE is enough here: this checks who writes which shard, not the latents' quality
    vae = FrameVAE(cfg.vae)
    prepare_run_dir(tmp_path / "vae", cfg, ("vae",))
    save_checkpoint(tmp_path / "vae", 0, {"model": vae.state_dict(), "ema": vae.state_dict()}, {}, keep=1)
    out = tmp_path / "latents"
    proc = torchrun("cache-latents", "--data", str(tmp_path / "pixels"), "--vae", str(tmp_path / "vae"),
                    "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["this_run"]["world_size"] == 2
    assert manifest["this_run"]["shards_written"] == 4 and manifest["this_run"]["shards_skipped"] == 0
    for split in ("train", "val"):
        got = [k for p in sorted((out / split).glob("*.tar")) for k, _ in S.iter_tar_samples(p)]
        assert got == keys[split]
    assert not list(out.rglob("*.partial"))


def test_distributed_world_meets_at_a_barrier_only_on_a_normal_exit(monkeypatch):
    """The barrier before the group's teardown runs when the command finished, never after an error (a failed
    peer would not reach it, and the others would wait for it forever)."""
    import trainer.runtime.distributed as rd

    calls: list[str] = []
    monkeypatch.setattr(rd, "barrier", lambda d: calls.append("barrier"))
    monkeypatch.setattr(rd, "cleanup_distributed", lambda: calls.append("cleanup"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with rd.distributed_world("cpu") as dist:
        assert dist.world_size == 1 and dist.is_main
    assert calls == ["barrier", "cleanup"]
    calls.clear()
    with pytest.raises(ValueError, match="boom"):
        with rd.distributed_world("cpu"):
            raise ValueError("boom")
    assert calls == ["cleanup"]
