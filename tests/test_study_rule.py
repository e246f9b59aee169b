"""bench/ablation/study.py: issue 24's pre-registered arms and decision rule, on hand-built reports."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from ablation import study as St  # noqa: E402


def report(motion: float, hw: float, settle: float = 0.05, settle_hw: float = 0.01) -> dict:
    """A report.json with the primary metric and the settle ratio (the rest absent)."""
    def e(m, h):
        return {"mean": m, "ci": [m - h, m + h], "n": 72}
    return {"variants": {"normal": {"metrics": {"loudness_motion_spearman": {"generated": e(motion, hw)}}},
                         "silence": {"metrics": {"silence_settle_ratio": {"generated": e(settle, settle_hw)}}}}}


def test_one_seed_decides_by_the_combined_half_width():
    v = St.seed_verdict(report(0.50, 0.03), report(0.40, 0.04), *St.PRIMARY)
    assert math.isclose(v.difference, 0.10) and math.isclose(v.half_width, 0.05) and v.verdict == St.HELPS
    assert St.seed_verdict(report(0.40, 0.04), report(0.50, 0.03), *St.PRIMARY).verdict == St.HURTS
    assert St.seed_verdict(report(0.44, 0.03), report(0.40, 0.04), *St.PRIMARY).verdict == St.UNTOLD  # 0.04 < 0.05
    assert St.seed_verdict(None, report(0.40, 0.04), *St.PRIMARY).verdict == St.UNTOLD  # a missing report decides nothing
    # lower is better for the settle ratio: a smaller ratio is the better arm
    assert St.seed_verdict(report(0.5, 0.03, settle=0.02), report(0.5, 0.03, settle=0.2), "silence",
                           "silence_settle_ratio").verdict == St.HELPS


@pytest.mark.parametrize("verdicts, out", [([St.HELPS, St.HELPS], St.HELPS), ([St.HURTS, St.HURTS], St.HURTS),
                                           ([St.HELPS, St.UNTOLD], St.UNTOLD), ([St.HELPS, St.HURTS, St.HELPS], St.HELPS),
                                           ([St.HELPS, St.HURTS, St.UNTOLD], St.UNTOLD), ([], St.UNTOLD)])
def test_seeds_combine_by_agreement_then_majority(verdicts, out):
    assert St.combine(verdicts) == out


def test_a_third_seed_only_when_the_first_two_disagree():
    b = [report(0.50, 0.03), report(0.41, 0.03)]
    b0 = [report(0.40, 0.03), report(0.40, 0.03)]
    assert St.needs_third_seed(b, b0)  # seed 0 helps, seed 1 cannot tell
    assert not St.needs_third_seed(b[:1] * 2, b0)
    assert not St.needs_third_seed(b + b[:1], b0 + b0[:1])  # three seeds: decided by the majority
    assert St.pressure_verdict(b + b[:1], b0 + b0[:1]) == "shuffle pressure helps"
    out = St.compare(b, b0)
    assert out["primary"]["verdict"] == St.UNTOLD and len(out["primary"]["per_seed"]) == 2
    assert [s["verdict"] for s in out["primary"]["per_seed"]] == [St.HELPS, St.UNTOLD]


def test_the_arms_differ_as_registered():
    arms = {a.key: a for a in St.study_arms()}
    assert list(arms) == ["A", "B", "B0", "B+"]
    b, b0, bp = (dict(o.split("=", 1) for o in arms[k].train) for k in ("B", "B0", "B+"))
    assert {k for k in b.keys() | b0.keys() if b.get(k) != b0.get(k)} == {"diffusion.audio_shuffle_loss_weight"}
    assert b0["diffusion.audio_shuffle_loss_weight"] == "0" and arms["B0"].infer == arms["B"].infer
    assert (bp["diffusion.audio_shuffle_loss_weight"], bp["diffusion.audio_shuffle_loss_margin"]) == ("1.0", "0.1")
    a = dict(o.split("=", 1) for o in arms["A"].train)
    assert a["data.audio_silence_mix_prob"] == "0" and a["diffusion.audio_shuffle_loss_weight"] == "0"
    assert "inference.audio_guidance_scale=1" in arms["A"].infer and not arms["A"].curriculum
    assert [g.title for g in St.GOALS][:2] == ["loudness → motion Spearman", "bands → colour/geometry R²"]
    assert {g.metric: g.factor for g in St.GOALS}["retrieval_top1"] == 5.0
