"""The one configuration schema for datagen and trainer (pydantic v2).

Layers, lowest first: schema defaults (the production settings, spelled out in
configs/full.yaml) < one or more ``--config FILE.yaml`` < the short flags users
type (``--shards``, ``--silence-mix``, ``--shuffle-weight``, ...) < dotted
overrides ``section.key=value``.

Unknown keys and out-of-range values fail before any work, with a message that
names the dotted field. Knob names from the postmortem
(shared/seeds/000_*.txt) keep their exact names; each carries a description.

Fields marked ``shape=True`` decide a model's tensor shapes: a checkpoint
refuses a config whose shape fields differ (see :func:`model_shape`).
"""

from __future__ import annotations

import difflib
import sys
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from shared.errors import ConfigError  # noqa: F401  (re-exported: shared.config.ConfigError)

SHAPE = {"shape": True}

# Options that code elsewhere lists (typing.get_args gives the tuple: trainer/diffusion/shuffle.py, sampler.py):
# declared once, here, where the config validates them.
NegativeKind = Literal["derange", "hard", "loudness_matched", "timeshift", "band_permuted"]
GuidanceSchedule = Literal["constant", "linear", "cosine", "interval"]
SamplerName = Literal["ddim", "heun"]


def _is_number_field(annotation: Any) -> bool:
    """True for an int or float field (also ``int | None``); False where a bool is a legal value or for a
    container of numbers (``tuple[float, float]``: its elements are checked by pydantic itself)."""
    if typing.get_origin(annotation) in (tuple, list, dict):
        return False
    args = typing.get_args(annotation) or (annotation,)
    return bool(set(args) & {int, float}) and bool not in args


class _Section(BaseModel):
    # allow_inf_nan=False: every float field refuses inf and NaN (a weight of inf or a NaN rate poisons a run
    # silently; no knob means "unbounded" by inf).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Numeric fields refuse booleans: pydantic's lax mode would read ``steps=true`` as 1."""
        if isinstance(value, bool) and _is_number_field(cls.model_fields[info.field_name].annotation):
            raise ValueError("must be a number, not a boolean")
        return value


# --------------------------------------------------------------------------- data


