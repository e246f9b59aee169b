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
from tiny_disk import TinyDisk
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
    # clips per variant, as the loader reads them (tests/trainer_shards.py cycles normal, silence, debug;
    # the corrupt clip was a debug clip)
    assert [r["variants"] for r in manifest["splits"]["train"]] == [
        {"normal": 1, "silence": 1, "debug": 1}, {"normal": 1, "silence": 1, "debug": 0}]
    from trainer.variant_mix import stored_variant_counts

    urls = [str(latents / "train" / S.shard_name(i)) for i in range(2)]
    assert list(stored_variant_counts(urls).values()) == [r["variants"] for r in manifest["splits"]["train"]]


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
        for p in (latents / split).glob("shard-*"):  # the shards and their records (shard-NNNNNN.tar.json)
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


def _copy_latents(latents: Path, out: Path) -> None:
    import shutil

    shutil.copytree(latents, out, copy_function=shutil.copy2)


def test_repaired_pixel_shard_is_encoded_again(cached, tmp_path, capsys):
    """A pixel shard repaired after caching (here: the corrupt clip restored) gets a new latent shard; the
    others, whose pixel shards did not change, are kept."""
    import shutil

    pixels, vae, latents, keys, victim = cached
    px, out = tmp_path / "pixels", tmp_path / "latents"
    shutil.copytree(pixels, px)
    _copy_latents(latents, out)
    cfg = build_config([ROOT / "configs" / "tiny.yaml"], overrides=TINY)
    write_pixel_shards(tmp_path / "clean", cfg, train_shards=2, val_shards=1, samples_per_shard=3)
    shutil.copy(tmp_path / "clean" / "train" / S.shard_name(1), px / "train" / S.shard_name(1))
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*/shard-*.tar") if p.name != S.shard_name(1) or p.parent.name == "val"}
    assert trainer("cache-latents", "--data", str(px), "--vae", str(vae), "--out", str(out), *TINY) == 0
    assert "train/shard-000001.tar: its pixel shard changed; encoding it again" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["this_run"]["shards_written"] == 1 and manifest["this_run"]["shards_skipped"] == 2
    assert [r["samples"] for r in manifest["splits"]["train"]] == [3, 3]  # the restored clip is in the cache now
    assert victim in dict(S.iter_tar_samples(out / "train" / S.shard_name(1)))
    assert {p: p.stat().st_mtime_ns for p in kept} == kept


def test_changed_vae_encodes_everything_again_and_force_does_too(cached, tmp_path, capsys):
    import shutil

    from trainer.checkpoint import load_checkpoint, save_checkpoint

    pixels, vae, latents, _, _ = cached
    other = tmp_path / "vae"
    shutil.copytree(vae, other, symlinks=True)
    # another VAE checkpoint (re-saved, so that its file listing is right: an edited file would read as damaged)
    step, tensors, state = load_checkpoint(other)
    name = sorted(tensors["ema"])[0]
    tensors["ema"][name] = tensors["ema"][name] + 1e-3
    save_checkpoint(other, step, tensors, state, keep=1)
    weights = other / "latest" / "ema.safetensors"
    out = tmp_path / "latents"
    _copy_latents(latents, out)
    assert trainer("cache-latents", "--data", str(pixels), "--vae", str(other), "--out", str(out), *TINY) == 0
    assert "the VAE checkpoint changed; encoding it again" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["this_run"]["shards_written"] == 3
    assert manifest["vae"]["sha256"] == S.file_sha256(weights)
    assert {r["vae_sha256"] for rs in manifest["splits"].values() for r in rs} == {manifest["vae"]["sha256"]}
    assert len({r["content_id"] for rs in manifest["splits"].values() for r in rs}) == 1
    S.check_shard_set(out)
    assert trainer("cache-latents", "--data", str(pixels), "--vae", str(other), "--out", str(out), *TINY) == 0
    assert json.loads((out / "manifest.json").read_text())["this_run"]["shards_skipped"] == 3
    assert trainer("cache-latents", "--data", str(pixels), "--vae", str(other), "--out", str(out), "--force", *TINY) == 0
    assert json.loads((out / "manifest.json").read_text())["this_run"]["shards_written"] == 3


def test_latent_shards_of_vanished_pixel_shards_are_removed_and_a_mixed_dir_refused(cached, tmp_path, capsys):
    import shutil

    from shared.errors import DataError

    pixels, vae, latents, _, _ = cached
    px, out = tmp_path / "pixels", tmp_path / "latents"
    shutil.copytree(pixels, px)
    (px / "train" / S.shard_name(1)).unlink()  # a smaller pixel set
    _copy_latents(latents, out)
    assert trainer("cache-latents", "--data", str(px), "--vae", str(vae), "--out", str(out), *TINY) == 0
    assert "removed 1 latent shards whose pixel shards are gone" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "train").glob("shard-*.tar")) == [S.shard_name(0)]
    S.check_shard_set(out)
    shutil.copy(latents / "train" / S.shard_name(1), out / "train" / S.shard_name(1))  # copied back by hand
    with pytest.raises(DataError, match="different content fingerprints.*not in manifest.json .1 shards, "
                                        "e.g. train/shard-000001.tar"):
        S.check_shard_set(out)


def test_second_cache_latents_on_a_held_out_dir_is_refused(cached, tmp_path, capsys):
    """Another process holds --out: cache-latents exits 2 with one line naming it and writes nothing."""
    import subprocess
    import sys

    pixels, vae, _, _, _ = cached
    out = tmp_path / "latents"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from shared.runlock import dir_lock\n"
                               "with dir_lock(sys.argv[1], 'trainer cache-latents'):\n"
                               "    print('held', flush=True); time.sleep(60)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit) as e:
            trainer("cache-latents", "--data", str(pixels), "--vae", str(vae), "--out", str(out), *TINY)
    finally:
        holder.kill()
        holder.wait()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {out} is locked by trainer cache-latents (pid {holder.pid} on ")
    assert not list(out.glob("*/shard-*"))


def test_full_disk_is_one_line_and_leaves_no_partial_shard(cached, tmp_path, monkeypatch, capsys):
    pixels, vae, _, _, _ = cached
    out = tmp_path / "latents"
    TinyDisk(20_000).install(monkeypatch)  # less than one latent shard
    with pytest.raises(SystemExit) as e:
        trainer("cache-latents", "--data", str(pixels), "--vae", str(vae), "--out", str(out), *TINY)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"error: {out / 'train' / S.shard_name(0)}: no space left on device"
    assert [p for p in out.rglob("*") if p.is_file() and p.name != ".lock"] == []
