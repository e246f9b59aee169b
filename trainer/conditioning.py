"""What the denoiser is fed: the one model-input contract of the loader, the model, the losses and negatives,
offline sampling, the eval and live mode.

:class:`ConditioningSpec` (frozen, made once from a config by :meth:`ConditioningSpec.from_config`) owns every
choice about a model's audio input:

* **channels** (``diffusion.audio_channels``): the timeline columns the denoiser takes, by name and in that order
  (None: all); :meth:`ConditioningSpec.columns` resolves them in a timeline's names (a stored shard's, the
  config's or a live stream's), so a model trained on a subset needs no regenerated shards;
* **causal** (``diffusion.audio_context_future = 0``): a live model sees the causal timeline. From a stored
  (offline) timeline it is the same per-frame channels with ``is_silent`` recomputed as a *trailing* median
  (:func:`causal_silence_mask`, :meth:`ConditioningSpec.causal_from_stored`). Its beat channels cannot be
  recomputed without the audio (latent shards do not store it), so a causal model takes no beat channel, and no
  per-clip z-score (a whole-clip statistic);
* **per-clip normalisation** (``diffusion.audio_feature_normalize_per_clip``, :func:`shared.timeline.normalize_per_clip`);
* **windows** of ``past = audio_context_frames`` frames before each frame and ``future`` after it
  (``audio_context_future``; null: ``past``, symmetric), :func:`shared.timeline.context_windows`;
* the **channel layout** the wrong-audio negatives read (:class:`ChannelLayout`) and the clip's **audio identity**
  (:func:`audio_content_id`), so that no negative is a copy of the true audio.

:meth:`ConditioningSpec.model_audio` turns a clip's stored timeline into the model's input, ``(windows [T, W, Ch],
is_silent [T])``; live, trainer/live/scheduler.py builds the same numbers from the streamed causal timeline
(tests/test_live_conditioning.py). The tensors that cross module lines have their schema here: :class:`Cond`, the
denoiser's conditioning, and :class:`SnippetBatch`, the loader's collated snippet batch (docs/INTERFACES.md).

This module imports only ``shared``: every part of the trainer may depend on it, and it on none of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from shared.config import Config
from shared.errors import ConfigError
from shared.timeline import channel_index, channel_names, context_windows, normalize_per_clip

if TYPE_CHECKING:  # the annotations only: numpy-only callers (the loader's stages) need no torch from here
    import torch

BEAT_CHANNELS = ("beat_phase", "downbeat")  # the channels of the whole-clip (offline) or causal beat tracker


# ------------------------------------------------------------------ the contract's pure pieces


def future_frames(diffusion_cfg) -> int:
    """f: timeline frames after each frame in its audio window (``audio_context_future``; null: k, symmetric)."""
    d = diffusion_cfg
    return d.audio_context_frames if d.audio_context_future is None else d.audio_context_future


def is_causal_model(diffusion_cfg) -> bool:
    """A live model: ``diffusion.audio_context_future`` set to 0. Its windows hold no future frame and it sees
    the causal timeline. Null (the symmetric default) is never causal, also with k = 0: such a model was trained on
    the offline channels."""
    return diffusion_cfg.audio_context_future == 0


def channel_selection(names: list[str], wanted: list[str] | tuple[str, ...] | None) -> list[int] | None:
    """Column indices of the ``wanted`` channels (``diffusion.audio_channels``) in a timeline with ``names``.

    None selects every channel (returns None: no selection). An unknown or repeated name is a ConfigError naming it.
    """
    if wanted is None:
        return None
    names = list(names)
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ConfigError(f"diffusion.audio_channels: {missing} not in the timeline's channels {names}")
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"diffusion.audio_channels: a channel is named twice in {list(wanted)}")
    return [names.index(w) for w in wanted]


def causal_silence_mask(log_rms: np.ndarray, threshold_db: float, smooth_frames: int) -> np.ndarray:
    """1.0 where the trailing median of ``log_rms`` over ``smooth_frames`` frames is under ``threshold_db``.

    ``out[t] = median(log_rms[max(0, t-S+1) .. t], with frames before 0 repeating frame 0) < threshold``.
    """
    x = np.asarray(log_rms, np.float64)
    s = int(smooth_frames)
    if s <= 1 or len(x) == 0:
        return (x < threshold_db).astype(np.float64)
    padded = np.concatenate([np.full(s - 1, x[0]), x])
    med = np.median(np.lib.stride_tricks.sliding_window_view(padded, s), axis=1)
    return (med < threshold_db).astype(np.float64)


def audio_content_id(features: np.ndarray) -> int:
    """A clip's audio id (``SnippetBatch["audio_id"]``): a 63-bit BLAKE2b hash of its raw timeline (T, Ch).

    Identical audio (copies of one debug clip) gives identical timelines, hence one id; every snippet of
    a clip carries the clip's id. The timeline is rounded to float16 first, so copies whose features differ
    only in their last bits (computed on another machine) almost always share the id. Returned as a
    non-negative int so it collates into an int64 tensor.
    """
    digest = hashlib.blake2b(np.ascontiguousarray(features, dtype=np.float16).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(frozen=True)
class ChannelLayout:
    """Where the negatives' channels sit in the audio windows (the channels the model takes, in their order; -1:
    not among them), and ``frame_row``, the window row of the frame itself (``audio_context_frames`` k; None:
    the centre, as in the symmetric 2k+1 window; a causal window t-k .. t has it last)."""

    is_silent: int
    log_rms: int
    bands: tuple[int, ...]
    frame_row: int | None = None

    @classmethod
    def from_names(cls, names: list[str], frame_row: int | None = None) -> "ChannelLayout":
        def at(name: str) -> int:
            return names.index(name) if name in names else -1

        return cls(is_silent=at("is_silent"), log_rms=at("log_rms"),
                   bands=tuple(i for i, n in enumerate(names) if n.startswith("band_")), frame_row=frame_row)

    def row(self, audio: "torch.Tensor") -> int:
        """The frame's own row in windows ``audio`` (..., W, Ch)."""
        return audio.shape[-2] // 2 if self.frame_row is None else self.frame_row


