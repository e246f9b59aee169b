"""Latent caches: encode every frame of every pixel clip once with the EMA VAE (`trainer cache-latents`).

One latent sample per pixel sample, same ``__key__``: ``latents.npy`` (fp16 posterior means
``[T, C, h, w]``), ``latents_std.npy`` (fp16 posterior stds), and ``timeline.npy`` / ``meta.json``
copied byte for byte. Each latent shard is written as ``.partial`` and renamed when complete, and
``shard-NNNNNN.tar.json`` beside it records the sha256 of its pixel shard and of the VAE weights, so
a re-run skips a finished shard only while both are unchanged. Under torchrun the shards are split
across ranks; the main rank holds the output dir's lock.

``manifest.json`` records the latent scale factor: 1 / std of the cached means over the train
split (Rombach et al. 2022, LDM: scale latents to unit variance before diffusion), the VAE it came
from (path, step, config) and per-shard counts and checksums.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared import shards as S
from shared.config import Config
from shared.fsutil import atomic_write_json
from trainer import runtime as rt
from trainer.data import frame_to_unit, resolve_shards

MANIFEST = "manifest.json"
CACHED_SPLITS = tuple(s for s in S.SPLITS if s != S.SIBLINGS)  # latents are cached for these splits


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
    """A latent shard's manifest entry: name, sample count, clips per variant (the loader refuses a variant mix
    the data cannot give from these), size and sha256."""
    data = path.read_bytes()
    variants = {v: 0 for v in S.VARIANTS}
    for _, members in S.iter_tar_samples(path):
        meta = S.decode_json(members[S.META])
        v = meta.get("variant", "normal") if isinstance(meta, dict) else "normal"
        variants[v] = variants.get(v, 0) + 1
    return {"name": path.name, "samples": sum(variants.values()), "variants": variants, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


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


SIDECAR_SUFFIX = ".json"  # shard-NNNNNN.tar.json beside each latent shard: what it was made from


def latent_content_id(pixel_content_id: str | None, vae_sha256: str) -> str:
    """A latent shard's content id: its pixel set's content id and the VAE weights' sha256, hashed (16 hex digits)."""
    return hashlib.sha256(f"{pixel_content_id}:{vae_sha256}".encode()).hexdigest()[:16]


