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
