"""Markdown files that several writers share, section by section (bench/RESULTS.md)."""

from __future__ import annotations

import re
from pathlib import Path


def replace_section(path: str | Path, heading: str, body: str, title: str = "# Benchmark results") -> Path:
    """Replace the section that starts with the line ``heading`` (up to the next ``## `` heading) by ``body``,
    or append it; other sections are left byte for byte. ``body`` starts with the heading line itself."""
    p = Path(path)
    old = p.read_text() if p.exists() else title + "\n"
    section = body.rstrip("\n") + "\n\n"  # a blank line before whatever section follows
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: section, old, count=1) if pattern.search(old) else old.rstrip("\n") + "\n\n" + section
    p.write_text(new.rstrip("\n") + "\n")
    return p
