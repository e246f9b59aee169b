"""What the GPU calls import that the GPU image lacks and bench/gpu_prepare.sh does not carry.

The lent GPU machine has no package access: it runs with the packages of its image
(bench/gpu_image_packages.txt, copied from the device documentation) plus the wheels that
bench/gpu_prepare.sh downloads here and the call installs there. This module reads, statically,
the imports that the GPU calls reach and names every third-party module that neither provides:

- the roots are the call scripts (bench/gpu_suite.py, bench/gpu_model.py);
- every ``import``/``from ... import`` in a reached file counts, function-level ones included;
- project modules (datagen, shared, trainer, and bench's own modules, which the scripts put on the
  path) are followed recursively; ``python -m PKG`` argument lists in a reached file reach PKG's
  ``__main__``; the few dynamic imports (``importlib.import_module``) are the table DYNAMIC;
- a carried distribution's own requirements (its metadata in this environment, markers evaluated for
  the image's CPython 3.12 on Linux) must be in the image or carried too.

    python bench/gpu_carry.py          # prints the reach and what is missing; exit 1 when something is
    python bench/gpu_carry.py --imports [--skip torch]   # also imports all of it here (the rehearsal)

tests/test_gpu_carry.py runs it in CI, so the carry list cannot drift from the code.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("datagen", "shared", "trainer")
ROOTS = ("bench/gpu_suite.py", "bench/gpu_model.py")
IMAGE_LIST = ROOT / "bench" / "gpu_image_packages.txt"
PREPARE = ROOT / "bench" / "gpu_prepare.sh"
IMAGE_PYTHON = "3.12"

# Dynamic imports the AST cannot see: module -> the project packages whose every module it imports.
DYNAMIC = {
    "datagen.cli": ("datagen.commands",),  # shared.command_line.run_cli("datagen.commands", ...)
    "trainer.cli": ("trainer.commands",),  # shared.command_line.run_cli("trainer.commands", ...)
    "trainer.commands.selftest": ("shared", "trainer"),  # check_imports walks both packages
}
# Modules that import dynamically; each is covered by an edge of DYNAMIC (a new one must be added there).
DYNAMIC_IMPORTERS = {
    "shared.command_line": "its callers datagen.cli and trainer.cli (DYNAMIC)",
    "trainer.commands.selftest": "DYNAMIC",
}
# Third-party modules that a reached file imports but the GPU calls never execute, with the reason.
NOT_REACHED = {
    "ray": "datagen's ray executor only: both GPU calls run datagen with the processes executor",
    "sounddevice": "trainer live --input-device only (optional, needs PortAudio): no GPU call captures audio",
}


@dataclass
class Reach:
    """The walk's result: project modules reached, and third-party top-level names -> who imports them."""

    modules: set[str] = field(default_factory=set)
    third_party: dict[str, set[str]] = field(default_factory=dict)
    dynamic_users: set[str] = field(default_factory=set)


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of project module ``name`` (a package's ``__init__``), or None when it is not the project's."""
    parts = name.split(".")
    bases = [root] if parts[0] in PROJECT_PACKAGES else [root / "bench"] if len(parts) == 1 else []
    for base in bases:
        stem = base.joinpath(*parts)
        for cand in (stem.with_suffix(".py"), stem / "__init__.py"):
            if cand.is_file():
                return cand
    return None


def submodules(package: str, root: Path = ROOT) -> list[str]:
    """Every module below project package ``package`` (recursively), the package itself included."""
    base = root.joinpath(*package.split("."))
    names = [package]
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("").parts
        names.append(".".join(rel[:-1] if rel[-1] == "__init__" else rel))
    return sorted(set(names))


def _resolve_relative(current: str, is_package: bool, level: int, module: str | None) -> str:
    """``from .x import y`` inside ``current`` -> the absolute module name of ``.x``."""
    parts = current.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, module] if module else base)


def _dash_m_targets(node: ast.AST) -> list[str]:
    """Module names that follow a literal "-m" in a list or tuple display (``[python, "-m", "trainer", ...]``)."""
    out = []
    if isinstance(node, (ast.List, ast.Tuple)):
        elts = node.elts
        for a, b in zip(elts, elts[1:]):
            if (isinstance(a, ast.Constant) and a.value == "-m" and isinstance(b, ast.Constant)
                    and isinstance(b.value, str)):
                out.append(b.value)
    return out


def imports_of(source: str, current: str, is_package: bool) -> tuple[list[str], bool]:
    """All modules ``source`` imports anywhere (nested imports included; ``from a import b`` gives a and
    a.b), ``-m`` targets as ``PKG.__main__`` and PKG; and whether it calls ``importlib.import_module``."""
    names: list[str] = []
    dynamic = False
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve_relative(current, is_package, node.level, node.module) if node.level else node.module
            names.append(mod)
            names += [f"{mod}.{a.name}" for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "import_module") or (isinstance(f, ast.Name) and f.id == "__import__"):
                dynamic = True
        for target in _dash_m_targets(node):
            names += [target, f"{target}.__main__"]
    return names, dynamic


def walk(roots: list[Path], root: Path = ROOT) -> Reach:
    """Follow project imports from the root scripts; collect third-party top-level names."""
    reach = Reach()
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    todo: list[tuple[str, Path]] = [(f"__root__.{p.stem}", p) for p in roots]
    seen_files: set[Path] = set()
    while todo:
        name, path = todo.pop()
        if path in seen_files:
            continue
        seen_files.add(path)
        reach.modules.add(name)
        names, dynamic = imports_of(path.read_text(), name, path.name == "__init__.py")
        if dynamic:
            reach.dynamic_users.add(name)
        for pkg in DYNAMIC.get(name, ()):
            names += submodules(pkg, root)
        for imported in names:
            top = imported.split(".")[0]
            target = module_file(imported, root)
            if target is not None:
                todo.append((imported, target))
                parts = imported.split(".")
                for i in range(1, len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                    parent = module_file(".".join(parts[:i]), root)
                    if parent is not None:
                        todo.append((".".join(parts[:i]), parent))
            elif top in PROJECT_PACKAGES or module_file(top, root) is not None or top in stdlib:
                continue  # a name inside a project module (from x import function), or the standard library
            else:
                reach.third_party.setdefault(top, set()).add(name)
    return reach


def _norm(dist: str) -> str:
    """A distribution name in PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def read_image_list(path: Path = IMAGE_LIST) -> dict[str, list[str]]:
    """bench/gpu_image_packages.txt -> {distribution: import names}: ``name`` or ``name: mod1 mod2``."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        dist, _, mods = line.partition(":")
        out[_norm(dist)] = mods.split() or [_norm(dist).replace("-", "_")]
    return out


def read_carry_list(path: Path = PREPARE) -> list[str]:
    """The distributions bench/gpu_prepare.sh downloads: its FROM_VENV and EXTRA bash arrays (pins dropped)."""
    text = path.read_text()
    dists: list[str] = []
    for var in ("FROM_VENV", "EXTRA"):
        m = re.search(rf"^{var}=\((.*?)\)", text, re.S | re.M)
        if m is None:
            raise ValueError(f"{path}: no {var}=(...) array")
        body = "\n".join(line.split("#", 1)[0] for line in m.group(1).splitlines())
        dists += [_norm(re.split(r"[=<>!~\[]", w, maxsplit=1)[0]) for w in body.split()]
    return dists


@functools.lru_cache(maxsize=1)
def _installed_modules() -> dict[str, set[str]]:
    """{normalized distribution: top-level modules} of this environment (read once: it scans site-packages)."""
    out: dict[str, set[str]] = {}
    for mod, dists in md.packages_distributions().items():
        for d in dists:
            out.setdefault(_norm(d), set()).add(mod)
    return out


def import_names(dist: str) -> list[str]:
    """The top-level modules distribution ``dist`` installs here (its RECORD), or its name as a module."""
    names = _installed_modules().get(dist, set())
    return sorted(names) or [dist.replace("-", "_")]


def requirements(dist: str, python: str = IMAGE_PYTHON) -> list[str]:
    """``dist``'s requirements (no extras) whose markers hold on CPython ``python`` on Linux; [] if not installed."""
    from packaging.requirements import Requirement

    try:
        reqs = md.requires(dist) or []
    except md.PackageNotFoundError:
        return []
    env = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
    out = []
    for r in map(Requirement, reqs):
        if r.marker is None or r.marker.evaluate(env):
            out.append(_norm(r.name))
    return out


@dataclass
class Verdict:
    """What is missing: third-party modules (-> importers) and carried distributions' unmet requirements."""

    missing_modules: dict[str, list[str]]
    missing_requirements: dict[str, list[str]]
    reach: Reach

    @property
    def ok(self) -> bool:
        """True when nothing is missing."""
        return not self.missing_modules and not self.missing_requirements


def check(roots: list[Path] | None = None, image: dict[str, list[str]] | None = None,
          carried: list[str] | None = None, root: Path = ROOT) -> Verdict:
    """Walk the calls' imports and compare them with the image list and the carry list."""
    roots = roots if roots is not None else [root / r for r in ROOTS]
    image = image if image is not None else read_image_list()
    carried = carried if carried is not None else read_carry_list()
    reach = walk(roots, root)
    provided = {m for mods in image.values() for m in mods}
    provided |= {m for d in carried for m in import_names(d)}
    missing = {mod: sorted(who) for mod, who in sorted(reach.third_party.items())
               if mod not in provided and mod not in NOT_REACHED}
    have = set(image) | set(carried)
    unmet: dict[str, list[str]] = {}
    for dist in carried:
        lacking = [r for r in requirements(dist) if r not in have]
        if lacking:
            unmet[dist] = lacking
    return Verdict(missing, unmet, reach)


def report(v: Verdict) -> str:
    """The verdict in words, one line per missing module or requirement."""
    lines = [f"{len(v.reach.modules)} modules reached; third-party: {', '.join(sorted(v.reach.third_party))}"]
    for mod, who in v.missing_modules.items():
        lines.append(f"MISSING module {mod}: imported by {', '.join(who[:4])}{' ...' if len(who) > 4 else ''}")
    for dist, lacking in v.missing_requirements.items():
        lines.append(f"MISSING requirement of carried {dist}: {', '.join(lacking)}")
    if v.ok:
        lines.append("ok: everything is in the GPU image or carried by bench/gpu_prepare.sh")
    return "\n".join(lines)


def import_check(reach: Reach, skip: set[str]) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Import every reached third-party module (but NOT_REACHED and ``skip``) and every reached project module
    in this interpreter: (imported, failed: name -> error, not rehearsed: project module -> the skipped module
    it needs). The rehearsal runs it in the image-like environment with the carried wheels on PYTHONPATH."""
    import importlib

    ok: list[str] = []
    failed: dict[str, str] = {}
    skipped: dict[str, str] = {}
    third = sorted(set(reach.third_party) - set(NOT_REACHED) - skip)
    project = sorted(m for m in reach.modules if not m.startswith("__root__.") and not m.endswith(".__main__"))
    for name in third + project:
        try:
            importlib.import_module(name)
            ok.append(name)
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] in skip:
                skipped[name] = e.name
            else:
                failed[name] = f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 (a broken wheel raises anything: OSError for a missing .so, ...)
            failed[name] = f"{type(e).__name__}: {e}"
    return ok, failed, skipped


def main(argv: list[str] | None = None) -> int:
    """Print the report (or, with --imports, import what the calls reach here); exit 1 when something is missing."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--imports", action="store_true",
                    help="Also import every reached third-party and project module in this interpreter (the rehearsal).")
    ap.add_argument("--skip", nargs="*", default=[], help="With --imports: modules absent here on purpose (e.g. torch).")
    args = ap.parse_args(argv)
    v = check()
    print(report(v))
    if not args.imports:
        return 0 if v.ok else 1
    sys.path.insert(0, str(ROOT))
    sys.path.insert(1, str(ROOT / "bench"))
    ok, failed, skipped = import_check(v.reach, set(args.skip))
    print(f"imports: {len(ok)} ok, {len(failed)} failed, {len(skipped)} not rehearsed (need {', '.join(args.skip) or '-'})")
    for name, err in failed.items():
        print(f"IMPORT FAILED {name}: {err}")
    if skipped:
        print("not rehearsed: " + ", ".join(sorted(skipped)))
    return 0 if v.ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
