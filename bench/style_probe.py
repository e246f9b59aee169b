"""Does ``--style-seed`` change the video? Style-only against noise-only variation at fixed audio (issue 23).

For a diffusion checkpoint and a few audio files, each file is sampled at the model's native size with the project's
own sampling path (trainer.sample: ``read_item`` -> ``generate_frames``, the style from ``style_for_seed``):

* **style**: one noise seed (``--noise-seed``), style seeds 0..K-1 (what ``trainer sample --style-seed`` varies);
* **noise**: one style seed (``--style-seed``), noise seeds 0..K-1 (what ``trainer sample --seed`` varies).

For each file and each kind it reports the mean pairwise PSNR (dB, higher = more alike) of the K uint8 videos and
their style diversity (trainer.eval.metrics.style_diversity: the mean pairwise distance of the clips'
frame_statistics vectors, higher = more diverse). A style latent the denoiser ignores gives style-only PSNR far
above the noise-only PSNR, and style-only diversity far below it.

The style posterior: the final training ``style_kl`` (nats per clip, summed over the dimensions) from the step's
state.json, and with ``--latents DIR`` (a ``trainer cache-latents`` output) the posterior over that split's clips:
per-dimension batch-mean KL, the spread (std over clips) of the posterior means and the mean posterior std. A
collapsed posterior has KL ~ 0, means ~ 0 with no spread and std ~ 1 (it is the prior, whatever the clip).

Where the style latents come from (``--style-draw``; the noise-only variation uses the same draw at ``--style-seed``):

* ``prior`` (default): N(0, I) with the style seed, what ``trainer sample --style-seed`` does;
* ``aggregate``: the aggregate posterior of the training split (``--latents``), moment-matched by a diagonal Gaussian
  (:func:`aggregate_gaussian`), the style seed's N(0, I) draw scaled and shifted into it: the styles training saw,
  without a prior mismatch (ex-post density estimation: Ghosh et al. 2020, "From variational to deterministic
  autoencoders");
* ``posterior``: one training snippet's posterior (mean + sigma times the seed's draw), snippet ``seed * 13 mod n``.

    python bench/style_probe.py --checkpoint models/synesthete-tiny --out docs/results/style/probe-tiny.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.provenance import code_commit  # noqa: E402
from trainer.checkpoint import STATE_FILE  # noqa: E402
from trainer.data import snippet_loader  # noqa: E402
from trainer.diffusion.model import style_kl  # noqa: E402
from trainer.diffusion.train import latent_scale_of, read_latent_manifest  # noqa: E402
from trainer.eval.metrics import psnr, style_diversity  # noqa: E402
from trainer.sample import (SampleSettings, SamplingModel, generate_frames, load_sampling_model, read_item,  # noqa: E402
                            stream_spec, style_for_seed, style_from_prior)

DEFAULT_AUDIO = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "data" / "real_audio").iterdir()
                       if p.suffix in (".flac", ".mp3", ".wav"))


STYLE_DRAWS = ("prior", "aggregate", "posterior")


def aggregate_gaussian(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std per dimension of the mixture of the posteriors N(mu_i, exp(logvar_i)) (N, S), each weighted
    1/N: the mean of the means, and by the law of total variance var = var_i(mu_i) + mean_i(exp(logvar_i))
    (population variance). (S,), (S,)."""
    var = mu.var(dim=0, unbiased=False) + logvar.exp().mean(dim=0)
    return mu.mean(dim=0), var.sqrt()


