"""Issue 24's study run (``bench/responsiveness_ablation.py --study``): data and latents once (with the committed
VAE when one is given, else a VAE trained here); arm B's calibrated s/step sets the training steps every arm gets
(the budget, about 15 minutes of arm B by default); arms A, B, B0 and B+ trained and evaluated with both seeds, up to
``jobs`` (arm, seed) chains at once; a third seed of B and B0 where their first two verdicts disagree; each report
copied to ``keep`` as it is written; the verdicts of the rule registered in study.py, written to WORK/study.json."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from .arms import Arm
from .calibration import measure
from .presets import SEEDS
from .runner import arm_steps, load_reports, run_setup
from .steps import REPO, Log, Paths, Runner, Step, run_chains
from .study import compare, needs_third_seed, pressure_verdict, study_arms

STUDY_VAE = REPO / "models" / "synesthete-vae-64"  # issue 24's committed VAE (bench/study_vae.py packages it)
BUDGET_S = 15 * 60.0  # training time of arm B that sets every arm's steps (issue 24: "worth ~15 minutes of arm B")
THIRD_SEED = 2


def study_steps(b_seconds_per_step: float, budget_s: float) -> int:
    """The training steps every arm gets: the budget at arm B's s/step (at least 1)."""
    return max(1, round(budget_s / b_seconds_per_step))


def arm_chains(p: Paths, arms: list[Arm], steps: int, seeds: tuple[int, ...], keep: Path | None) -> list[list[Step]]:
    """One chain per (arm, seed): its training, then its eval, whose report is copied to ``keep`` (when given) as
    ``arm<K>_s<seed>.json`` once it is there."""
    chains = []
    for arm in arms:
        for seed in seeds:
            chain = arm_steps(p, arm, steps, (seed,))
            if keep is not None and chain:
                src, dst = p.report(arm, seed), keep / f"{arm.slug}_s{seed}.json"
                chain[-1] = replace(chain[-1], then=lambda src=src, dst=dst: keep_copy(src, dst))
            chains.append(chain)
    return chains


def keep_copy(src: Path, dst: Path) -> None:
    """Copy a finished report (small JSON) to the tracked folder, unless the same bytes are there."""
    data = src.read_bytes()
    if not dst.is_file() or dst.read_bytes() != data:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)


def run_study(p: Paths, runner: Runner, batch_size: int, calib_k: int, budget_s: float = BUDGET_S, jobs: int = 1,
              keep: Path | None = None) -> dict[str, Any]:
    """Every step of the study in order; returns WORK/study.json's content (also written there)."""
    run_setup(p, runner)
    arms = {a.key: a for a in study_arms()}
    sps = measure(p, runner, [arms["B"]], calib_k, batch_size)
    doc: dict[str, Any] = {"arms": {k: {"title": a.title, "train": list(a.train or []), "infer": list(a.infer)}
                                    for k, a in arms.items()},
                           "budget_s": budget_s, "s_per_step_B": sps.get("B"), "jobs": jobs,
                           "vae": str(p.vae_dir)}
    if "B" in sps:
        steps = study_steps(sps["B"], budget_s)
        run_chains(runner, arm_chains(p, list(arms.values()), steps, tuple(SEEDS), keep), jobs)
        reports = {k: load_reports(p, a) for k, a in arms.items()}
        seeds = tuple(SEEDS)
        if needs_third_seed(reports["B"], reports["B0"]):
            seeds += (THIRD_SEED,)
            run_chains(runner, arm_chains(p, [arms["B"], arms["B0"]], steps, (THIRD_SEED,), keep), jobs)
            reports.update({k: load_reports(p, arms[k], seeds) for k in ("B", "B0")})
        doc.update(steps=steps, seeds=list(seeds), pressure=pressure_verdict(reports["B"], reports["B0"]),
                   comparisons={"B vs B0": compare(reports["B"], reports["B0"]),
                                "B vs A": compare(reports["B"], reports["A"]),
                                "B+ vs B": compare(reports["B+"], reports["B"])})
    doc["not_run"] = runner.skipped_for_time
    (p.work / "study.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return doc


def study_reports(p: Paths, doc: dict[str, Any]) -> dict[str, list[dict[str, Any] | None]]:
    """Each arm's reports for the seeds the study ran (study.json's ``seeds``; a third seed only for B and B0)."""
    seeds = tuple(doc.get("seeds", SEEDS))
    return {a.key: load_reports(p, a, seeds if a.key in ("B", "B0") else tuple(SEEDS)) for a in study_arms()}


def runs_load(log: Log) -> str:
    """The load average as the study's training and eval steps finished (WORK/commands.jsonl), as a phrase."""
    loads = [r["load1"] for r in log.records if r.get("rc") == 0 and r.get("load1") is not None
             and r.get("group") not in ("setup", "calibration")]
    if not loads:
        return "load average not recorded"
    return f"load average {min(loads):.2f}–{max(loads):.2f} as its runs finished, {len(loads)} steps"
