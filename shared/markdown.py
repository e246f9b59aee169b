"""Markdown files that several writers share, section by section (bench/RESULTS.md)."""

from __future__ import annotations

import re
from pathlib import Path


COMMIT_LINE = "Measured on commit `{}` (written by its generator; `-dirty`: with uncommitted code changes)."


def replace_section(path: str | Path, heading: str, body: str, title: str = "# Benchmark results",
                    commit: str | None = None, stamp: str | None = None) -> Path:
    """Replace the section that starts with the line ``heading`` (up to the next ``## `` heading) by ``body``,
    or append it; other sections are left byte for byte. ``body`` starts with the heading line itself.

    The section names the commit its figures were measured on, in a line after the heading: ``commit``, or by
    default this checkout's (:func:`shared.provenance.code_commit`; a generator that writes figures measured
    earlier passes the commit it recorded with them). ``stamp`` replaces that line altogether (a section whose figures
    come from several commits names them itself)."""
    from shared.provenance import code_commit

    p = Path(path)
    old = p.read_text() if p.exists() else title + "\n"
    head, _, rest = body.partition("\n")
    stamp = stamp or COMMIT_LINE.format(commit or code_commit() or "unknown (not a git checkout)")
    section = f"{head}\n\n{stamp}\n" + ("\n" + rest.lstrip("\n") if rest.strip() else "")
    section = section.rstrip("\n") + "\n\n"  # a blank line before whatever section follows
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: section, old, count=1) if pattern.search(old) else old.rstrip("\n") + "\n\n" + section
    p.write_text(new.rstrip("\n") + "\n")
    return p
