"""How the ablation's write-ups print numbers: one figure, a report entry with its CI, a value per seed."""

from __future__ import annotations

import math
from typing import Any


def fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if isinstance(x, float) and not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}"


def entry_text(e: dict[str, Any] | None) -> str:
    """A report entry as 'mean [lo, hi]' (n/a when undefined)."""
    if not e or e.get("mean") is None:
        return "n/a"
    return fmt(e["mean"]) + (f" [{fmt(e['ci'][0])}, {fmt(e['ci'][1])}]" if e.get("ci") else "")


def seeds_text(xs: list[float | None]) -> str:
    return " / ".join(fmt(x) for x in xs)
