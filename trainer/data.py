"""Streaming shard loader: WebDataset pipelines of small generator stages.

::

    shard list ─► shards (resampled, or shuffled per epoch) ─► split by rank ─► split by worker
      ─► tar members (webdataset) ─► meta ─► [reweight by variant] ─► frames | snippets ─► shuffle buffer
      ─► skip report (``__skipped__``)

Two sample shapes (docs/INTERFACES.md):

* frames (VAE): ``{"frame": float32 (3, H, W) in [-1, 1], "key": str}``; a clip draw decodes only
  ``frames_per_clip`` of its JPEGs.
* snippets (diffusion; from latent shards, or from pixel shards for evaluation): ``x``, ``prev``,
  ``prev_valid``, ``audio``, ``audio_timeshift``, ``frame_index``, ``is_silent``, ``style``,
  ``variant``, ``audio_id`` (a hash of the clip's raw timeline: one id for copies of one debug clip), ``key``.

Every random choice draws from a generator seeded by (seed, rank, worker, stage), so a stream is a
pure function of the seed, the worker count and the rank. Corrupt or truncated samples go to
webdataset's error-handler hook (``map(..., handler=)``), which skips them and records them in the
stream's :class:`SkipLog`; each sample carries what was skipped just before it (``__skipped__``), so
the training loop counts every skip exactly, with the batch it came before (:func:`skipped_in`).
"""

from __future__ import annotations

import functools
import glob
import multiprocessing as mp
import os
import random
import sys
import tarfile
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import braceexpand
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from shared import shards as S
from shared.config import Config
from shared.errors import DataError
from shared.runlock import exit_with_owner
from shared.shards import VARIANTS, is_url
from shared.seeding import derive_seed
from trainer.conditioning import ConditioningSpec, audio_content_id
from trainer.style import plan_features_of
from trainer.variant_mix import check_variants_present, mix_or_fail, mix_text, reweights_variants

VARIANT_CODE = {v: i for i, v in enumerate(VARIANTS)}
MP_CONTEXT = "forkserver" if sys.platform.startswith("linux") else "spawn"

# Stage ids: each stage draws from its own generator (derive_seed wants ints).
_STAGE_SHARDS, _STAGE_REWEIGHT, _STAGE_DRAW, _STAGE_SHUFFLE = 1, 2, 3, 4


# ------------------------------------------------------------------ shard lists


def _expand_braces(spec: str) -> list[str]:
    return list(braceexpand.braceexpand(spec))


def _finished_tars(paths: Iterable[str]) -> list[str]:
    """Drop in-progress ``.partial`` files: only a final name marks a complete shard."""
    return sorted(p for p in paths if p.endswith(".tar") and not p.endswith(S.PARTIAL_SUFFIX))


def resolve_shards(spec: str | os.PathLike | list[str], split: str = "train") -> list[str]:
    """Shard URLs from a spec: a dir holding ``train/``/``val/`` (or tars directly), a glob, a brace
    pattern (``shard-{000000..000009}.tar``), a URL webdataset opens, or a list of those.

    A spec that resolves to nothing is a :class:`DataError` naming the spec.
    """
    if isinstance(spec, (list, tuple)):
        return [u for s in spec for u in resolve_shards(s, split)]
    s = str(spec)
    S.check_shard_set(s)  # one content fingerprint per set (warns once where there is no manifest to check)
    if is_url(s):
        return _expand_braces(s) if "{" in s else [s]
    if "{" in s and ".." in s:
        out = _expand_braces(s)
        missing = [p for p in out if not os.path.exists(p)]
        if missing:
            raise DataError(f"shard pattern {s!r}: {len(missing)} of {len(out)} files missing, e.g. {missing[0]}")
        return out
    if any(c in s for c in "*?["):
        out = _finished_tars(glob.glob(s))
        if not out:
            raise DataError(f"shard glob {s!r} matches no finished .tar files")
        return out
    p = Path(s)
    if p.is_file():
        return [str(p)]
    if p.is_dir():
        sub = p / split
        where = sub if sub.is_dir() else p
        out = _finished_tars(str(x) for x in where.glob("shard-*.tar"))
        if not out:
            out = _finished_tars(str(x) for x in where.glob("*.tar"))
        if not out:
            raise DataError(f"no finished shards in {where} (looked for shard-*.tar; split {split!r})")
        return out
    raise DataError(f"shard spec {s!r} is not a file, directory, glob, brace pattern or URL")


