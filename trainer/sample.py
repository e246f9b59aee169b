"""`trainer sample`: any audio file -> an mp4 whose pictures follow it, with the audio muxed in.

Pipeline (side effects at the two ends)::

    load_audio (shared loader) ─► resample to the training rate ─► compute_audio_timeline (checkpoint's
    timeline settings and fps; per-clip z-score only if the checkpoint was trained with it)
      ─► context windows (B=1) ─► latent_stream (snippets of diffusion.snippet_frames, each conditioned on
      the last generated latents, overlaps cross-faded; audio CFG) ─► / latent scale ─► VAE decode
      ─► uint8 frames ─► Mp4Writer (input audio muxed, floor(duration * fps) frames)

Frames stream into the writer snippet by snippet: memory is bounded for audio of any length.
Bad input raises a :class:`shared.errors.SynestheteError` with a one-line message (the command prints it and
exits 2); anything else (a bug, running out of memory) keeps its traceback.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import soundfile as sf
import torch
from PIL import Image, UnidentifiedImageError

from shared.audio_io import AUDIO_SUFFIXES, audio_files_in, load_audio, resample
from shared.config import Config, build_config
from shared.errors import AudioError, CheckpointError, ConfigError, SynestheteError, one_line  # noqa: F401 (re-exported)
from shared.timeline import channel_index, compute_audio_timeline, frame_count
from shared.video import Mp4Writer, VideoError, read_video_frames, view_size
from trainer.checkpoint import CKPT_DIR, CONFIG_FILE, STATE_FILE, read_checkpoint, read_run_config
from trainer.conditioning import ConditioningSpec
from trainer.data import frame_to_unit
from trainer.diffusion.model import Denoiser
from trainer.diffusion.sampler import SamplingNet
from trainer.runtime import autocast, enable_tf32
from trainer.runtime import progress as progress_bar
from trainer.sample_core import StreamSpec, latent_stream, pad_to
from trainer.style import style_for_seed, style_from_prior  # noqa: F401 (style_from_prior re-exported)
from trainer.vae.model import load_vae


class SampleError(SynestheteError):
    """Sampling input that cannot be used (no checkpoint to find, a bad style reference): the message is the whole
    story. Checkpoint, audio and config problems raise :class:`CheckpointError`, :class:`AudioError` and
    :class:`ConfigError` (shared/errors.py)."""


# ------------------------------------------------------------------ the model bundle


def frames_uint8(x: torch.Tensor) -> torch.Tensor:
    """Decoded frames (n, 3, H, W) in ~[-1, 1] -> uint8 (n, H, W, 3) on their device: the math of
    :func:`trainer.data.unit_to_frame` (round half up, clip to [0, 255]) without leaving the device."""
    y = ((x.float() + 1.0) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)
    return y.permute(0, 2, 3, 1).contiguous()


@dataclass
class SamplingModel:
    """Everything sampling needs from a diffusion run: the EMA denoiser, its VAE and the latent scale."""

    cfg: Config                 # the config the diffusion run was trained with
    denoiser: torch.nn.Module   # EMA weights, eval mode
    vae: torch.nn.Module        # the VAE the latents came from (EMA), eval mode
    latent_scale: float         # diffusion latents = VAE posterior mean * latent_scale
    latent_shape: tuple[int, int, int]  # (C, h, w)
    step: int
    step_dir: Path
    device: torch.device
    _net: SamplingNet | None = field(default=None, repr=False)

    def to(self, device: str | torch.device) -> "SamplingModel":
        """Move both networks to ``device`` (in place); returns self."""
        self.device = torch.device(device)
        self.denoiser.to(self.device)
        self.vae.to(self.device)
        self._net = None
        return self

    def sampling_net(self) -> SamplingNet:
        """The denoiser as the sampler runs it, compiled with CUDA graphs when ``inference.compile`` is on and the
        device is CUDA (built once: the graphs are recorded at the first snippet of each shape)."""
        if self._net is None:
            on = self.cfg.inference.compile and self.device.type == "cuda"
            self._net = SamplingNet(self.denoiser, "reduce-overhead" if on else None)
        return self._net

    @torch.no_grad()
    def decode_on_device(self, latents: torch.Tensor) -> torch.Tensor:
        """(n, C, h, w) diffusion latents -> uint8 frames (n, H, W, 3), left on the device."""
        x = self.vae.decode(latents.to(self.device).float() / self.latent_scale)  # (n, 3, H, W) in ~[-1, 1]
        return frames_uint8(x.clamp(-1, 1))

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """(n, C, h, w) diffusion latents -> uint8 frames (n, H, W, 3) on the host."""
        return self.decode_on_device(latents).cpu().numpy()

    @torch.no_grad()
    def encode(self, frames: np.ndarray, batch: int = 32) -> torch.Tensor:
        """uint8 frames (n, H, W, 3) -> diffusion latents (n, C, h, w) (posterior means times the scale)."""
        out = []
        for i in range(0, len(frames), batch):
            x = torch.from_numpy(frame_to_unit(frames[i:i + batch])).to(self.device)
            mean, _ = self.vae.encode(x)
            out.append(mean.float() * self.latent_scale)
        return torch.cat(out)


def load_sampling_model(path: str | os.PathLike, device: str | torch.device = "cpu",
                        overrides: Callable[[dict], Config] | None = None) -> SamplingModel:
    """A diffusion run dir (its newest intact checkpoint) or a ``ckpt/step-*`` dir -> :class:`SamplingModel`.

    Reads RUN/config.yaml (the training config: fps, timeline, model shape), the step's EMA weights and
    ``state.json`` (model constructor arguments, latent scale, where the VAE copy lives) and RUN/vae/ (the
    VAE the latents came from). ``overrides`` maps the saved config tree to the config to use (CLI layers
    on top). A checkpoint that is missing, damaged or incomplete raises :class:`CheckpointError` naming
    the file and what is wrong.
    """
    path = Path(path)
    device = torch.device(device)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r}: not found")
    ckpt = read_checkpoint(path, names=["ema"])
    if ckpt is None:
        raise CheckpointError(f"checkpoint {str(path)!r}: no weights there (expected RUN/latest -> ckpt/step-*/ with "
                              f"{STATE_FILE} and ema.safetensors, or a step dir itself)")
    step_dir = ckpt.step_dir.resolve()  # RUN/latest is a symlink to ckpt/step-*
    run_dir = step_dir.parent.parent if step_dir.parent.name == CKPT_DIR else step_dir
    saved = read_run_config(run_dir)
    if saved is None:
        raise CheckpointError(f"checkpoint {str(path)!r}: {run_dir}/{CONFIG_FILE} is missing (the training config)")
    cfg = overrides(saved) if overrides is not None else build_config(base=saved)
    extra = ckpt.state
    kwargs = extra.get("model_kwargs")
    if not kwargs:
        raise CheckpointError(f"checkpoint {step_dir}: {STATE_FILE} has no model_kwargs (not a diffusion checkpoint?)")
    if "latent_scale" not in extra:
        raise CheckpointError(f"checkpoint {step_dir}: {STATE_FILE} does not record the latent_scale")
    denoiser = Denoiser(cfg, **kwargs)
    try:
        denoiser.load_state_dict(ckpt.tensors["ema"])
    except RuntimeError as e:  # load_state_dict's report of missing / unexpected / mis-shaped tensors
        raise CheckpointError(f"checkpoint {step_dir}: the weights do not fit the model the config describes "
                              f"({one_line(e)[:300]})") from e
    vae_dir = run_dir / str(extra.get("vae") or "vae")
    if not vae_dir.exists():
        raise CheckpointError(f"checkpoint {str(path)!r}: the VAE copy {vae_dir} is missing")
    vae, _, _ = load_vae(vae_dir, device)
    c, size = int(kwargs["latent_channels"]), int(kwargs["latent_size"])
    return SamplingModel(cfg=cfg, denoiser=denoiser.to(device).eval(), vae=vae.eval(),
                         latent_scale=float(extra["latent_scale"]), latent_shape=(c, size, size),
                         step=ckpt.step, step_dir=step_dir, device=device)


# ------------------------------------------------------------------ audio -> conditioning


def audio_conditioning(wave: np.ndarray, sr: int, cfg: Config, n_frames: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Mono audio -> (windows (T, k+1+f, Ch), is_silent (T,), timeline info) exactly as in training.

    The wave is resampled to ``data.sample_rate`` (band edges depend on the rate), featurised with the
    checkpoint's timeline settings and fps, cut/padded to ``n_frames``, then taken through the training
    loader's :meth:`trainer.conditioning.ConditioningSpec.model_audio` (a causal model's causal timeline, the
    per-clip z-score when the checkpoint was trained with it, the channels ``diffusion.audio_channels`` names,
    ``k`` past and ``f`` future frames per window). ``info`` holds the offline timeline (``features``, ``names``, ``rms``,
    ``onset``): what the audio is, for scoring, whatever the model sees.
    """
    train_sr = cfg.data.sample_rate
    x = resample(wave, sr, train_sr) if sr != train_sr else wave
    feats, names = compute_audio_timeline(np.asarray(x, np.float32), train_sr, cfg.render.fps, cfg.timeline)  # (T', Ch)
    if len(feats) == 0:
        raise AudioError("audio is shorter than one video frame")
    feats = pad_to(feats, n_frames)  # resampling can move the frame count by one
    win, silent = ConditioningSpec.from_config(cfg).model_audio(feats, names)  # (T, k+1+f, Ch'), (T,)
    rms = feats[:, channel_index(names, "rms")]
    onset = feats[:, channel_index(names, "onset")]
    return win, silent, {"names": names, "rms": rms, "onset": onset, "features": feats}


