"""Training runtime shared by every trainer command: distributed set-up, device and precision, EMA,
metrics, progress, seeding and RNG state capture.

Side effects live here and in the training loops; the math lives in small pure functions elsewhere.

Distributed: a command started by ``torchrun --nproc_per_node N`` finds RANK / WORLD_SIZE /
LOCAL_RANK in its environment and joins the process group through ``env://`` (NCCL on CUDA,
gloo on the CPU). A plain ``python -m ...`` run is a world of one and never touches
``torch.distributed``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn

# ------------------------------------------------------------------ distributed


@dataclass(frozen=True)
class Dist:
    """Where this process sits in the (possibly one-process) world."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's CUDA device when there is one, else the CPU. ``cuda`` without a GPU is an error."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"run.device must be auto, cpu or cuda (got {requested!r})")
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if requested == "cuda":
        raise RuntimeError("run.device=cuda but torch sees no CUDA device")
    return torch.device("cpu")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def setup_distributed(device: str = "auto") -> Dist:
    """Join the torchrun process group when the environment describes one (``env://``).

    Backend: NCCL when this rank runs on CUDA, gloo on the CPU. Idempotent: a second call
    returns the same description without re-initialising.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = pick_device(device, local_rank)
    if world_size > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not torch_dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            kwargs: dict[str, Any] = {"backend": backend, "init_method": "env://"}
            if dev.type == "cuda":
                kwargs["device_id"] = dev
            torch_dist.init_process_group(**kwargs)
        rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, is_main=rank == 0)


def cleanup_distributed() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.distributed:
        torch_dist.barrier()


def all_reduce_sum(values: list[float], d: Dist) -> list[float]:
    """Sum a few scalars over ranks (identity in a world of one)."""
    if not d.distributed:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def all_reduce_mean(values: list[float], d: Dist) -> list[float]:
    return [v / d.world_size for v in all_reduce_sum(values, d)]


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and/or torch.compile wrappers (what checkpoints and EMA see)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod  # torch.compile's OptimizedModule
        else:
            return model


# ------------------------------------------------------------------ precision


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
    raise ValueError(f"run.precision must be auto, fp32 or bf16 (got {precision!r})")


def autocast(run_cfg: Any, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for the configured precision, or a null context for fp32."""
    dtype = autocast_dtype(run_cfg, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ------------------------------------------------------------------------ EMA


def ema_decay_at(step: int, decay: float) -> float:
    """EMA warm-up (as in TF's ExponentialMovingAverage num_updates): ``min(decay, (1 + n) / (10 + n))``.

    Both trainers set ``ema.decay`` from it before each update. Short runs would otherwise sample from weights still close to the initialisation (0.9995^300 = 0.86).
    """
    return min(decay, (1.0 + step) / (10.0 + step))


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers.

    ``shadow = decay * shadow + (1 - decay) * param`` after each optimizer step. Non-float buffers
    (counters) are copied. The shadow lives on the model's device in fp32.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1) (got {decay})")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
            for k, v in unwrap(model).state_dict().items()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        for k, v in unwrap(model).state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.lerp_(v.detach().float(), 1.0 - self.decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        extra = set(state) - set(self.shadow)
        if missing or extra:
            raise KeyError(f"EMA state does not match the model: missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
        for k, v in state.items():
            self.shadow[k].copy_(v)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (e.g. a separate eval copy)."""
        target = unwrap(model).state_dict()
        for k, v in self.shadow.items():
            target[k].copy_(v.to(target[k].dtype))


# -------------------------------------------------------------------- metrics


class MetricsLogger:
    """Scalars to ``run_dir/metrics.jsonl`` (one JSON object per line) and TensorBoard (``run_dir/tb``).

    Only the main rank logs: construct with ``enabled=dist.is_main``. On resume pass
    ``resume_step``: lines logged after that step by the interrupted run are dropped, so the file
    reads as one run.
    """

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        self._file = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")
        from torch.utils.tensorboard import SummaryWriter  # imported late: tensorboard is slow to import

        self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tb"), purge_step=resume_step)

    def _truncate_after(self, step: int) -> None:
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the crash
        self.path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")

    def log(self, step: int, metrics: dict[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        clean = {f"{prefix}{k}": float(v) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": int(step), "time": round(time.time(), 3), **clean}) + "\n")
        self._file.flush()
        for k, v in clean.items():
            if math.isfinite(v):
                self._tb.add_scalar(k, v, step)

    def log_image(self, step: int, tag: str, image_hwc_uint8: np.ndarray) -> None:
        if self.enabled:
            self._tb.add_image(tag, image_hwc_uint8, step, dataformats="HWC")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


# ------------------------------------------------------------------- progress


def progress(total: int, initial: int = 0, desc: str = "", disable: bool = False, unit: str = "step"):
    """A tqdm bar over steps with rate and ETA; set ``bar.set_postfix(samples_s=...)`` for samples/s."""
    import sys

    from tqdm.auto import tqdm

    # In a log file (CI, a cluster job) redraw every 10 s instead of 10 times a second.
    mininterval = 0.1 if sys.stderr.isatty() else 10.0
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=disable, dynamic_ncols=True,
                smoothing=0.1, mininterval=mininterval)


class RateMeter:
    """Samples per second over the steps since the last :meth:`read`."""

    def __init__(self) -> None:
        self._t = time.perf_counter()
        self._n = 0

    def add(self, n: int) -> None:
        self._n += n

    def read(self) -> float:
        now = time.perf_counter()
        rate = self._n / max(now - self._t, 1e-9)
        self._t, self._n = now, 0
        return rate


# ------------------------------------------------------------------ seeding


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's legacy global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _tensor_to_b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _b64_to_tensor(s: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())


def capture_rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every RNG the training loop draws from, as a JSON-able dict (for ``state.json``)."""
    py = random.getstate()
    np_state = np.random.get_state()
    out: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": _tensor_to_b64(torch.get_rng_state()),
        "cuda": [_tensor_to_b64(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "generators": {k: _tensor_to_b64(g.get_state()) for k, g in (generators or {}).items()},
    }
    return out


def restore_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_b64_to_tensor(state["torch"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_b64_to_tensor(s) for s in state["cuda"]])
    for k, g in (generators or {}).items():
        if k not in state.get("generators", {}):
            raise KeyError(f"RNG state has no generator {k!r} (has {sorted(state.get('generators', {}))})")
        g.set_state(_b64_to_tensor(state["generators"][k]))


def lr_at(step: int, base_lr: float, warmup_steps: int) -> float:
    """Linear warmup to ``base_lr`` over ``warmup_steps``, then constant (step counts from 0)."""
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup_steps)


@contextlib.contextmanager
def timer() -> Iterator[dict[str, float]]:
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - t0
