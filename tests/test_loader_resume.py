"""The bootstrap curriculum through the real training loop: a run stopped at a checkpoint and resumed ends
bit-identical to one run straight through (the variant reweighting is a function of (seed, step))."""

from __future__ import annotations

import json
import shutil

import torch

from shared import shards as S
from test_diffusion_train import TINY_MODEL, latent_data  # noqa: F401  (latent_data is a pytest fixture)
from trainer import checkpoint as ckpt
from trainer_shards import rewrite_member


def _half_normal(latents, dst):
    """A copy of the (all-debug) latent set with the first clip of every shard relabelled normal."""
    shutil.copytree(latents, dst)
    for split in ("train", "val"):
        for path in sorted((dst / split).glob("shard-*.tar")):
            key = S.sample_key(S.shard_index(path), 0)
            tmp = path.with_suffix(".tmp")
            rewrite_member(path, tmp, f"{key}.{S.META}", lambda b: b.replace(b'"debug"', b'"normal"'))
            tmp.replace(path)
    return dst


def test_curriculum_resumes_bit_exact(latent_data, tmp_path):  # noqa: F811
    from shared.command_line import run_cli

    root, cfg_file = latent_data
    latents = _half_normal(root / "latents", tmp_path / "latents")
    common = ["--config", str(cfg_file), "--latents", str(latents), "diffusion.val_every=100", "run.sample_every=100",
              *TINY_MODEL, "run.checkpoint_every=2", "run.num_workers=2",
              "data.audio_debug_mix_schedule_steps=4", "data.audio_debug_mix_prob=0", "data.audio_silence_mix_prob=0"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("trainer", "trainer.commands", "trainer", ["diffusion", "--out", str(a), "--steps", "6", *common]) == 0
    assert run_cli("trainer", "trainer.commands", "trainer", ["diffusion", "--out", str(b), "--steps", "2", *common]) == 0
    assert run_cli("trainer", "trainer.commands", "trainer", ["diffusion", "--out", str(b), "--steps", "6", *common]) == 0
    lines = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    mix = {x["step"]: x["train/debug_mix"] for x in lines if "train/debug_mix" in x}
    assert [mix[s] for s in range(1, 7)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]  # falls over the 4 curriculum steps
    _, ta, _ = ckpt.load_checkpoint(a)
    step_b, tb, _ = ckpt.load_checkpoint(b)
    assert step_b == 6
    for part in ("model", "ema"):
        for k in ta[part]:
            assert torch.equal(ta[part][k], tb[part][k]), (part, k)
