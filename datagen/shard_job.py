"""The shard function: one shard = one unit of work, identical under every executor.

``write_shard(cfg, spec, renderer)`` is a pure function of (config, base seed,
split, shard index) apart from its one side effect, the shard file, written
through :class:`shared.shards.ShardWriter` (``.partial`` then renamed). The
executors in :mod:`datagen.executors` (serial, process pool, Ray actors) only decide
*where* it runs; :class:`ShardWorker` is the long-lived worker state they all
share: one Renderer (one GL context) created inside the worker process.

Per sample ``i`` of shard ``s`` in split ``split``:
    seed     = sample_seed(data.seed, split, s, i)      (train and val seeds are disjoint)
    variant  = choose_variant(data, seed)               (val: fixed slots forced to silence / debug)
    audio    = synthesize_clip(cfg, seed, variant)
    timeline = compute_audio_timeline(PCM_16-quantised audio)   (equals a fresh compute on the stored FLAC;
               BLAS pinned to one thread, so the bytes do not depend on the executor's thread count)
    plan     = sample_visual_plan(cfg, seed, variant)
    frames   = renderer.render(timeline, names, plan, fps, chunk_frames) -> JPEG 4:2:0
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from shared import shards as S
from shared.config import Config
from shared.runlock import exit_with_owner, pid_alive
from shared.seeding import sample_seed
from shared.timeline import TIMELINE_VERSION

SIBLINGS, SPLITS, VARIANTS = S.SIBLINGS, S.SPLITS, S.VARIANTS
# val_siblings/: shard g is sibling group g, SIBLINGS_PER_GROUP normal-music clips that share the audio of seed
# sample_seed(data.seed, "val_siblings", g, 0) and draw their visual plans from seeds (g, 1), (g, 2), ...
SIBLINGS_PER_GROUP = 3

# Val shards: sample slots i % VAL_CYCLE == 0 are silence clips, == 1 debug clips, the rest follow the mix knobs.
# So every val shard with >= 2 samples holds both (the silence probe and the ceilings need them).
VAL_CYCLE = 4
VAL_FORCED = {0: "silence", 1: "debug"}


@dataclass(frozen=True)
class ShardSpec:
    """One unit of work: shard ``index`` of ``split``, written to ``out_dir/split/shard-NNNNNN.tar``."""

    split: str
    index: int
    out_dir: str

    @property
    def rel_path(self) -> str:
        return f"{self.split}/{S.shard_name(self.index)}"

    @property
    def path(self) -> Path:
        return Path(self.out_dir) / self.rel_path

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_counts(cfg: Config) -> dict[str, int]:
    """How many shards each split of the run has."""
    return {"train": cfg.data.train_shards, "val": cfg.data.resolved_val_shards(), SIBLINGS: cfg.data.val_style_siblings}


def samples_in(cfg: Config, split: str) -> int:
    """Clips per shard of ``split`` (a sibling shard is one group)."""
    return SIBLINGS_PER_GROUP if split == SIBLINGS else cfg.data.samples_per_shard


def plan_shards(cfg: Config, out_dir: str | os.PathLike) -> list[ShardSpec]:
    """Every shard of the run: val and its sibling groups first (small, and the trainer's eval needs them), then train."""
    out = str(out_dir)
    n = split_counts(cfg)
    return ([ShardSpec("val", i, out) for i in range(n["val"])]
            + [ShardSpec(SIBLINGS, i, out) for i in range(n[SIBLINGS])]
            + [ShardSpec("train", i, out) for i in range(n["train"])])


def variant_for(cfg: Config, split: str, sample: int, seed: int) -> str:
    """The clip variant: val forces fixed slots to silence and debug, otherwise the mix knobs decide."""
    from datagen.audio import choose_variant

    if split == "val" and sample % VAL_CYCLE in VAL_FORCED:
        return VAL_FORCED[sample % VAL_CYCLE]
    return choose_variant(cfg.data, seed)


def build_meta(cfg: Config, split: str, shard: int, sample: int, seed: int, audio_meta: dict[str, Any],
               plan: dict[str, Any], channel_names: list[str], n_frames: int) -> dict[str, Any]:
    """The ``meta.json`` object of one sample (ARCHITECTURE.md: schema, seed, indices, variant, segments, ...)."""
    from datagen.visual.plan import visual_meta

    meta = dict(audio_meta)
    meta.update({
        "schema_version": S.SCHEMA_VERSION,
        "sample_key": S.sample_key(shard, sample),  # the musical key stays under "key"
        "split": split,
        "shard": shard,
        "sample": sample,
        "seed": seed,
        "fps": cfg.render.fps,
        "resolution": cfg.render.resolution,
        "sample_rate": cfg.data.sample_rate,
        "clip_seconds": cfg.data.clip_seconds,
        "n_frames": n_frames,
        "timeline_channels": list(channel_names),
        "timeline_version": TIMELINE_VERSION,
        **visual_meta(plan),  # visualizers, visual_plan, style_vector
    })
    return meta


@dataclass
class PreparedClip:
    """The CPU half of one sample, made before it is rendered: audio, its timeline and the visual plan."""

    split: str
    shard: int
    sample: int
    seed: int
    plan_seed: int
    variant: str
    clip: Any  # datagen.audio.AudioClip
    wave: np.ndarray  # (N,) the PCM_16-quantised mix, as stored
    features: np.ndarray  # (T, C) timeline of ``wave``
    names: list[str]
    plan: dict[str, Any]


def prepare_clip(cfg: Config, split: str, shard: int, sample: int) -> PreparedClip:
    """Audio synthesis, timeline and visual plan of one sample (no GL: runs on any thread)."""
    from datagen.audio import synthesize_clip
    from datagen.visual import sample_visual_plan
    from shared.timeline import compute_audio_timeline

    if split == SIBLINGS:  # one audio clip per group, a visual plan per sibling
        seed, plan_seed = (sample_seed(cfg.data.seed, split, shard, 0),
                           sample_seed(cfg.data.seed, split, shard, sample + 1))
        variant = "normal"
    else:
        seed = plan_seed = sample_seed(cfg.data.seed, split, shard, sample)
        variant = variant_for(cfg, split, sample, seed)
    clip = synthesize_clip(cfg, seed, variant)
    # The stored audio is PCM_16: compute the timeline from exactly what a reader will decode.
    wave = S.quantize_pcm16(clip.wave)  # (N,)
    features, names = compute_audio_timeline(wave, clip.sr, cfg.render.fps, cfg.timeline)  # (T, C)
    plan = sample_visual_plan(cfg, plan_seed, variant)
    return PreparedClip(split, shard, sample, seed, plan_seed, variant, clip, wave, features, names, plan)


def encode_frames(frames: np.ndarray, quality: int) -> list[bytes]:
    """JPEG 4:2:0 bytes of each frame of a rendered chunk ``[n, H, W, 3]``."""
    return [S.encode_jpeg(frame, quality) for frame in frames]


def finish_sample(cfg: Config, p: PreparedClip, jpegs: list[bytes]) -> tuple[str, list[tuple[str, bytes]], dict]:
    """The sample's ``(key, members in shard order, meta)`` from its prepared clip and encoded frames."""
    if len(jpegs) != p.features.shape[0]:
        raise RuntimeError(f"renderer returned {len(jpegs)} frames for a {p.features.shape[0]}-frame timeline")
    meta = build_meta(cfg, p.split, p.shard, p.sample, p.seed, p.clip.meta, p.plan, p.names, len(jpegs))
    if p.split == SIBLINGS:
        meta.update(sibling_group=p.shard, style_seed=p.plan_seed)  # "seed" is the shared audio's
    if meta.get("variant") != p.variant:
        raise RuntimeError(f"synthesize_clip returned variant {meta.get('variant')!r}, asked for {p.variant!r}")
    stems = p.clip.stems if cfg.data.store_stems else None
    members = S.pixel_members(p.wave, p.clip.sr, p.features, jpegs, meta, stems=stems)
    return S.sample_key(p.shard, p.sample), members, meta


def render_chunks(cfg: Config, p: PreparedClip, renderer) -> Iterator[np.ndarray]:
    """The rendered frames of a prepared clip, chunk by chunk (``[n, H, W, 3]`` uint8)."""
    return renderer.render(p.features, p.names, p.plan, cfg.render.fps, cfg.render.chunk_frames)


def build_sample(cfg: Config, split: str, shard: int, sample: int, renderer) -> tuple[str, list[tuple[str, bytes]], dict]:
    """Generate one clip, serially: ``(key, members in shard order, meta)`` (what :func:`write_shard` pipelines)."""
    p = prepare_clip(cfg, split, shard, sample)
    jpegs = [j for chunk in render_chunks(cfg, p, renderer) for j in encode_frames(chunk, cfg.render.jpeg_quality)]
    return finish_sample(cfg, p, jpegs)


def _one_math_thread() -> None:
    """Helper-thread initializer: math libraries single-threaded on this thread too (see :func:`write_shard`;
    the shard's own ``threadpool_limits`` context restores the process-wide settings when it ends)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def write_shard(cfg: Config, spec: ShardSpec, renderer, before_commit: Callable[[], None] | None = None
                ) -> dict[str, Any]:
    """Write one shard (``.partial``, renamed on success) and return its stats for the manifest.
    ``before_commit`` runs just before the rename and may veto it by raising (:class:`shared.shards.ShardWriter`).

    The GL thread (this one) only renders; CPU work overlaps it on two helper threads: the next
    clip's audio synthesis, timeline and plan (:func:`prepare_clip`) and the JPEG encoding of each
    rendered chunk on a pool, and the sample's members and tar write (:func:`finish_sample`) on a
    single writer thread, which appends samples in order. Every step is the serial one of
    :func:`build_sample` on the same inputs, so the bytes do not depend on the threads.

    Math libraries run single-threaded inside: a multi-threaded BLAS splits sums (the timeline's
    ``power @ bands``) by thread count, and its float32 result then differs in the last bit between
    an executor whose workers get one thread (Ray actors) and one whose get all cores (local), so
    shard bytes would depend on the executor. Shards run in parallel as whole units instead. (The
    limit is set again on each helper thread: an OpenMP library keeps its thread count per thread.)
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    if spec.split not in SPLITS:
        raise ValueError(f"unknown split {spec.split!r} (expected one of {SPLITS})")
    t0 = time.perf_counter()
    variants: Counter[str] = Counter()
    n_samples = samples_in(cfg, spec.split)
    quality = cfg.render.jpeg_quality

    def write(p: PreparedClip, chunks: list[Future]) -> dict[str, Any]:
        key, members, meta = finish_sample(cfg, p, [j for c in chunks for j in c.result()])
        writer.add_sample(key, members)
        return meta

    with (threadpool_limits(limits=1), S.ShardWriter(spec.path, before_commit) as writer,
          ThreadPoolExecutor(max_workers=2, thread_name_prefix="shard-cpu", initializer=_one_math_thread) as cpu,
          ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-write") as tar):
        written: list[Future] = []
        upcoming = cpu.submit(prepare_clip, cfg, spec.split, spec.index, 0)
        for i in range(n_samples):
            if i >= 2:  # at most two samples' frames in memory (encoding may lag a fast GPU)
                written[i - 2].result()
            p = upcoming.result()
            if i + 1 < n_samples:
                upcoming = cpu.submit(prepare_clip, cfg, spec.split, spec.index, i + 1)
            chunks = [cpu.submit(encode_frames, chunk, quality) for chunk in render_chunks(cfg, p, renderer)]
            written.append(tar.submit(write, p, chunks))
        metas = [f.result() for f in written]  # in order; the first error is raised here with its traceback
    for meta in metas:
        variants[meta["variant"]] += 1
    n_frames = sum(meta["n_frames"] for meta in metas)
    st = spec.path.stat()
    return {
        "split": spec.split,
        "index": spec.index,
        "path": spec.rel_path,
        "samples": n_samples,
        "frames": n_frames,
        "bytes": st.st_size,
        "mtime_ns": st.st_mtime_ns,  # the hash cache key with bytes (datagen.reconcile.verified)
        "sha256": S.file_sha256(spec.path),
        "seconds": round(time.perf_counter() - t0, 4),
        "variants": {v: variants.get(v, 0) for v in VARIANTS},
    }


# Renderers constructed in this process (the test checks one GL context per worker, not per shard).
_RENDERERS_CREATED = 0


class OwnerGone(RuntimeError):
    """The ``datagen run`` that started this worker has died: its lock on the output directory is gone."""


class ShardWorker:
    """Long-lived worker state: the config and one Renderer, created here, inside the worker process.

    Used as is by the ``local`` and ``processes`` executors and wrapped with
    ``ray.remote`` as an actor by the ``ray`` executor.

    ``owner_pid``: the ``datagen run`` process (on this host) whose lock covers the output directory. The
    worker then ends itself within a second of that process's death (:func:`shared.runlock.exit_with_owner`),
    and checks it once more just before each shard's rename, so that no shard appears after the lock is gone
    (a second run may hold it by then).
    """

    def __init__(self, cfg_dict: dict[str, Any], gpu_index: int | None = None, ray_gpu: bool = False,
                 render_threads: int | None = None, owner_pid: int | None = None):
        global _RENDERERS_CREATED
        from datagen.visual import Renderer

        self.owner_pid = owner_pid
        if owner_pid is not None:
            exit_with_owner(owner_pid)

        if render_threads and "LP_NUM_THREADS" not in os.environ:
            # Mesa llvmpipe (CPU rendering) starts one thread per CPU in every context; with several
            # workers on one machine give each its share instead (no effect on a GPU driver).
            os.environ["LP_NUM_THREADS"] = str(int(render_threads))

        self.cfg = Config.model_validate(cfg_dict)
        assigned = None
        if ray_gpu:
            import ray

            # Ray narrows CUDA_VISIBLE_DEVICES to the assigned GPU; the Renderer's default (gpu_index
            # None) then takes the first visible one, i.e. that GPU's EGL device.
            assigned = [str(i) for i in ray.get_gpu_ids()]
        self.renderer = Renderer(self.cfg.render.resolution, gpu_index=gpu_index)
        _RENDERERS_CREATED += 1
        self.identity = {
            "worker_id": uuid.uuid4().hex[:12],
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "gpu_index": gpu_index,
            "ray_gpu_ids": assigned,
            "renderer": dict(self.renderer.info),
            "renderers_in_process": _RENDERERS_CREATED,
            "lp_num_threads": os.environ.get("LP_NUM_THREADS"),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # the GPU an executor pinned it to
        }
        self.shards_done = 0

    def describe(self) -> dict[str, Any]:
        return dict(self.identity, shards_done=self.shards_done)

    def check_owner(self) -> None:
        """Raise :class:`OwnerGone` when the owning run has died (the shard must not be committed)."""
        if self.owner_pid is not None and not pid_alive(self.owner_pid):
            raise OwnerGone(f"the datagen run that started this worker (pid {self.owner_pid}) is gone; "
                            "its shard is not committed")

    def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        stats = write_shard(self.cfg, ShardSpec(**spec), self.renderer, self.check_owner)
        self.shards_done += 1
        stats["worker"] = {"worker_id": self.identity["worker_id"], "pid": self.identity["pid"],
                           "host": self.identity["host"]}
        return stats


def read_shard_stats(path: str | os.PathLike, split: str, index: int) -> dict[str, Any]:
    """Stats of a finished shard file, read back (to rebuild a manifest that is behind)."""
    variants: Counter[str] = Counter()
    samples = frames = 0
    for _key, members in S.iter_tar_samples(path):
        meta = S.decode_json(members[S.META])
        variants[meta["variant"]] += 1
        frames += len(S.frame_suffixes(members))
        samples += 1
    p = Path(path)
    st = p.stat()
    return {
        "split": split, "index": index, "path": f"{split}/{p.name}", "samples": samples, "frames": frames,
        "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": S.file_sha256(p), "seconds": None,
        "variants": {v: variants.get(v, 0) for v in VARIANTS}, "rebuilt": True,
    }

