"""Size of the diffusion model a config describes: parameters, FLOPs per snippet, activation memory per step.

    .venv/bin/python bench/model_size.py                       # the schema defaults (configs/full.yaml)
    .venv/bin/python bench/model_size.py --config configs/tiny.yaml
    .venv/bin/python bench/model_size.py --write               # both, as the "## Diffusion model size" section
                                                               # of bench/RESULTS.md (with the commit measured on)

* parameters: of the Denoiser (the style encoder included);
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and attention, as bench/train_throughput.py
  counts them) on the meta device, so nothing is computed: one forward of one snippet, and one trained
  snippet (``diffusion_loss`` forward and backward, the shuffle pressure's second forward included);
* activation memory: the bytes autograd saves for the backward of one training step's forward
  (``torch.autograd.graph.saved_tensors_hooks``, each storage counted once; parameters excluded), measured
  on the CPU under bf16 autocast at 2 snippets and scaled to ``diffusion.batch_size`` (it is linear in the
  batch). CUDA's SDPA kernels save about what the CPU's flash kernel saves (output and log-sum-exp), and
  CUDA autocast's cast policy is close to the CPU's, so read it as an estimate of the CUDA figure; the
  allocator's real peak (bench/gpu_suite.py, step ``train``) adds weights, gradients, AdamW state and
  workspace.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.config import Config, build_config  # noqa: E402
from trainer.diffusion.losses import diffusion_loss  # noqa: E402
from trainer.diffusion.model import Denoiser, count_parameters  # noqa: E402
from trainer.diffusion.synthetic import n_audio_channels, synthetic_batch  # noqa: E402


def _model_and_batch(cfg: Config, device: str, batch: int):
    latent = cfg.render.resolution // cfg.vae.downsample
    c = cfg.vae.latent_channels
    data = synthetic_batch(cfg, batch, c, latent, torch.Generator().manual_seed(0))
    with torch.device(device):
        model = Denoiser(cfg, c, latent, n_audio_channels(cfg))
    data = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in data.items()}
    return model, data


def flops(cfg: Config) -> dict[str, float]:
    """GFLOP of one snippet's forward and of one trained snippet (forward + backward, both shuffle passes)."""
    from torch.utils.flop_counter import FlopCounterMode

    model, data = _model_and_batch(cfg, "meta", 2)  # 2: batch negatives need another clip
    cond = model.make_cond(data["audio"][:1], data["is_silent"][:1], data["frame_index"][:1], data["prev"][:1],
                           data["prev_valid"][:1])
    counter = FlopCounterMode(display=False)
    with counter:
        model(data["x"][:1], torch.zeros(1, device="meta"), cond)
    forward = counter.get_total_flops()
    counter = FlopCounterMode(display=False)
    with counter:
        loss, _ = diffusion_loss(model, data, cfg, torch.Generator().manual_seed(0))
        loss.backward()
    return {"gflop_forward_per_snippet": forward / 1e9, "gflop_train_per_snippet": counter.get_total_flops() / 2 / 1e9}


