"""Issue 24's evidence study, pre-registered: its arms and its decision rule, committed before the first run.

The question: does shuffle pressure make the student follow the music? **B vs B0** answers it (the only difference
is the hinge); **B vs A** says what the whole postmortem recipe does.

Arms (training and sampling overrides over the ``cpu`` preset; equal training steps per arm from a calibrated
s/step worth about 15 minutes of arm B; two seeds, a third where the first two disagree):

* **A**: no pressure, the postmortem's "before": no silence share, no hinge, per-clip normalisation, no audio CFG;
* **B**: the postmortem recipe: silence share 0.3, the debug curriculum, a hinge on x0 with hard negatives
  (weight 0.5), absolute loudness, audio CFG 2;
* **B0**: B with the hinge weight 0 (everything else B's);
* **B+**: B with a stronger hinge (weight 1.0, margin 0.1), the one extra arm, named now.

The rule (:func:`compare`), on the study's normal-music clips (>= 72) and silence clips:

1. The primary metric is loudness → motion Spearman (normal music). For one seed, arm X beats arm Y when the
   difference of their means exceeds the combined 95% half-width ``sqrt(hw_X² + hw_Y²)`` (each arm's bootstrap CI
   over clips, from its report); loses when it is below minus that; otherwise they cannot be told apart.
2. Two seeds: their common verdict. When they differ, a third seed is run (:func:`needs_third_seed`) and the
   majority of the three decides; without a majority (one of each), the arms cannot be told apart.
3. "Shuffle pressure helps" when B beats B0 by this rule; "hurts" when B loses to B0; else "cannot be told
   apart". The same rule reads every other goal metric (:data:`SECONDARY_METRICS`), reported beside it without
   changing the verdict, and the memorisation check flags a model whatever the verdict.
4. The shipped model's goals are the ``study`` group of the one goals table (trainer/eval/goals.py), decided on
   the mean of its seeds (bench/ablation/rule.py's ``goal_value``).

Nothing here changes after the runs: a goal or threshold not met is reported with its figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from trainer.eval.goals import STUDY, goals_in

from .arms import Arm, arms, with_overrides
from .rule import entry

GOALS = goals_in(STUDY)  # the shipped model's goals (issue 24), one table with the eval's verdict
PRIMARY = ("normal", "loudness_motion_spearman")
SECONDARY_METRICS = (("normal", "loudness_brightness_spearman"), ("normal", "bands_colour_geometry_r2"),
                     ("normal", "av_align"), ("normal", "beat_alignment_score"), ("normal", "retrieval_top1"),
                     ("normal", "style_diversity_siblings"), ("silence", "silence_settle_ratio"))
LOWER_IS_BETTER = {"silence_settle_ratio"}
HELPS, HURTS, UNTOLD = "helps", "hurts", "cannot be told apart"


def study_arms() -> tuple[Arm, ...]:
    """A, B, B0 and B+ (the module docstring): A and B are issue 13's arms of those names on this code; B0 and B+
    change only B's hinge."""
    base = {a.key: a for a in arms(legacy=False)}
    a, b = base["A"], base["B"]
    return (
        replace(a, title="no pressure (the postmortem's before): no silence share, no hinge, per-clip normalisation, "
                         "no audio CFG"),
        replace(b, title="the postmortem recipe: silence 0.3, debug curriculum, hard x0 hinge 0.5, absolute loudness, "
                         "audio CFG 2"),
        replace(b, key="B0", title="B with the hinge weight 0 (the only difference from B is the pressure)",
                train=with_overrides(b.train, ("diffusion.audio_shuffle_loss_weight=0",))),
        replace(b, key="B+", title="B with a stronger hinge: weight 1.0, margin 0.1",
                train=with_overrides(b.train, ("diffusion.audio_shuffle_loss_weight=1.0",
                                               "diffusion.audio_shuffle_loss_margin=0.1"))),
    )


@dataclass(frozen=True)
class SeedVerdict:
    """One seed's comparison of arm X with arm Y on one metric."""

    difference: float | None   # X - Y (sign flipped for lower-is-better metrics: > 0 means X is better)
    half_width: float | None   # sqrt(hw_X² + hw_Y²)
    verdict: str               # HELPS (X better), HURTS (X worse) or UNTOLD


def half_width(e: dict[str, Any] | None) -> float | None:
    """Half the width of an entry's 95% CI (None where it has none)."""
    ci = (e or {}).get("ci")
    if not ci or len(ci) != 2 or not all(isinstance(c, (int, float)) and math.isfinite(c) for c in ci):
        return None
    return (ci[1] - ci[0]) / 2


def seed_verdict(x: dict[str, Any] | None, y: dict[str, Any] | None, variant: str, metric: str) -> SeedVerdict:
    """Rule 1 on one seed's two reports: beats / loses / cannot be told apart, by the combined half-width."""
    ex, ey = entry(x, variant, metric), entry(y, variant, metric)
    mx, my = (e.get("mean") if e else None for e in (ex, ey))
    hx, hy = half_width(ex), half_width(ey)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (mx, my)) or hx is None or hy is None:
        return SeedVerdict(None, None, UNTOLD)
    diff = (mx - my) * (-1.0 if metric in LOWER_IS_BETTER else 1.0)
    hw = math.hypot(hx, hy)
    return SeedVerdict(diff, hw, HELPS if diff > hw else HURTS if diff < -hw else UNTOLD)


def combine(verdicts: list[str]) -> str:
    """Rule 2: the seeds' common verdict; of three, the majority; no majority: cannot be told apart."""
    if not verdicts:
        return UNTOLD
    top = max(set(verdicts), key=verdicts.count)
    return top if verdicts.count(top) * 2 > len(verdicts) else UNTOLD


def needs_third_seed(x_reports: list[dict[str, Any] | None], y_reports: list[dict[str, Any] | None]) -> bool:
    """Rule 2: the first two seeds' verdicts on the primary metric disagree (and no third seed was run yet)."""
    if len(x_reports) != 2 or len(y_reports) != 2:
        return False
    a, b = (seed_verdict(x, y, *PRIMARY).verdict for x, y in zip(x_reports, y_reports))
    return a != b


def compare(x_reports: list[dict[str, Any] | None], y_reports: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Arm X against arm Y (their reports seed by seed): the primary verdict and every secondary metric's."""
    def one(variant: str, metric: str) -> dict[str, Any]:
        per_seed = [seed_verdict(x, y, variant, metric) for x, y in zip(x_reports, y_reports)]
        return {"metric": metric, "variant": variant, "verdict": combine([s.verdict for s in per_seed]),
                "per_seed": [{"difference": s.difference, "half_width": s.half_width, "verdict": s.verdict}
                             for s in per_seed]}

    return {"primary": one(*PRIMARY), "secondary": [one(v, m) for v, m in SECONDARY_METRICS]}


def pressure_verdict(b_reports: list[dict[str, Any] | None], b0_reports: list[dict[str, Any] | None]) -> str:
    """Rule 3, the study's answer: "Shuffle pressure helps / hurts / cannot be told apart" (B vs B0)."""
    return f"shuffle pressure {compare(b_reports, b0_reports)['primary']['verdict']}"