# ------------------------------------------------------------------ style


def read_reference_frames(path: str | Path, resolution: int, max_frames: int = 8) -> np.ndarray:
    """An image or a video -> up to ``max_frames`` uint8 frames (n, R, R, 3), evenly spaced, resized."""
    path = Path(path)
    if not path.is_file():
        raise SampleError(f"style reference {str(path)!r}: not found")
    try:
        with Image.open(path) as im:
            frames = [np.asarray(im.convert("RGB").resize((resolution, resolution), Image.BICUBIC))]
    except (UnidentifiedImageError, OSError):
        try:
            all_frames = [np.asarray(f) for f in read_video_frames(path, size=(resolution, resolution))]
        except (VideoError, OSError, KeyError, TypeError, ValueError) as e:
            raise SampleError(f"style reference {str(path)!r}: neither an image nor a readable video ({e})") from e
        if not all_frames:
            raise SampleError(f"style reference {str(path)!r}: the video has no frames")
        pick = np.linspace(0, len(all_frames) - 1, min(max_frames, len(all_frames))).round().astype(int)
        frames = [all_frames[i] for i in pick]
    return np.stack(frames)


@torch.no_grad()
def style_from_reference(model: SamplingModel, path: str | Path) -> torch.Tensor:
    """Style latent (1, style_dim): the style encoder's posterior mean over the reference's latents."""
    if model.cfg.diffusion.style_source != "posterior":
        raise SampleError(f"--style-from needs a model with a style encoder (diffusion.style_source=posterior); "
                          f"this one takes the teacher's plan ({model.cfg.diffusion.style_source}): use --style-seed")
    frames = read_reference_frames(path, model.cfg.render.resolution)
    lat = model.encode(frames)  # (S, C, h, w)
    mu, _ = model.denoiser.encode_style(lat[None])
    return mu.float().cpu()


