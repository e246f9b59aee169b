"""`trainer eval`: how much does the generated video respond to its audio, beside the ground truth's ceiling.

Ground truth comes from the ``val/`` pixel shards (frames, raw timeline, audio, meta); the trainer never
renders anything itself. For N val clips (a round robin over the variants, so silence and debug clips
are in), the model generates, batched over clips:

* ``true``      G(a, z):     the clip's own audio, style latent z_s and noise seed z_n;
* ``shuffled``  G(pi(a), z): another clip's audio (a derangement of the clips), the same style and noise;
* ``reseeded``  G(a, z'):    the clip's own audio, another style latent and noise seed;
* ``style_k``   (k >= 2, up to ``eval.n_style_samples``): own audio, more style latents.

Then, each for the generated video AND the ground-truth frames:

1. audio-shuffle eval: val diffusion loss with true vs shuffled audio (the training code's ``val_losses``
   on latent snippets of the val clips), and the output sensitivity
   ``S = E||f(G(a,z)) - f(G(pi(a),z))|| / E||f(G(a,z)) - f(G(a,z'))||`` with f the motion-energy curve
   (and f the per-frame mean latent);
2. style diversity: mean pairwise distance of frame statistics over the style samples of one audio,
   beside the ground truth's diversity across clips;
3. silence settle on the clips with labelled silence segments (the silence variant; debug clips may have
   them too): motion energy from ``eval.settle_delay_s`` into silent segments over motion energy in loud ones;
4. AV sync: AV-Align (audio onset peaks vs motion-energy peaks, frame difference, +-tolerance) and the
   Spearman correlation of RMS with motion energy;
5. VAE bottleneck: debug clips encoded and decoded by the VAE, the metrics on round-tripped vs original.

Outputs in ``--out``: report.json, report.md, PNG plots, side-by-side mp4s (ground truth | generated
with the true audio | generated with shuffled audio) with the true audio muxed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared import shards as S
from shared.config import Config
from shared.timeline import channel_index
from trainer.eval import metrics as M
from trainer.eval import plots
from trainer.eval.report import MetricRow, Report, write_report
from trainer.sample import SamplingModel, style_from_prior
from trainer.runtime import autocast
from trainer.sample_core import StreamSpec, latent_stream

VARIANT_ORDER = ("normal", "silence", "debug")
SNIPPETS_PER_CLIP_FOR_LOSS = 4
MAX_PLOTS = 6
MAX_VIDEOS = 4


class EvalError(RuntimeError):
    """Bad input for the evaluation (no val shards, too few clips, mismatched resolution)."""


# ------------------------------------------------------------------ val clips


@dataclass
class Clip:
    key: str
    meta: dict[str, Any]
    frames: np.ndarray | None = None    # uint8 (T, H, W, 3)
    timeline: np.ndarray | None = None  # float32 (T, C) raw
    names: list[str] = field(default_factory=list)
    wave: np.ndarray | None = None
    sr: int = 0

    @property
    def variant(self) -> str:
        return str(self.meta.get("variant", "normal"))


def select_round_robin(variants: list[str], n: int) -> list[int]:
    """Indices of ``n`` items taken in turn from each variant (normal, silence, debug, others), in file order
    within a variant, so every variant present is represented."""
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(variants):
        groups.setdefault(v, []).append(i)
    order = [v for v in VARIANT_ORDER if v in groups] + sorted(v for v in groups if v not in VARIANT_ORDER)
    picked: list[int] = []
    depth = 0
    while len(picked) < min(n, len(variants)):
        for v in order:
            if depth < len(groups[v]) and len(picked) < n:
                picked.append(groups[v][depth])
        depth += 1
    return picked


def read_val_clips(data: str | Path, n: int) -> list[Clip]:
    """N clips from the val split of a pixel-shard dir, decoded (frames, timeline, audio, meta).

    A first pass keeps only each sample's meta (to choose the clips), a second decodes the chosen ones,
    so memory holds N clips whatever the size of the val split.
    """
    from trainer.data import resolve_shards

    try:
        urls = resolve_shards(str(data), "val")
    except (FileNotFoundError, ValueError) as e:
        raise EvalError(f"no val pixel shards under {data}: {e}") from None
    headers: list[tuple[str, Clip]] = []
    for url in urls:
        for key, members in S.iter_tar_samples(url):
            if S.META not in members or S.TIMELINE not in members or not S.frame_suffixes(members):
                continue  # not a pixel sample (or a corrupt one): skipped
            headers.append((url, Clip(key=key, meta=S.decode_json(members[S.META]))))
    if not headers:
        raise EvalError(f"the val shards under {data} hold no pixel samples")
    chosen = [headers[i] for i in select_round_robin([c.variant for _, c in headers], n)]
    wanted = {(url, c.key): c for url, c in chosen}
    for url in dict.fromkeys(u for u, _ in chosen):
        for key, members in S.iter_tar_samples(url):
            c = wanted.get((url, key))
            if c is not None:
                d = S.decode_pixel_sample(members)
                c.frames, c.timeline, c.wave, c.sr = d["frames"], d["timeline"].astype(np.float32), d["wave"], int(d["sr"])
    return [c for _, c in chosen]


# ------------------------------------------------------------------ generation


def derangement_roll(n: int) -> np.ndarray:
    """pi(i) = (i + 1) mod n: a permutation with no fixed point for n >= 2."""
    return (np.arange(n) + 1) % n


def shuffled_windows(windows: np.ndarray, silent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The wrong audio per clip: the next clip's audio (n >= 2), or the clip's own audio shifted by half
    its length when there is a single clip."""
    if len(windows) >= 2:
        pi = derangement_roll(len(windows))
        return windows[pi], silent[pi]
    half = windows.shape[1] // 2
    return np.roll(windows, half, axis=1), np.roll(silent, half, axis=1)


