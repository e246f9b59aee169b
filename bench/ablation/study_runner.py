"""Issue 24's study run (``bench/responsiveness_ablation.py --study``): data and latents once (with the committed
VAE when one is given, else a VAE trained here); arm B's calibrated s/step sets the training steps every arm gets
(the budget, about 15 minutes of arm B by default); arms A, B, B0 and B+ trained and evaluated with both seeds, up to
``jobs`` (arm, seed) chains at once; a third seed of B and B0 where their first two verdicts disagree; each report
copied to ``keep`` as it is written; the verdicts of the rule registered in study.py, written to WORK/study.json."""

from __future__ import annotations

import json
import sys
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
PLAN = "plan.json"  # the calibrated steps per arm, fixed once for the whole study (WORK/ and beside the kept reports)


def study_steps(b_seconds_per_step: float, budget_s: float) -> int:
    """The training steps every arm gets: the budget at arm B's s/step (at least 1)."""
    return max(1, round(budget_s / b_seconds_per_step))


def kept_report_fits(path: Path, run_name: str, steps: int, seed: int) -> bool:
    """A kept report (an earlier session's) stands for this (arm, seed) when it evaluated a checkpoint of ``steps``
    steps in a run dir of this name (arm and training seed) with this sampling seed (the plan it belongs to was
    checked before: :func:`study_plan`)."""
    if not path.is_file():
        return False
    rep = json.loads(path.read_text())
    return (rep.get("info", {}).get("step") == steps and run_name in Path(str(rep.get("checkpoint", ""))).parts
            and rep.get("config", {}).get("inference", {}).get("seed") == seed)


def arm_chains(p: Paths, arms: list[Arm], steps: int, seeds: tuple[int, ...], keep: Path | None) -> list[list[Step]]:
    """One chain per (arm, seed): its training, then its eval, whose report is copied to ``keep`` (when given) as
    ``arm<K>_s<seed>.json`` once it is there. A (arm, seed) whose kept report fits (:func:`kept_report_fits`) is not
    run again: its report is copied back into WORK, so a study spans sessions whose WORK did not survive."""
    chains = []
    for arm in arms:
        for seed in seeds:
            src = p.report(arm, seed)
            dst = keep / f"{arm.slug}_s{seed}.json" if keep is not None else None
            if dst is not None and not src.is_file() and kept_report_fits(dst, p.run_dir(arm, seed).name, steps, seed):
                keep_copy(dst, src)
                print(f"[study] {arm.slug}_s{seed}: the kept report {dst} stands (not run again)", file=sys.stderr)
            chain = arm_steps(p, arm, steps, (seed,))
            if dst is not None and chain:
                chain[-1] = replace(chain[-1], then=lambda src=src, dst=dst: keep_copy(src, dst))
            if src.is_file():  # done (in this WORK, or a kept report copied back): only its copy to keep is left
                chain = chain[-1:]
            chains.append(chain)
    return chains


def keep_copy(src: Path, dst: Path) -> None:
    """Copy a finished report (small JSON) to the tracked folder, unless the same bytes are there."""
    data = src.read_bytes()
    if not dst.is_file() or dst.read_bytes() != data:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)


def complete(reps: list[dict[str, Any] | None]) -> bool:
    """Every seed's report is there (a comparison is only made, and a verdict only given, between complete arms)."""
    return bool(reps) and all(r is not None for r in reps)


def plan_ident(p: Paths, budget_s: float, **extra: Any) -> dict[str, Any]:
    """What a calibrated plan is made for: the resolved config and the VAE weights (sha256), the training budget, and
    the caller's own fields (e.g. the arm and the thread count)."""
    from shared.shards import file_sha256
    from trainer.checkpoint import find_checkpoint

    vae_step = find_checkpoint(p.vae_dir)
    vae_weights = vae_step / "ema.safetensors" if vae_step else None
    return {"config_sha256": file_sha256(p.cfg_file), "budget_s": budget_s,
            "vae_sha256": file_sha256(vae_weights) if vae_weights and vae_weights.is_file() else None, **extra}