def style_draw(kind: str, seed: int, cfg, post: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Style input (1, D) of ``seed`` drawn as ``kind`` says (module docstring); ``post`` = the training split's
    posterior (mu, logvar), (N, S) each, for ``aggregate`` and ``posterior``. ``prior`` is what ``--style-seed``
    gives (trainer.style.style_for_seed: a N(0, I) draw, or the teacher's plan of the seed for a plan model)."""
    if kind == "prior":
        return style_for_seed(cfg, seed)
    if cfg.diffusion.style_source != "posterior":
        raise ValueError(f"--style-draw {kind} needs a model with a style posterior (diffusion.style_source=posterior)")
    eps = style_from_prior(cfg.diffusion.style_dim, seed)
    if post is None:
        raise ValueError(f"--style-draw {kind} needs the training posterior (--latents)")
    mu, logvar = post
    if kind == "aggregate":
        mean, std = aggregate_gaussian(mu, logvar)
        return mean[None] + std[None] * eps
    i = seed * 13 % mu.shape[0]
    return mu[i][None] + (0.5 * logvar[i]).exp()[None] * eps


def draw_fit(post: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
    """What the aggregate and posterior draws read: the training split's posterior, its size and moment-matched
    Gaussian (the record of ``--style-draw`` other than prior)."""
    mean, std = aggregate_gaussian(*post)
    return {"split": "train", "snippets": int(post[0].shape[0]), "aggregate_mean": [round(float(v), 5) for v in mean],
            "aggregate_std": [round(float(v), 5) for v in std]}


def sample_video(model: SamplingModel, item: dict[str, Any], n_frames: int, style_seed: int, noise_seed: int,
                 settings: SampleSettings, draw: str = "prior", post: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> np.ndarray:
    """One uint8 video (T, H, W, 3) of the item's first ``n_frames`` frames, at the model's native size."""
    spec = stream_spec(model, settings)
    style_z = style_draw(draw, style_seed, model.cfg, post)
    windows, silent = item["windows"][None, :n_frames], item["silent"][None, :n_frames]
    chunks = list(generate_frames(model, windows, silent, style_z, spec, noise_seed))
    return np.concatenate(chunks, axis=1)[0]


def pairwise_psnr(videos: list[np.ndarray]) -> dict[str, Any]:
    """Mean PSNR over the finite pairs; identical pairs (infinite PSNR) are counted, not averaged."""
    values = [psnr(a, b) for a, b in itertools.combinations(videos, 2)]
    finite = [v for v in values if math.isfinite(v)]
    return {"mean_db": float(np.mean(finite)) if finite else None, "min_db": min(finite) if finite else None,
            "identical_pairs": len(values) - len(finite), "pairs": len(values)}


def variation(videos: list[np.ndarray]) -> dict[str, Any]:
    return {"psnr": pairwise_psnr(videos), "style_diversity": style_diversity(videos)}


def probe_file(model: SamplingModel, path: str, k: int, seconds: float, noise_seed: int, style_seed: int,
               settings: SampleSettings, draw: str = "prior", post: tuple[torch.Tensor, torch.Tensor] | None = None
               ) -> dict[str, Any]:
    item = read_item(0, path, os.devnull, model.cfg)
    n = max(1, min(item["frames"], int(round(seconds * model.cfg.render.fps))))
    by_style = [sample_video(model, item, n, s, noise_seed, settings, draw, post) for s in range(k)]
    by_noise = [sample_video(model, item, n, style_seed, s, settings, draw, post) for s in range(k)]
    return {"file": path, "frames": n, "style_only": variation(by_style), "noise_only": variation(by_noise)}


def summary(files: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the files, and the ratio of style-only to noise-only diversity (1 = the style matters as much as
    the noise; 0 = not at all)."""
    out: dict[str, Any] = {}
    for kind in ("style_only", "noise_only"):
        dbs = [f[kind]["psnr"]["mean_db"] for f in files if f[kind]["psnr"]["mean_db"] is not None]
        out[kind] = {"mean_psnr_db": float(np.mean(dbs)) if dbs else None,
                     "mean_style_diversity": float(np.mean([f[kind]["style_diversity"] for f in files]))}
    noise = out["noise_only"]["mean_style_diversity"]
    out["diversity_ratio_style_over_noise"] = out["style_only"]["mean_style_diversity"] / noise if noise > 0 else None
    return out


def trained_kl(model: SamplingModel) -> dict[str, Any]:
    """The checkpoint's last logged training style KL (nats per clip, summed over the dimensions)."""
    state = json.loads((model.step_dir / STATE_FILE).read_text()).get("state", {})
    metrics = state.get("metrics", {})
    return {"style_source": model.cfg.diffusion.style_source,
            "style_kl": metrics.get("style_kl"), "style_kl_term": metrics.get("style_kl_term"),
            "style_dim": model.cfg.diffusion.style_dim, "step": model.step,
            "style_kl_weight": model.cfg.diffusion.style_kl_weight,
            "style_kl_free_bits": model.cfg.diffusion.style_kl_free_bits}


@torch.no_grad()
def encode_posterior(model: SamplingModel, latents: str, split: str, batches: int, batch_size: int = 16
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The style posterior (mu, logvar), (N, S) each, of ``batches`` snippet batches of a latent cache's ``split``
    (each snippet's style frames as in training, the training loader's own draw)."""
    scale = latent_scale_of(read_latent_manifest(latents))
    loader = snippet_loader(latents, model.cfg, split, batch_size, seed=0, latent_scale=scale, drop_last=False)
    mus, logvars = [], []
    for batch in itertools.islice(iter(loader), batches):
        mu, logvar = model.denoiser.encode_style(batch["style"].float().to(model.device))
        mus.append(mu.float().cpu())
        logvars.append(logvar.float().cpu())
    return torch.cat(mus), torch.cat(logvars)


def posterior_stats(model: SamplingModel, latents: str, split: str, batches: int, batch_size: int = 16
                    ) -> dict[str, Any]:
    """The style posterior over ``batches`` snippet batches of a latent cache's ``split``: KL, spread of the means,
    mean sigma, and its aggregate's moment-matched Gaussian (:func:`aggregate_gaussian`)."""
    mu, logvar = encode_posterior(model, latents, split, batches, batch_size)
    mean, std = aggregate_gaussian(mu, logvar)
    per_dim = (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean(dim=0)
    return {"split": split, "snippets": int(mu.shape[0]), "kl_per_clip": float(style_kl(mu, logvar).mean()),
            "kl_per_dim": [round(float(v), 5) for v in per_dim],
            "mu_spread_per_dim": [round(float(v), 5) for v in mu.std(dim=0)],
            "mean_posterior_std": float((0.5 * logvar).exp().mean()),
            "aggregate_mean": [round(float(v), 5) for v in mean], "aggregate_std": [round(float(v), 5) for v in std]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="models/synesthete-tiny", help="A diffusion run dir or ckpt/step-* dir.")
    p.add_argument("--audio", nargs="+", default=DEFAULT_AUDIO, help="Audio files (default: tests/data/real_audio).")
    p.add_argument("--k", type=int, default=4, help="Seeds per kind of variation (K >= 2).")
    p.add_argument("--seconds", type=float, default=8.0, help="Seconds of each file sampled (from its start).")
    p.add_argument("--noise-seed", type=int, default=0, help="The noise seed of the style-only variation.")
    p.add_argument("--style-seed", type=int, default=0, help="The style seed of the noise-only variation.")
    p.add_argument("--guidance", type=float, default=None, help="Audio CFG scale (default: the checkpoint's).")
    p.add_argument("--style-guidance", type=float, default=None,
                   help="Style CFG scale (inference.style_guidance_scale; default: the checkpoint's).")
    p.add_argument("--latents", default=None, help="A latent cache: also measure the style posterior on its clips.")
    p.add_argument("--split", default="val")
    p.add_argument("--posterior-batches", type=int, default=4)
    p.add_argument("--style-draw", choices=STYLE_DRAWS, default="prior",
                   help="Where the style latents come from (module docstring; aggregate and posterior need --latents: "
                        "the training split's posterior, --posterior-batches x 16 snippets).")
    p.add_argument("--out", required=True, help="The JSON to write.")
    args = p.parse_args(argv)
    if args.k < 2:
        p.error("--k must be at least 2")
    if args.style_draw != "prior" and not args.latents:
        p.error(f"--style-draw {args.style_draw} needs --latents (the training split's posterior)")
    torch.manual_seed(0)
    model = load_sampling_model(args.checkpoint, "cpu")
    settings = SampleSettings(guidance=args.guidance, style_guidance=args.style_guidance)
    post = encode_posterior(model, args.latents, "train", args.posterior_batches) if args.style_draw != "prior" \
        else None
    files = [probe_file(model, a, args.k, args.seconds, args.noise_seed, args.style_seed, settings, args.style_draw,
                        post) for a in args.audio]
    out = {"checkpoint": str(args.checkpoint), "step": model.step, "k": args.k, "seconds": args.seconds,
           "noise_seed": args.noise_seed, "style_seed": args.style_seed, "style_draw": args.style_draw,
           "style_draw_fit": None if post is None else draw_fit(post),
           "guidance": stream_spec(model, settings).guidance,
           "style_guidance": stream_spec(model, settings).style_guidance, "resolution": model.cfg.render.resolution,
           "fps": model.cfg.render.fps, "summary": summary(files), "files": files, "trained": trained_kl(model),
           # a plan model has no posterior to measure (its style is the teacher's plan)
           "posterior": posterior_stats(model, args.latents, args.split, args.posterior_batches)
           if args.latents and model.cfg.diffusion.style_source == "posterior" else None,
           "command": " ".join(["python", "bench/style_probe.py", *(argv if argv is not None else sys.argv[1:])]),
           "commit": code_commit(), "load_1min": round(os.getloadavg()[0], 2)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    s = out["summary"]
    print(f"style-only: {s['style_only']['mean_psnr_db']:.2f} dB, diversity {s['style_only']['mean_style_diversity']:.4f}"
          f" | noise-only: {s['noise_only']['mean_psnr_db']:.2f} dB, diversity "
          f"{s['noise_only']['mean_style_diversity']:.4f} | trained style_kl {out['trained']['style_kl']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
