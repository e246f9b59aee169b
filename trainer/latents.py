"""Latent caches: encode every frame of every pixel clip once with the EMA VAE (`trainer cache-latents`).

One latent sample per pixel sample, same ``__key__``: ``latents.npy`` (fp16 posterior means
``[T, C, h, w]``), ``latents_std.npy`` (fp16 posterior stds), and ``timeline.npy`` / ``meta.json``
copied byte for byte. Each latent shard is written as ``.partial`` and renamed when complete, so
a re-run skips finished shards. Under torchrun the shards are split across ranks.

``manifest.json`` records the latent scale factor: 1 / std of the cached means over the train
split (Rombach et al. 2022, LDM: scale latents to unit variance before diffusion), the VAE it came
from (path, step, config) and per-shard counts and checksums.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared import shards as S
from shared.config import Config
from trainer import runtime as rt
from trainer.data import frame_to_unit, resolve_shards

MANIFEST = "manifest.json"
SPLITS = ("train", "val")


@torch.no_grad()
def encode_frames(model: torch.nn.Module, frames: np.ndarray, batch: int, device: torch.device
                  ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(T, H, W, 3)`` -> posterior ``mean, std`` float32 ``(T, C, h, w)``, in batches of ``batch``.

    fp32 on purpose: latents are encoded once and read by every diffusion step.
    """
    means, stds = [], []
    for i in range(0, len(frames), batch):
        x = torch.from_numpy(frame_to_unit(frames[i:i + batch])).to(device)  # (b, 3, H, W)
        mean, logvar = model.encode(x)
        means.append(mean.float().cpu())
        stds.append((0.5 * logvar.float()).exp().cpu())
    return torch.cat(means).numpy(), torch.cat(stds).numpy()


def cache_shard(model: torch.nn.Module, src: str, dst: Path, batch: int, device: torch.device) -> dict[str, int]:
    """Encode one pixel shard into a latent shard (``dst.partial`` renamed to ``dst``).

    A corrupt sample is skipped and counted; a truncated source shard keeps the samples read before
    the damage and is counted as unreadable.
    """
    skipped = {"corrupt_samples": 0, "unreadable_shards": 0, "samples": 0}
    with S.ShardWriter(dst) as writer:
        try:
            for key, members in S.iter_tar_samples(src):
                try:
                    missing = [m for m in (S.TIMELINE, S.META) if m not in members]
                    suffixes = S.frame_suffixes(members)
                    if missing or not suffixes:
                        raise ValueError(f"missing members {missing or ['frames']}")
                    frames = np.stack([S.decode_jpeg(members[s]) for s in suffixes])  # (T, H, W, 3)
                    S.decode_json(members[S.META])  # must parse: the loader needs it
                except Exception as exn:  # noqa: BLE001 - one bad clip must not stop the cache
                    print(f"warning: {src}: skipped corrupt sample {key}: {type(exn).__name__}: {exn}", file=sys.stderr)
                    skipped["corrupt_samples"] += 1
                    continue
                mean, std = encode_frames(model, frames, batch, device)  # a VAE/data mismatch is an error, not a skip
                writer.add_sample(key, [
                    (S.LATENTS, S.encode_npy(mean.astype(np.float16))),
                    (S.LATENTS_STD, S.encode_npy(std.astype(np.float16))),
                    (S.TIMELINE, members[S.TIMELINE]),
                    (S.META, members[S.META]),
                ])
                skipped["samples"] += 1
        except (tarfile.TarError, OSError, EOFError) as exn:  # a truncated or unreadable tar
            print(f"warning: {src}: unreadable after {skipped['samples']} samples: {type(exn).__name__}: {exn}",
                  file=sys.stderr)
            skipped["unreadable_shards"] += 1
    return skipped


