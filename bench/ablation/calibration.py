"""Equal wall-clock arms: a short calibration run per training recipe gives its s/step; each arm's steps are the
budget (the preset's steps at arm B's s/step) over its own s/step."""

from __future__ import annotations

import json
from pathlib import Path

from .arms import Arm
from .presets import SEEDS
from .steps import Paths, Runner, Step, train_argv


def calibration_step(p: Paths, arm: Arm, k: int) -> Step:
    """A k-step run of the arm's recipe; its last metrics line's samples/s (steps k/2+1..k) gives s/step."""
    out = p.work / "calibration" / arm.slug
    ov = arm.train_overrides(k, SEEDS[0]) + [f"run.log_every={max(1, k // 2)}", f"run.checkpoint_every={k}",
                                             f"diffusion.val_every={k}"]
    return Step(f"calibrate-{arm.slug}", train_argv(p, out, ov), out / "summary.json", "calibration")


def calibrate(p: Paths, runner: Runner, arm: Arm, k: int) -> Path | None:
    """Run the arm's k-step calibration (skipped when done before): its run dir, or None when left out for time."""
    step = calibration_step(p, arm, k)
    return step.marker.parent if runner.run(step) else None


def seconds_per_step(run_dir: Path, batch_size: int) -> float:
    """s/step from the last ``train/samples_per_s`` of ``run_dir/metrics.jsonl`` (start-up not included)."""
    rate = None
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rate = row.get("train/samples_per_s", rate)
    if not rate:
        raise SystemExit(f"{run_dir}/metrics.jsonl has no train/samples_per_s: cannot calibrate")
    return batch_size / rate


def measure(p: Paths, runner: Runner, arms: list[Arm], k: int, batch_size: int) -> dict[str, float]:
    """s/step per arm, in the arms' order (an arm whose calibration was left out for time is not in it)."""
    sps: dict[str, float] = {}
    for arm in arms:
        run = calibrate(p, runner, arm, k)
        if run is not None:
            sps[arm.key] = seconds_per_step(run, batch_size)
    return sps


def equal_time_steps(sps: dict[str, float], reference_steps: int, reference: str = "B") -> dict[str, int]:
    """Steps per arm for an equal wall-clock budget: reference_steps at the reference arm's s/step, divided by
    each arm's own s/step (at least 1)."""
    budget = reference_steps * sps[reference]
    return {k: max(1, round(budget / s)) for k, s in sps.items()}