# ------------------------------------------------------------ corrupt samples


SKIPPED = "__skipped__"  # sample/batch field: ids of what the stream skipped just before this sample
# Skip ids this process has warned about (a loader worker: also those its owner had seen when it started the
# worker), so that a shard or sample read again (the next epoch, a resampled stream, a new segment's loader) is
# warned about once per process; the skips are still reported and counted at every read.
WARNED: set[str] = set()


class SkipLog:
    """What one (rank, worker) stream skipped, reported inside the stream itself.

    :meth:`handler` is the error handler the stages get: it records one id per skip (``sample:<url>#<key>``
    for a corrupt sample, ``shard:<url>`` for an unreadable, e.g. truncated, shard whose samples before
    the damage did arrive), warns about it unless this process already has (:data:`WARNED`; at most
    ``max_warnings`` per stream) and returns True (skip, keep going). :meth:`report` hands the ids recorded
    since the last sample out to the next sample, newline-joined under ``__skipped__`` (strings collate
    into a list per batch). So the training loop learns of each skip with the batch that follows it,
    whatever the workers prefetch, and a stream that is replayed reports the same skips again.
    """

    def __init__(self, max_warnings: int = 10):
        self.pending: list[str] = []
        self.max_warnings = max_warnings
        self._warned = 0

    def handler(self, exn: BaseException) -> bool:
        sid = getattr(exn, "skip_id", None) or f"sample:?#{type(exn).__name__}"
        self.pending.append(sid)
        if sid not in WARNED and self._warned < self.max_warnings:
            WARNED.add(sid)
            self._warned += 1
            print(f"warning: skipped {sid}: {type(exn).__name__}: {exn}", file=sys.stderr)
        return True

    def report(self, stream: Iterable[dict]) -> Iterator[dict]:
        """Attach the pending ids to each sample. One sample is held back, so that skips after the last
        sample of a finite stream are reported with that sample."""
        held = None
        for sample in stream:
            if held is not None:
                yield self._attach(held)
            held = sample
        if held is not None:
            yield self._attach(held)

    def _attach(self, sample: dict) -> dict:
        sample[SKIPPED] = "\n".join(self.pending)
        self.pending.clear()
        return sample


def skipped_in(batch: dict) -> set[str]:
    """The skip ids a batch (or one sample) carries; see :class:`SkipLog`."""
    field = batch.get(SKIPPED, "")
    parts = [field] if isinstance(field, str) else list(field)
    return {sid for part in parts for sid in part.split("\n") if sid}


def skip_counts(ids: Iterable[str]) -> dict[str, int]:
    """``{"corrupt_samples": n, "unreadable_shards": m}`` from a set of skip ids."""
    ids = list(ids)
    return {"corrupt_samples": sum(i.startswith("sample:") for i in ids),
            "unreadable_shards": sum(i.startswith("shard:") for i in ids)}


def _naming_sample(f: Callable[[dict], Any]) -> Callable[[dict], Any]:
    """``f`` whose exceptions carry the id of the sample they failed on (webdataset's handlers see only the
    exception)."""
    def named(sample: dict) -> Any:
        try:
            return f(sample)
        except Exception as exn:
            exn.skip_id = f"sample:{sample.get('__url__')}#{sample.get('__key__')}"
            raise
    return named


def _flatten(stream: Iterable[list]) -> Iterator[Any]:
    for items in stream:
        yield from items


# -------------------------------------------------------------- pure functions


def bar_frames(tempo_bpm: float, fps: float, beats_per_bar: int = 4) -> float:
    """Frames per bar: ``beats_per_bar * 60 / tempo * fps``."""
    if tempo_bpm <= 0 or fps <= 0:
        raise ValueError(f"tempo ({tempo_bpm}) and fps ({fps}) must be > 0")
    return beats_per_bar * 60.0 * fps / tempo_bpm


