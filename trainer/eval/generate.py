"""Stage 2 of the evaluation: generate video for the chosen clips, batched over clips.

With one style latent ``z_k`` (from the prior, seed ``base * 7919 + 1000 k``) and noise seed ``base + k``
shared by every clip:

* ``own[k]``   G(a_i, z_k): each clip's own audio, for k < max(eval.seeds, eval.n_style_samples);
* ``floor[k]`` G(a_p(i), z_k): the floor partner's audio (:func:`trainer.eval.clips.floor_partners`, always
  different audio) with the same style and noise, for k < eval.seeds.

So own[k] and floor[k] differ only in their audio; own[0] vs own[1] differ only in style and noise (the
output-sensitivity pair and the style-diversity samples). The noise generator restarts at the group's
seed for every chunk of ``eval.batch_clips`` clips, so two groups with the same seed draw identical noise
for the clip in the same chunk position (with batch_clips = 1, every clip gets the same noise).

A folder of audio (``trainer eval --audio-dir``, :func:`generate_files`): ``trainer sample``'s own path
(:func:`trainer.sample.sample_file`) writes each file's mp4 and hands each frame chunk to :class:`FrameCurves`,
which keeps only the per-frame motion and flow (memory stays bounded for long files); the file's audio side
(:class:`~trainer.eval.registry.FileAudio`) is its detected silence, RMS, onsets and beats.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from shared.audio_io import AudioLoadError, load_audio, resample
from shared.timeline import estimate_beats, frame_count
from trainer.conditioning import ConditioningSpec
from trainer.eval.av_offset import audio_change_envelope
from trainer.eval.clips import Clip
from trainer.eval.metrics import motion_energy, spans_from_mask
from trainer.eval.registry import FileAudio, FileRun, VideoSide
from trainer.eval.rhythm import audio_onset_times, farneback_flow_magnitude
from trainer.runtime import autocast
from trainer.eval.rows import FOLDER_VARIANT
from trainer.sample import (SampleError, SampleSettings, SamplingModel, audio_conditioning, one_line, sample_file,
                            stream_spec)
from trainer.sample_core import StreamSpec, latent_stream
from trainer.style import style_for_seed


@dataclass
class Generated:
    own: list[np.ndarray]       # per style/seed k: uint8 (N, T, H, W, 3)
    floor: list[np.ndarray]     # per seed k: uint8 (N, T, H, W, 3); rows of clips without a partner are own audio
    own_latents: list[np.ndarray]    # per k: (N, T, C, h, w)
    floor_latents: list[np.ndarray]
    seconds: float


def conditioning(model: SamplingModel, clips: list[Clip]) -> tuple[np.ndarray, np.ndarray]:
    """(windows (N, T, k+1+f, Ch), is_silent (N, T)) exactly as the training loader builds them
    (:meth:`trainer.conditioning.ConditioningSpec.model_audio`)."""
    spec = ConditioningSpec.from_config(model.cfg)
    pairs = [spec.model_audio(c.timeline, c.names) for c in clips]
    return np.stack([w for w, _ in pairs]), np.stack([s for _, s in pairs]).astype(np.float32)


@torch.no_grad()
def generate_group(model: SamplingModel, spec: StreamSpec, windows: np.ndarray, silent: np.ndarray,
                   style_z: torch.Tensor, noise_seed: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Generate B streams in chunks of ``batch``: ``(frames uint8 (B, T, H, W, 3), latents (B, T, C, h, w))``."""
    frames_out, lat_out = [], []
    for i in range(0, len(windows), batch):
        gen = torch.Generator().manual_seed(int(noise_seed) * 1_000_003)
        a = torch.from_numpy(np.ascontiguousarray(windows[i:i + batch]))
        s = torch.from_numpy(np.ascontiguousarray(silent[i:i + batch]))
        z = style_z.expand(len(a), -1).to(model.device)
        with autocast(model.cfg.run, model.device):  # bf16 on CUDA (run.precision=auto)
            chunks = [lat.float() for _, lat in latent_stream(model.denoiser, spec, a, s, z, gen, model.device)]
        lat = torch.cat(chunks, dim=1)  # (b, T, C, h, w)
        frames_out.append(np.stack([model.decode(clip_lat) for clip_lat in lat]))  # per clip: bounded memory
        lat_out.append(lat.float().cpu().numpy())
    return np.concatenate(frames_out), np.concatenate(lat_out)