# ------------------------------------------------------------------ the sampler


@dataclass
class SampleSettings:
    seed: int = 0
    style_seed: int | None = None
    style_from: str | None = None
    guidance: float | None = None
    style_guidance: float | None = None  # inference.style_guidance_scale unless given
    steps: int | None = None
    sampler: str | None = None
    overlap: int | None = None
    size: int | str | None = "native"  # the written video's side (shared.video.view_size; the CLI's default: None)


def stream_spec(model: SamplingModel, settings: SampleSettings) -> StreamSpec:
    cfg = model.cfg
    inf = cfg.inference
    # the configured overlap is capped for 1-frame snippets; an explicit --overlap is checked as given
    f = cfg.diffusion.snippet_frames
    overlap = settings.overlap if settings.overlap is not None else min(inf.snippet_overlap, f - 1)
    if not 0 <= overlap < cfg.diffusion.snippet_frames:
        raise ConfigError(f"snippet overlap {overlap} must be in [0, {cfg.diffusion.snippet_frames - 1}]")
    return StreamSpec(
        snippet_frames=cfg.diffusion.snippet_frames, prev_frames=cfg.diffusion.prev_frames,
        latent_shape=model.latent_shape, clip_frames=max(1, int(math.floor(cfg.data.clip_seconds * cfg.render.fps))),
        overlap=overlap, steps=settings.steps or inf.steps,
        guidance=inf.audio_guidance_scale if settings.guidance is None else float(settings.guidance),
        guidance_schedule=inf.audio_guidance_schedule, guidance_interval=tuple(inf.audio_guidance_interval),
        style_guidance=inf.style_guidance_scale if settings.style_guidance is None else float(settings.style_guidance),
        sampler=settings.sampler or inf.sampler)


