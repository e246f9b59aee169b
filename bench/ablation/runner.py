"""The ablation run: data, VAE and latents once, a calibration run per recipe, then every arm trained and evaluated
with both seeds for an equal wall-clock budget, and arm G made and run from the measured arms. The plan (s/step,
steps, scores, chosen levers) is WORK/plan.json."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from .arms import Arm, arms, combination_arm
from .calibration import calibrate, equal_time_steps, measure, seconds_per_step
from .presets import SEEDS
from .rule import choose_levers, headline_score, read_report, seed_spread
from .steps import Paths, Runner, Step, train_argv


def setup_steps(p: Paths) -> list[Step]:
    """datagen, the VAE (unless ``p.vae`` names a trained one) and the latents."""
    data, vae, lat = p.work / "data", p.vae_dir, p.work / "latents"
    train_vae = [] if p.vae is not None else [
        Step("vae", [p.py, "-m", "trainer", "vae", *p.c, "--data", str(data), "--out", str(vae)],
             vae / "summary.json", "setup")]
    return [
        Step("datagen", [p.py, "-m", "datagen", "run", *p.c, "--out", str(data), "--no-progress"],
             data / "summary.json", "setup"),
        *train_vae,
        Step("cache-latents", [p.py, "-m", "trainer", "cache-latents", *p.c, "--data", str(data), "--vae", str(vae),
                               "--out", str(lat)], lat / "manifest.json", "setup"),
    ]


def arm_steps(p: Paths, arm: Arm, steps: int, seeds: tuple[int, ...] = SEEDS) -> list[Step]:
    """Train (when the arm trains) and evaluate one arm for every seed (nothing for G as a copy of C or F)."""
    out: list[Step] = []
    if arm.same_as:
        return out
    for seed in seeds:
        if arm.train is not None:
            run = p.run_dir(arm, seed)
            out.append(Step(f"{arm.slug}_s{seed}-train", train_argv(p, run, arm.train_overrides(steps, seed)),
                            run / "summary.json", arm.key))
        ckpt = p.work / f"arm{arm.ckpt_of}_s{seed}" if arm.ckpt_of else p.run_dir(arm, seed)
        out.append(Step(f"{arm.slug}_s{seed}-eval", [p.py, "-m", "trainer", "eval", *p.c, "--checkpoint", str(ckpt),
                                                    "--data", str(p.work / "data"), "--out", str(p.eval_dir(arm, seed)),
                                                    *arm.eval_overrides(seed)],
                        p.report(arm, seed), arm.key))
    return out


def load_reports(p: Paths, arm: Arm, seeds: tuple[int, ...] = SEEDS) -> list[dict[str, Any] | None]:
    """The arm's report.json per seed (None where it was not made)."""
    return [read_report(p.report(replace(arm, key=arm.same_as) if arm.same_as else arm, seed)) for seed in seeds]


def run_setup(p: Paths, runner: Runner) -> None:
    """datagen, VAE and latents, in order (what is left out for time stops the chain)."""
    for step in setup_steps(p):
        if not runner.run(step):
            break


def run_arms(p: Paths, runner: Runner, arm_list: list[Arm], steps: dict[str, int],
             seeds: tuple[int, ...] = SEEDS) -> None:
    """Train and evaluate each arm whose training recipe has its steps (calibrated)."""
    for arm in arm_list:
        k = arm.ckpt_of or arm.key
        if k in steps:
            for step in arm_steps(p, arm, steps[k], seeds):
                runner.run(step)


def run_combination(p: Paths, runner: Runner, g: Arm, sps: dict[str, float], steps: dict[str, int],
                    preset_steps: int, batch_size: int, calib_k: int) -> None:
    """Arm G: its calibration when it trains (its s/step and steps join ``sps`` and ``steps``), then its runs."""
    if g.train is not None:
        run = calibrate(p, runner, g, calib_k)
        if run is not None and "B" in sps:
            sps["G"] = seconds_per_step(run, batch_size)
            steps["G"] = equal_time_steps({"B": sps["B"], "G": sps["G"]}, preset_steps)["G"]
    run_arms(p, runner, [g], steps)


def plan_doc(sps: dict[str, float], steps: dict[str, int], preset_steps: int, calib_k: int,
             scores: dict[str, float | None], spreads: dict[str, float], g: Arm | None, not_run: list[str]
             ) -> dict[str, Any]:
    """WORK/plan.json's content."""
    return {"s_per_step": sps, "steps": steps, "budget_s": preset_steps * sps["B"] if "B" in sps else None,
            "reference": {"arm": "B", "steps": preset_steps}, "calibration_steps": calib_k, "seeds": list(SEEDS),
            "headline_scores": scores, "seed_spreads": spreads,
            "chosen_levers": None if g is None else choose_levers(scores, spreads),
            "G": None if g is None else {"title": g.title, "train": list(g.train or []), "infer": list(g.infer),
                                         "ckpt_of": g.ckpt_of, "same_as": g.same_as},
            "not_run": not_run}


def run_ablation(p: Paths, runner: Runner, preset_steps: int, batch_size: int, calib_k: int, tune: bool
                 ) -> dict[str, Any]:
    """Every step in order; returns the plan (arms, s/step, steps, chosen levers) also written to WORK/plan.json."""
    run_setup(p, runner)
    all_arms = arms(tune)
    sps = measure(p, runner, [a for a in all_arms if a.train is not None], calib_k, batch_size)
    steps = equal_time_steps(sps, preset_steps) if "B" in sps else {}
    run_arms(p, runner, all_arms, steps)
    scores = {a.key: headline_score(load_reports(p, a)) for a in all_arms}
    spreads = {a.key: seed_spread(load_reports(p, a)) for a in all_arms}
    measured = all(all(r is not None for r in load_reports(p, a)) for a in all_arms if a.key in "CDEF")
    g = None
    if measured:
        g = combination_arm(choose_levers(scores, spreads), all_arms)
        run_combination(p, runner, g, sps, steps, preset_steps, batch_size, calib_k)
        scores["G"] = headline_score(load_reports(p, g))
    plan = plan_doc(sps, steps, preset_steps, calib_k, scores, spreads, g, runner.skipped_for_time)
    (p.work / "plan.json").write_text(json.dumps(plan, indent=2), encoding="utf-8")
    return plan
