"""The verdict block at the top of every eval report: "Does it follow the music?"

Each goal of the ``"verdict"`` group of :data:`trainer.eval.goals.GOALS` whose variant the report has is judged
on that variant's row, with the 95% CIs:

* the target is ``factor`` x the reference (ceiling or chance floor), the floor itself, or an absolute number;
  a reference with a CI gives the target an interval (``factor`` x the reference's CI);
* **met**: the generated CI lies wholly on the goal's side of the target interval; **not met**: wholly on the
  other side; **undecided**: the two overlap, or the generated entry has no CI (n < 2): too few clips to tell;
  **n/a**: the row or its reference is not measured here.

Plus the warnings a reader needs before any number: a VAE whose reconstruction PSNR is below
:data:`VAE_WARNING_DB` is broken (a warning floor, not a quality goal): no generated video can look like the ground
truth through it.

Also which rows cannot apply to a variant (:func:`not_applicable`): metrics that need something of the audio
that none of the variant's clips has (a labelled silence, a track dropout; in a folder, a detected silence).
The report keeps their rows; its tables leave them out and list them once below.
"""

from __future__ import annotations

import math
from typing import Any

from trainer.eval.goals import VERDICT, Goal, goals_in

QUESTION = "Does it follow the music?"
VAE_WARNING_DB = 20.0
# metric -> what the audio must have for it to apply (its row is not applicable where no clip has it)
NEEDS = {"silence_settle_ratio": "a labelled silence segment", "dropout_return": "a track-dropout segment",
         "settle_ratio": "detected silence"}
KINDS = ("generated", "floor", "ceiling")


def _defined(e: Any) -> bool:
    return isinstance(e, dict) and isinstance(e.get("mean"), (int, float)) and math.isfinite(e["mean"])


