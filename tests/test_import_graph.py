"""bench/import_graph.py (issue 22's package graph): parts, function-level imports and cycles, on a package made
here, against cycles worked out by hand."""

from __future__ import annotations

from pathlib import Path

from bench_scripts import load_bench

ROOT = Path(__file__).resolve().parents[1]


def load():
    return load_bench("import_graph")


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_function_level_import_closes_a_cycle_and_a_one_way_import_does_not(tmp_path):
    g = load()
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/x/__init__.py", "from pkg.y import thing\n")           # x -> y
    write(tmp_path, "pkg/y.py", "def f():\n    from .x import other\n")       # y -> x, inside a function
    write(tmp_path, "pkg/z/deep.py", "import pkg.x\nimport numpy\n")           # z -> x only; third party ignored
    write(tmp_path, "pkg/w.py", "from . import z\n")                          # w -> pkg (its __init__ runs), z
    graph = g.part_graph(tmp_path, ("pkg",))
    assert graph["pkg.x"] == {"pkg.y"} and graph["pkg.y"] == {"pkg.x"}
    assert graph["pkg.z"] == {"pkg.x"} and graph["pkg.w"] == {"pkg", "pkg.z"}
    assert g.cycles(graph) == [["pkg.x", "pkg.y"]]


def test_cycles_are_the_strongly_connected_components():
    g = load()
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"a"}, "g": set()}
    assert g.cycles(graph) == [["a", "b", "c"], ["d", "e"]]
    assert g.cycles({"a": {"b"}, "b": set()}) == []