def style_latent(cfg, k: int, base_seed: int) -> torch.Tensor:
    """Style input k (1, D), shared by every clip: what ``--style-seed`` gives for seed ``base_seed * 7919 + 1000 k``
    (a prior draw, or the teacher's plan of that seed: trainer.style)."""
    return style_for_seed(cfg, base_seed * 7919 + 1000 * k)


def generate_all(model: SamplingModel, clips: list[Clip], partners: list[int | None], seed: int, log=print
                 ) -> Generated:
    cfg = model.cfg
    ev = cfg.eval
    windows, silent = conditioning(model, clips)
    idx = np.array([i if p is None else p for i, p in enumerate(partners)])
    spec = stream_spec(model, SampleSettings())
    batch = ev.batch_clips
    t0 = time.perf_counter()
    own, floor, own_l, floor_l = [], [], [], []
    for k in range(max(ev.seeds, ev.n_style_samples)):
        z = style_latent(cfg, k, seed)
        f, lat = generate_group(model, spec, windows, silent, z, seed + k, batch)
        own.append(f)
        own_l.append(lat)
        if k < ev.seeds:
            f, lat = generate_group(model, spec, windows[idx], silent[idx], z, seed + k, batch)
            floor.append(f)
            floor_l.append(lat)
        log(f"eval: generated style/seed {k}: {len(clips)} clips x {'2' if k < ev.seeds else '1'} in "
            f"{time.perf_counter() - t0:.1f} s")
    return Generated(own, floor, own_l, floor_l, time.perf_counter() - t0)


@torch.no_grad()
def val_loss(model: SamplingModel, clips: list[Clip], latents: list[np.ndarray], seed: int,
             snippets_per_clip: int = 4) -> dict[str, float] | None:
    """Val diffusion loss with true vs wrong audio (``trainer.diffusion.losses.val_losses``, the wrong audio
    drawn among the same clips' snippets) on ``snippets_per_clip`` evenly spaced snippets of each clip, the
    clips encoded by the run's VAE. None with fewer than 2 snippets."""
    from shared import shards as S
    from trainer.data import SnippetSpec, make_snippet
    from trainer.diffusion.losses import val_losses

    cfg = model.cfg
    spec = SnippetSpec(cfg, latent_scale=model.latent_scale)
    rng = np.random.default_rng(seed)
    items = []
    for clip, lat in zip(clips, latents):
        sample = {"__key__": clip.key, "meta": clip.meta, S.TIMELINE: S.encode_timeline(clip.timeline),
                  S.LATENTS: S.encode_npy((lat / model.latent_scale).astype(np.float16))}
        last = min(len(lat), len(clip.timeline)) - cfg.diffusion.snippet_frames
        if last < 0:
            continue
        for start in np.unique(np.linspace(0, last, snippets_per_clip).round().astype(int)):
            items.append(make_snippet(sample, spec, "latents", rng, start=int(start)))
    if len(items) < 2:
        return None
    batch = {k: torch.as_tensor(np.stack([it[k] for it in items])).to(model.device) for k in items[0] if k != "key"}
    batch["key"] = [it["key"] for it in items]
    out = val_losses(model.denoiser, batch, cfg, torch.Generator().manual_seed(seed))
    out["snippets"] = len(items)
    return out


# ------------------------------------------------------------------ a folder of audio


class FrameCurves:
    """Per-frame curves of a video that arrives in chunks: motion energy (frame difference) and the mean
    optical-flow magnitude (``flow=False``: zeros, for ``trainer live --out``, which needs only the motion). The last
    frame of each chunk is kept so the next chunk's first difference is right."""

    def __init__(self, flow: bool = True) -> None:
        self.flow = flow
        self._prev: np.ndarray | None = None
        self._motion: list[np.ndarray] = []
        self._flow: list[np.ndarray] = []

    def __call__(self, chunk: np.ndarray) -> None:  # chunk uint8 (n, H, W, 3)
        if len(chunk) == 0:
            return
        x = chunk if self._prev is None else np.concatenate([self._prev[None], chunk])
        skip = 0 if self._prev is None else 1
        self._motion.append(motion_energy(x)[skip:])
        self._flow.append(farneback_flow_magnitude(x)[skip:] if self.flow else np.zeros(len(x) - skip))
        self._prev = chunk[-1]

    def side(self) -> VideoSide:
        """Motion and flow [T]; value 0 repeats value 1 as both definitions do (also across a 1-frame first chunk)."""
        m = np.concatenate(self._motion) if self._motion else np.zeros(0)
        f = np.concatenate(self._flow) if self._flow else np.zeros(0)
        if len(m) > 1:
            m[0], f[0] = m[1], f[1]
        return VideoSide(motion=m, flow=f)


