"""The autocast dtype for ``run.precision`` on a device."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from shared.errors import ConfigError


def autocast_dtype(run_cfg: Any, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``run.precision`` on ``device`` (None = full fp32).

    auto: bf16 on CUDA (tensor cores, no loss scaling needed), fp32 on the CPU (bf16 on the CPU
    is faster on AVX512-BF16 machines but opt-in, since it changes numerics in tests).
    """
    precision = getattr(run_cfg, "precision", "auto")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    raise ConfigError(f"run.precision must be auto, fp32 or bf16 (got {precision!r})")


def autocast(run_cfg: Any, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for the configured precision, or a null context for fp32."""
    dtype = autocast_dtype(run_cfg, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def enable_tf32(device: torch.device) -> None:
    """On CUDA, let fp32 matmuls and convolutions use TF32 tensor cores (10-bit mantissa products, fp32 sums).

    What stays fp32 under bf16 autocast (the optimizer's math is elementwise; the VAE or an fp32 run's matmuls)
    then runs on tensor cores instead of at a fraction of their rate. A process-wide switch; no-op on the CPU.
    """
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