def shard_record(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    n = sum(1 for _ in S.iter_tar_samples(path))
    return {"name": path.name, "samples": n, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def latent_statistics(paths: list[Path]) -> dict[str, Any]:
    """Mean and std of the cached posterior means over all samples of ``paths`` (float64 sums)."""
    total, total_sq, count = 0.0, 0.0, 0
    per_c_sum: np.ndarray | None = None
    per_c_sq: np.ndarray | None = None
    shape = None
    for p in paths:
        for _, members in S.iter_tar_samples(p):
            lat = S.decode_npy(members[S.LATENTS]).astype(np.float64)  # (T, C, h, w)
            shape = list(lat.shape[1:])
            total += lat.sum()
            total_sq += np.square(lat).sum()
            count += lat.size
            c_sum, c_sq = lat.sum(axis=(0, 2, 3)), np.square(lat).sum(axis=(0, 2, 3))
            per_c_sum = c_sum if per_c_sum is None else per_c_sum + c_sum
            per_c_sq = c_sq if per_c_sq is None else per_c_sq + c_sq
    if count == 0:
        raise RuntimeError("no latents to compute the scale factor from (empty train split?)")
    mean = total / count
    std = float(np.sqrt(max(total_sq / count - mean ** 2, 0.0)))
    per_count = count / len(per_c_sum)
    c_mean = per_c_sum / per_count
    c_std = np.sqrt(np.maximum(per_c_sq / per_count - c_mean ** 2, 0.0))
    return {"latent_mean": float(mean), "latent_std": std, "latent_scale": 1.0 / max(std, 1e-8),
            "channel_mean": c_mean.tolist(), "channel_std": c_std.tolist(), "latent_shape": shape,
            "n_values": int(count)}


def cache_latents(cfg: Config, data: str, vae: str, out: str) -> dict[str, Any]:
    from trainer.vae.model import load_vae

    dist = rt.setup_distributed(cfg.run.device)
    device = dist.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model, vae_cfg, step_dir = load_vae(vae, device)  # EMA weights
    out_dir = Path(out)
    jobs: list[tuple[str, str]] = []
    for split in SPLITS:
        try:
            jobs += [(split, u) for u in resolve_shards(data, split)]
        except FileNotFoundError:
            if split == "train":
                raise
            print(f"cache-latents: no {split} split under {data}; skipping it", file=sys.stderr)
    mine = jobs[dist.rank::dist.world_size]
    totals = {"corrupt_samples": 0, "unreadable_shards": 0, "samples": 0, "shards_written": 0, "shards_skipped": 0}
    t0 = time.time()
    bar = rt.progress(len(mine), 0, "cache-latents", disable=not dist.is_main, unit="shard")
    for split, src in mine:
        dst = out_dir / split / Path(src).name
        if dst.exists():
            totals["shards_skipped"] += 1  # finished by an earlier run: the final name is the marker
        else:
            counts = cache_shard(model, src, dst, cfg.vae.batch_size, device)
            for k, v in counts.items():
                totals[k] += v
            totals["shards_written"] += 1
        bar.update(1)
    bar.close()
    keys = sorted(totals)
    summed = rt.all_reduce_sum([totals[k] for k in keys], dist)
    totals = {k: int(v) for k, v in zip(keys, summed)}
    rt.barrier(dist)
    manifest: dict[str, Any] = {}
    if dist.is_main:
        from shared.provenance import provenance

        splits = {s: sorted((out_dir / s).glob("shard-*.tar")) for s in SPLITS if (out_dir / s).is_dir()}
        stats = latent_statistics(splits.get("train", []))
        manifest = {
            "kind": "latents",
            "schema_version": S.SCHEMA_VERSION,
            **stats,
            "source": str(Path(data).resolve()) if Path(data).exists() else str(data),
            "vae": {"run": str(Path(vae).resolve()), "checkpoint": str(step_dir), "step": int(step_dir.name.split("-")[-1]),
                    "weights": "ema", "config": vae_cfg.vae.model_dump(mode="json"),
                    "resolution": vae_cfg.render.resolution},
            "fps": vae_cfg.render.fps,
            "splits": {s: [shard_record(p) for p in ps] for s, ps in splits.items()},
            "this_run": {**totals, "seconds": round(time.time() - t0, 3), "world_size": dist.world_size},
            "config": cfg.model_dump(mode="json"),
            "provenance": provenance(),
        }
        tmp = out_dir / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.replace(out_dir / MANIFEST)
        n = sum(r["samples"] for rs in manifest["splits"].values() for r in rs)
        print(f"cache-latents: {n} clips in {out_dir} (scale {stats['latent_scale']:.4f}); this run wrote "
              f"{totals['shards_written']} shards, skipped {totals['shards_skipped']} finished ones, "
              f"{totals['corrupt_samples']} corrupt samples, {totals['unreadable_shards']} unreadable shards")
    rt.barrier(dist)
    rt.cleanup_distributed()
    return manifest
