"""Metrics to metrics.jsonl and TensorBoard, progress bars, sample rates."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from shared.fsutil import atomic_write_text


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
        # imported here: tensorboard adds ~1.0 s on top of torch (measured on the 2-core box), and only the main
        # rank of a run ever needs it
        from torch.utils.tensorboard import SummaryWriter

        self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tb"), purge_step=resume_step)

    def _truncate_after(self, step: int) -> None:
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the crash
        atomic_write_text(self.path, "".join(k + "\n" for k in keep))

    def log(self, step: int, metrics: dict[str, float], prefix: str = "") -> None:
        self.log_rows([(step, metrics)], prefix)

    def log_rows(self, rows: list[tuple[int, dict[str, float]]], prefix: str = "") -> None:
        """One JSON line per ``(step, metrics)`` row, flushed once."""
        if not self.enabled:
            return
        now = round(time.time(), 3)
        for step, metrics in rows:
            clean = {f"{prefix}{k}": float(v) for k, v in metrics.items()}
            self._file.write(json.dumps({"step": int(step), "time": now, **clean}) + "\n")
            for k, v in clean.items():
                if math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
        self._file.flush()

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
