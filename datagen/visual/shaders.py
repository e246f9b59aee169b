"""GLSL source assembly: ``#include "file.glsl"`` resolved in Python, with ``#line`` markers so that a
compile log's ``source:line`` points into the right file (the legend maps source numbers to files)."""

from __future__ import annotations

import re
from pathlib import Path

GLSL_VERSION = "#version 330"
INCLUDE_RE = re.compile(r'^\s*#include\s+"([^"]+)"\s*$')


class ShaderError(RuntimeError):
    """A shader file is missing, has a bad include, or does not compile (the message names the file)."""


def resolve_includes(path: Path, files: list[str], stack: tuple[Path, ...] = ()) -> str:
    """Return ``path``'s text with each ``#include`` replaced by the included file (once per program).

    ``files`` collects the file names in source-number order: ``#line N k`` marks line N of files[k].
    """
    if not path.is_file():
        where = f" (included from {stack[-1].name})" if stack else ""
        raise ShaderError(f"shader file not found: {path}{where}")
    idx = len(files)
    files.append(path.name)
    out = [f"#line 1 {idx}"]
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        m = INCLUDE_RE.match(line)
        if m is None:
            out.append(line)
            continue
        inc = path.parent / m.group(1)
        if inc.name in files:  # include once (this also breaks include cycles)
            out.append(f"// (already included: {inc.name})")
            continue
        if not inc.is_file():
            raise ShaderError(f"{path}:{lineno}: #include \"{m.group(1)}\" not found ({inc})")
        out.append(resolve_includes(inc, files, (*stack, path)))
        out.append(f"#line {lineno + 1} {idx}")
    return "\n".join(out)


def assemble(shader_dir: Path, *names: str) -> tuple[str, list[str]]:
    """``#version 330`` + the named files (with their includes) concatenated; returns (source, files)."""
    files: list[str] = []
    parts = [GLSL_VERSION]
    for name in names:
        parts.append(resolve_includes(Path(shader_dir) / name, files))
    return "\n".join(parts) + "\n", files


def compile_error(files: list[str], stage: str, log: str) -> ShaderError:
    """A ShaderError naming the file(s) and carrying the GLSL compile log with a source-number legend."""
    legend = ", ".join(f"{i} = {f}" for i, f in enumerate(files))
    return ShaderError(f"GLSL {stage} of {files[0] if files else '?'} failed (source numbers: {legend}):\n{log.strip()}")
