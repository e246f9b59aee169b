"""Training runtime shared by every trainer command, one module per concern:

* :mod:`.distributed`: the torchrun world (``Dist``, set-up, barriers, reductions, ``unwrap``);
* :mod:`.precision`: the autocast dtype for ``run.precision``;
* :mod:`.ema`: the exponential moving average of the weights and its warm-up;
* :mod:`.logs`: metrics.jsonl + TensorBoard, progress bars, sample rates;
* :mod:`.rng`: seeding, and the per-step generators that make a step a pure function of its place.

Side effects live here and in the training loop (``trainer/loop.py``); the math lives in small pure
functions elsewhere. Everything is re-exported here, so ``from trainer import runtime as rt`` reads
``rt.setup_distributed``, ``rt.EMA``, ...
"""

from trainer.runtime.distributed import (
    Dist, all_gather_union, all_reduce_mean, all_reduce_sum, barrier, cleanup_distributed, distributed_world, main_first, pick_device,
    setup_distributed, unwrap,
)
from trainer.runtime.ema import EMA, ema_decay_at
from trainer.runtime.logs import MetricsLogger, RateMeter, progress
from trainer.runtime.precision import autocast, autocast_dtype, enable_tf32
from trainer.runtime.rng import seed_everything, seed_step, step_generator

__all__ = [
    "Dist", "all_gather_union", "all_reduce_mean", "all_reduce_sum", "barrier", "cleanup_distributed", "distributed_world", "main_first",
    "pick_device", "setup_distributed", "unwrap", "EMA", "ema_decay_at", "MetricsLogger", "RateMeter", "progress",
    "autocast", "autocast_dtype", "enable_tf32", "seed_everything", "seed_step", "step_generator",
]