class DataConfig(_Section):
    seed: int = Field(0, ge=0, description="Base seed: a sample is a pure function of (config, seed, split, shard, sample).")
    sample_rate: int = Field(22050, ge=4000, le=96000, description="Sample rate of the synthesized audio (Hz).")
    clip_seconds: float = Field(8.0, gt=0.5, le=600, description="Length of one generated clip in seconds.")
    train_shards: int = Field(8, ge=1, description="Number of train shards `datagen run` writes (`--shards`).")
    val_shards: int | None = Field(None, ge=1, description="Number of val shards; null means max(1, train_shards // 100).")
    samples_per_shard: int = Field(64, ge=1, description="Clips per shard (`--samples-per-shard`).")
    val_style_siblings: int = Field(
        2, ge=0,
        description="Groups of val clips sharing one normal-music audio clip with different visual plans, for "
        "style diversity at fixed audio; one shard of 3 clips per group in their own split val_siblings/ "
        "(train/ and val/ do not change). 0: none.",
    )
    audio_silence_mix_prob: float = Field(
        0.3, ge=0, le=1,
        description="Fraction of clips of the silence / track-dropout variant (postmortem §1). In datagen: what is "
        "generated. In the trainer, only when given explicitly (YAML, flag or override) or with "
        "audio_debug_mix_schedule_steps > 0: the fraction the loader draws (0 removes silence clips from training); "
        "otherwise the loader draws what the shards hold.",
    )
    audio_debug_mode: bool = Field(
        False, description="Bootstrap / diagnosis mode (postmortem §3, Principle D): debug clips only, a small "
        "deterministic set of strongly reactive signals. In datagen: only debug clips are generated; in the trainer: "
        "only debug clips are drawn for the whole run (shards without debug clips are refused before training).",
    )
    audio_debug_mix_prob: float = Field(
        0.05, ge=0, le=1,
        description="Fraction of debug-variant clips. In datagen: what is generated. In the trainer, only when given "
        "explicitly (YAML, flag or override) or with audio_debug_mix_schedule_steps > 0: the debug share the loader "
        "draws (the final value of the curriculum); otherwise the loader draws what the shards hold.",
    )
    audio_debug_mix_schedule_steps: int = Field(
        0, ge=0,
        description="Trainer bootstrap curriculum: over this many steps the debug share the loader draws falls "
        "linearly from 1 to audio_debug_mix_prob (shuffle pressure stays on), then stays there; > 0 turns on "
        "reweighting by variant. 0: no curriculum.",
    )
    snippets_per_clip: int = Field(
        1, ge=1,
        description="Trainer: snippets drawn from each clip the diffusion loader reads (its timeline and latents "
        "are decoded once for all of them; the shuffle buffer spreads them over batches, and shuffle negatives "
        "never pair snippets of one clip). 1: one snippet per clip read.",
    )
    debug_set_size: int = Field(
        16, ge=1, description="Number of distinct deterministic debug clips; debug clips cycle through this set.",
    )
    store_stems: bool = Field(False, description="Also store each track's stem (stems.npz) in the shard samples.")
    tempo_min: float = Field(70.0, ge=30, le=300, description="Lowest tempo (BPM) of procedural music.")
    tempo_max: float = Field(170.0, ge=30, le=300, description="Highest tempo (BPM) of procedural music.")
    gain_db_min: float = Field(-12.0, le=0, description="Lowest per-clip master gain (dB).")
    gain_db_max: float = Field(0.0, le=6, description="Highest per-clip master gain (dB).")

    @model_validator(mode="after")
    def _ranges(self) -> "DataConfig":
        if self.tempo_min > self.tempo_max:
            raise ValueError("data.tempo_min must be <= data.tempo_max")
        if self.gain_db_min > self.gain_db_max:
            raise ValueError("data.gain_db_min must be <= data.gain_db_max")
        return self

    def resolved_val_shards(self) -> int:
        return self.val_shards if self.val_shards is not None else max(1, self.train_shards // 100)


# ----------------------------------------------------------------------- timeline


class TimelineConfig(_Section):
    n_bands: int = Field(8, ge=1, le=64, description="Number of log-spaced band-energy channels up to Nyquist.", json_schema_extra=SHAPE)
    band_min_hz: float = Field(40.0, gt=0, description="Lower edge of the lowest band (Hz).")
    n_fft: int = Field(2048, ge=64, description="FFT size for the band energies, flux and centroid (zero-padded frames).")
    silence_threshold_db: float = Field(-60.0, le=0, description="RMS level (dBFS) under which a frame counts as silent.")
    silence_smooth_frames: int = Field(3, ge=1, description="Median window (frames) smoothing the is_silent channel.")
    beat_channels: bool = Field(True, description="Add beat_phase and downbeat channels from a tempo estimate.", json_schema_extra=SHAPE)


# ------------------------------------------------------------------------- render


class RenderConfig(_Section):
    resolution: int = Field(256, ge=16, le=4096, description="Frame width and height in pixels.", json_schema_extra=SHAPE)
    fps: float = Field(24.0, gt=0, le=240, description="Frames per second; frame t covers audio [t/fps, (t+1)/fps).", json_schema_extra=SHAPE)
    visualizers: list[str] = Field(default_factory=lambda: ["all"], description="Primitive names to draw from, or ['all'].")
    min_layers: int = Field(1, ge=1, le=4, description="Fewest primitives composited per clip.")
    max_layers: int = Field(3, ge=1, le=4, description="Most primitives composited per clip.")
    augment: bool = Field(True, description="Hue rotation, flips, zoom/rotation and feedback trails (from the seed).")
    jpeg_quality: int = Field(90, ge=10, le=100, description="JPEG quality of stored frames (4:2:0).")
    chunk_frames: int = Field(64, ge=1, description="Frames rendered per chunk: bounds memory for audio of any length.")

    @model_validator(mode="after")
    def _layers(self) -> "RenderConfig":
        if self.min_layers > self.max_layers:
            raise ValueError("render.min_layers must be <= render.max_layers")
        return self


# ---------------------------------------------------------------------------- vae


class VaeConfig(_Section):
    downsample: int = Field(8, description="Spatial downsampling factor (a power of two).", json_schema_extra=SHAPE)
    latent_channels: int = Field(4, ge=1, le=64, description="Latent channels.", json_schema_extra=SHAPE)
    base_channels: int = Field(64, ge=4, description="Width of the first conv stage.", json_schema_extra=SHAPE)
    max_channels: int = Field(256, ge=4, description="Cap on the width of deeper stages.", json_schema_extra=SHAPE)
    kl_weight: float = Field(1e-6, ge=0, description="Weight of the KL term toward N(0, I).")
    l1_weight: float = Field(1.0, ge=0, description="Weight of the L1 reconstruction term.")
    mse_weight: float = Field(1.0, ge=0, description="Weight of the MSE reconstruction term.")
    edge_weight: float = Field(0.5, ge=0, description="Weight of the image-gradient (edge) term.")
    batch_size: int = Field(64, ge=1, description="Frames per step (per rank).")
    lr: float = Field(2e-4, gt=0, description="AdamW learning rate.")
    warmup_steps: int = Field(500, ge=0, description="Linear warmup steps.")
    steps: int = Field(20000, ge=1, description="Total training steps (`--steps`).")
    grad_clip: float = Field(1.0, gt=0, description="Gradient norm clip (1.0 only bites in the first, noisy steps).")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA decay of the weights used for caching latents.")
    compile: bool = Field(False, description="torch.compile the VAE on CUDA (ignored on CPU).")

    @field_validator("downsample")
    @classmethod
    def _pow2(cls, v: int) -> int:
        if v < 1 or v & (v - 1):
            raise ValueError("must be a power of two")
        return v


# ---------------------------------------------------------------------- diffusion


class DiffusionConfig(_Section):
    """The denoiser's shape and its training. The defaults are the GPU production model: a DiT-B/2-like
    space-time transformer, width 768, 12 blocks, 12 heads (head dim 64), patch 2 on the 4 x 32 x 32 latents
    of 256² frames, so (1 previous + 8) frames x (1 + 256) tokens = 2313 tokens per snippet. Measured with
    ``bench/model_size.py`` (torch.utils.flop_counter; activations on the CPU under bf16 autocast, an estimate
    of the CUDA figure): 183.6 M parameters; 547 GFLOP per snippet forward, 3.28 TFLOP per trained snippet
    (forward and backward, the shuffle pressure's second forward included); 2.42 GiB of saved activations per
    trained snippet (99.8% of the bytes bf16, since the position tables are cast to the activation dtype; 2.9 GiB,
    a third fp32, when they promoted the residual stream), about 77 GiB at the default batch of 32 per rank,
    which fits a 141 GB H200 (on an 80 GB H100 use ``diffusion.batch_size=16``). The earlier width 384 (46 M, 142 GFLOP) left the matmuls too narrow
    (K = 384) to be compute-bound on Hopper; DiT-B/2's shape reached 46% MFU on an H100.
    """

    # --- snippet and conditioning shapes
    snippet_frames: int = Field(8, ge=1, description="F: frames denoised jointly per snippet.", json_schema_extra=SHAPE)
    audio_context_frames: int = Field(4, ge=0, description="k: timeline frames either side of each frame fed to the audio encoder.", json_schema_extra=SHAPE)
    audio_context_future: int | None = Field(
        None, ge=0, description="Frames of future timeline context in each audio window (the look-ahead live mode "
        "waits for); null: audio_context_frames (the symmetric window). 0: a causal (live) model, which also sees the "
        "causal timeline (trailing-median is_silent; no beat channels, no per-clip z-score; trainer/conditioning.py).",
        json_schema_extra=SHAPE)
    audio_channels: list[str] | None = Field(
        None, description="Timeline channels the audio encoder sees, by name, in this order (null: all channels of "
        "the timeline). The loader selects them from the stored timelines (no regenerated shards). A live model "
        "takes the causal ones (all but beat_phase and downbeat).", json_schema_extra=SHAPE)
    prev_frames: int = Field(1, ge=0, description="Clean latent frames before the snippet it is conditioned on.", json_schema_extra=SHAPE)
    p_prev_drop: float = Field(0.1, ge=0, le=1, description="Probability of dropping the previous-frame latents (first snippet, free running).")
    prev_noise_aug: float = Field(0.1, ge=0, description="Std of the noise added to the previous-frame latents in training.")
    # --- backbone
    width: int = Field(768, ge=8, description="Transformer width (768: DiT-B/2's, wide enough for Hopper's matrix units).", json_schema_extra=SHAPE)
    depth: int = Field(12, ge=1, description="Transformer blocks.", json_schema_extra=SHAPE)
    heads: int = Field(12, ge=1, description="Attention heads (12 at width 768: head dim 64).", json_schema_extra=SHAPE)
    cond_token_in_spatial: bool = Field(
        True, description="Put each frame's audio token into its spatial attention as an extra token (1 + N tokens; "
        "true: the layout of every existing checkpoint). False: N tokens only (a multiple of 128 at the production "
        "shape, whole flash-attention tiles); the audio still reaches every patch by addition, adaLN and temporal "
        "attention. Ablate with `trainer eval` before a preset uses false.", json_schema_extra=SHAPE)
    patch_size: int = Field(2, ge=1, description="Latent patch size.", json_schema_extra=SHAPE)
    style_dim: int = Field(16, ge=1, description="Dimension of the clip-level continuous style latent.", json_schema_extra=SHAPE)
    style_source: Literal["posterior", "plan"] = Field(
        "posterior",
        description="Where the style input comes from. posterior: a style_dim latent, the style encoder's posterior over "
        "clean latents of the clip in training, N(0, I) with --style-seed at sampling (a learned, unsupervised style). "
        "plan: the teacher's own visual plan of the clip (meta.json visual_plan -> shared.style_features, its palette "
        "colours, background, knobs and primitives), and at sampling the plan the teacher draws for --style-seed, so a "
        "style seed picks a palette and primitives as the teacher would (no style encoder, no KL; style_dim unused).",
        json_schema_extra=SHAPE)
    p_style_drop: float = Field(0.1, ge=0, le=1, description="Probability of replacing the style latent by a learned null (postmortem Phase 2).")
    style_kl_weight: float = Field(1e-3, ge=0, description="KL weight pulling the style posterior toward N(0, I).")
    style_kl_free_bits: float = Field(
        0.0, ge=0,
        description="Free bits of the style KL (Kingma et al. 2016, IAF): nats per style dimension that cost nothing. The "
        "KL term becomes sum_j max(free_bits, KL_j), KL_j averaged over the batch, so a dimension under the floor is not "
        "pulled to the prior (against posterior collapse: a collapsed style latent makes --style-seed change nothing). "
        "0 keeps the plain KL exactly.")
    p_audio_drop: float = Field(
        0.1, ge=0, le=1,
        description="Probability of replacing the audio embedding by a learned null (trains audio classifier-free guidance).",
    )
    audio_feature_normalize_per_clip: bool = Field(
        False,
        description="Z-score the timeline per clip before the audio encoder. Off keeps absolute loudness cues, which "
        "makes the silence probe learnable (postmortem §3).",
    )
    # --- objective
    prediction: Literal["v", "eps"] = Field("v", description="Network target: v-prediction (Salimans & Ho 2022) or eps.")
    min_snr_gamma: float = Field(5.0, ge=0, description="Min-SNR-gamma loss weighting (Hang et al. 2023); 0 disables.")
    audio_shuffle_loss_weight: float = Field(
        0.5, ge=0,
        description="Weight of the shuffle-pressure hinge weight*relu(margin + L_good - L_bad) (postmortem §2).",
    )
    audio_shuffle_loss_margin: float = Field(0.05, ge=0, description="Margin m demanded between L_bad and L_good.")
    audio_shuffle_loss_prob: float = Field(1.0, ge=0, le=1, description="Probability that a step applies the shuffle penalty.")
    audio_shuffle_negatives: NegativeKind = Field(
        "derange", description="Wrong audio: derange (another clip of the batch, at random), hard (the most dissimilar "
        "other clip), loudness_matched (the other clip with the most similar log-RMS curve), timeshift (the same clip "
        "shifted by a non-whole number of bars), band_permuted (the same clip with its band channels permuted: right "
        "loudness, wrong spectrum). A negative is never the same audio: not the same clip, not a copy of it (by "
        "batch['audio_id']), not silence against silence; a snippet without such a negative sits the pressure out.",
    )
    audio_shuffle_loss_type: Literal["hinge", "infonce"] = Field(
        "hinge", description="Shuffle pressure objective: hinge weight*relu(margin + L_good - L_bad) on one negative, or "
        "infonce weight*cross-entropy over [true audio, K negatives] with logits -error/temperature (the true audio must "
        "win). audio_shuffle_loss_weight and audio_shuffle_loss_prob apply to both.",
    )
    audio_contrastive_negatives: int = Field(
        3, ge=1, description="K: negatives per snippet for infonce ((K+1)*B denoiser rows per step, one batched forward); "
        "must be < diffusion.batch_size for the batch negative kinds, and 1 for timeshift.",
    )
    audio_contrastive_temperature: float = Field(
        0.1, gt=0, description="InfoNCE temperature on the per-snippet errors: logits = -error / temperature.",
    )
    audio_shuffle_loss_space: Literal["pred", "x0"] = Field(
        "pred", description="Where L_good/L_bad are compared: the network's prediction space (v/eps) or x0-prediction space.",
    )
    audio_shuffle_frame_proxy_weight: float = Field(
        0.0, ge=0, description="Weight of a decoded-frame proxy hinge (brightness, motion, colour stats of VAE-decoded x0).",
    )
    silence_motion_loss_weight: float = Field(
        0.0, ge=0, description="Auxiliary loss on predicted motion energy during silent frames (postmortem next step 5).",
    )
    # --- optimisation
    batch_size: int = Field(32, ge=1, description="Snippets per step (per rank).")
    lr: float = Field(3e-4, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(1000, ge=0, description="Linear warmup steps.")
    steps: int = Field(50000, ge=1, description="Total training steps (`--steps`).")
    grad_clip: float = Field(1.0, gt=0, description="Gradient norm clip.")
    ema_decay: float = Field(0.9995, ge=0, lt=1, description="EMA decay of the sampling weights.")
    compile: bool = Field(True, description="torch.compile the denoiser on CUDA (ignored on CPU).")
    val_every: int = Field(1000, ge=1, description="Steps between val losses with true vs shuffled audio.")

    @model_validator(mode="after")
    def _contrastive(self) -> "DiffusionConfig":
        if self.audio_shuffle_loss_type != "infonce":
            return self
        k, b = self.audio_contrastive_negatives, self.batch_size
        if b < 2:
            raise ValueError(f"diffusion.batch_size={b}: audio_shuffle_loss_type=infonce needs a batch of at least 2")
        if self.audio_shuffle_negatives in ("derange", "hard", "loudness_matched") and k >= b:
            raise ValueError(f"diffusion.audio_contrastive_negatives={k} must be < diffusion.batch_size={b}: "
                             f"{self.audio_shuffle_negatives} negatives are other clips of the batch")
        if self.audio_shuffle_negatives == "timeshift" and k != 1:
            raise ValueError(f"diffusion.audio_contrastive_negatives={k} must be 1 with audio_shuffle_negatives=timeshift "
                             "(the loader cuts one shifted window per snippet)")
        return self


# ---------------------------------------------------------------------- inference


class InferenceConfig(_Section):
    audio_guidance_scale: float = Field(
        2.0, ge=0, description="Audio classifier-free guidance scale g, the peak of audio_guidance_schedule (1 = "
        "conditional only).",
    )
    audio_guidance_schedule: GuidanceSchedule = Field(
        "constant", description="Guidance weight w over the sampler's time tau (1 = noise, 0 = clean). constant: w = g; "
        "linear: w = 1 + (g - 1)(1 - tau); cosine: the same ramp eased by (1 - cos(pi (1 - tau))) / 2; interval: w = g "
        "for tau in audio_guidance_interval, else 1. Steps with w = 1 skip the unconditional pass.",
    )
    audio_guidance_interval: tuple[float, float] = Field(
        (0.17, 0.88), description="[lo, hi] of tau where the interval schedule guides (0 <= lo < hi <= 1). The default is "
        "the range Kynkaenniemi et al. 2024 found best, sigma in (0.28, 5.42], mapped to this cosine schedule's tau.",
    )
    style_guidance_scale: float = Field(
        1.0, ge=0, description="Style classifier-free guidance scale s (1 = off, the conditional pass only): the "
        "prediction moves by (s - 1)(cond - cond with the learned null style) on top of the audio guidance "
        "(composable guidance, Liu et al. 2022), one more pass per step. Widens what --style-seed changes; the null "
        "style is trained by diffusion.p_style_drop.",
    )
    sampler: SamplerName = Field("ddim", description="Sampler.")
    steps: int = Field(25, ge=1, description="Sampling steps per snippet.")
    seed: int = Field(0, ge=0, description="Noise seed.")
    batch_snippets: int = Field(8, ge=1, description="Snippets denoised in parallel where independent (GPU batching).")
    compile: bool = Field(
        True, description="On CUDA, torch.compile the denoiser's per-step pass for sampling with CUDA graphs "
        "(mode reduce-overhead: the sampling shapes are fixed); ignored on the CPU.")
    live_stall_s: float = Field(2.0, gt=0, description="Live mode: seconds without new audio before the page "
                                "shows 'waiting for audio'.")
    live_min_steps: int = Field(2, ge=1, description="Live mode: fewest sampling steps per snippet when generation "
                                "falls behind (below this a snippet's frames are repeated and counted as dropped).")
    snippet_overlap: int = Field(
        1, ge=0, description="Frames each snippet of a long sample shares with the previous one; the shared latents "
        "are cross-faded so snippet borders are seamless (0: back-to-back snippets joined by previous-frame "
        "conditioning only). Must be < diffusion.snippet_frames.",
    )

    @field_validator("audio_guidance_interval")
    @classmethod
    def _interval(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
            raise ValueError("inference.audio_guidance_interval must lie inside [0, 1]")
        if lo >= hi:
            raise ValueError("inference.audio_guidance_interval [lo, hi] is empty: needs lo < hi")
        return v


# --------------------------------------------------------------------------- eval


class EvalConfig(_Section):
    clips_per_variant: int = Field(8, ge=1, description="Val clips evaluated per variant (normal, silence, debug, ...), "
                                   "distinct audio, picked deterministically (`--n`).")
    seeds: int = Field(1, ge=1, description="Generation repeated with this many noise/style seeds; per-clip values are "
                       "pooled (averaged) over them.")
    bootstrap: int = Field(1000, ge=1, description="Bootstrap resamples (over clips) for every metric's 95% CI.")
    beat_sigma_s: float = Field(0.1, gt=0, description="Sigma (seconds) of the beat alignment score's Gaussian.")
    settle_delay_s: float = Field(0.5, ge=0, description="Seconds after a silence segment starts before motion is measured.")
    av_align_tolerance_frames: int = Field(1, ge=0, description="Matching tolerance of the frame-difference AV-Align proxy.")
    n_style_samples: int = Field(4, ge=2, description="Style latents drawn per clip for the diversity metric.")
    batch_clips: int = Field(8, ge=1, description="Clips generated together in one batch (clips in the same batch "
                             "position share their noise; 1: every clip gets the same noise).")
    write_videos: bool = Field(True, description="Write side-by-side mp4s into the report.")

    n_clips: int | None = Field(None, ge=1, description="Ignored: read from runs saved before clips_per_variant "
                                "replaced it (it was a total over variants).")


# ---------------------------------------------------------------------------- run


class RunConfig(_Section):
    seed: int = Field(0, ge=0, description="Training seed (init, noise, loader order).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Compute device.")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU.")
    num_workers: int = Field(2, ge=0, description="DataLoader workers per rank. Enough that the loader stays >= 3x "
                             "ahead of the training step: ceil(3 x step snippets/s / per-worker snippets/s), "
                             "bench/RESULTS.md 'Snippet loader'.")
    log_every: int = Field(50, ge=1, description="Steps between metrics lines.")
    sample_every: int = Field(1000, ge=1, description="Steps between sample/reconstruction grids.")
    checkpoint_every: int = Field(1000, ge=1, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(3, ge=1, description="Checkpoints kept (oldest removed).")
    executor: Literal["ray", "processes", "local"] = Field("ray", description="datagen executor.")
    workers: int | None = Field(None, ge=1, description="datagen render workers (null: one per CPU, or per GPU fraction).")
    address: str | None = Field(None, description="Ray cluster address to join (null: embedded local cluster).")
    ray_connect_timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for the Ray cluster at "
                                         "run.address to answer before failing.")
    max_retries: int = Field(3, ge=0, description="Retries of a failed shard before it is reported.")


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    timeline: TimelineConfig = Field(default_factory=TimelineConfig)
    render: RenderConfig = Field(default_factory=RenderConfig)
    vae: VaeConfig = Field(default_factory=VaeConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _band_permuted_needs_bands(self) -> "Config":
        if self.diffusion.audio_shuffle_negatives == "band_permuted" and self.timeline.n_bands < 2:
            raise ValueError(f"diffusion.audio_shuffle_negatives=band_permuted needs timeline.n_bands >= 2 "
                             f"(got {self.timeline.n_bands}): one band cannot be permuted")
        return self


SECTIONS = tuple(Config.model_fields)


# ------------------------------------------------------------------ layering


def _section_model(section: str) -> type[BaseModel]:
    return Config.model_fields[section].annotation  # type: ignore[return-value]


def field_names(section: str) -> list[str]:
    return list(_section_model(section).model_fields)


def check_dotted_key(key: str) -> tuple[str, str]:
    """Validate ``section.key`` against the schema; unknown names fail with a suggestion."""
    parts = key.split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"config override '{key}': expected section.key (e.g. diffusion.audio_shuffle_loss_weight)")
    section, name = parts
    if section not in SECTIONS:
        hint = difflib.get_close_matches(section, SECTIONS, n=1)
        raise ConfigError(f"unknown config section '{section}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                          + f"; sections: {', '.join(SECTIONS)}")
    names = field_names(section)
    if name not in names:
        hint = difflib.get_close_matches(name, names, n=1)
        raise ConfigError(f"unknown config key '{section}.{name}'" + (f" (did you mean '{section}.{hint[0]}'?)" if hint else ""))
    return section, name


# Keys that configs may still carry, ignored with a warning saying what replaced them (a saved run's config,
# passed as ``base``, is read without the warning).
DEPRECATED = {
    "data.reweight_variants": "the trainer now reweights by variant exactly when a mix knob "
    "(data.audio_silence_mix_prob, data.audio_debug_mix_prob) is given explicitly, "
    "data.audio_debug_mix_schedule_steps > 0 or data.audio_debug_mode=true; otherwise it draws what the shards hold",
}


def _drop_deprecated(layer: Any, origin: str, warn: bool = True) -> Any:
    """``layer`` without the :data:`DEPRECATED` keys (a copy), warning once per key that was there."""
    if not isinstance(layer, dict):
        return layer
    out = {sec: dict(body) if isinstance(body, dict) else body for sec, body in layer.items()}
    for dotted, why in DEPRECATED.items():
        section, name = dotted.split(".")
        if isinstance(out.get(section), dict) and name in out[section]:
            del out[section][name]
            if warn:
                print(f"warning: {origin}: {dotted} is deprecated and ignored: {why}", file=sys.stderr)
    return out


def _check_layer(layer: dict[str, Any], origin: str) -> None:
    if not isinstance(layer, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(layer).__name__}")
    for section, body in layer.items():
        if section not in SECTIONS:
            check_dotted_key(f"{section}.x")  # raises with a suggestion
        if not isinstance(body, dict):
            raise ConfigError(f"{origin}: section '{section}' must be a mapping, got {type(body).__name__}")
        for name in body:
            try:
                check_dotted_key(f"{section}.{name}")
            except ConfigError as e:
                raise ConfigError(f"{origin}: {e}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """``section.key=value`` -> (dotted key, YAML-typed value)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    check_dotted_key(key)
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{text}': value is not valid YAML ({e})") from None
    return key, value


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    section, name = key.split(".")
    tree.setdefault(section, {})[name] = value


def _merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, body in layer.items():
        out.setdefault(section, {}).update(body or {})
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        layer = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
    layer = _drop_deprecated(layer, str(p))
    _check_layer(layer, str(p))
    return layer


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"] if not str(x).startswith("function-after"))
        got = e.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {loc or '<root>'}: {e['msg']}{got_s}")
    return "invalid config:\n" + "\n".join(lines)


def build_config(
    yaml_files: list[str | Path] | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """Resolve a config from its layers: defaults < base < YAML files < short flags < dotted overrides.

    ``flags`` maps dotted keys to values (the short flags, already mapped); a
    value of None means the flag was not given. ``base`` is a config tree that
    sits under the YAML files (e.g. the config a checkpoint was trained with).

    Each section's ``model_fields_set`` names the keys a user gave: in a YAML file, a flag or an override.
    Keys that only came with ``base`` count as not given (a saved config spells out every key), so
    "explicitly set" means the same for a fresh config and one layered on a saved run.
    """
    tree: dict[str, Any] = {}
    given: dict[str, Any] = {}  # the user's layers only
    if base:
        base = _drop_deprecated(base, "base config", warn=False)
        _check_layer(base, "base config")
        tree = _merge(tree, base)
    for f in yaml_files or []:
        layer = load_yaml(f)
        tree, given = _merge(tree, layer), _merge(given, layer)
    for key, value in (flags or {}).items():
        if value is not None:
            check_dotted_key(key)
            _set_dotted(tree, key, value)
            _set_dotted(given, key, value)
    for text in overrides or []:
        dotted = text.split("=", 1)[0].strip()
        if dotted in DEPRECATED:
            section, name = dotted.split(".")
            _drop_deprecated({section: {name: None}}, f"override '{text}'")  # warns
            continue
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
        _set_dotted(given, key, value)
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e)) from None
    for section in SECTIONS:
        object.__setattr__(getattr(cfg, section), "__pydantic_fields_set__",
                           set(given.get(section) or {}) & set(field_names(section)))
    return cfg


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def model_shape(cfg: Config, sections: tuple[str, ...]) -> dict[str, Any]:
    """The shape-deciding fields of the given sections: a checkpoint refuses a config that differs here."""
    out: dict[str, Any] = {}
    for section in sections:
        model = _section_model(section)
        values = getattr(cfg, section)
        for name, info in model.model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and extra.get("shape"):
                out[f"{section}.{name}"] = getattr(values, name)
    return out


def shape_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two :func:`model_shape` dicts."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: checkpoint has {saved.get(k)!r}, config asks {current.get(k)!r}"
            for k in keys if saved.get(k) != current.get(k)]
