"""`trainer cache-latents`: latent shards mirror the pixel shards, fp16 means decode as well as the VAE does."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from shared import shards as S
from shared.command_line import run_cli
from shared.config import build_config
from trainer.data import frame_to_unit
from trainer.vae import load_vae, psnr
from trainer_shards import write_pixel_shards

ROOT = Path(__file__).resolve().parents[1]
TINY = ["render.resolution=32", "render.fps=8", "data.sample_rate=8000", "data.clip_seconds=2.0", "timeline.n_fft=256",
        "vae.base_channels=8", "vae.max_channels=16", "vae.batch_size=8", "vae.warmup_steps=2", "vae.lr=2e-3",
        "run.num_workers=0", "run.log_every=5", "run.sample_every=100", "run.checkpoint_every=100"]


def trainer(*argv: str) -> int:
    return run_cli("trainer", "trainer.commands", "trainer", list(argv))


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """Pixel shards (one with a corrupt clip), a VAE trained for a few steps, and its latent cache."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs on a shared 2-core box: one thread is much faster
    cfg = build_config([ROOT / "configs" / "tiny.yaml"], overrides=TINY)
    root = tmp_path_factory.mktemp("cache")
    pixels, vae, latents = root / "pixels", root / "vae", root / "latents"
    keys = write_pixel_shards(pixels, cfg, train_shards=2, val_shards=1, samples_per_shard=3)
    # a corrupt JPEG in the last clip of train shard 1
    victim = keys["train"][-1]
    src = pixels / "train" / S.shard_name(1)
    buf = io.BytesIO()
    with tarfile.open(src) as tin, tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tout:
        for info in tin:
            data = tin.extractfile(info).read()
            if info.name == f"{victim}.{S.frame_member(5)}":
                data, info.size = b"garbage", 7
            tout.addfile(info, io.BytesIO(data))
    src.write_bytes(buf.getvalue())
    assert trainer("vae", "--data", str(pixels), "--out", str(vae), "--steps", "12", *TINY) == 0
    assert trainer("cache-latents", "--data", str(pixels), "--vae", str(vae), "--out", str(latents), *TINY) == 0
    yield pixels, vae, latents, keys, victim
    torch.set_num_threads(before)


def test_one_fp16_latent_sample_per_pixel_sample(cached):
    pixels, vae, latents, keys, victim = cached
    model, vcfg, _ = load_vae(vae)
    for split in ("train", "val"):
        for shard in sorted((pixels / split).glob("shard-*.tar")):
            px = dict(S.iter_tar_samples(shard))
            lat = dict(S.iter_tar_samples(latents / split / shard.name))
            assert list(lat) == [k for k in px if k != victim]
            for key, m in lat.items():
                means, stds = S.decode_npy(m[S.LATENTS]), S.decode_npy(m[S.LATENTS_STD])
                n_frames = len(S.frame_suffixes(px[key]))
                assert means.dtype == stds.dtype == np.float16
                assert means.shape == stds.shape == (n_frames, vcfg.vae.latent_channels, 32 // vcfg.vae.downsample,
                                                     32 // vcfg.vae.downsample)
                assert (stds > 0).all()
                assert m[S.TIMELINE] == px[key][S.TIMELINE] and m[S.META] == px[key][S.META]


def test_manifest_scale_is_one_over_train_latent_std(cached):
    _, vae, latents, _, _ = cached
    manifest = json.loads((latents / "manifest.json").read_text())
    values = np.concatenate([S.decode_npy(m[S.LATENTS]).astype(np.float64).ravel()
                             for p in sorted((latents / "train").glob("*.tar")) for _, m in S.iter_tar_samples(p)])
    assert manifest["latent_scale"] == pytest.approx(1.0 / values.std(), rel=1e-6)
    assert manifest["vae"]["step"] == 12 and manifest["vae"]["weights"] == "ema"
    assert manifest["vae"]["config"]["base_channels"] == 8
    assert manifest["this_run"]["corrupt_samples"] == 1
    assert [r["samples"] for r in manifest["splits"]["train"]] == [3, 2]


def test_cached_latents_decode_within_half_a_db_of_the_vae(cached):
    pixels, vae, latents, _, _ = cached
    model, _, _ = load_vae(vae)
    px = dict(S.iter_tar_samples(pixels / "val" / S.shard_name(0)))
    originals, from_cache, own = [], [], []
    with torch.no_grad():
        for key, m in S.iter_tar_samples(latents / "val" / S.shard_name(0)):
            x = torch.from_numpy(frame_to_unit(np.stack([S.decode_jpeg(px[key][s]) for s in S.frame_suffixes(px[key])])))
            originals.append(x)
            own.append(model.decode(model.encode(x)[0]))  # the VAE's own fp32 posterior-mean reconstruction
            from_cache.append(model.decode(torch.from_numpy(S.decode_npy(m[S.LATENTS]).astype(np.float32))))
    x = torch.cat(originals)
    p_own, p_cache = psnr(torch.cat(own), x), psnr(torch.cat(from_cache), x)
    assert abs(p_own - p_cache) < 0.5, (p_own, p_cache)


def test_rerun_skips_finished_shards_and_redoes_missing_ones(cached, tmp_path):
    pixels, vae, latents, _, _ = cached
    out = tmp_path / "latents"
    (out / "train").mkdir(parents=True)
    (out / "val").mkdir()
    for split in ("train", "val"):
        for p in (latents / split).glob("*.tar"):
            (out / split / p.name).write_bytes(p.read_bytes())
    (out / "train" / S.shard_name(1)).unlink()
    (out / "train" / (S.shard_name(1) + ".partial")).write_bytes(b"left by a crash")
    os.utime(out / "train" / S.shard_name(0), (1, 1))
    assert trainer("cache-latents", "--data", str(pixels), "--vae", str(vae), "--out", str(out), *TINY) == 0
    assert os.stat(out / "train" / S.shard_name(0)).st_mtime == 1  # untouched
    assert not (out / "train" / (S.shard_name(1) + ".partial")).exists()
    assert (out / "train" / S.shard_name(1)).read_bytes() == (latents / "train" / S.shard_name(1)).read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["this_run"]["shards_written"] == 1 and manifest["this_run"]["shards_skipped"] == 2
