"""The decision rule: issue 13's goals (the ablation group of the one goals table, trainer/eval/goals.py) read from
an arm's report.json files (one per seed), the headline score that ranks arms, and the choice of the levers that
join arm G."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.eval.goals import ABLATION, Goal, goals_in

from .arms import LEVERS
from .text import fmt

GOALS = goals_in(ABLATION)  # issue 13's goals: one table with the eval's verdict (trainer/eval/goals.py)
HEADLINE = [g for g in GOALS if g.variant == "normal"]
SECONDARY = ["loudness_brightness_spearman", "loudness_bright_area_spearman", "av_align", "beat_alignment_score",
             "av_align_proxy", "retrieval_mean_rank", "output_sensitivity_motion", "mean_motion_energy",
             "style_diversity"]


def entry(rep: dict[str, Any] | None, variant: str, name: str, kind: str = "generated") -> dict[str, Any] | None:
    """One ENTRY ({"mean", "ci", "n"}) of a report.json; kind = generated | floor | ceiling. None when absent."""
    if rep is None:
        return None
    row = rep.get("variants", {}).get(variant, {}).get("metrics", {}).get(name)
    e = (row or {}).get(kind)
    return e if isinstance(e, dict) else None


def value(rep: dict[str, Any] | None, variant: str, name: str, kind: str = "generated") -> float | None:
    e = entry(rep, variant, name, kind)
    v = None if e is None else e.get("mean")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def goal_metric(goal: Goal, rep: dict[str, Any] | None) -> str:
    """The report metric a goal reads: style diversity at fixed audio falls back to the across-clips ground
    truth (``style_diversity``) when the data has no sibling groups."""
    if goal.fallback and value(rep, goal.variant, goal.metric, "ceiling") is None:
        return goal.fallback
    return goal.metric


def mean_of(xs: list[float | None]) -> float | None:
    """Mean of the defined values; None when there is none."""
    ok = [x for x in xs if x is not None]
    return sum(ok) / len(ok) if ok else None


@dataclass
class GoalValue:
    generated: float | None   # mean over the seeds
    per_seed: list[float | None]
    target: float | None
    metric: str
    lower: bool = False
    why_none: str = ""  # why there is no target, when there is none

    @property
    def met(self) -> bool | None:
        if self.generated is None or self.target is None:
            return None
        return self.generated <= self.target if self.lower else self.generated >= self.target


def goal_value(goal: Goal, reps: list[dict[str, Any] | None]) -> GoalValue:
    """A goal over one arm's seed reports: generated mean of the seeds, and the target from the reports'
    ground truth / chance (mean over the seeds; the val clips are the same for every seed)."""
    name = goal_metric(goal, next((r for r in reps if r is not None), None))
    per_seed = [value(r, goal.variant, name) for r in reps]
    if goal.reference == "absolute":
        target: float | None = goal.factor
    else:
        ref = mean_of([value(r, goal.variant, name, "ceiling" if goal.reference == "ground truth" else "floor")
                       for r in reps])
        target = None if ref is None or ref <= 0 else goal.factor * ref  # a fraction of a reference <= 0 is no goal
        if target is None:
            return GoalValue(mean_of(per_seed), per_seed, None, name, goal.lower,
                             f"{goal.reference} {'undefined' if ref is None else fmt(ref) + ' ≤ 0'}: no target")
    return GoalValue(mean_of(per_seed), per_seed, target, name, goal.lower)


def headline_score(reps: list[dict[str, Any] | None]) -> float | None:
    """The combination rule's score: the mean over the normal-music goals of min(1, generated / target) (the
    share of each goal reached, capped at the goal), for goals whose target is > 0. None without any."""
    shares = []
    for g in HEADLINE:
        gv = goal_value(g, reps)
        if gv.generated is not None and gv.target is not None and gv.target > 0:
            shares.append(min(1.0, gv.generated / gv.target))
    return sum(shares) / len(shares) if shares else None


def seed_spread(reps: list[dict[str, Any] | None]) -> float:
    """Half the range of the per-seed headline scores (0 when fewer than two are defined)."""
    xs = [x for x in (headline_score([r]) for r in reps) if x is not None]
    return (max(xs) - min(xs)) / 2 if len(xs) >= 2 else 0.0


def choose_levers(scores: dict[str, float | None], spreads: dict[str, float]) -> list[str]:
    """The levers (D, E, F) whose arm's headline score beats arm C's by more than the seed noise: by more than
    the larger of the two arms' seed spreads (:func:`seed_spread`). [] when C has no score."""
    base = scores.get("C")
    if base is None:
        return []
    return [k for k in LEVERS if scores.get(k) is not None
            and scores[k] - base > max(spreads.get(k, 0.0), spreads.get("C", 0.0))]


def read_report(path: Path) -> dict[str, Any] | None:
    """A report.json (None where it was not made)."""
    return json.loads(path.read_text()) if path.is_file() else None
