"""The verdict block of the eval reports (trainer/eval/verdict.py) read from the one goals table
(trainer/eval/goals.py): met / not met / undecided on the CIs, the rows that cannot apply, the VAE warning floor."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from trainer.eval.goals import ABLATION, GOALS, VERDICT, Goal, goals_in
from trainer.eval.verdict import VAE_WARNING_DB, judge, not_applicable, vae_check, verdict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def e(mean, ci=None, n=8):
    return {"mean": mean, "ci": ci, "n": n}


def row(gen, floor=None, ceiling=None, note=None):
    return {"generated": gen, "floor": floor, "ceiling": ceiling, "note": note}


SPEARMAN = Goal("loudness → motion Spearman", "normal", "loudness_motion_spearman", "ground truth", 0.8)
ABOVE_FLOOR = Goal("above floor", "normal", "loudness_motion_spearman", "floor", 1.0)
SETTLE = Goal("settle", "silence", "silence_settle_ratio", "absolute", 0.1, lower=True)
TOP1 = Goal("top-1", "normal", "retrieval_top1", "chance", 3.0)


def test_the_ablation_reads_the_same_table_unchanged():
    """bench/ablation's goals are the table's ablation group: issue 13's five, in order, with the rules its
    RESULTS.md and model cards print."""
    from ablation import rule

    assert rule.GOALS == goals_in(ABLATION) and all(g in GOALS for g in rule.GOALS)
    assert [(g.title, g.variant, g.metric, g.rule) for g in rule.GOALS] == [
        ("loudness → motion Spearman", "normal", "loudness_motion_spearman", "≥ 0.8 × ground truth"),
        ("bands → colour/geometry R²", "normal", "bands_colour_geometry_r2", "≥ 0.5 × ground truth"),
        ("retrieval top-1", "normal", "retrieval_top1", "≥ 3 × chance"),
        ("style diversity at fixed audio", "normal", "style_diversity_siblings", "≥ 0.5 × ground truth"),
        ("settle ratio (silence clips)", "silence", "silence_settle_ratio", "≤ 0.1")]
    # the siblings fallback moved into the table: the ablation reads style_diversity without sibling groups
    rep = {"variants": {"normal": {"metrics": {"style_diversity_siblings": row(e(0.1), None, e(None, n=0)),
                                               "style_diversity": row(e(0.1), None, e(0.3))}}}}
    assert rule.goal_metric(rule.GOALS[3], rep) == "style_diversity"
    assert {g.variant for g in goals_in(VERDICT)} == {"normal", "silence", "audio_dir"}
    assert all(g.meaning for g in goals_in(VERDICT)), "every verdict goal says what it means in one line"


@pytest.mark.parametrize("goal, r, status", [
    # >= 0.8 x ceiling: target interval 0.8 x [0.25, 0.35] = [0.2, 0.28]
    (SPEARMAN, row(e(0.32, [0.29, 0.35]), ceiling=e(0.3, [0.25, 0.35])), "met"),
    (SPEARMAN, row(e(0.1, [0.05, 0.15]), ceiling=e(0.3, [0.25, 0.35])), "not met"),
    (SPEARMAN, row(e(0.25, [0.1, 0.4]), ceiling=e(0.3, [0.25, 0.35])), "undecided"),   # the CIs overlap
    (SPEARMAN, row(e(0.5, None, n=1), ceiling=e(0.3, [0.25, 0.35])), "undecided"),     # n = 1: no CI
    (SPEARMAN, row(e(0.5, [0.4, 0.6]), ceiling=e(0.8, None, n=1)), "undecided"),       # the ceiling is one sample
    (SPEARMAN, row(e(0.5, [0.4, 0.6]), ceiling=None), "n/a"),                         # no ceiling here
    (SPEARMAN, row(e(0.5, [0.4, 0.6]), ceiling=e(-0.1, [-0.2, 0.0])), "n/a"),         # no target from <= 0
    (SPEARMAN, row(e(None, n=0), ceiling=e(0.3, [0.25, 0.35]), note="undefined"), "n/a"),
    # above the floor means above it: level with it is not met
    (ABOVE_FLOOR, row(e(0.2, [0.1, 0.3]), floor=e(0.0, [-0.05, 0.05])), "met"),
    (ABOVE_FLOOR, row(e(0.0, [-0.1, 0.05]), floor=e(0.1, [0.05, 0.15])), "not met"),
    (ABOVE_FLOOR, row(e(0.1, [0.0, 0.2]), floor=e(0.05, [-0.05, 0.1])), "undecided"),
    (ABOVE_FLOOR, row(e(0.6, [0.55, 0.7]), floor=e(0.5, None, n=4)), "met"),         # a chance floor: exact
    # <= 0.1
    (SETTLE, row(e(0.05, [0.03, 0.08])), "met"),
    (SETTLE, row(e(0.5, [0.3, 0.7])), "not met"),
    (SETTLE, row(e(0.1, [0.05, 0.15])), "undecided"),
    # >= 3 x chance 1/8
    (TOP1, row(e(0.5, [0.4, 0.6]), floor=e(0.125, None, n=8)), "met"),
    (TOP1, row(e(0.25, [0.125, 0.3]), floor=e(0.125, None, n=8)), "not met"),
])
def test_judge(goal, r, status):
    j = judge(goal, r)
    assert j["status"] == status, j
    assert j["n"] == r["generated"]["n"] and j["rule"] == goal.rule and j["why"]


def test_not_applicable_rows_are_those_the_audio_cannot_have():
    none = e(None, n=0)
    metrics = {"silence_settle_ratio": row(none, none, none, "no clip with a labelled silence segment"),
               "dropout_return": row(e(1.0, [0.9, 1.1]), e(1.0), e(2.0)),
               "bands_colour_geometry_r2": row(none, none, none, "needs >= 2 clips with distinct audio"),
               "settle_ratio": row(none, None, None, "0 of 3 files have detected silence")}
    assert not_applicable(metrics) == {"silence_settle_ratio": "no clip with a labelled silence segment",
                                       "settle_ratio": "0 of 3 files have detected silence"}
    # the VAE diagnostic's rows are keyed by kind
    assert not_applicable({"dropout_return": {"input_own": none, "output_own": none}}) == {
        "dropout_return": "no clip has a track-dropout segment"}


def test_vae_warning_floor():
    assert VAE_WARNING_DB == 20.0
    bad = vae_check(11.2, "the debug clips")
    assert bad["broken"] and "VAE broken" in bad["text"] and "11.2 dB" in bad["text"]
    assert not vae_check(24.0, "x")["broken"] and vae_check(None, "x") is None
    rep = {"variants": {"normal": {"metrics": {"loudness_motion_spearman": row(
        e(0.3, [0.25, 0.35]), e(0.0, [-0.05, 0.05]), e(0.3, [0.28, 0.32]))}}}}
    v = verdict(rep, 11.2, "the debug clips")
    assert v["warnings"] == [bad["text"]] and v["vae"]["psnr_db"] == 11.2
    assert verdict(rep, 31.0, "x")["warnings"] == []


def test_verdict_answers_for_the_variants_it_has():
    rep = {"variants": {"normal": {"metrics": {
        "loudness_motion_spearman": row(e(0.3, [0.27, 0.35]), e(0.0, [-0.05, 0.05]), e(0.3, [0.28, 0.32])),
        "retrieval_top1": row(e(0.2, [0.1, 0.3]), e(0.125, None, 8), None),
        "silence_settle_ratio": row(e(None, n=0), e(None, n=0), e(None, n=0), "no clip with a labelled silence segment")}}}}
    v = verdict(rep)
    assert v["question"] == "Does it follow the music?"
    assert {g["variant"] for g in v["goals"]} == {"normal"}, "no goal of a variant the report does not have"
    status = {g["goal"]: g["status"] for g in v["goals"]}
    assert status == {"loudness → motion Spearman": "met", "bands → colour/geometry R²": "n/a",
                      "retrieval top-1": "not met", "style diversity at fixed audio": "n/a",
                      "loudness → motion above floor": "met", "not replaying training clips": "n/a"}
    assert v["answer"] == "partly" and v["summary"].startswith("Partly: 2 of 3 goals met, 1 not met")
    assert v["not_applicable"] == {"normal": {"silence_settle_ratio": "no clip with a labelled silence segment"}}
    assert verdict({"variants": {}})["answer"] == "n/a"
