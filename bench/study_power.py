"""Issue 24's power table, written before any run: the 95% CI half-width each goal metric reaches at the study's n.

Two sources, both committed reports measured on this project's data at the study preset's 12 fps, 4 s clips:

* the teacher (the ground-truth visualizers, ``trainer teacher``, 64 px, 32 normal + 32 silence clips:
  docs/results/teacher/after_fps12_s4.json), whose per-clip values give each per-clip metric's spread: a bootstrap
  CI of a mean over n clips has half-width about ``1.96 sd / sqrt(n)`` (checked here against the report's own
  bootstrap CI at n = 32); pooled metrics (bands R² over all frames, style diversity) scale their measured
  bootstrap half-width by ``sqrt(32 / n)``;
* a weak generated model, the demo's (``make demo`` on configs/tiny.yaml, 32 px, 8 normal clips:
  docs/results/study/demo_eval_report.json), its generated half-widths scaled by ``sqrt(8 / n)``: a student's
  spread can differ from the teacher's.

Retrieval top-1 is a proportion: ``1.96 sqrt(p (1 - p) / n)`` at the goal's 5 x chance. Run:

    .venv/bin/python bench/study_power.py      # -> docs/results/study/power.json and the table on stdout
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from ablation.presets import PRESETS  # noqa: E402
from ablation.study import SECONDARY_METRICS  # noqa: E402
from trainer.eval.goals import STUDY, goals_in  # noqa: E402

TEACHER = ROOT / "docs" / "results" / "teacher" / "after_fps12_s4.json"
DEMO = ROOT / "docs" / "results" / "study" / "demo_eval_report.json"
OUT = ROOT / "docs" / "results" / "study" / "power.json"
Z = 1.959964  # the normal quantile of a 95% interval


def goal_rows() -> list[tuple[str, str, str]]:
    """(variant, metric, goal) of the study's goals (the one goals table's ``study`` group; a metric the teacher's
    report lacks, style diversity at fixed audio, read through its fallback) and the other metrics it reports."""
    rows = [(g.variant, g.fallback or g.metric, g.rule) for g in goals_in(STUDY)]
    shown = {m for _, m, _ in rows}
    return rows + [(v, m, "reported") for v, m in SECONDARY_METRICS if m not in shown and m != "style_diversity_siblings"]

def half_width(ci: list[float] | None) -> float | None:
    return None if not ci or None in ci else (ci[1] - ci[0]) / 2


def per_clip_sd(report: dict, variant: str, metric: str) -> tuple[float, int] | None:
    """(sd over clips, n) of a per-clip metric in a teacher report; None for pooled metrics."""
    vals = [c["values"].get(metric) for c in report["variants"][variant]["clips"]]
    vals = [v for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
    return (float(np.std(vals, ddof=1)), len(vals)) if len(vals) >= 2 else None


def teacher_row(report: dict, variant: str, metric: str, n: int) -> dict:
    m = report["variants"][variant]["metrics"].get(metric)
    if m is None:  # a generated-only metric (the memorisation check has no teacher figure)
        return {"teacher_mean": None, "teacher_hw_at_n": None, "note": "not a teacher metric"}
    hw_meas, n_meas = half_width(m.get("ci")), m.get("n") or 0
    spread = per_clip_sd(report, variant, metric)
    if spread is not None:
        sd, k = spread
        return {"teacher_mean": m["mean"], "teacher_sd": sd, "teacher_hw_measured": hw_meas, "teacher_n": n_meas,
                "teacher_hw_formula_at_measured_n": Z * sd / math.sqrt(k), "teacher_hw_at_n": Z * sd / math.sqrt(n)}
    scaled = None if hw_meas is None or not n_meas else hw_meas * math.sqrt(n_meas / n)
    return {"teacher_mean": m["mean"], "teacher_hw_measured": hw_meas, "teacher_n": n_meas, "teacher_hw_at_n": scaled}


def demo_row(report: dict, variant: str, metric: str, n: int) -> dict:
    m = report["variants"].get(variant, {}).get("metrics", {}).get(metric)
    g = (m or {}).get("generated") or {}
    hw, k = half_width(g.get("ci")), g.get("n") or 0
    return {"demo_generated_mean": g.get("mean"), "demo_hw_measured": hw, "demo_n": k,
            "demo_hw_at_n": None if hw is None or not k else hw * math.sqrt(k / n)}


def study_n() -> dict[str, int]:
    """Clips per variant the study's eval scores: eval.clips_per_variant of the cpu preset (datagen's val split of
    that preset holds 75 normal, 136 silence and 109 debug clips, so each variant reaches it)."""
    per = PRESETS["cpu"]["eval"]["clips_per_variant"]
    return {"normal": per, "silence": per}


def main() -> int:
    teacher, demo = json.loads(TEACHER.read_text()), json.loads(DEMO.read_text())
    n = study_n()
    rows = []
    for variant, metric, goal in goal_rows():
        row = {"variant": variant, "metric": metric, "goal": goal, "n": n[variant]}
        if metric == "retrieval_top1":
            p = 5.0 / n[variant]
            row.update({"chance": 1.0 / n[variant], "hw_at_goal": Z * math.sqrt(p * (1 - p) / n[variant])})
        else:
            row.update(teacher_row(teacher, variant, metric, n[variant]))
        row.update(demo_row(demo, variant, metric, n[variant]))
        rows.append(row)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    doc = {"what": "95% CI half-widths at the study's n, before any run (issue 24 step 1)", "commit": commit,
           "command": "python bench/study_power.py", "sources": {"teacher": str(TEACHER.relative_to(ROOT)),
                                                                 "demo": str(DEMO.relative_to(ROOT))},
           "n": n, "rows": rows}
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    f = lambda x: "n/a" if x is None else f"{x:.3g}"  # noqa: E731
    print("| metric | goal | n | teacher mean | ± at n (teacher spread) | ± at n (demo model's spread) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        hw = r.get("hw_at_goal") if r["metric"] == "retrieval_top1" else r.get("teacher_hw_at_n")
        print(f"| {r['variant']} {r['metric']} | {r['goal']} | {r['n']} | {f(r.get('teacher_mean'))} | ±{f(hw)} | "
              f"±{f(r.get('demo_hw_at_n'))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
