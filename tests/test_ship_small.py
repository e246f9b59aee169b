"""bench/ship_small.py (issue 24 step 3) end to end at the smoke preset's size: every step runs through the real
commands (datagen, trainer, the bench scripts, EGL for the teacher), the packaged model is float16 and loads, the
card names every kept report, a second run repeats no step, and nothing is written outside the work dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench_scripts import load_bench

ROOT = Path(__file__).resolve().parents[1]


def _run(work: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "bench" / "ship_small.py"), "--smoke", "--work", str(work),
                           "--threads", "1", *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _utc(stamp: str) -> float:
    from datetime import datetime, timezone

    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def _tracked_outputs() -> dict[str, float]:
    """What a real run writes (models/, the kept reports): every file with its mtime."""
    roots = (ROOT / "models", ROOT / "docs" / "results" / "reports")
    return {str(p): p.stat().st_mtime for r in roots for p in r.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    work = tmp_path_factory.mktemp("ship-small")
    before = _tracked_outputs()
    r = _run(work)
    assert r.returncode == 0, r.stderr[-3000:]
    return work, before, r


def test_every_step_ran_and_the_model_is_packaged_half(shipped):
    import torch

    from trainer.checkpoint import read_checkpoint
    from trainer.sample import load_sampling_model

    work, _, _ = shipped
    log = [json.loads(line) for line in (work / "commands.jsonl").read_text().splitlines()]
    names = [r["name"] for r in log]
    plan = json.loads((work / "kept" / "plan.json").read_text())
    run = f"armB_{plan['steps']}steps"
    # the timed 30 s sample first and alone, then the rest in two chains (their order in the log is their ends')
    assert names[:6] == ["datagen", "vae", "cache-latents", "calibrate-armB", f"{run}-train", f"{run}-sample30"]
    assert sorted(names[6:]) == sorted(f"{run}-{s}" for s in ("eval-val", "eval-val_s1", "eval-real", "style-probe",
                                                               "showcase"))
    spans = {r["name"].removeprefix(f"{run}-"): (_utc(r["finished_utc"]) - r["wall_s"], _utc(r["finished_utc"]))
             for r in log[5:]}
    # nothing else ran beside the timed step (the stamps are whole seconds: 1 s of slack)
    assert spans["sample30"][1] <= min(a for k, (a, _) in spans.items() if k != "sample30") + 1.0
    (a0, b0), (a1, b1) = spans["eval-val"], spans["eval-val_s1"]
    assert min(b0, b1) - max(a0, a1) > 0.5 * min(b0 - a0, b1 - a1) - 1.0  # the two val evals ran at once
    summary = json.loads((work / "runs" / run / "summary.json").read_text())
    assert summary["steps"] == plan["steps"] == max(1, round(plan["budget_s"] / plan["s_per_step"]))
    dest = work / "models" / "synesthete-small"
    ckpt = read_checkpoint(dest)
    assert ckpt.step == plan["steps"] and {t.dtype for t in ckpt.tensors["ema"].values()} == {torch.float16}
    model = load_sampling_model(str(dest), "cpu")  # loads into the float32 denoiser
    assert next(model.denoiser.parameters()).dtype == torch.float32
    assert model.cfg.inference.audio_guidance_scale == 2.0  # arm B's sampling setting, written into config.yaml


def test_the_card_names_every_kept_report_and_its_figures(shipped):
    work, _, _ = shipped
    kept, dest = work / "kept", work / "models" / "synesthete-small"
    card = (dest / "MODEL_CARD.md").read_text()
    for name in ("plan.json", "val.json", "val_s1.json", "real_audio.json", "sample30.json", "style_probe.json", "showcase.json"):
        assert (kept / name).is_file() and f"{kept / name}" in card, name
    assert (dest / "contact_sheet.png").read_bytes()[:4] == b"\x89PNG" and "](contact_sheet.png)" in card
    val = json.loads((kept / "val.json").read_text())
    assert val["verdict"]["summary"] in card
    rho = val["variants"]["normal"]["metrics"]["loudness_motion_spearman"]["generated"]["mean"]
    assert f"{rho:.3g}" in card
    for report in ("val.json", "val_s1.json"):  # the packaged model records no latents: the eval was given them
        mem = json.loads((kept / report).read_text())["variants"]["normal"]["metrics"]["memorisation_ratio"]
        assert mem["generated"]["n"] > 0, report
    s30 = json.loads((kept / "sample30.json").read_text())
    assert s30["rc"] == 0 and f"{s30['wall_s']:.3g} s" in card
    assert "Missing" not in card


def test_a_second_run_repeats_no_step_and_nothing_is_written_outside_work(shipped):
    work, before, _ = shipped
    lines = (work / "commands.jsonl").read_text().splitlines()
    r = _run(work)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (work / "commands.jsonl").read_text().splitlines() == lines  # every step skipped, the plan reused
    assert "the plan of" in r.stderr and "skip package" in r.stderr
    assert _tracked_outputs() == before


def test_another_budget_trains_packages_and_evaluates_anew(shipped):
    """A plan for another budget is another run: nothing of the first run's model or reports is reused."""
    work, before, _ = shipped
    first = json.loads((work / "kept" / "plan.json").read_text())
    # five times the first budget, so that the steps differ even at a loaded box's s/step (at 0.01 min the two budgets
    # rounded to the same step count once smoke steps took over 0.8 s)
    r = _run(work, "--minutes", "0.1")
    assert r.returncode == 0, r.stderr[-3000:]
    plan = json.loads((work / "kept" / "plan.json").read_text())
    assert plan["budget_s"] == 6.0 and plan["steps"] != first["steps"]
    names = [json.loads(line)["name"] for line in (work / "commands.jsonl").read_text().splitlines()]
    run = f"armB_{plan['steps']}steps"
    assert f"{run}-train" in names and f"{run}-eval-val" in names and names.count("calibrate-armB") == 2
    dest = work / "models" / "synesthete-small"
    assert json.loads((dest / "latest" / "state.json").read_text())["step"] == plan["steps"]
    for name in ("val.json", "val_s1.json"):
        assert json.loads((work / "kept" / name).read_text())["info"]["step"] == plan["steps"]
    assert f"(step {plan['steps']})" in (dest / "MODEL_CARD.md").read_text()
    assert _tracked_outputs() == before


