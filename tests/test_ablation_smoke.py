"""bench/responsiveness_ablation.py --preset smoke, end to end: real datagen, VAE, latents, calibration runs, two
seeds of every arm, the per-variant eval, arm G chosen from the measured arms, RESULTS.md.

The smoke preset proves the plumbing only (16 px, a dozen clips, a few steps per model): its numbers mean nothing,
but every figure of RESULTS.md must be the one its report.json files give, and a partial run must say it is partial.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "responsiveness_ablation.py"


def _ab():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import responsiveness_ablation as ab
    finally:
        sys.path.pop(0)
    return ab


def _run(work: Path, results: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--preset", "smoke", "--work", str(work),
                           "--results", str(results), *extra], cwd=ROOT, capture_output=True, text=True, timeout=600)


def _section(md: str, heading: str) -> list[list[str]]:
    """The table rows (cells) under ``heading`` up to the next heading, header and rule rows left out."""
    lines = md.splitlines()
    i = lines.index(heading)
    rows = []
    for line in lines[i + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("| ") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header row


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_ablation_end_to_end(tmp_path):
    ab = _ab()
    work, results = tmp_path / "work", tmp_path / "RESULTS.md"
    r = _run(work, results)
    assert r.returncode == 0, r.stderr[-3000:]
    md = results.read_text()
    plan = json.loads((work / "plan.json").read_text())
    assert "PARTIAL" not in md and "not run (session time)" not in md

    # equal wall-clock: each arm's steps are B's budget over its calibrated s/step
    assert plan["steps"] == ab.equal_time_steps(plan["s_per_step"], 3)
    log = [json.loads(x) for x in (work / "commands.jsonl").read_text().splitlines()]
    assert all(x["rc"] == 0 and x["wall_s"] > 0 for x in log)
    names = {x["name"] for x in log}
    assert not ab.legacy_loader()  # this code has the mix-knob fix: C's config is B's, so C is B's runs
    assert not any(x["name"].startswith(("armC", "calibrate-armC", "armF")) and x["name"].endswith("-train")
                   or x["name"] == "calibrate-armC" for x in log)
    for key in "ABDE":
        assert f"calibrate-arm{key}" in names
        for seed in (0, 1):
            cmd = next(x["command"] for x in log if x["name"] == f"arm{key}_s{seed}-train")
            assert f"run.seed={seed}" in cmd and f"diffusion.steps={plan['steps'][key]}" in cmd
            assert "reweight_variants" not in cmd
    f_eval = next(x["command"] for x in log if x["name"] == "armF_s1-eval")
    assert "--checkpoint" in f_eval and "armB_s1 " in f_eval and "inference.audio_guidance_schedule=interval" in f_eval
    b_cmd = next(x["command"] for x in log if x["name"] == "armB_s0-train")
    assert "data.audio_silence_mix_prob=0.3" in b_cmd and "data.audio_debug_mix_schedule_steps=" in b_cmd
    assert "diffusion.audio_shuffle_loss_type=infonce" in next(x["command"] for x in log if x["name"] == "armE_s0-train")

    # arm G: the rule recomputed from the reports gives the plan's levers
    arms = {a.key: a for a in ab.plan_arms(plan, False)}
    p = ab.Paths(work, work / "ablation.yaml")
    reps = {k: ab.load_reports(p, a) for k, a in arms.items()}
    scores = {k: ab.headline_score(rs) for k, rs in reps.items() if k != "G"}
    spreads = {k: ab.seed_spread(rs) for k, rs in reps.items() if k != "G"}
    assert plan["chosen_levers"] == ab.choose_levers(scores, spreads)
    assert arms["G"].title.startswith("best combination: C")

    # RESULTS.md: the goal table first, then one table per goal, each cell from the arm's two report.json files
    assert md.index("## Goal (issue 13): arm G") < md.index("## Normal-music goal metrics")
    goal_rows = _section(md, next(line for line in md.splitlines() if line.startswith("## Goal (issue 13)")))
    assert [row[0] for row in goal_rows[:len(ab.GOALS)]] == [g.title for g in ab.GOALS]
    for row in goal_rows[:len(ab.GOALS)]:
        assert row[-1].startswith(("met (", "not met (", "n/a"))
    for goal in ab.GOALS:
        rows = {row[0]: row for row in _section(md, f"### {goal.title}: goal {goal.rule} ({goal.variant} clips)")}
        assert sorted(rows) == list("ABCDEFG")
        for key, row in rows.items():
            gv = ab.goal_value(goal, reps[key])
            per_seed = [ab.value(rp, goal.variant, gv.metric) for rp in reps[key]]
            assert row[2] == ab.fmt(ab.mean_of(per_seed)), (goal.metric, key, row)
            assert row[3] == ab.entry_text(ab.entry(reps[key][0], goal.variant, gv.metric))
            assert row[4] == ab.entry_text(ab.entry(reps[key][1], goal.variant, gv.metric))
            assert row[6] == ab.fmt(gv.target) and row[7] == ab.met_text(gv)
    # the normal-music figures are real: two normal clips give a retrieval chance of 1/2 as the floor
    assert ab.value(reps["C"][0], "normal", "retrieval_top1", "floor") == pytest.approx(0.5)
    cost = {row[0]: row for row in _section(md, "## Cost per arm (equal wall-clock)")}
    assert cost["E"][2] == str(plan["steps"]["E"]) and cost["F"][2].endswith("(arm B's)")
    assert cost["C"][2].endswith("(arm B's)")
    tries = _section(md, "## Every try")
    assert len(tries) == len(log) and all(row[1] == "0" for row in tries)

    # resumable: a second run runs nothing and writes the same tables
    r2 = _run(work, results)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert len((work / "commands.jsonl").read_text().splitlines()) == len(log)
    assert results.read_text().split("## Arms")[0] == md.split("## Arms")[0]

    # partial: without arm E's second seed and no time left, E and G read "not run (session time)"
    part = tmp_path / "partial"
    shutil.copytree(work, part, symlinks=True)
    shutil.rmtree(part / "eval" / "armE_s1")
    r3 = _run(part, tmp_path / "PARTIAL.md", "--stop-after", "0")
    assert r3.returncode == 0, r3.stderr[-3000:]
    pmd = (tmp_path / "PARTIAL.md").read_text()
    assert "**PARTIAL: arms E, G not run (session time).**" in pmd
    rows = {row[0]: row for row in _section(pmd, "### retrieval top-1: goal ≥ 3 × chance (normal clips)")}
    assert rows["E"][1] == "not run (session time)" and rows["D"][1] != "not run (session time)"
    assert "## Goal (issue 13): arm G not run (session time)" in pmd
    assert any(row[0] == "armE_s1-eval" and row[1] == "not run (session time)" for row in _section(pmd, "## Every try"))

    # the ship study on the same work dir: a candidate x 2 seeds, the rule, the packaged model, its card, the section
    models = tmp_path / "models"
    r4 = _run(work, results, "--ship", "tiny-test", "--ship-candidates", "smoke", "--models", str(models))
    assert r4.returncode == 0, r4.stderr[-3000:]
    dest = models / "tiny-test"
    log = [json.loads(x) for x in (work / "commands.jsonl").read_text().splitlines()]
    ship_cmds = {x["name"]: x["command"] for x in log if x["group"] == "ship"}
    assert all(x["rc"] == 0 for x in log if x["group"] == "ship")
    for seed in (0, 1):  # the lever reaches training and every eval of its checkpoints
        assert "diffusion.width=16" in ship_cmds[f"ship-smoke_s{seed}-train"]
        assert "diffusion.width=16" in ship_cmds[f"ship-smoke_s{seed}-eval-g2-constant"]
        assert f"inference.seed={seed + 2}" in ship_cmds[f"ship-smoke_s{seed}-eval-g2-constant-confirm"]
    import yaml

    from trainer.checkpoint import read_checkpoint

    cfg = yaml.safe_load((dest / "config.yaml").read_text())["config"]
    assert cfg["diffusion"]["width"] == 16 and cfg["inference"]["audio_guidance_scale"] == 2
    shipped = read_checkpoint(dest / "latest", names=["ema"])  # listed: loads checked, without the warning
    assert shipped.step == 4 and "files" in json.loads((dest / "latest" / "state.json").read_text())
    card = (dest / "MODEL_CARD.md").read_text()
    assert card.index("## Evaluation: normal music") < card.index("## Silence clips") < card.index("## Goal (issue 13)")
    md2 = results.read_text()
    assert md2.split("## Shipped model")[0].split("## Arms")[0] == md.split("## Arms")[0]
    rows = _section(md2, "### Every pair (mean of the seeds, seed 0 / seed 1 in brackets)")
    assert len(rows) == 1 and rows[0][0] == "smoke **(shipped)**"
    reps = [json.loads((work / "eval" / "ship" / f"smoke_s{s}" / "g2-constant" / "report.json").read_text())
            for s in (0, 1)]
    assert rows[0][4].startswith(ab.fmt(ab.headline_score(reps)) + " (")


@pytest.mark.parametrize("preset", ["smoke", "cpu", "h100"])
def test_every_preset_and_arm_is_a_valid_config(preset, tmp_path):
    ab = _ab()
    from shared.config import build_config

    cfg_file = ab.resolved_config(preset, [], tmp_path / "ablation.yaml")
    base = build_config([cfg_file])
    for legacy in (False, True):  # the arms as this code runs them, and as code before the mix-knob fix would
        _check_arms(ab, build_config, cfg_file, ab.arms(tune=True, legacy=legacy))
    # the generated data holds debug clips for the curriculum and silence clips for every arm but A
    assert base.data.audio_debug_mix_prob > ab.FINAL_DEBUG_PROB and base.data.audio_silence_mix_prob >= 0.3


def _check_arms(ab, build_config, cfg_file, all_arms):
    # G for every subset of levers, too
    all_arms += [ab.combination_arm(list(c), all_arms) for n in range(4) for c in itertools.combinations("DEF", n)]
    for arm in all_arms:
        trained = arm if arm.train is not None else next(a for a in all_arms if a.key == arm.ckpt_of)
        cfg = build_config([cfg_file], overrides=trained.train_overrides(77, 1) + arm.eval_overrides(1))
        assert cfg.diffusion.steps == 77 and cfg.run.seed == 1 and cfg.inference.seed == 1
        if arm.key == "A":
            assert cfg.diffusion.audio_shuffle_loss_weight == 0 and cfg.data.audio_silence_mix_prob == 0
            assert cfg.inference.audio_guidance_scale == 1
        else:  # every other arm keeps today's pressure and mix, and the curriculum over half the steps
            assert cfg.diffusion.audio_shuffle_loss_weight > 0 and cfg.data.audio_silence_mix_prob == 0.3
            assert cfg.data.audio_debug_mix_schedule_steps == 77 // 2


def test_equal_time_steps_and_the_combination_rule():
    ab = _ab()
    # InfoNCE at twice B's s/step gets half B's steps; a faster arm gets more
    assert ab.equal_time_steps({"B": 0.2, "E": 0.4, "A": 0.1}, 600) == {"B": 600, "E": 300, "A": 1200}

    def rep(spearman, gt, top1, chance):
        return {"variants": {"normal": {"metrics": {
            "loudness_motion_spearman": {"generated": {"mean": spearman}, "ceiling": {"mean": gt}},
            "retrieval_top1": {"generated": {"mean": top1}, "floor": {"mean": chance}}}}}}

    # shares: min(1, 0.2 / (0.8 * 0.5)) = 0.5 and min(1, 0.5 / (3 * 0.125)) = 1 -> 0.75
    assert ab.headline_score([rep(0.2, 0.5, 0.5, 0.125)]) == pytest.approx(0.75)
    c = [rep(0.2, 0.5, 0.25, 0.125), rep(0.2, 0.5, 0.25, 0.125)]       # score 0.5833, no spread
    d = [rep(0.3, 0.5, 0.25, 0.125), rep(0.3, 0.5, 0.25, 0.125)]       # 0.7083: beats C
    e = [rep(0.4, 0.5, 0.25, 0.125), rep(0.0, 0.5, 0.25, 0.125)]       # mean 0.5833 + 0, spread large: no
    scores = {k: ab.headline_score(v) for k, v in {"C": c, "D": d, "E": e}.items()}
    spreads = {k: ab.seed_spread(v) for k, v in {"C": c, "D": d, "E": e}.items()}
    assert ab.choose_levers(scores, spreads) == ["D"]
    g = ab.combination_arm(["D"], ab.arms())
    assert g.train is not None and "diffusion.audio_shuffle_negatives=band_permuted" in g.train
    assert ab.combination_arm([], ab.arms(legacy=True)).same_as == "C"
    assert ab.combination_arm([], ab.arms(legacy=False)).same_as == "B"  # C is B's runs after the mix-knob fix
    assert ab.combination_arm(["F"], ab.arms()).same_as == "F"


def test_the_ship_rule_ranks_pairs_by_headline_score_with_settle_first_and_ties_to_the_cheaper():
    ab = _ab()

    def rep(spearman, settle):
        return {"variants": {
            "normal": {"metrics": {"loudness_motion_spearman": {"generated": {"mean": spearman},
                                                                "ceiling": {"mean": 0.5}}}},
            "silence": {"metrics": {"silence_settle_ratio": {"generated": {"mean": settle}}}}}}

    c2, c4 = ab.SHIP_CANDIDATES["s2000"], ab.SHIP_CANDIDATES["s4000"]
    base = ab.sampling_of(("inference.audio_guidance_scale=2", "inference.audio_guidance_schedule=constant"))
    assert base == ab.Sampling(2.0) and ab.sweep_for(base, c2)[0] == base and len(ab.sweep_for(base, c2)) == 9
    assert ab.sweep_for(base, ab.SHIP_CANDIDATES["w96"]) == [base]
    g4 = ab.Sampling(4.0, "interval")
    assert g4.overrides == ["inference.audio_guidance_scale=4", "inference.audio_guidance_schedule=interval"]
    pairs = [ab.Pair(c2, base, [rep(0.2, 0.05), rep(0.2, 0.05)]),     # score 0.5, settles
             ab.Pair(c2, g4, [rep(0.4, 0.3), rep(0.4, 0.3)]),         # score 1, but does not settle
             ab.Pair(c4, base, [rep(0.2, 0.05), rep(0.2, 0.07)]),     # ties the first pair: the cheaper one wins
             ab.Pair(c4, g4, [rep(0.3, 0.05), None])]                 # one seed only: not ranked
    assert [q.key for q in ab.rank_pairs(pairs)] == ["s2000 / g2-constant", "s4000 / g2-constant",
                                                     "s2000 / g4-interval"]
