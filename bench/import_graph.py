"""The import graph between the parts of the project's packages, and its cycles (issue 22's "package graph").

A *part* is a module or subpackage directly under ``datagen/``, ``shared/`` or ``trainer/`` (``trainer.data``,
``trainer.diffusion``, ...). Part A depends on part B when any module of A imports any module of B, anywhere in
the file: function-level imports count (they are how a cycle hides). Imports are read from the source with the
AST (:func:`gpu_carry.imports_of`, the one reader of imports in bench/); nothing is imported. The cycles are the
strongly connected components with more than one part (Tarjan 1972).

    .venv/bin/python bench/import_graph.py                 # edges and cycles as text
    .venv/bin/python bench/import_graph.py --json graph.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_carry import imports_of  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("datagen", "shared", "trainer")


def part_of(module: str, packages: tuple[str, ...] = PACKAGES) -> str | None:
    """``trainer.diffusion.model`` -> ``trainer.diffusion``; a package itself is its own part; None outside."""
    parts = module.split(".")
    if parts[0] not in packages:
        return None
    return ".".join(parts[:2])


def modules_under(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of the packages: dotted name -> file."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("").parts
            out[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = path
    return out


def part_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Part -> the other parts it imports from (every part of the packages is a key)."""
    modules = modules_under(root, packages)
    graph: dict[str, set[str]] = {part_of(name, packages): set() for name in modules}
    for name, path in modules.items():
        src = part_of(name, packages)
        names, _ = imports_of(path.read_text(), name, path.name == "__init__.py")
        graph[src] |= {dst for dst in (part_of(m, packages) for m in names) if dst in graph and dst != src}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node, each sorted (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=None, metavar="PATH", help="Also write {edges, cycles} as JSON here.")
    args = ap.parse_args(argv)
    sys.setrecursionlimit(10_000)
    graph = part_graph()
    found = cycles(graph)
    for src in sorted(graph):
        print(f"{src} -> {', '.join(sorted(graph[src])) or '-'}")
    print(f"\n{len(found)} cycle(s) between parts" + "".join(f"\n  {' <-> '.join(c)}" for c in found))
    if args.json:
        Path(args.json).write_text(json.dumps({"edges": {k: sorted(v) for k, v in sorted(graph.items())},
                                               "cycles": found}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