def test_the_card_says_when_a_training_part_was_stopped_and_resumed():
    sys.path.insert(0, str(ROOT / "bench"))
    from ablation.small_card import stopped_text

    assert stopped_text([{"rc": 0, "wall_s": 10.0}]) == ""
    text = stopped_text([{"rc": -15, "wall_s": 3000.0}, {"rc": 0, "wall_s": 1800.0}])
    assert "1 of them stopped (exit -15)" in text and "resumed" in text


def test_the_style_source_changes_the_run_name_and_one_override_only():
    """--style-source plan: the arm's own overrides plus diffusion.style_source=plan, in a run of its own name, at
    the arm's planned steps (the two style sources compare at equal steps)."""
    ship_small = load_bench("ship_small")
    from ablation.study import study_arms

    arm = {a.key: a for a in study_arms()}["B+"]
    plan = {"steps": 2451}
    assert ship_small.run_name(arm, plan) == "armB+_2451steps"
    assert ship_small.run_name(arm, plan, "plan") == "armB+_plan_2451steps"
    assert ship_small.with_style_source(arm, "posterior") is arm
    planned = ship_small.with_style_source(arm, "plan")
    assert planned.train == arm.train + ("diffusion.style_source=plan",) and planned.infer == arm.infer
    assert "diffusion.style_source=plan" in planned.train_overrides(10, 0)


def test_the_style_guidance_goes_into_the_evals_the_packaged_config_and_its_own_folder():
    ship_small = load_bench("ship_small")
    from ablation.study import study_arms

    arm = {a.key: a for a in study_arms()}["B+"]
    guided = ship_small.with_style_source(arm, "plan", 2.5)
    assert "inference.style_guidance_scale=2.5" in guided.eval_overrides(0)
    assert ship_small.inference_of(guided.infer) == {"audio_guidance_scale": 2.0, "audio_guidance_schedule": "constant",
                                                     "style_guidance_scale": 2.5}
    assert "style_guidance_scale" not in ship_small.inference_of(arm.infer)
    assert ship_small.after_name("armB+_plan_2451steps", 2.5) == "armB+_plan_2451steps_sg2.5"
    assert ship_small.after_name("armB+_plan_2451steps", None) == "armB+_plan_2451steps"
    from shared.config import build_config
    cfg = build_config(overrides=list(guided.eval_overrides(0)))
    assert cfg.inference.style_guidance_scale == 2.5
