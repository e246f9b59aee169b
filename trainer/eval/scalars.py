"""Evaluation scalars in TensorBoard, under the run that was evaluated (RUN/tb), never under the shipped model.

``trainer eval`` and ``trainer eval --audio-dir`` both call :func:`log_eval_scalars` with their report dict:
each metric's generated / floor / ceiling mean becomes a scalar ``eval/VARIANT/METRIC/KIND`` at the
checkpoint's training step, in event files of their own (suffix ``.eval``) beside the training curves.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def eval_run_dir(step_dir: str | Path) -> Path | None:
    """The training run a checkpoint belongs to (RUN for RUN/ckpt/step-N), or None for the shipped model
    (under the project's models/ folder, or any run holding a MODEL_CARD.md): eval never writes there."""
    step_dir = Path(step_dir).resolve()
    run = step_dir.parent.parent if step_dir.parent.name == "ckpt" else step_dir
    shipped = Path("models").resolve()
    if (run / "MODEL_CARD.md").exists() or run == shipped or shipped in run.parents:
        return None
    return run


def log_eval_scalars(report: dict[str, Any], step_dir: str | Path, step: int, prefix: str = "eval") -> Path | None:
    """Write the report's metric means to TensorBoard under the evaluated run (RUN/tb, event files suffixed
    ``.eval``), tagged ``PREFIX/VARIANT/METRIC/{generated,floor,ceiling}`` at the checkpoint's step.
    Returns the tb dir, or None when the run is the shipped model (models/ is never written)."""
    run = eval_run_dir(step_dir)
    if run is None:
        return None
    from torch.utils.tensorboard import SummaryWriter  # late: tensorboard is slow to import

    tb = run / "tb"
    writer = SummaryWriter(log_dir=str(tb), filename_suffix=".eval")
    try:
        for variant, v in report["variants"].items():
            for metric, r in v["metrics"].items():
                for which in ("generated", "floor", "ceiling"):
                    s = r.get(which)
                    mean = s.get("mean") if isinstance(s, dict) else None
                    if isinstance(mean, (int, float)) and math.isfinite(mean):
                        writer.add_scalar(f"{prefix}/{variant}/{metric}/{which}", float(mean), int(step))
    finally:
        writer.close()
    return tb