def saved_plan(saved: Path | None, ident: dict[str, Any]) -> dict[str, Any] | None:
    """The plan saved at ``saved`` (an earlier session's) when it was made for ``ident``, else None."""
    if saved is None or not saved.is_file():
        return None
    plan = json.loads(saved.read_text())
    if not all(plan.get(k) == v for k, v in ident.items()):
        return None
    print(f"[plan] the plan of {plan.get('calibrated_utc')} stands: {plan['steps']} steps ({saved})", file=sys.stderr)
    return plan


def study_plan(p: Paths, runner: Runner, arm_b: Arm, calib_k: int, batch_size: int, budget_s: float,
               keep: Path | None) -> dict[str, Any] | None:
    """The steps every arm gets, fixed once: an earlier session's plan (``keep``/../plan.json) when it was made for
    the same resolved config, VAE weights and budget, else arm B's calibration now (None when it was left out for
    time). The plan is written to WORK and beside the kept reports."""
    ident = plan_ident(p, budget_s)
    saved = keep.parent / PLAN if keep is not None else None
    plan = saved_plan(saved, ident)
    if plan is not None:
        keep_copy(saved, p.work / PLAN)
        return plan
    sps = measure(p, runner, [arm_b], calib_k, batch_size)
    if "B" not in sps:
        return None
    rec = runner.log.last_ok(f"calibrate-{arm_b.slug}") or {}
    plan = {**ident, "s_per_step_B": sps["B"], "steps": study_steps(sps["B"], budget_s), "calibration_steps": calib_k,
            "calibration_load1": rec.get("load1"), "calibrated_utc": rec.get("finished_utc")}
    (p.work / PLAN).write_text(json.dumps(plan, indent=2), encoding="utf-8")
    if saved is not None:
        keep_copy(p.work / PLAN, saved)
    return plan


# The order the arms' chains start in: the question's pair first (B vs B0), then the whole recipe's baseline,
# then the extra arm, so that a study cut short by time has answered the most.
CHAIN_ORDER = ("B", "B0", "A", "B+")


def run_study(p: Paths, runner: Runner, batch_size: int, calib_k: int, budget_s: float = BUDGET_S, jobs: int = 1,
              keep: Path | None = None) -> dict[str, Any]:
    """Every step of the study in order; returns WORK/study.json's content (also written there)."""
    run_setup(p, runner)
    arms = {a.key: a for a in study_arms()}
    plan = study_plan(p, runner, arms["B"], calib_k, batch_size, budget_s, keep)
    doc: dict[str, Any] = {"arms": {k: {"title": a.title, "train": list(a.train or []), "infer": list(a.infer)}
                                    for k, a in arms.items()},
                           "budget_s": budget_s, "s_per_step_B": plan and plan["s_per_step_B"], "jobs": jobs,
                           "vae": str(p.vae_dir)}
    if plan is not None:
        steps = plan["steps"]
        ordered = [arms[k] for k in CHAIN_ORDER]
        # arm by arm, both seeds of one arm before the next (B s0, B s1, B0 s0, B0 s1, A s0, ...): a study cut short
        # has complete arms to compare, and an arm with one seed decides nothing under the rule
        run_chains(runner, arm_chains(p, ordered, steps, tuple(SEEDS), keep), jobs)
        reports = {k: load_reports(p, a) for k, a in arms.items()}
        seeds = tuple(SEEDS)
        if complete(reports["B"]) and complete(reports["B0"]) and needs_third_seed(reports["B"], reports["B0"]):
            seeds += (THIRD_SEED,)
            run_chains(runner, arm_chains(p, [arms["B"], arms["B0"]], steps, (THIRD_SEED,), keep), jobs)
            reports.update({k: load_reports(p, arms[k], seeds) for k in ("B", "B0")})
        done = {k: sum(r is not None for r in reps) for k, reps in reports.items()}
        doc.update(steps=steps, seeds=list(seeds), reports_done=done,
                   pressure=(pressure_verdict(reports["B"], reports["B0"])
                             if complete(reports["B"]) and complete(reports["B0"]) else
                             f"not decided yet: arms B and B0 have {done['B'] + done['B0']} of "
                             f"{len(reports['B']) + len(reports['B0'])} reports"),
                   comparisons={f"{x} vs {y}": (compare(reports[x], reports[y])
                                                if complete(reports[x]) and complete(reports[y]) else None)
                                for x, y in (("B", "B0"), ("B", "A"), ("B+", "B"))})
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
