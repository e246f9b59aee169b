"""The evaluation report: ``report.json`` (machine-readable) and ``report.md`` (the table a person reads).

Every metric row holds the generated video's value beside the ground truth's (its ceiling), and which
direction is better. Non-finite numbers are written as JSON ``null`` and shown as ``n/a`` (with
``inf`` kept as the string ``"inf"`` in JSON so it is not confused with a missing value).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_JSON = "report.json"
REPORT_MD = "report.md"


@dataclass
class MetricRow:
    """One metric: generated value, ground-truth value (None where the metric has no ground truth)."""

    name: str
    generated: float | None
    ground_truth: float | None
    better: str  # "higher" | "lower" | "closer to ground truth"
    description: str


@dataclass
class Report:
    title: str
    rows: list[MetricRow] = field(default_factory=list)
    vae_rows: list[MetricRow] = field(default_factory=list)  # generated := round-tripped, ground_truth := original
    info: dict[str, Any] = field(default_factory=dict)        # checkpoint, step, clips, config summary
    per_clip: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Any] = field(default_factory=dict)       # plots and videos, relative to the report dir
    notes: list[str] = field(default_factory=list)


def json_number(x: Any) -> Any:
    """Floats made JSON-safe: NaN -> None, +-inf -> "inf"/"-inf"; containers recursively."""
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if isinstance(x, dict):
        return {k: json_number(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_number(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy scalar
        return json_number(x.item())
    return x


def fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def _row_dict(r: MetricRow) -> dict[str, Any]:
    return {"generated": r.generated, "ground_truth": r.ground_truth, "better": r.better, "description": r.description}


def report_dict(rep: Report) -> dict[str, Any]:
    return json_number({
        "title": rep.title,
        "info": rep.info,
        "metrics": {r.name: _row_dict(r) for r in rep.rows},
        "vae_bottleneck": {r.name: {"roundtrip": r.generated, "original": r.ground_truth, "better": r.better,
                                    "description": r.description} for r in rep.vae_rows},
        "per_clip": rep.per_clip,
        "files": rep.files,
        "notes": rep.notes,
    })


def markdown(rep: Report) -> str:
    lines = [f"# {rep.title}", ""]
    for k, v in rep.info.items():
        lines.append(f"- **{k}**: {fmt(v) if isinstance(v, float) else v}")
    lines += ["", "## Metrics: generated vs ground truth", "",
              "| metric | generated | ground truth | better | what it measures |", "|---|---|---|---|---|"]
    for r in rep.rows:
        lines.append(f"| {r.name} | {fmt(r.generated)} | {fmt(r.ground_truth)} | {r.better} | {r.description} |")
    if rep.vae_rows:
        lines += ["", "## VAE bottleneck: metrics on VAE round-tripped vs original ground-truth frames", "",
                  "| metric | round-tripped | original | better | what it measures |", "|---|---|---|---|---|"]
        for r in rep.vae_rows:
            lines.append(f"| {r.name} | {fmt(r.generated)} | {fmt(r.ground_truth)} | {r.better} | {r.description} |")
    if rep.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in rep.notes]
    if rep.files:
        lines += ["", "## Files", ""]
        for k, v in rep.files.items():
            items = v if isinstance(v, list) else [v]
            links = ", ".join(f"[{Path(p).name}]({p})" for p in items)
            lines.append(f"- {k}: {links}")
            if k.startswith("plot") or k.endswith("plots"):
                lines += [f"  ![{Path(p).name}]({p})" for p in items if str(p).endswith(".png")]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, rep: Report) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pj, pm = out / REPORT_JSON, out / REPORT_MD
    pj.write_text(json.dumps(report_dict(rep), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    pm.write_text(markdown(rep), encoding="utf-8")
    return pj, pm
