"""Are two eval report.json files equal, timing fields aside? (``trainer eval``, shard or --audio-dir mode.)

    python bench/report_equal.py BEFORE/report.json AFTER/report.json [--replace OLD=NEW ...]

Compares the parsed JSON exactly (numbers bit for bit, lists in order; dict key order is reported but not
counted) after dropping the wall-clock keys in :data:`TIMING_KEYS`, wherever they are nested. ``--replace``
rewrites OLD to NEW in every string of BEFORE first (e.g. the checkpoint's absolute path when the two reports
were made in different checkouts). Prints each difference as a JSON path; exit 0 when equal, 1 when not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TIMING_KEYS = frozenset({"seconds", "wall_s", "generation_seconds", "total_seconds"})


def differences(a: Any, b: Any, path: str = "$", ignore: frozenset[str] = TIMING_KEYS) -> list[str]:
    """Paths where ``a`` and ``b`` differ (keys in ``ignore`` skipped at any depth)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k in ignore:
                continue
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'after' if k in b else 'before'}")
            else:
                out += differences(a[k], b[k], f"{path}.{k}", ignore)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items before, {len(b)} after"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]", ignore)]
    if type(a) is not type(b) or a != b:
        return [f"{path}: {a!r} before, {b!r} after"]
    return []


def replaced(x: Any, pairs: list[tuple[str, str]]) -> Any:
    """``x`` with each (old, new) substring replaced in every string, containers recursively."""
    if isinstance(x, str):
        for old, new in pairs:
            x = x.replace(old, new)
        return x
    if isinstance(x, dict):
        return {k: replaced(v, pairs) for k, v in x.items()}
    if isinstance(x, list):
        return [replaced(v, pairs) for v in x]
    return x


def key_order_changes(a: Any, b: Any, path: str = "$") -> list[str]:
    """Paths of dicts whose shared keys come in a different order (not a difference of content)."""
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        shared = [k for k in a if k in b]
        if shared != [k for k in b if k in a]:
            out.append(path)
        for k in shared:
            out += key_order_changes(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            out += key_order_changes(x, y, f"{path}[{i}]")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--replace", action="append", default=[], metavar="OLD=NEW",
                    help="rewrite OLD to NEW in every string of BEFORE (repeatable)")
    args = ap.parse_args(argv)
    a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (args.before, args.after))
    a = replaced(a, [tuple(r.split("=", 1)) for r in args.replace])
    diffs = differences(a, b)
    for d in diffs:
        print(d)
    order = key_order_changes(a, b)
    if order:
        print(f"(key order differs, content aside, at: {', '.join(order[:10])}{' ...' if len(order) > 10 else ''})")
    print(f"{'EQUAL' if not diffs else f'{len(diffs)} DIFFERENCES'} (ignoring {', '.join(sorted(TIMING_KEYS))})")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