def saved_activation_bytes(cfg: Config, batch: int = 2) -> dict[str, int]:
    """Bytes autograd keeps for the backward of one training forward at ``batch`` snippets (CPU, bf16 autocast),
    by dtype of the saved tensor."""
    model, data = _model_and_batch(cfg, "cpu", batch)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, tuple[str, int]] = {}

    def pack(t: torch.Tensor):
        s = t.untyped_storage()
        if s.data_ptr() not in params and s.device.type == "cpu":
            seen[s.data_ptr()] = (str(t.dtype).replace("torch.", ""), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        diffusion_loss(model, data, cfg, torch.Generator().manual_seed(0))
    by_dtype: dict[str, int] = {}
    for dtype, n in seen.values():
        by_dtype[dtype] = by_dtype.get(dtype, 0) + n
    return by_dtype


def model_size(cfg: Config, activations: bool = True) -> dict:
    d = cfg.diffusion
    latent = cfg.render.resolution // cfg.vae.downsample
    model, _ = _model_and_batch(cfg, "meta", 2)
    r = {"width": d.width, "depth": d.depth, "heads": d.heads, "params_M": round(count_parameters(model) / 1e6, 2),
         "tokens_per_snippet": (d.prev_frames + d.snippet_frames)
         * (int(d.cond_token_in_spatial) + (latent // d.patch_size) ** 2),
         "batch_size": d.batch_size, **{k: float(f"{v:.4g}") for k, v in flops(cfg).items()}}
    if activations:
        by_dtype = saved_activation_bytes(cfg, 2)
        per_snippet = sum(by_dtype.values()) / 2
        r["activation_GiB_per_snippet"] = float(f"{per_snippet / 2 ** 30:.4g}")
        r["activation_share_by_dtype"] = {k: round(v / (2 * per_snippet), 3) for k, v in sorted(by_dtype.items())}
        r["activation_GiB_at_batch"] = float(f"{per_snippet * d.batch_size / 2 ** 30:.4g}")
    return r


SECTION = "## Diffusion model size"
# The rows of the section: (label, config files).
TABLE_CONFIGS = (("defaults (configs/full.yaml)", []), ("configs/tiny.yaml", [ROOT / "configs" / "tiny.yaml"]))


def table_row(label: str, r: dict) -> str:
    """One markdown row of the section's table from :func:`model_size`'s result."""
    shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(r["activation_share_by_dtype"].items(), key=lambda kv: -kv[1])
                       if round(v * 100) > 0)
    return (f"| {label} | {r['width']} x {r['depth']} blocks, {r['heads']} heads | {r['params_M']} M | "
            f"{r['tokens_per_snippet']} | {r['gflop_forward_per_snippet']:.4g} | {r['gflop_train_per_snippet']:.4g} | "
            f"{r['activation_GiB_per_snippet']:.4g} | {r['activation_GiB_at_batch']:.4g} ({r['batch_size']}) | {shares} |")


def section_text(rows: list[str]) -> str:
    return "\n".join([
        SECTION, "",
        "`.venv/bin/python bench/model_size.py --write` (2-core CPU box; `[--config FILE]` prints one config's JSON): "
        "parameters; FLOPs counted by `torch.utils.flop_counter` on the meta device for one snippet's forward and for "
        "one trained snippet (forward and backward of both shuffle-pressure passes); the bytes autograd saves for the "
        "backward, measured on the CPU under bf16 autocast at 2 snippets and scaled to the batch (an estimate of the "
        "CUDA figure; weights, gradients, AdamW state and workspace come on top: the GPU suite's `train` step reads the "
        "allocator's peak).", "",
        "| config | shape | params | tokens/snippet | GFLOP forward/snippet | GFLOP trained/snippet | saved activations "
        "GiB/snippet | GiB at batch (B) | saved bytes by dtype |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
        *rows])


def write_section(path: Path) -> None:
    """Measure every config of :data:`TABLE_CONFIGS` and replace the section in ``path``."""
    from shared.markdown import replace_section

    rows = []
    for label, files in TABLE_CONFIGS:
        torch.manual_seed(0)
        rows.append(table_row(label, model_size(build_config(files))))
    replace_section(path, SECTION, section_text(rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", default=[], help="YAML config layers (default: the schema defaults).")
    ap.add_argument("--no-activations", action="store_true", help="Skip the (CPU-computed) activation measurement.")
    ap.add_argument("--write", nargs="?", const=str(ROOT / "bench" / "RESULTS.md"), default=None, metavar="RESULTS.md",
                    help="Measure the defaults and configs/tiny.yaml and replace the section in this markdown file "
                         "(default bench/RESULTS.md).")
    ap.add_argument("overrides", nargs="*", help="section.key=value config overrides.")
    args = ap.parse_args(argv)
    if args.write:
        write_section(Path(args.write))
        return 0
    torch.manual_seed(0)
    cfg = build_config([Path(c) for c in args.config], overrides=args.overrides)
    print(json.dumps(model_size(cfg, activations=not args.no_activations), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