def generate_file(model: SamplingModel, path: Path, video_path: Path, settings: SampleSettings, progress: bool,
                  on_frames: Callable[[np.ndarray], None] | None = None) -> FileRun:
    """Sample ``path`` to ``video_path`` and collect its curves. Raises SampleError for unusable audio.
    ``on_frames`` also gets each uint8 chunk as it is written (``trainer studio``'s progress and brightness)."""
    cfg = model.cfg
    fps = cfg.render.fps
    try:
        wave, sr = load_audio(path)
    except AudioLoadError as e:
        raise SampleError(one_line(e)) from None
    n = frame_count(len(wave), sr, fps)
    if n == 0:
        raise SampleError(f"audio file {str(path)!r}: {len(wave) / sr:.4f} s is shorter than one frame at {fps:g} fps")
    _, _, info = audio_conditioning(wave, sr, cfg, n)  # resampled to data.sample_rate, as in training
    # scored against the audio's own (offline) silence, whatever a causal model is conditioned on
    silent = info["features"][:, info["names"].index("is_silent")].astype(np.float32)
    train_sr = cfg.data.sample_rate  # the timeline's beat estimate is made at the training rate
    beats = estimate_beats(resample(wave, sr, train_sr) if sr != train_sr else wave, train_sr).beat_times(n / fps)
    audio = FileAudio(rms=np.asarray(info["rms"], np.float64), is_silent=np.asarray(silent, np.float64),
                      onsets_s=audio_onset_times(wave, sr), beats_s=beats, fps=fps,
                      change_env=audio_change_envelope(wave, sr)).cut(n)
    curves = FrameCurves()
    each = curves if on_frames is None else (lambda chunk: (curves(chunk), on_frames(chunk)))
    summary = sample_file(path, video_path, model, settings, progress=progress, on_frames=each)
    return FileRun(name=path.name, audio=audio, video=curves.side(), path=video_path,
                   info={"duration_s": round(len(wave) / sr, 4), "sample_rate": sr, "frames": n,
                         "wall_s": round(summary["wall_s"], 3),
                         "detected_silences_s": [[round(a / fps, 4), round(b / fps, 4)]
                                                 for a, b in spans_from_mask(silent)]})


def generate_files(model: SamplingModel, files: list[Path], out: Path, settings: SampleSettings, progress: bool,
                   log: Callable[[str], None]) -> tuple[list[FileRun], list[dict[str, str]], list[dict[str, Any]]]:
    """Sample each file into ``out``/videos: (runs, skipped files with their reason, the report's video entries).
    A file with the same bytes as one already sampled is skipped (floors and retrieval need different audio)."""
    runs, skipped, videos, seen = [], [], [], {}
    for k, path in enumerate(files):
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as e:
            skipped.append({"file": path.name, "reason": f"cannot be read ({e.strerror or e})"})
            continue
        if digest in seen:
            skipped.append({"file": path.name, "reason": f"the same bytes as {seen[digest]}"})
            continue
        video = out / "videos" / f"{k:03d}_{path.stem}.mp4"
        log(f"eval --audio-dir: [{k + 1}/{len(files)}] {path.name}")
        try:
            run = generate_file(model, path, video, settings, progress)
        except SampleError as e:
            skipped.append({"file": path.name, "reason": str(e)})
            log(f"eval --audio-dir: skipped {path.name}: {e}")
            continue
        seen[digest] = path.name
        runs.append(run)
        videos.append({"variant": FOLDER_VARIANT, "clip": path.name, "kind": "generated",
                       "path": str(video.relative_to(out))})
    return runs, skipped, videos
