"""Frame VAE: loss terms, model shapes, training through the real `trainer vae` entry, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from shared import shards as S
from shared.command_line import run_cli
from shared.config import build_config
from trainer.checkpoint import load_checkpoint
from trainer.vae import FrameVAE, edge_loss, kl_loss, psnr, vae_loss
from trainer.vae.model import stage_widths
from killing import KILLED, run_killed
from trainer_shards import rewrite_member, write_pixel_shards

ROOT = Path(__file__).resolve().parents[1]
TINY = ["render.resolution=32", "render.fps=8", "data.sample_rate=8000", "data.clip_seconds=2.0", "timeline.n_fft=256",
        "vae.base_channels=8", "vae.max_channels=16", "vae.batch_size=4", "vae.warmup_steps=2", "vae.lr=2e-3",
        "run.num_workers=0", "run.log_every=1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def trainer(*argv: str) -> int:
    return run_cli("trainer", "trainer.commands", "trainer", list(argv))


@pytest.fixture(scope="module")
def pixels(tmp_path_factory):
    cfg = build_config([ROOT / "configs" / "tiny.yaml"], overrides=TINY)
    root = tmp_path_factory.mktemp("vae_pixels")
    keys = write_pixel_shards(root, cfg, train_shards=2, val_shards=1, samples_per_shard=3)
    return root, keys


def test_loss_terms_are_zero_for_a_perfect_reconstruction():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    vcfg = build_config().vae
    total, terms = vae_loss(x, x, torch.zeros(2, 4, 1, 1), torch.zeros(2, 4, 1, 1), vcfg)
    assert float(total) == 0.0 and all(float(v) == 0.0 for v in terms.values())
    assert float(kl_loss(torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))) == pytest.approx(0.5)
    assert float(edge_loss(x, x + 0.3)) == pytest.approx(0.0, abs=1e-6)  # a constant shift has no edges
    assert float(edge_loss(torch.zeros(1, 1, 2, 2), torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))) == pytest.approx(0.5)
    # PSNR: an error of 0.2 on the [-1, 1] scale is 0.1 on [0, 1] -> 20 dB
    assert psnr(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.2)) == pytest.approx(20.0)


@pytest.mark.parametrize("downsample", [1, 2, 8])
def test_model_shapes(downsample):
    cfg = build_config(overrides=[f"vae.downsample={downsample}", "vae.base_channels=8", "vae.max_channels=16",
                                  "vae.latent_channels=3"])
    model = FrameVAE(cfg.vae)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (2, 3, 32 // downsample, 32 // downsample)
    assert model.decode(mean).shape == x.shape
    assert stage_widths(8, 16, 3) == [8, 16, 16, 16]
    if downsample == 8:
        with pytest.raises(ValueError, match="not divisible"):
            model.encode(torch.zeros(1, 3, 36, 36))


def test_loss_falls_and_run_dir_is_complete(pixels, tmp_path):
    src, keys = pixels
    data = tmp_path / "pixels"
    (data / "train").mkdir(parents=True)
    (data / "val").mkdir()
    rewrite_member(src / "train" / S.shard_name(0), data / "train" / S.shard_name(0), f"{keys['train'][1]}.{S.META}",
                   lambda _: b"{not json")
    (data / "train" / S.shard_name(1)).write_bytes((src / "train" / S.shard_name(1)).read_bytes())
    (data / "val" / S.shard_name(0)).write_bytes((src / "val" / S.shard_name(0)).read_bytes())
    out = tmp_path / "run"
    assert trainer("vae", "--data", str(data), "--out", str(out), "--steps", "30", *TINY,
                   "run.sample_every=15", "run.checkpoint_every=10", "run.keep_checkpoints=2") == 0
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [l["train/loss"] for l in lines if "train/loss" in l]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    assert [l["step"] for l in lines if "val/psnr_ema" in l] == [15, 30]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["recon-00000015.png", "recon-00000030.png"]
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["step-00000020", "step-00000030"]
    assert (out / "latest").resolve().name == "step-00000030" and (out / "config.yaml").is_file()
    assert any((out / "tb").iterdir())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["val"]["psnr_ema"] > 0
    # the clip with the broken meta.json was drawn (many times), skipped and counted once
    assert summary["skipped"] == {"corrupt_samples": 1, "unreadable_shards": 0}
    assert load_checkpoint(out)[2]["skipped"] == [f"sample:{data / 'train' / S.shard_name(0)}#{keys['train'][1]}"]
    # a different model shape in the same run dir is refused, naming the field
    with pytest.raises(SystemExit) as e:
        trainer("vae", "--data", str(data), "--out", str(out), "--steps", "31", *TINY, "vae.base_channels=4")
    assert e.value.code == 2


def _final_tensors(out: Path):
    step, tensors, state = load_checkpoint(out)
    return step, tensors


def _assert_same_weights(a: Path, b: Path) -> None:
    step_a, ta = _final_tensors(a)
    step_b, tb = _final_tensors(b)
    assert step_a == step_b
    for name in ("model", "ema"):
        assert ta[name].keys() == tb[name].keys()
        for k in ta[name]:
            assert torch.equal(ta[name][k], tb[name][k]), (name, k)
    oa, ob = ta["optim"], tb["optim"]
    assert oa["param_groups"] == ob["param_groups"]
    for i in oa["state"]:
        for k in oa["state"][i]:
            assert torch.equal(oa["state"][i][k], ob["state"][i][k]), (i, k)


def test_killed_and_resumed_run_matches_an_uninterrupted_one(pixels, tmp_path):
    """kill -9 between checkpoints, with 2 loader workers, then the same command again: identical weights."""
    data, _ = pixels
    common = ["--data", str(data), "--steps", "6", *TINY, "run.num_workers=2", "run.checkpoint_every=2",
              "run.sample_every=100"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert trainer("vae", "--out", str(a), *common) == 0
    # killed in step 5 (index 4), after the checkpoint at step 4, its loader workers mid-stream
    proc = run_killed(["vae", "--out", str(b), *common], "trainer.vae.train", "VaeTask.loss", "args[4] == 4")
    assert proc.returncode == KILLED, proc.stderr[-2000:]
    assert (b / "latest").resolve().name == "step-00000004"
    assert trainer("vae", "--out", str(b), *common) == 0
    _assert_same_weights(a, b)
    steps_logged = [json.loads(l)["step"] for l in (b / "metrics.jsonl").read_text().splitlines() if "train/loss" in l]
    assert steps_logged == [1, 2, 3, 4, 5, 6]  # the resumed log reads as one run