def _read_sidecar(dst: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(Path(str(dst) + SIDECAR_SUFFIX).read_text())
        return rec if isinstance(rec, dict) else None
    except (OSError, ValueError):
        return None


def stale_reason(dst: Path, source_sha: str | None, vae_sha: str, force: bool) -> str | None:
    """Why the latent shard ``dst`` must be (re)made, or None when it is finished from this pixel shard and VAE."""
    if not dst.exists():
        return "missing"
    if force:
        return "--force"
    rec = _read_sidecar(dst)
    if rec is None or rec.get("bytes") != dst.stat().st_size:
        return "no record of what it was made from"
    if source_sha is not None and rec.get("source_sha256") != source_sha:
        return "its pixel shard changed"
    if rec.get("vae_sha256") != vae_sha:
        return "the VAE checkpoint changed"
    return None


def pixel_sources(data: str) -> tuple[dict[str, str], str | None]:
    """``({split/name: sha256}, pixel content id)`` from the pixel set's manifest (empty, None without one)."""
    root = S.shard_set_root(data)
    if root is None:
        return {}, None
    doc = json.loads((root / MANIFEST).read_text())
    shas = {rel: e["sha256"] for rel, e in (doc.get("shards") or {}).items() if isinstance(e, dict) and "sha256" in e}
    return shas, doc.get("content_id")


def cache_latents(cfg: Config, data: str, vae: str, out: str, force: bool = False) -> dict[str, Any]:
    """Encode every pixel shard of ``data`` into ``out`` (holding ``out``'s lock on the main rank).

    A finished latent shard is kept only when its record (``shard-NNNNNN.tar.json``) names the same
    pixel shard sha256 and VAE weights sha256; otherwise (or with ``force``) it is made again. Latent
    shards whose pixel shard is gone are removed. A pixel set whose shards come from different
    content fingerprints is refused (shared.shards.check_shard_set).
    """
    from shared.runlock import dir_lock

    out_dir = Path(out)
    with rt.distributed_world(cfg.run.device) as dist:
        with dir_lock(out_dir, "trainer cache-latents") if dist.is_main else contextlib.nullcontext():
            return _cache_locked(cfg, data, vae, out_dir, force, dist)


def _cache_locked(cfg: Config, data: str, vae: str, out_dir: Path, force: bool, dist: Any) -> dict[str, Any]:
    from trainer.vae.model import load_vae

    device = dist.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    S.check_shard_set(data)
    model, vae_cfg, step_dir = load_vae(vae, device)  # EMA weights
    vae_sha = S.file_sha256(step_dir / "ema.safetensors")
    source_shas, pixel_cid = pixel_sources(data)
    content = latent_content_id(pixel_cid, vae_sha)
    jobs: list[tuple[str, str]] = []
    for split in CACHED_SPLITS:
        try:
            jobs += [(split, u) for u in resolve_shards(data, split)]
        except FileNotFoundError:
            if split == "train":
                raise
            print(f"cache-latents: no {split} split under {data}; skipping it", file=sys.stderr)
    mine = jobs[dist.rank::dist.world_size]
    totals = {"corrupt_samples": 0, "unreadable_shards": 0, "samples": 0, "shards_written": 0, "shards_skipped": 0,
              "shards_removed": 0}
    t0 = time.time()
    bar = rt.progress(len(mine), 0, "cache-latents", disable=not dist.is_main, unit="shard")
    try:
        for split, src in mine:
            dst = out_dir / split / Path(src).name
            src_sha = source_shas.get(f"{split}/{Path(src).name}")
            if src_sha is None and os.path.isfile(src):
                src_sha = S.file_sha256(src)
            why = stale_reason(dst, src_sha, vae_sha, force)
            if why is None:
                totals["shards_skipped"] += 1  # finished by an earlier run from this pixel shard and VAE
            else:
                if why != "missing":
                    print(f"cache-latents: {split}/{dst.name}: {why}; encoding it again", file=sys.stderr)
                counts = cache_shard(model, src, dst, cfg.vae.batch_size, device)
                for k, v in counts.items():
                    totals[k] += v
                atomic_write_json(str(dst) + SIDECAR_SUFFIX, {
                    "source": str(src), "source_sha256": src_sha, "vae_sha256": vae_sha, "pixel_content_id": pixel_cid,
                    "content_id": content, "bytes": dst.stat().st_size, **counts}, indent=1, sort_keys=True)
                totals["shards_written"] += 1
            bar.update(1)
    finally:
        bar.close()  # also on an error, so that its message starts on a line of its own
    keys = sorted(totals)
    summed = rt.all_reduce_sum([totals[k] for k in keys], dist)
    totals = {k: int(v) for k, v in zip(keys, summed)}
    rt.barrier(dist)
    manifest: dict[str, Any] = {}
    if dist.is_main:
        from shared.provenance import provenance

        wanted = {f"{split}/{Path(src).name}" for split, src in jobs}
        for split in CACHED_SPLITS:  # latent shards of pixel shards that are gone (a smaller or regenerated set)
            for p in sorted((out_dir / split).glob("shard-*.tar")) if (out_dir / split).is_dir() else []:
                if f"{split}/{p.name}" not in wanted:
                    p.unlink()
                    Path(str(p) + SIDECAR_SUFFIX).unlink(missing_ok=True)
                    totals["shards_removed"] += 1
        if totals["shards_removed"]:
            print(f"cache-latents: removed {totals['shards_removed']} latent shards whose pixel shards are gone",
                  file=sys.stderr)
        splits = {s: sorted((out_dir / s).glob("shard-*.tar")) for s in CACHED_SPLITS if (out_dir / s).is_dir()}
        stats = latent_statistics(splits.get("train", []))

        def record(p: Path) -> dict[str, Any]:
            side = _read_sidecar(p) or {}
            return {**shard_record(p), **{k: side.get(k) for k in ("source_sha256", "vae_sha256", "pixel_content_id",
                                                                    "content_id")}}

        manifest = {
            "kind": "latents",
            "schema_version": S.SCHEMA_VERSION,
            "content_id": content,
            **stats,
            "source": str(Path(data).resolve()) if Path(data).exists() else str(data),
            "pixel_content_id": pixel_cid,
            "vae": {"run": str(Path(vae).resolve()), "checkpoint": str(step_dir), "step": int(step_dir.name.split("-")[-1]),
                    "weights": "ema", "sha256": vae_sha, "config": vae_cfg.vae.model_dump(mode="json"),
                    "resolution": vae_cfg.render.resolution},
            "fps": vae_cfg.render.fps,
            "splits": {s: [record(p) for p in ps] for s, ps in splits.items()},
            "this_run": {**totals, "seconds": round(time.time() - t0, 3), "world_size": dist.world_size},
            "config": cfg.model_dump(mode="json"),
            "provenance": provenance(),
        }
        atomic_write_json(out_dir / MANIFEST, manifest, indent=2)
        n = sum(r["samples"] for rs in manifest["splits"].values() for r in rs)
        print(f"cache-latents: {n} clips in {out_dir} (scale {stats['latent_scale']:.4f}); this run wrote "
              f"{totals['shards_written']} shards, skipped {totals['shards_skipped']} finished ones, "
              f"{totals['corrupt_samples']} corrupt samples, {totals['unreadable_shards']} unreadable shards")
    return manifest