# ------------------------------------------------------------------ the spec


@dataclass(frozen=True)
class ConditioningSpec:
    """A model's audio input, resolved from its config (the module docstring)."""

    channels: tuple[str, ...] | None  # diffusion.audio_channels (None: all)
    past: int                         # k = diffusion.audio_context_frames
    future: int                       # f (future_frames)
    causal: bool                      # is_causal_model
    normalize_per_clip: bool          # diffusion.audio_feature_normalize_per_clip
    silence_threshold_db: float       # timeline.silence_threshold_db (the causal is_silent)
    silence_smooth_frames: int        # timeline.silence_smooth_frames
    timeline_channels: tuple[str, ...]  # the config's timeline channels (shared.timeline.channel_names)

    @classmethod
    def from_config(cls, cfg: Config) -> "ConditioningSpec":
        d, t = cfg.diffusion, cfg.timeline
        return cls(channels=None if d.audio_channels is None else tuple(d.audio_channels),
                   past=d.audio_context_frames, future=future_frames(d), causal=is_causal_model(d),
                   normalize_per_clip=d.audio_feature_normalize_per_clip,
                   silence_threshold_db=t.silence_threshold_db, silence_smooth_frames=t.silence_smooth_frames,
                   timeline_channels=tuple(channel_names(t)))

    @property
    def window(self) -> int:
        """W: frames in each audio window, ``past + 1 + future`` (2k+1 by default)."""
        return self.past + 1 + self.future

    def columns(self, names: list[str]) -> list[int] | None:
        """The columns of a timeline with ``names`` that the denoiser sees (:func:`channel_selection` of
        ``channels``), checked for a causal model: a ConfigError naming the field when such a model asks for a beat
        channel (not recomputable from stored timelines) or for the per-clip z-score (a whole-clip statistic)."""
        picked = channel_selection(names, self.channels)
        if self.causal:
            seen = [names[i] for i in (picked if picked is not None else range(len(names)))]
            beats = [n for n in seen if n in BEAT_CHANNELS]
            if beats:
                keep = [n for n in names if n not in BEAT_CHANNELS]
                where = "diffusion.audio_channels" if self.channels is not None else "diffusion.audio_channels (null: all)"
                raise ConfigError(f"{where}: a causal model (diffusion.audio_context_future=0) cannot take {beats} "
                                  f"(their causal values need the audio, which latent shards do not store); "
                                  f"name the channels without them, e.g. {keep}")
            if self.normalize_per_clip:
                raise ConfigError("diffusion.audio_feature_normalize_per_clip=true z-scores over the whole clip, which "
                                  "a causal model (diffusion.audio_context_future=0) cannot see; set it false")
        return picked

    def column_names(self, names: list[str] | None = None) -> list[str]:
        """The names of the columns :meth:`columns` picks from ``names`` (default: the config's timeline)."""
        names = list(self.timeline_channels if names is None else names)
        picked = self.columns(names)
        return names if picked is None else [names[i] for i in picked]

    def layout(self) -> ChannelLayout:
        """The negatives' channel layout in this model's windows (its channels; the frame's own row is k)."""
        return ChannelLayout.from_names(self.column_names(), frame_row=self.past)

    def causal_from_stored(self, features: np.ndarray, names: list[str]) -> np.ndarray:
        """A stored (offline) timeline -> the causal one: a copy with ``is_silent`` recomputed causally from the
        stored ``log_rms`` (:func:`causal_silence_mask`); the per-frame channels are the same numbers. The beat
        columns are left as stored: :meth:`columns` keeps them from a causal model."""
        out = np.array(features, np.float32, copy=True)
        log_rms = out[:, names.index("log_rms")]
        out[:, names.index("is_silent")] = causal_silence_mask(log_rms, self.silence_threshold_db,
                                                               self.silence_smooth_frames)
        return out

    def model_audio(self, features: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """A clip's stored timeline ``[T, C]`` -> what the denoiser sees: ``(windows [T, W, Ch], is_silent [T])``.

        The one path of the training loader, offline sampling and the eval:

        1. a causal model takes the causal timeline (:meth:`causal_from_stored`);
        2. z-scored per clip when ``normalize_per_clip``;
        3. the channels :meth:`columns` picks, in that order;
        4. windows of ``past`` and ``future`` frames (:func:`shared.timeline.context_windows`).

        ``is_silent`` is the (causal, for a causal model) flag of each frame. With the defaults (no selection,
        f = k) the windows are exactly the symmetric ``context_windows(features, k)``.
        """
        feats = np.asarray(features, np.float32)
        if self.causal:
            feats = self.causal_from_stored(feats, names)
        silent = feats[:, channel_index(names, "is_silent")].astype(np.float32)
        if self.normalize_per_clip:
            feats = normalize_per_clip(feats, names)
        picked = self.columns(names)
        if picked is not None:
            feats = feats[:, picked]
        return context_windows(feats.astype(np.float32), self.past, self.future), silent


# ------------------------------------------------------------------ the tensors that cross module lines


class Cond(TypedDict):
    """The denoiser's conditioning (``Denoiser.make_cond`` fills the defaults), B snippets of F frames."""

    audio: "torch.Tensor"        # (B, F, W, Ch) float: the audio windows (ConditioningSpec.model_audio)
    is_silent: "torch.Tensor"    # (B, F) float: each frame's silence flag
    frame_index: "torch.Tensor"  # (B, F) int64: the frames' indices in their clip
    prev: "torch.Tensor"         # (B, P, C, h, w): the previous frames' latents
    prev_valid: "torch.Tensor"   # (B, P) bool: False swaps a previous frame for the learned null frame
    style_z: "torch.Tensor"      # (B, style_dim): the style latent
    style_null: "torch.Tensor"   # (B,) bool: the learned null style (CFG)
    audio_null: "torch.Tensor"   # (B,) bool: the learned null audio (CFG)


COND_KEYS = tuple(Cond.__annotations__)


class SnippetBatch(TypedDict, total=False):
    """A collated batch of the loader's snippets (trainer/data.py, docs/INTERFACES.md). Latent tensors are fp16 as
    stored (times the latent scale), pixel ones float32; ``__skipped__`` (the skip report) rides along."""

    x: "torch.Tensor"                # (B, F, C, h, w) the snippet's frames
    prev: "torch.Tensor"             # (B, P, C, h, w) the frames before it (zeros where invalid)
    prev_valid: "torch.Tensor"       # (B, P) bool
    audio: "torch.Tensor"            # (B, F, W, Ch) the model's audio windows
    audio_timeshift: "torch.Tensor"  # (B, F, W, Ch) the same clip's windows shifted off the bar (a negative)
    frame_index: "torch.Tensor"      # (B, F) int64
    is_silent: "torch.Tensor"        # (B, F) float32
    style: "torch.Tensor"            # (B, S, C, h, w) frames of the clip outside the snippet
    style_plan: "torch.Tensor"       # (B, PLAN_STYLE_DIM) the clip's visual-plan features (diffusion.style_source=plan only)
    variant: "torch.Tensor"          # (B,) int64: shared.shards.VARIANTS index
    audio_id: "torch.Tensor"         # (B,) int64: audio_content_id of the clip
    key: list[str]                   # the clips' sample keys


def cond_rows(cond: Cond, rows: slice) -> Cond:
    """The rows ``rows`` of every tensor of ``cond``."""
    return {key: v[rows] for key, v in cond.items()}