def not_applicable(metrics: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Rows that cannot apply to this variant: metric -> why (its note), in table order."""
    out = {}
    for name, row in metrics.items():
        if name in NEEDS and not any(_defined(row.get(k)) for k in row if k != "note"):
            out[name] = row.get("note") or f"no clip has {NEEDS[name]}"
    return out


def _interval(e: dict[str, Any], factor: float = 1.0) -> tuple[float, float]:
    ci = e.get("ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
        return factor * float(ci[0]), factor * float(ci[1])
    return factor * float(e["mean"]), factor * float(e["mean"])


def target_of(goal: Goal, row: dict[str, Any]) -> tuple[dict[str, Any] | None, str, str]:
    """({"mean", "ci"} of the target, "", "") or (None, the goal's status without one, why)."""
    if goal.reference == "absolute":
        return {"mean": goal.factor, "ci": None}, "", ""
    kind = "ceiling" if goal.reference == "ground truth" else "floor"
    ref = row.get(kind)
    if not _defined(ref):
        return None, "n/a", f"no {goal.reference if kind == 'ceiling' else kind} here"
    if goal.reference == "ground truth" and ref["mean"] <= 0:
        return None, "n/a", f"ground truth {ref['mean']:.3g} ≤ 0: no target"
    if ref.get("ci") is None and int(ref.get("n") or 0) < 2:  # one sample (a chance level has no CI but n >= 2)
        return None, "undecided", f"the {goal.reference} has n = {ref.get('n', 0)}: too few to set a target"
    lo, hi = _interval(ref, goal.factor)
    return {"mean": goal.factor * float(ref["mean"]), "ci": None if lo == hi else [lo, hi]}, "", ""


def decide(goal: Goal, gen: dict[str, Any], target: dict[str, Any]) -> tuple[str, str]:
    """(status, why) of a generated entry against a target, both with their CIs."""
    if not isinstance(gen.get("ci"), (list, tuple)):
        return "undecided", f"n = {gen.get('n', 0)}: too few to give a CI"
    g_lo, g_hi = _interval(gen)
    t_lo, t_hi = _interval(target)
    strict = goal.reference == "floor"  # above the floor means above, not level with it
    if goal.lower:
        met, missed = g_hi <= t_lo, g_lo > t_hi
    else:
        met = g_lo > t_hi if strict else g_lo >= t_hi
        missed = g_hi <= t_lo if strict else g_hi < t_lo
    if met:
        return "met", "the generated CI clears the target"
    if missed:
        return "not met", "the generated CI misses the target"
    return "undecided", f"the CIs overlap: n = {gen.get('n', 0)} is too few to decide"


def judge(goal: Goal, row: dict[str, Any] | None) -> dict[str, Any]:
    """One goal on one row (a report's metric row, or None where the variant lacks it)."""
    out = {"goal": goal.title, "variant": goal.variant, "metric": goal.metric, "rule": goal.rule,
           "meaning": goal.meaning, "n": 0, "generated": None, "target": None}
    if row is None:
        return {**out, "status": "n/a", "why": "not in this report"}
    gen = row.get("generated")
    out.update(n=int(gen.get("n") or 0) if isinstance(gen, dict) else 0,
               generated={"mean": gen.get("mean"), "ci": gen.get("ci")} if isinstance(gen, dict) else None)
    target, status, why = target_of(goal, row)
    out["target"] = target
    if not _defined(gen):
        return {**out, "status": "n/a", "why": row.get("note") or "not measured"}
    if target is None:
        return {**out, "status": status, "why": why}
    status, why = decide(goal, gen, target)
    return {**out, "status": status, "why": why}


def goal_row(goal: Goal, variants: dict[str, Any]) -> dict[str, Any] | None:
    metrics = (variants.get(goal.variant) or {}).get("metrics") or {}
    row = metrics.get(goal.metric)
    if goal.fallback and row is not None and not _defined(row.get("ceiling")) and goal.fallback in metrics:
        return metrics[goal.fallback]
    return row


def answer(judged: list[dict[str, Any]]) -> tuple[str, str]:
    """(yes | no | partly | undecided | n/a, one line)."""
    count = {s: sum(j["status"] == s for j in judged) for s in ("met", "not met", "undecided", "n/a")}
    decided = count["met"] + count["not met"]
    scored = decided + count["undecided"]
    if scored == 0:
        return "n/a", "no goal could be measured here"
    word = ("yes" if count["met"] == scored else "no" if count["met"] == 0 and count["not met"] > 0
            else "undecided" if decided == 0 else "partly")
    parts = [f"{count['met']} of {scored} goals met", f"{count['not met']} not met"]
    if count["undecided"]:
        parts.append(f"{count['undecided']} undecided (CIs overlap or too few clips)")
    if count["n/a"]:
        parts.append(f"{count['n/a']} not measurable here")
    return word, {"yes": "Yes", "no": "No", "partly": "Partly", "undecided": "Undecided"}[word] + ": " + ", ".join(parts)


def vae_check(psnr_db: float | None, source: str) -> dict[str, Any] | None:
    """The VAE's reconstruction PSNR against the warning floor (None when it was not measured)."""
    if not isinstance(psnr_db, (int, float)) or not math.isfinite(psnr_db):
        return None
    broken = psnr_db < VAE_WARNING_DB
    text = (f"VAE broken: reconstruction PSNR {psnr_db:.1f} dB, below the {VAE_WARNING_DB:g} dB warning floor "
            f"({source}); the generated videos cannot look like the ground truth through it" if broken else
            f"VAE reconstruction PSNR {psnr_db:.1f} dB ({source}), above the {VAE_WARNING_DB:g} dB warning floor")
    return {"psnr_db": float(psnr_db), "warning_floor_db": VAE_WARNING_DB, "broken": broken, "source": source,
            "text": text}


def verdict(report: dict[str, Any], vae_psnr_db: float | None = None, vae_source: str = "") -> dict[str, Any]:
    """The report's verdict block (see the module docstring)."""
    variants = report.get("variants") or {}
    judged = [judge(g, goal_row(g, variants)) for g in goals_in(VERDICT) if g.variant in variants]
    word, line = answer(judged)
    vae = vae_check(vae_psnr_db, vae_source)
    return {"question": QUESTION, "answer": word, "summary": line, "goals": judged, "vae": vae,
            "warnings": [vae["text"]] if vae and vae["broken"] else [],
            "not_applicable": {v: na for v, sec in variants.items() if (na := not_applicable(sec.get("metrics") or {}))}}