def timeshift_offset_frames(tempo_bpm: float, fps: float, n_frames: int, rng: np.random.Generator) -> int:
    """A circular shift in [1, n_frames - 1] frames that is never a whole number of bars.

    A shift by whole bars would keep the music's rhythm aligned with the pictures, which is not
    "wrong audio". Offsets at least a quarter bar (and at least one frame) from every whole bar are
    preferred; short clips fall back to any offset not on a whole bar.
    """
    if n_frames < 2:
        raise ValueError(f"a time shift needs a clip of >= 2 frames (got {n_frames})")
    bar = bar_frames(tempo_bpm, fps)
    offsets = np.arange(1, n_frames)
    dist = np.abs(offsets / bar - np.round(offsets / bar)) * bar  # frames to the nearest whole bar
    for min_gap in (max(1.0, 0.25 * bar), 1e-6):
        ok = offsets[dist >= min_gap]
        if len(ok):
            return int(rng.choice(ok))
    raise ValueError(f"no offset in 1..{n_frames - 1} frames avoids whole bars of {bar:.3f} frames")


def snippet_indices(n_frames: int, snippet_frames: int, prev_frames: int, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame indices of a snippet starting at ``start``: ``(frames (F,), prev (P,), prev_valid (P,))``.

    ``prev`` are the P frames just before the snippet, clamped to 0 where they fall before the clip
    (and marked invalid there).
    """
    if not 0 <= start <= n_frames - snippet_frames:
        raise ValueError(f"snippet start {start} out of range for {n_frames} frames and F={snippet_frames}")
    frames = np.arange(start, start + snippet_frames)
    prev = np.arange(start - prev_frames, start)
    return frames, np.clip(prev, 0, None), prev >= 0


def style_indices(n_frames: int, start: int, snippet_frames: int, style_frames: int, rng: np.random.Generator
                  ) -> np.ndarray:
    """Frame indices (sorted) for the style posterior, drawn from the clip outside the target snippet
    ``[start, start + snippet_frames)``, so that style cannot carry the content audio should explain.

    Without replacement where the rest of the clip has ``style_frames`` frames, with replacement where it
    has fewer. A clip no longer than the snippet has no frame outside it: its style frames are then drawn
    from the snippet itself (the only fallback; clips are normally many snippets long).
    """
    outside = np.concatenate([np.arange(0, start), np.arange(start + snippet_frames, n_frames)])
    pool = outside if len(outside) else np.arange(start, start + snippet_frames)
    return np.sort(rng.choice(pool, size=style_frames, replace=len(pool) < style_frames))


def frame_to_unit(frames_uint8: np.ndarray) -> np.ndarray:
    """uint8 ``[..., H, W, 3]`` -> float32 ``[..., 3, H, W]`` in [-1, 1]."""
    x = np.asarray(frames_uint8, dtype=np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def unit_to_frame(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """float ``[..., 3, H, W]`` in [-1, 1] -> uint8 ``[..., H, W, 3]``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    y = np.clip((np.asarray(x) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(y, -3, -1))


# ------------------------------------------------------------------- stages


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def shard_urls(urls: list[str], rng: np.random.Generator, resampled: bool, shardshuffle: bool,
               rank: int, world_size: int, epoch_rng: np.random.Generator) -> Iterator[dict[str, str]]:
    """Shard stage. Resampled: an endless draw with replacement from this (rank, worker)'s own
    generator. Otherwise one epoch: a permutation shared by all ranks (``epoch_rng``, or file order
    when not ``shardshuffle``), split by rank then by worker, so each shard is read exactly once.
    """
    worker, n_workers = _worker()
    if resampled:
        while True:
            yield {"url": urls[int(rng.integers(len(urls)))]}
    order = epoch_rng.permutation(len(urls)) if shardshuffle else np.arange(len(urls))
    mine = order[rank::world_size][worker::n_workers]  # split_by_node, then split_by_worker
    for i in mine:
        yield {"url": urls[int(i)]}


def tar_samples(urls: Iterable[dict[str, str]], handler: Callable, skip_suffixes: tuple[str, ...] = ()
                ) -> Iterator[dict]:
    """Shard URLs -> samples ``{"__key__", "__url__", suffix: bytes}`` (webdataset's tar reader).

    One shard at a time, so that a truncated or unreadable shard is reported to ``handler`` once
    (webdataset's own handlers would see the same error at several layers); the samples read
    before the damage have been passed on, the cut sample is dropped.
    """
    def keep(name: str) -> bool:
        return not name.endswith(skip_suffixes) if skip_suffixes else True

    for src in urls:
        try:
            yield from wds.tarfile_to_samples(handler=wds.reraise_exception, select_files=keep)([src])
        except Exception as exn:  # noqa: BLE001 - the handler decides
            exn.skip_id = f"shard:{src['url']}"
            if not handler(exn):
                raise


def with_meta(sample: dict) -> dict:
    """Parse ``meta.json`` into ``sample["meta"]`` (needed by the reweighting and draw stages)."""
    if S.META not in sample:
        raise ValueError(f"sample {sample.get('__key__')} in {sample.get('__url__')} has no {S.META}")
    sample["meta"] = S.decode_json(sample[S.META])
    if not isinstance(sample["meta"], dict):
        raise ValueError(f"sample {sample.get('__key__')}: meta.json is not an object")
    if sample["meta"].get("variant", "normal") not in VARIANT_CODE:
        raise ValueError(f"sample {sample.get('__key__')}: unknown variant {sample['meta'].get('variant')!r}")
    return sample


def reweight_variants(src: Iterable[dict], mix_at: Callable[[int], dict[str, float]], rng: np.random.Generator,
                      buffer_size: int = 16, patience: int | None = None) -> Iterator[dict]:
    """Draw clips so that their variants follow ``mix_at(n)`` (n = clips yielded so far).

    Per-variant buffers: pick the wanted variant from the target mix, then read the stream until
    that variant's buffer has a clip; buffers over ``buffer_size`` drop their oldest clip (which is
    how over-represented variants are thinned). Every choice comes from ``rng`` and the stream, so the
    draws are a pure function of the seed and the step the stream starts at (exact resume).
    ``patience``: where the shards' variants could not be counted beforehand (URLs), a wanted variant not
    met within that many reads is a :class:`DataError`; None waits for it (its presence was checked).
    A finite stream (one epoch) ends when no wanted variant is left in it.
    """
    buffers: dict[str, deque] = {v: deque() for v in VARIANTS}
    it = iter(src)
    n = 0
    exhausted = False
    while True:
        mix = mix_at(n)
        names = [v for v in VARIANTS if mix.get(v, 0.0) > 0]
        if exhausted:
            names = [v for v in names if buffers[v]]
        if not names:
            return
        p = np.array([mix[v] for v in names], dtype=np.float64)
        want = names[int(rng.choice(len(names), p=p / p.sum()))]
        reads = 0
        while not buffers[want] and not exhausted:
            try:
                sample = next(it)
            except StopIteration:
                exhausted = True
                break
            v = sample["meta"].get("variant", "normal")
            buffers[v].append(sample)
            if len(buffers[v]) > buffer_size:
                buffers[v].popleft()
            reads += 1
            if patience is not None and reads >= patience:
                raise DataError(f"the variant mix {mix_text(mix)} wants '{want}' clips, but {patience} clips read in a row hold "
                                f"none (last from {sample.get('__url__')}); generate data with that variant or change "
                                "the mix knobs")
        if buffers[want]:
            j = int(rng.integers(len(buffers[want])))
            buffers[want].rotate(-j)
            yield buffers[want].popleft()
            n += 1


def frames_of(sample: dict, frames_per_clip: int, rng: np.random.Generator) -> list[dict]:
    """Pixel clip -> ``frames_per_clip`` random single frames; only those JPEGs are decoded."""
    suffixes = S.frame_suffixes(sample)
    if not suffixes:
        raise ValueError(f"sample {sample.get('__key__')} in {sample.get('__url__')} has no frames")
    picks = rng.choice(len(suffixes), size=min(frames_per_clip, len(suffixes)), replace=False)
    # uint8 (H, W, 3) until after the shuffle buffer: 4x smaller than float32
    return [{"frame": S.decode_jpeg(sample[suffixes[int(i)]]), "key": sample["__key__"]} for i in picks]


class SnippetSpec:
    """What a snippet holds: F frames, P previous frames, k audio context, S style frames."""

    def __init__(self, cfg: Config, style_frames: int = 4, latent_scale: float = 1.0):
        self.snippet_frames = cfg.diffusion.snippet_frames
        self.prev_frames = cfg.diffusion.prev_frames
        self.conditioning = ConditioningSpec.from_config(cfg)  # what the denoiser is fed
        self.style_frames = style_frames
        self.latent_scale = float(latent_scale)
        self.fps = cfg.render.fps
        self.default_channels = list(self.conditioning.timeline_channels)  # when meta.json does not list them
        self.style_plan = cfg.diffusion.style_source == "plan"  # snippets carry the clip's plan features


def _frames_source(sample: dict, source: str, scale: float) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """``(index -> array getter, frame count)`` for a clip: latents (times ``scale``) or decoded pixel
    frames (only those asked for are decoded)."""
    if source == "latents":
        if S.LATENTS not in sample:
            raise ValueError(f"sample {sample.get('__key__')} in {sample.get('__url__')} has no {S.LATENTS}")
        lat = S.decode_npy(sample[S.LATENTS])  # (T, C, h, w) fp16
        if lat.ndim != 4:
            raise ValueError(f"sample {sample.get('__key__')}: latents must be [T, C, h, w], got {lat.shape}")
        return (lambda idx: (lat[idx].astype(np.float32) * scale).astype(np.float16)), len(lat)
    suffixes = S.frame_suffixes(sample)

    def get(idx: np.ndarray) -> np.ndarray:
        return frame_to_unit(np.stack([S.decode_jpeg(sample[suffixes[int(i)]]) for i in idx]))

    return get, len(suffixes)


def make_snippets(sample: dict, spec: SnippetSpec, source: str, rng: np.random.Generator,
                  starts: list[int | None]) -> list[dict]:
    """Snippets of one decoded-meta clip, one per entry of ``starts`` (None: a random start); the clip's
    timeline, audio windows and latents are decoded once for all of them (see the module docstring for the
    fields). Latent tensors (``x``, ``prev``, ``style``) stay fp16 as stored (times the latent scale), half
    the bytes to collate, pin and copy to the device; the loss casts them; pixel snippets are float32."""
    meta = sample["meta"]
    key = sample["__key__"]
    feats = S.decode_timeline(sample[S.TIMELINE])  # (T, Ch)
    names = list(meta.get("timeline_channels") or spec.default_channels)
    if feats.ndim != 2 or feats.shape[1] != len(names):
        raise ValueError(f"sample {key}: timeline {feats.shape} does not match {len(names)} channel names")
    get, n_available = _frames_source(sample, source, spec.latent_scale)
    n_frames = min(len(feats), n_available)
    F, P = spec.snippet_frames, spec.prev_frames
    if n_frames < F or n_frames < 2:
        raise ValueError(f"sample {key}: {n_frames} frames, fewer than a snippet of {F}")
    windows, silent = spec.conditioning.model_audio(feats[:n_frames], names)  # (T, k+1+f, Ch), (T,)
    audio_id = audio_content_id(feats)  # same for copies of one debug clip: never each other's negative
    tempo, fps = float(meta.get("tempo") or 120.0), float(meta.get("fps") or spec.fps)
    plan = plan_features_of(meta, key) if spec.style_plan else None  # (PLAN_STYLE_DIM,)
    out = []
    for start in starts:
        if start is None:
            start = int(rng.integers(0, n_frames - F + 1))
        idx, prev_idx, prev_valid = snippet_indices(n_frames, F, P, start)
        offset = timeshift_offset_frames(tempo, fps, n_frames, rng)
        x = get(idx)  # (F, C, h, w)
        prev = get(prev_idx) if P else np.zeros((0,) + x.shape[1:], x.dtype)  # (P, C, h, w)
        prev[~prev_valid] = 0.0
        style_idx = style_indices(n_frames, start, F, spec.style_frames, rng)
        out.append({
            "x": x,
            "prev": prev,
            "prev_valid": prev_valid,
            "audio": windows[idx],
            "audio_timeshift": windows[(idx + offset) % n_frames],
            "frame_index": idx.astype(np.int64),
            "is_silent": silent[idx],
            "style": get(style_idx),  # (S, C, h, w)
            "variant": VARIANT_CODE[meta.get("variant", "normal")],
            "audio_id": audio_id,
            "key": key,
            **({"style_plan": plan} if plan is not None else {}),
        })
    return out


def make_snippet(sample: dict, spec: SnippetSpec, source: str, rng: np.random.Generator, start: int | None = None) -> dict:
    """One snippet from a decoded-meta clip (:func:`make_snippets` with one start)."""
    return make_snippets(sample, spec, source, rng, [start])[0]


# ------------------------------------------------------------------ dataset


# members the stages never use are not read out of the tar (webdataset's select_files): no audio or stems from
# pixel shards; no posterior stds from latent shards (training uses the posterior means; nothing reads the stds)
_PIXEL_SKIP = (S.AUDIO, S.STEMS)
_LATENT_SKIP = (S.LATENTS_STD,)


class ShardDataset(IterableDataset):
    """The whole pipeline as one IterableDataset (picklable: the workers rebuild it from its fields).

    ``kind``: ``frames`` or ``snippets``; ``source``: ``pixels`` or ``latents``. ``start_step`` and
    ``samples_per_step`` (the per-rank batch size) let the variant schedule follow the training step
    deterministically from the number of samples this worker produced.
    """

    def __init__(self, urls: list[str], cfg: Config, kind: str, *, source: str = "pixels", seed: int = 0,
                 rank: int = 0, world_size: int = 1, resampled: bool = True, shardshuffle: bool = True,
                 shuffle: int = 128, frames_per_clip: int = 4, snippets_per_clip: int = 1, style_frames: int = 4,
                 latent_scale: float = 1.0, start_step: int = 0, samples_per_step: int = 1):
        if kind not in ("frames", "snippets"):
            raise ValueError(f"kind must be 'frames' or 'snippets' (got {kind!r})")
        if source not in ("pixels", "latents"):
            raise ValueError(f"source must be 'pixels' or 'latents' (got {source!r})")
        if kind == "frames" and source != "pixels":
            raise ValueError("frame samples come from pixel shards")
        if not urls:
            raise ValueError("no shard URLs given")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        super().__init__()
        self.urls, self.cfg, self.kind, self.source = list(urls), cfg, kind, source
        self.seed, self.rank, self.world_size = int(seed), rank, world_size
        self.resampled, self.shardshuffle, self.shuffle = resampled, shardshuffle, shuffle
        self.frames_per_clip, self.snippets_per_clip = frames_per_clip, snippets_per_clip
        self.style_frames, self.latent_scale = style_frames, latent_scale
        self.start_step, self.samples_per_step = start_step, max(1, samples_per_step)
        self.epoch = 0
        # decided here, in the process that builds the loader: a variant the mix wants and the shards lack
        # is an error now, before any training step
        self.reweight = reweights_variants(cfg.data)
        self.variants_checked = self.reweight and check_variants_present(self.urls, cfg.data)

    def __getstate__(self) -> dict:
        """Pickled for a loader worker: carries the skips this process has warned about (:data:`WARNED`)."""
        return {**self.__dict__, "_warned": set(WARNED)}

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        WARNED.update(state.pop("_warned", ()))
        self.__dict__.update(state)

    def set_epoch(self, epoch: int) -> None:
        """Non-resampled mode: the shard permutation of the next pass (same on every rank)."""
        self.epoch = int(epoch)

    def _rng(self, stage: int, worker: int) -> np.random.Generator:
        return np.random.default_rng(derive_seed(self.seed, self.epoch, self.rank, worker, stage))

    def __iter__(self) -> Iterator[dict]:
        worker, n_workers = _worker()
        log = SkipLog()
        per_clip = self.frames_per_clip if self.kind == "frames" else self.snippets_per_clip
        skip = _PIXEL_SKIP if self.source == "pixels" else _LATENT_SKIP
        stream: Iterable = shard_urls(self.urls, self._rng(_STAGE_SHARDS, worker), self.resampled, self.shardshuffle,
                                      self.rank, self.world_size,
                                      np.random.default_rng(derive_seed(self.seed, self.epoch, _STAGE_SHARDS)))
        stream = tar_samples(stream, log.handler, skip)
        stream = wds.filters.map(_naming_sample(with_meta), handler=log.handler)(stream)
        data_cfg, start, sps = self.cfg.data, self.start_step, self.samples_per_step

        def mix_at(n_clips: int) -> dict[str, float]:
            # This worker produced n_clips * per_clip samples; the workers take turns filling batches.
            step = start + (n_clips * per_clip * n_workers) // sps
            return mix_or_fail(data_cfg, step)

        if self.reweight:
            # counted present: wait long for a rare variant (a bound only against a hang on corrupt clips)
            patience = 100_000 if self.variants_checked else 4096
            stream = reweight_variants(stream, mix_at, self._rng(_STAGE_REWEIGHT, worker), patience=patience)
        draw_rng = self._rng(_STAGE_DRAW, worker)
        if self.kind == "frames":
            def draw(sample: dict) -> list[dict]:
                return frames_of(sample, self.frames_per_clip, draw_rng)
        else:
            spec = SnippetSpec(self.cfg, self.style_frames, self.latent_scale)

            def draw(sample: dict) -> list[dict]:
                return make_snippets(sample, spec, self.source, draw_rng, [None] * self.snippets_per_clip)
        stream = _flatten(wds.filters.map(_naming_sample(draw), handler=log.handler)(stream))
        if self.shuffle > 1:
            # webdataset's buffer with our own seeded generator: exact on resume because the trainer restarts
            # the stream at every checkpoint step and replays it from there (trainer/loop.py).
            shuffle_rng = random.Random(derive_seed(self.seed, self.epoch, self.rank, worker, _STAGE_SHUFFLE))
            stream = wds.filters.shuffle(bufsize=self.shuffle, initial=self.shuffle, rng=shuffle_rng)(iter(stream))
        if self.kind == "frames":
            stream = ({"frame": frame_to_unit(s["frame"]), "key": s["key"]} for s in stream)  # (3, H, W) in [-1, 1]
        yield from log.report(stream)


def _exit_with_owner(owner_pid: int, worker_id: int, interval_s: float = 1.0) -> None:
    """``worker_init_fn``: end this loader worker within ``interval_s`` of the training process's death.

    A worker started through the fork server has the fork server as its parent, so PyTorch's own
    watchdog (which watches the parent) misses a ``kill -9`` of the trainer; seen here: the workers and
    the fork server then outlived it for good (the workers hold the pipe whose closing ends the server).
    """
    exit_with_owner(owner_pid, interval_s)


class _Loader(DataLoader):
    """A DataLoader that adds the skips its batches report to :data:`WARNED`: the worker that skipped has warned
    about them, and the workers of later epochs (new processes, given WARNED) then do not warn again."""

    def __iter__(self) -> Iterator[Any]:
        for batch in super().__iter__():
            WARNED.update(skipped_in(batch))
            yield batch


def make_loader(dataset: ShardDataset, batch_size: int, num_workers: int, pin_memory: bool = False,
                drop_last: bool = True) -> DataLoader:
    """A DataLoader over a :class:`ShardDataset`; workers start by forkserver/spawn, never fork
    (a forked GL or CUDA context hangs the children), and end when the process that made them dies."""
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        if MP_CONTEXT == "forkserver":
            # the fork server imports this once; each loader's workers then fork from it in milliseconds
            mp.set_forkserver_preload(["trainer.data"])
        kwargs.update(multiprocessing_context=MP_CONTEXT, prefetch_factor=2, persistent_workers=False,
                      worker_init_fn=functools.partial(_exit_with_owner, os.getpid()))
    return _Loader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                   drop_last=drop_last, **kwargs)


def frame_loader(spec: str | list[str], cfg: Config, split: str, batch_size: int, *, seed: int, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, resampled: bool = True,
                 frames_per_clip: int = 4, shuffle: int = 128, start_step: int = 0, pin_memory: bool = False,
                 drop_last: bool = True) -> DataLoader:
    """Frame batches ``{"frame": (B, 3, H, W), "key": [B]}`` from pixel shards."""
    ds = ShardDataset(resolve_shards(spec, split), cfg, "frames", source="pixels", seed=seed, rank=rank,
                      world_size=world_size, resampled=resampled, shuffle=shuffle, frames_per_clip=frames_per_clip,
                      start_step=start_step, samples_per_step=batch_size)
    return make_loader(ds, batch_size, num_workers, pin_memory, drop_last)


def snippet_loader(spec: str | list[str], cfg: Config, split: str, batch_size: int, *, seed: int,
                   source: str = "latents", rank: int = 0, world_size: int = 1, num_workers: int = 0,
                   resampled: bool = True, latent_scale: float = 1.0,
                   snippets_per_clip: int | None = None, style_frames: int = 4, shuffle: int = 64, start_step: int = 0,
                   pin_memory: bool = False, drop_last: bool = True) -> DataLoader:
    """Snippet batches (docs/INTERFACES.md) from latent shards (training) or pixel shards (evaluation).

    ``snippets_per_clip`` defaults to ``data.snippets_per_clip``. ``pin_memory`` (the trainer sets it on CUDA)
    collates into page-locked memory, so that the training loop's ``.to(device, non_blocking=True)`` copies
    overlap the step. Workers: ``run.num_workers`` per rank, enough that the loader stays >= 3x ahead of the
    step (bench/RESULTS.md, "Snippet loader").
    """
    if snippets_per_clip is None:
        snippets_per_clip = cfg.data.snippets_per_clip
    ds = ShardDataset(resolve_shards(spec, split), cfg, "snippets", source=source, seed=seed, rank=rank,
                      world_size=world_size, resampled=resampled, shuffle=shuffle, snippets_per_clip=snippets_per_clip,
                      style_frames=style_frames, latent_scale=latent_scale, start_step=start_step,
                      samples_per_step=batch_size)
    return make_loader(ds, batch_size, num_workers, pin_memory, drop_last)


def first_meta(spec: str | os.PathLike, split: str) -> dict | None:
    """The first sample's ``meta.json`` of a shard set's split, or None where it cannot be read cheaply (a URL, no
    meta, a damaged first shard: the loader reports those)."""
    url = resolve_shards(spec, split)[0]
    if is_url(url) or not os.path.isfile(url):
        return None
    try:
        for _, members in S.iter_tar_samples(url):
            if S.META in members:
                meta = S.decode_json(members[S.META])
                return meta if isinstance(meta, dict) else None
    except (tarfile.TarError, OSError, ValueError, AttributeError):
        return None
    return None


def stored_channel_names(spec: str | os.PathLike, split: str) -> list[str] | None:
    """The timeline channel names a shard set stores (the first sample's ``meta.json``), or None where they cannot
    be read cheaply (a URL, a sample without the list)."""
    names = (first_meta(spec, split) or {}).get("timeline_channels")
    return list(names) if names else None


def read_pixel_clip(members: dict[str, bytes]) -> tuple[np.ndarray, dict]:
    """All frames of a pixel sample as float32 ``(T, 3, H, W)`` in [-1, 1], plus its meta."""
    suffixes = S.frame_suffixes(members)
    frames = np.stack([S.decode_jpeg(members[s]) for s in suffixes])
    return frame_to_unit(frames), S.decode_json(members[S.META])


__all__ = [
    "VARIANTS", "VARIANT_CODE", "SKIPPED", "SkipLog", "skipped_in", "skip_counts", "ShardDataset", "SnippetSpec",
    "resolve_shards", "timeshift_offset_frames", "bar_frames", "snippet_indices",
    "reweight_variants", "make_snippet", "make_snippets", "make_loader", "frame_loader", "snippet_loader", "frame_to_unit",
    "unit_to_frame", "read_pixel_clip",
]