class _Decoded:
    """A snippet's frames on their way to the host: ``result()`` waits for them (B, n, H, W, 3) uint8."""

    def __init__(self, frames: torch.Tensor | np.ndarray, shape: tuple[int, int], event=None):
        self.frames, self.shape, self.event = frames, shape, event

    def result(self) -> np.ndarray:
        if self.event is not None:
            self.event.synchronize()
        frames = self.frames.numpy() if isinstance(self.frames, torch.Tensor) else self.frames
        return frames.reshape(self.shape + frames.shape[1:])


class FrameDecoder:
    """VAE decode of each snippet's latents to uint8 frames.

    On CUDA the decode runs on its own stream (bf16 under the sampler's autocast), writes into pinned host
    memory with a non-blocking copy, and is only waited for when the frames are wanted: the next snippet's
    denoising (queued meanwhile on the main stream) overlaps it. On the CPU it decodes at once.
    """

    def __init__(self, model: SamplingModel):
        self.model = model
        self.stream = torch.cuda.Stream(model.device) if model.device.type == "cuda" else None

    def submit(self, latents: torch.Tensor) -> _Decoded:
        """Start decoding latents (B, n, C, h, w)."""
        b, n = latents.shape[:2]
        flat = latents.flatten(0, 1)
        if self.stream is None:
            return _Decoded(self.model.decode(flat), (b, n))
        self.stream.wait_stream(torch.cuda.current_stream(self.model.device))
        with torch.cuda.stream(self.stream):
            frames = self.model.decode_on_device(flat)
            host = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(frames, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        flat.record_stream(self.stream)  # made on the main stream, read on this one: not reused before it is done
        return _Decoded(host, (b, n), event)


def generate_frames(model: SamplingModel, windows: np.ndarray, silent: np.ndarray, style_z: torch.Tensor | None,
                    spec: StreamSpec, seed: int, on_snippet: Callable[[int], None] | None = None, overlap: bool = True):
    """Yield uint8 frame chunks (B, n, H, W, 3) for B audio streams ``windows`` (B, T, k+1+f, Ch), ``silent`` (B, T).

    On CUDA (and ``overlap``) the stream runs one snippet ahead: snippet j + 1's denoising is queued before
    snippet j's frames are waited for, so its decode (:class:`FrameDecoder`) overlaps the next denoising. The
    noise comes from a generator on the model's device (on the CPU the same numbers as before; on CUDA, CUDA's
    Philox generator, so CUDA samples differ from the CPU's for the same seed).
    """
    enable_tf32(model.device)
    gen = torch.Generator(device=model.device).manual_seed(int(seed))
    audio = torch.from_numpy(np.ascontiguousarray(windows))
    sil = torch.from_numpy(np.ascontiguousarray(silent))
    style = None if style_z is None else style_z.to(model.device)
    stream = latent_stream(model.sampling_net(), spec, audio, sil, style, gen, model.device, on_snippet)
    decoder = FrameDecoder(model)
    ahead = 1 if overlap and decoder.stream is not None else 0

    def next_snippet() -> _Decoded | None:
        with torch.no_grad(), autocast(model.cfg.run, model.device):  # bf16 on CUDA (run.precision=auto)
            item = next(stream, None)
            return None if item is None else decoder.submit(item[1])

    queue: list[_Decoded] = []
    while True:
        while len(queue) <= ahead and (job := next_snippet()) is not None:
            queue.append(job)
        if not queue:
            return
        yield queue.pop(0).result()  # outside autocast and no_grad: the caller's code runs as it chose


def mux_audio(path: str | Path, mono: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """The audio to mux into the mp4: the file's own channels where soundfile reads it at the same length
    (wav/flac/ogg), else the shared loader's mono mix."""
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    except (RuntimeError, TypeError, ValueError, OSError):
        return mono, sr
    if file_sr != sr or len(data) != len(mono) or data.shape[1] > 2:
        return mono, sr
    return (data[:, 0] if data.shape[1] == 1 else data), sr


def audio_inputs(paths: list[str | Path]) -> list[Path]:
    """``--audio`` arguments -> audio files: a file as given, a folder's audio files (by suffix) in name order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = audio_files_in(p)
            if not found:
                raise AudioError(f"folder {str(p)!r} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise AudioError(f"audio file {str(p)!r}: " + ("not a regular file" if p.exists() else "not found"))
    return out


def sample_file(audio_path: str | Path, out_path: str | Path, model: SamplingModel, settings: SampleSettings,
                progress: bool = True, on_frames: Callable[[np.ndarray], None] | None = None) -> dict[str, Any]:
    """Sample a video for one audio file and write it; returns a summary (frames, seconds, frames/s).
    ``on_frames`` gets each uint8 chunk (n, H, W, 3) as it is written (``trainer eval --audio-dir`` scores them)."""
    each = None if on_frames is None else (lambda _i, frames: on_frames(frames))
    return sample_files([audio_path], [out_path], model, settings, progress, on_frames=each)[0]


def read_item(index: int, audio_path: str | Path, out_path: str | Path, cfg: Config) -> dict[str, Any]:
    """One file's audio and conditioning, ready to sample; raises AudioError when it cannot be used."""
    fps = cfg.render.fps
    wave, sr = load_audio(audio_path)
    n_frames = frame_count(len(wave), sr, fps)
    if n_frames == 0:
        raise AudioError(f"audio file {str(audio_path)!r}: {len(wave) / sr:.4f} s is shorter than one frame "
                         f"at {fps:g} fps")
    windows, silent, _ = audio_conditioning(wave, sr, cfg, n_frames)
    return {"index": index, "audio": Path(audio_path), "out": Path(out_path), "wave": wave, "sr": sr,
            "frames": n_frames, "windows": windows, "silent": silent}


def readable_items(audio_paths: list[str | Path], out_paths: list[str | Path], cfg: Config,
                   skipped: list[dict[str, str]] | None) -> Iterator[dict[str, Any]]:
    """:func:`read_item` of each file, lazily. With a ``skipped`` list, a file that cannot be used is recorded
    there (``{"file", "reason"}``) and left out; without one its AudioError ends the whole call."""
    for index, (audio_path, out_path) in enumerate(zip(audio_paths, out_paths)):
        try:
            yield read_item(index, audio_path, out_path, cfg)
        except AudioError as e:
            if skipped is None:
                raise
            skipped.append({"file": str(audio_path), "reason": one_line(e)})


def batches(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    while group := list(itertools.islice(items, size)):
        yield group


def sample_files(audio_paths: list[str | Path], out_paths: list[str | Path], model: SamplingModel,
                 settings: SampleSettings, progress: bool = True, batch: int | None = None,
                 on_frames: Callable[[int, np.ndarray], None] | None = None,
                 skipped: list[dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """Sample one video per audio file, ``batch`` files (default ``inference.batch_snippets``) as the B streams of
    one batched stream through the model; returns one summary per file. ``on_frames(i, chunk)`` gets each uint8
    chunk (n, H, W, 3) of file i as it is written. With a ``skipped`` list, a file that cannot be read is
    recorded there with its reason and the others are sampled (the batches are filled from the readable ones);
    without one, such a file raises its AudioError before anything of its batch is written.

    Every file gets the style the one-file path would give it (the same seed or reference). Shorter files of a
    batch are padded with their last frame's audio up to the longest and cut back when written. The noise is
    drawn for the B streams together, so a file sampled in a batch differs from the same file sampled alone
    (reproducible for the same files, order and seed); a batch of one is exactly the one-file path.
    """
    if len(audio_paths) != len(out_paths):
        raise ValueError(f"{len(audio_paths)} audio files but {len(out_paths)} outputs")
    cfg = model.cfg
    fps, res = cfg.render.fps, cfg.render.resolution
    px = view_size(res, settings.size)  # frames are generated at res and scaled by the writer
    spec = stream_spec(model, settings)
    if settings.style_from:
        style_one = style_from_reference(model, settings.style_from)
    else:
        style_one = style_for_seed(cfg, settings.style_seed if settings.style_seed is not None else settings.seed)
    size = max(1, batch or cfg.inference.batch_snippets)
    summaries: list[dict[str, Any]] = []
    for items in batches(readable_items(audio_paths, out_paths, cfg, skipped), size):
        longest = max(it["frames"] for it in items)
        windows = np.stack([pad_to(it["windows"], longest) for it in items])  # (B, T, k+1+f, Ch)
        silent = np.stack([pad_to(it["silent"], longest) for it in items])  # (B, T)
        style_z = style_one.expand(len(items), -1).contiguous()
        total = sum(it["frames"] for it in items)
        name = items[0]["audio"].name if len(items) == 1 else f"{len(items)} files"
        bar = progress_bar(total, 0, f"sample {name}", unit="frame") if progress else None
        t0 = time.perf_counter()
        with contextlib.ExitStack() as stack:
            writers = [stack.enter_context(Mp4Writer(it["out"], fps, res, res, out_size=(px, px),
                                                     audio=mux_audio(it["audio"], it["wave"], it["sr"])))
                       for it in items]
            done = 0
            for chunk in generate_frames(model, windows, silent, style_z, spec, settings.seed):
                n = chunk.shape[1]
                for writer, it, frames in zip(writers, items, chunk):
                    keep = max(0, min(n, it["frames"] - done))
                    if keep:
                        writer.write(frames[:keep])
                        if on_frames is not None:
                            on_frames(it["index"], frames[:keep])
                        if bar is not None:
                            bar.update(keep)
                done += n
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - t0
        for it in items:
            summaries.append({"out": str(it["out"]), "frames": it["frames"], "duration_s": len(it["wave"]) / it["sr"],
                              "fps": fps, "size": px, "native_size": res, "wall_s": seconds, "frames_per_s": total / max(seconds, 1e-9),
                              "silent_frac": float(it["silent"].mean()), "batch": len(items), "step": model.step,
                              "checkpoint": str(model.step_dir)})
    return summaries
