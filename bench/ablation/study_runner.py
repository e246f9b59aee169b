"""Issue 24's study run (``bench/responsiveness_ablation.py --study``): data, VAE and latents once; arm B's
calibrated s/step sets the training steps every arm gets (the budget, about 15 minutes of arm B by default); arms
A, B, B0 and B+ trained and evaluated with both seeds; a third seed of B and B0 where their first two verdicts
disagree; the verdicts of the rule registered in study.py, written to WORK/study.json."""

from __future__ import annotations

import json
from typing import Any

from .calibration import measure
from .presets import SEEDS
from .runner import load_reports, run_arms, run_setup
from .steps import Paths, Runner
from .study import compare, needs_third_seed, pressure_verdict, study_arms

BUDGET_S = 15 * 60.0  # training time of arm B that sets every arm's steps (issue 24: "worth ~15 minutes of arm B")
THIRD_SEED = 2


def study_steps(b_seconds_per_step: float, budget_s: float) -> int:
    """The training steps every arm gets: the budget at arm B's s/step (at least 1)."""
    return max(1, round(budget_s / b_seconds_per_step))


def run_study(p: Paths, runner: Runner, batch_size: int, calib_k: int, budget_s: float = BUDGET_S) -> dict[str, Any]:
    """Every step of the study in order; returns WORK/study.json's content (also written there)."""
    run_setup(p, runner)
    arms = {a.key: a for a in study_arms()}
    sps = measure(p, runner, [arms["B"]], calib_k, batch_size)
    doc: dict[str, Any] = {"arms": {k: {"title": a.title, "train": list(a.train or []), "infer": list(a.infer)}
                                    for k, a in arms.items()},
                           "budget_s": budget_s, "s_per_step_B": sps.get("B")}
    if "B" in sps:
        steps = study_steps(sps["B"], budget_s)
        run_arms(p, runner, list(arms.values()), {k: steps for k in arms})
        reports = {k: load_reports(p, a) for k, a in arms.items()}
        seeds = tuple(SEEDS)
        if needs_third_seed(reports["B"], reports["B0"]):
            seeds += (THIRD_SEED,)
            run_arms(p, runner, [arms["B"], arms["B0"]], {"B": steps, "B0": steps}, seeds=(THIRD_SEED,))
            reports.update({k: load_reports(p, arms[k], seeds) for k in ("B", "B0")})
        doc.update(steps=steps, seeds=list(seeds), pressure=pressure_verdict(reports["B"], reports["B0"]),
                   comparisons={"B vs B0": compare(reports["B"], reports["B0"]),
                                "B vs A": compare(reports["B"], reports["A"]),
                                "B+ vs B": compare(reports["B+"], reports["B"])})
    doc["not_run"] = runner.skipped_for_time
    (p.work / "study.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return doc