@torch.no_grad()
def generate_group(model: SamplingModel, spec: StreamSpec, windows: np.ndarray, silent: np.ndarray,
                   style_z: torch.Tensor, noise_seed: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Generate B streams in chunks of ``batch``: ``(frames uint8 (B, T, H, W, 3), latents (B, T, C, h, w))``.

    Every chunk restarts the noise generator at ``noise_seed`` so that two groups with the same seed and
    batch layout draw identical noise (the "same z" of the sensitivity metric).
    """
    frames_out, lat_out = [], []
    for i in range(0, len(windows), batch):
        gen = torch.Generator().manual_seed(int(noise_seed) * 1_000_003 + i)
        a = torch.from_numpy(np.ascontiguousarray(windows[i:i + batch]))
        s = torch.from_numpy(np.ascontiguousarray(silent[i:i + batch]))
        z = style_z[i:i + batch].to(model.device)
        with autocast(model.cfg.run, model.device):  # bf16 on CUDA (run.precision=auto)
            chunks = [lat.float() for _, lat in latent_stream(model.denoiser, spec, a, s, z, gen, model.device)]
        lat = torch.cat(chunks, dim=1)  # (b, T, C, h, w)
        b, t = lat.shape[:2]
        fr = model.decode(lat.flatten(0, 1))
        frames_out.append(fr.reshape((b, t) + fr.shape[1:]))
        lat_out.append(lat.float().cpu().numpy())
    return np.concatenate(frames_out), np.concatenate(lat_out)


def clip_styles(n_clips: int, style_dim: int, k: int, base_seed: int) -> torch.Tensor:
    """Style latents (n_clips, style_dim) from the prior: clip i, style sample k has its own seed."""
    return torch.cat([style_from_prior(style_dim, base_seed * 7919 + 1000 * k + i) for i in range(n_clips)])


# ------------------------------------------------------------------ val loss


@torch.no_grad()
def val_loss_gap(model: SamplingModel, clips: list[Clip], latents: list[np.ndarray], seed: int) -> dict[str, float]:
    """Val diffusion loss with true vs shuffled audio (``trainer.diffusion.losses.val_losses``) on
    ``SNIPPETS_PER_CLIP_FOR_LOSS`` evenly spaced snippets of each val clip, encoded by the run's VAE."""
    from trainer.data import SnippetSpec, make_snippet
    from trainer.diffusion.losses import val_losses

    cfg = model.cfg
    spec = SnippetSpec(cfg, latent_scale=model.latent_scale)
    rng = np.random.default_rng(seed)
    items = []
    for clip, lat in zip(clips, latents):
        sample = {"__key__": clip.key, "meta": clip.meta, S.TIMELINE: S.encode_timeline(clip.timeline),
                  S.LATENTS: S.encode_npy((lat / model.latent_scale).astype(np.float16))}
        n = min(len(lat), len(clip.timeline))
        last = n - cfg.diffusion.snippet_frames
        if last < 0:
            continue
        for start in np.unique(np.linspace(0, last, SNIPPETS_PER_CLIP_FOR_LOSS).round().astype(int)):
            items.append(make_snippet(sample, spec, "latents", rng, start=int(start)))
    if len(items) < 2:
        return {"val_L_good": float("nan"), "val_L_bad": float("nan"), "val_gap": float("nan")}
    batch = {k: torch.as_tensor(np.stack([it[k] for it in items])).to(model.device)
             for k in items[0] if k != "key"}
    batch["key"] = [it["key"] for it in items]
    return val_losses(model.denoiser, batch, cfg, torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ per-clip metrics


def clip_signals(clip: Clip, frames: np.ndarray) -> dict[str, np.ndarray]:
    names = clip.names
    return {"rms": clip.timeline[: len(frames), channel_index(names, "rms")],
            "onset": clip.timeline[: len(frames), channel_index(names, "onset")],
            "is_silent": clip.timeline[: len(frames), channel_index(names, "is_silent")],
            "motion": M.motion_energy(frames)}


def silent_spans(clip: Clip, n_frames: int) -> list[tuple[int, int]]:
    """Silence segments from meta.json, or from the timeline's is_silent channel when meta has none."""
    spans = M.silence_spans_from_meta(clip.meta)
    if not spans and clip.variant == "silence":
        spans = M.spans_from_mask(clip.timeline[:n_frames, channel_index(clip.names, "is_silent")])
    return [(a, min(b, n_frames)) for a, b in spans if a < n_frames]


def responsiveness(clip: Clip, frames: np.ndarray, cfg: Config) -> dict[str, float]:
    """AV-Align, RMS-motion Spearman, silence-settle ratio and mean motion of one video against the clip's audio."""
    sig = clip_signals(clip, frames)
    spans = silent_spans(clip, len(frames))
    return {
        "av_align": M.av_align(sig["onset"], sig["motion"], cfg.eval.av_align_tolerance_frames),
        "rms_motion_spearman": M.rms_motion_spearman(sig["rms"], sig["motion"]),
        "silence_settle_ratio": (M.silence_settle_ratio(sig["motion"], spans, cfg.render.fps, cfg.eval.settle_delay_s)
                                 if spans else float("nan")),
        "mean_motion_energy": float(sig["motion"][1:].mean()) if len(frames) > 1 else 0.0,
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) between two uint8 videos."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


# ------------------------------------------------------------------ videos


def write_side_by_side(path: Path, gt: np.ndarray, gen: np.ndarray, shuf: np.ndarray, clip: Clip, fps: float) -> Path:
    """mp4: ground truth | generated (true audio) | generated (shuffled audio), the clip's audio muxed."""
    from shared.video import Mp4Writer

    t = min(len(gt), len(gen), len(shuf))
    h, w = gt.shape[1:3]
    sep = np.full((t, h, 2, 3), 255, np.uint8)
    video = np.concatenate([gt[:t], sep, gen[:t], sep, shuf[:t]], axis=2)  # (T, H, 3W+4, 3)
    with Mp4Writer(path, fps, video.shape[2], h, audio=(clip.wave, clip.sr)) as wr:
        for i in range(0, t, 64):
            wr.write(video[i:i + 64])
    return path


# ------------------------------------------------------------------ the driver


def evaluate(model: SamplingModel, data: str | Path, out: str | Path, n_clips: int | None = None,
             seed: int | None = None, log=print) -> tuple[Report, Path, Path]:
    """Run the whole evaluation and write the report; returns (report, report.json, report.md)."""
    cfg = model.cfg
    ev, inf = cfg.eval, cfg.inference
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed = inf.seed if seed is None else seed
    n = n_clips or ev.n_clips
    t_start = time.perf_counter()

    clips = read_val_clips(data, n)
    res = cfg.render.resolution
    for c in clips:
        if c.frames.shape[1:3] != (res, res):
            raise EvalError(f"val clip {c.key} has {c.frames.shape[2]}x{c.frames.shape[1]} frames but the model "
                            f"makes {res}x{res} (render.resolution of the checkpoint's config)")
        c.names = list(c.meta.get("timeline_channels") or [])
        if len(c.names) != c.timeline.shape[1]:
            from shared.timeline import channel_names

            c.names = channel_names(cfg.timeline)
        if len(c.names) != c.timeline.shape[1]:
            raise EvalError(f"val clip {c.key}: timeline has {c.timeline.shape[1]} channels, the model's config "
                            f"{len(c.names)}")
    t = min(min(len(c.frames), len(c.timeline)) for c in clips)
    if t < cfg.diffusion.snippet_frames:
        raise EvalError(f"val clips have {t} frames, fewer than one snippet ({cfg.diffusion.snippet_frames})")
    for c in clips:
        c.frames, c.timeline = c.frames[:t], c.timeline[:t]
    log(f"eval: {len(clips)} val clips ({', '.join(c.variant for c in clips)}), {t} frames each")

    # --- conditioning, batched over clips
    from trainer.data import audio_windows

    windows = np.stack([audio_windows(c.timeline, c.names, cfg.diffusion.audio_context_frames,
                                      cfg.diffusion.audio_feature_normalize_per_clip) for c in clips])  # (N, T, 2k+1, Ch)
    silent = np.stack([c.timeline[:, channel_index(c.names, "is_silent")] for c in clips]).astype(np.float32)  # (N, T)
    shuf_w, shuf_s = shuffled_windows(windows, silent)
    from trainer.sample import SampleSettings, stream_spec

    spec = stream_spec(model, SampleSettings())
    batch = max(1, inf.batch_snippets)
    sd = cfg.diffusion.style_dim
    k_styles = max(2, ev.n_style_samples)
    styles = [clip_styles(len(clips), sd, k, seed) for k in range(k_styles)]

    # --- generation: true / shuffled share style and noise; reseeded and style_k change both
    gen_frames, gen_lat = {}, {}
    t0 = time.perf_counter()
    gen_frames["true"], gen_lat["true"] = generate_group(model, spec, windows, silent, styles[0], seed, batch)
    gen_frames["shuffled"], gen_lat["shuffled"] = generate_group(model, spec, shuf_w, shuf_s, styles[0], seed, batch)
    for k in range(1, k_styles):
        name = "reseeded" if k == 1 else f"style_{k}"
        gen_frames[name], gen_lat[name] = generate_group(model, spec, windows, silent, styles[k], seed + k, batch)
    gen_seconds = time.perf_counter() - t0
    log(f"eval: generated {len(gen_frames)} x {len(clips)} videos of {t} frames in {gen_seconds:.1f} s")

    # --- 1. audio-shuffle eval
    gt_lat = [model.encode(c.frames).float().cpu().numpy() for c in clips]  # (T, C, h, w) scaled
    losses = val_loss_gap(model, clips, gt_lat, seed)
    motion = {k: np.stack([M.motion_energy(v) for v in vids]) for k, vids in gen_frames.items()}  # (N, T)
    lat_feat = {k: v.mean(axis=(3, 4)).reshape(len(clips), -1) for k, v in gen_lat.items()}  # (N, T*C)
    s_motion = M.output_sensitivity(motion["true"], motion["shuffled"], motion["reseeded"])
    s_latent = M.output_sensitivity(lat_feat["true"], lat_feat["shuffled"], lat_feat["reseeded"])

    # --- 2. style diversity: per clip over its style samples; ground truth across clips
    style_names = ["true", "reseeded"] + [f"style_{k}" for k in range(2, k_styles)]
    div_gen = float(np.mean([M.style_diversity([gen_frames[s][i] for s in style_names]) for i in range(len(clips))]))
    div_gt = M.style_diversity([c.frames for c in clips])

    # --- 3 + 4. settle, AV sync (generated with true audio vs ground truth), per clip
    per_clip = []
    for i, c in enumerate(clips):
        per_clip.append({"key": c.key, "variant": c.variant, "silent_spans": silent_spans(c, t),
                         "generated": responsiveness(c, gen_frames["true"][i], cfg),
                         "ground_truth": responsiveness(c, c.frames, cfg),
                         "shuffled_audio": responsiveness(c, gen_frames["shuffled"][i], cfg)})

    def agg(metric: str, which: str, only: str | None = None) -> float:
        return M.nanmean(p[which][metric] for p in per_clip if only is None or p["variant"] == only)

    # --- 5. VAE bottleneck on the debug clips (strongly reactive targets) and the silence clips (for the
    # settle ratio); all clips when there is neither
    debug = [i for i, c in enumerate(clips) if c.variant == "debug"]
    vae_idx = [i for i, c in enumerate(clips) if c.variant in ("debug", "silence")] or list(range(len(clips)))
    vae_rows_data = []
    for i in vae_idx:
        c = clips[i]
        rt = model.decode(torch.from_numpy(gt_lat[i]))  # (T, H, W, 3)
        m_rt, m_or = responsiveness(c, rt, cfg), per_clip[i]["ground_truth"]
        vae_rows_data.append({"key": c.key, "roundtrip": m_rt, "original": m_or, "psnr_db": psnr(rt, c.frames),
                              "motion_spearman": M.spearman(M.motion_energy(rt)[1:], M.motion_energy(c.frames)[1:])})
        per_clip[i]["vae_roundtrip"] = m_rt

    def vagg(metric: str, which: str) -> float:
        return M.nanmean(r[which][metric] for r in vae_rows_data)

    # --- report
    tol = ev.av_align_tolerance_frames
    rows = [
        MetricRow("val_loss_true_audio", losses["val_L_good"], None, "lower",
                  "val diffusion loss (EMA weights) with each clip's own audio"),
        MetricRow("val_loss_shuffled_audio", losses["val_L_bad"], None, "higher",
                  f"the same with wrong audio ({cfg.diffusion.audio_shuffle_negatives} negatives)"),
        MetricRow("val_loss_gap", losses["val_gap"], None, "higher", "shuffled minus true: > 0 means the audio is used"),
        MetricRow("output_sensitivity_motion", s_motion, None, "higher",
                  "S with f = motion-energy curve: audio swap effect / seed change effect (0 = audio ignored)"),
        MetricRow("output_sensitivity_latent", s_latent, None, "higher", "S with f = per-frame mean latent"),
        MetricRow("style_diversity", div_gen, div_gt, "higher (toward ground truth)",
                  "mean pairwise distance of frame statistics: generated = same audio, different style latents; "
                  "ground truth = across val clips"),
        MetricRow("silence_settle_ratio", agg("silence_settle_ratio", "generated"),
                  agg("silence_settle_ratio", "ground_truth"), "lower",
                  f"clips with a labelled silence segment: motion from {ev.settle_delay_s:g} s into silence / motion "
                  "when loud (1 = no settling)"),
        MetricRow("av_align", agg("av_align", "generated"), agg("av_align", "ground_truth"), "higher",
                  f"AV-Align: IoU of audio onset peaks and motion peaks (frame difference) within +-{tol} frame(s)"),
        MetricRow("av_align_shuffled_audio", agg("av_align", "shuffled_audio"), None, "lower",
                  "AV-Align of the video generated with wrong audio, against the clip's own audio (chance level)"),
        MetricRow("rms_motion_spearman", agg("rms_motion_spearman", "generated"),
                  agg("rms_motion_spearman", "ground_truth"), "higher", "Spearman correlation of audio RMS with motion energy"),
        MetricRow("mean_motion_energy", agg("mean_motion_energy", "generated"), agg("mean_motion_energy", "ground_truth"),
                  "toward ground truth", "mean absolute frame difference in [0, 1]"),
    ]
    vae_rows = [
        MetricRow(name, vagg(name, "roundtrip"), vagg(name, "original"), better, desc)
        for name, better, desc in (
            ("av_align", "higher", "AV-Align of the VAE round-tripped frames vs the originals"),
            ("rms_motion_spearman", "higher", "RMS-motion Spearman, round-tripped vs original"),
            ("silence_settle_ratio", "lower", "silence-settle ratio, round-tripped vs original"),
            ("mean_motion_energy", "toward original", "mean absolute frame difference"),
        )
    ]
    vae_rows.append(MetricRow("motion_curve_spearman", M.nanmean(r["motion_spearman"] for r in vae_rows_data), 1.0,
                              "higher", "Spearman of the round-tripped motion curve with the original's (1 = kept)"))
    vae_rows.append(MetricRow("psnr_db", M.nanmean(r["psnr_db"] for r in vae_rows_data), None, "higher",
                              "PSNR of the round-tripped frames"))

    files: dict[str, Any] = {}
    bar_metrics = {r.name: {"generated": r.generated, "ground_truth": r.ground_truth} for r in rows
                   if r.name in ("style_diversity", "silence_settle_ratio", "av_align", "rms_motion_spearman",
                                 "mean_motion_energy", "output_sensitivity_motion", "val_loss_gap")}
    files["plot_metrics"] = str(plots.plot_metric_bars(out / "metrics.png", bar_metrics).relative_to(out))
    vae_bars = {r.name: {"original": r.ground_truth, "roundtrip": r.generated} for r in vae_rows}
    files["plot_vae_bottleneck"] = str(plots.plot_metric_bars(out / "vae_bottleneck.png", vae_bars,
                                                              series=("original", "roundtrip")).relative_to(out))
    plot_idx = sorted(set(select_round_robin([c.variant for c in clips], MAX_PLOTS)))
    timeline_plots = []
    for i in plot_idx:
        c = clips[i]
        sig = clip_signals(c, c.frames)
        p = plots.plot_clip_timeline(
            out / "plots" / f"timeline_{c.key}.png", cfg.render.fps, sig["rms"], M.audio_onset_peaks(sig["onset"]),
            {"ground truth": sig["motion"], "generated (true audio)": motion["true"][i],
             "generated (shuffled audio)": motion["shuffled"][i]},
            silent_spans(c, t), title=f"{c.key} ({c.variant})")
        timeline_plots.append(str(p.relative_to(out)))
    files["plots_timeline"] = timeline_plots
    if ev.write_videos:
        vids = []
        for i in plot_idx[:MAX_VIDEOS]:
            c = clips[i]
            p = write_side_by_side(out / "videos" / f"side_by_side_{c.key}.mp4", c.frames, gen_frames["true"][i],
                                   gen_frames["shuffled"][i], c, cfg.render.fps)
            vids.append(str(p.relative_to(out)))
        files["videos_side_by_side"] = vids

    notes = [
        "Motion energy is the mean absolute frame difference (not optical flow); AV-Align uses its peaks as the "
        "video peaks and onset peaks of the timeline's spectral-flux channel as the audio peaks, matched one to one.",
        "Ground truth has no generator, so the loss and sensitivity rows have no ceiling (n/a).",
        "Side-by-side videos: ground truth | generated with the true audio | generated with shuffled audio; the "
        "true audio is muxed.",
    ]
    if not debug:
        notes.append("No debug-variant clip among the val clips: the VAE bottleneck uses the silence clips, or all "
                     "evaluated clips when there is none.")
    if not any(p["silent_spans"] for p in per_clip):
        notes.append("No val clip with a silence segment: the silence-settle ratio is n/a.")
    info = {"checkpoint": str(model.step_dir), "step": model.step, "data": str(data), "clips": len(clips),
            "frames_per_clip": t, "fps": cfg.render.fps, "sampler": spec.sampler, "steps": spec.steps,
            "guidance": spec.guidance, "snippet_overlap": spec.overlap, "seed": seed,
            "generation_seconds": round(gen_seconds, 2),
            "generated_frames_per_s": round(len(gen_frames) * len(clips) * t / max(gen_seconds, 1e-9), 2),
            "total_seconds": round(time.perf_counter() - t_start, 2)}
    rep = Report(title="Synesthete evaluation: audio responsiveness", rows=rows, vae_rows=vae_rows, info=info,
                 per_clip=per_clip, files=files, notes=notes)
    rep.info["total_seconds"] = round(time.perf_counter() - t_start, 2)
    pj, pm = write_report(out, rep)
    return rep, pj, pm
