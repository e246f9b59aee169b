"""Running the study's steps: each step one command (``python -m datagen|trainer ...``), skipped when its output
marker exists, logged with its command line, wall time and exit status (WORK/commands.jsonl); the work dir's
layout (:class:`Paths`)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .arms import Arm

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Step:
    name: str
    argv: list[str]
    marker: Path  # the step counts as done when this exists
    group: str    # "setup", "calibration" or an arm key
    env: dict[str, str] | None = None  # extra environment variables for its process
    then: Callable[[], None] | None = None  # after the step's output is there (run now or before): e.g. keep a copy


@dataclass
class Log:
    """WORK/commands.jsonl: one line per step run (name, command, wall time, exit status), failed tries too."""

    path: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # steps may run in threads (--jobs)

    def load(self) -> "Log":
        if self.path.is_file():
            self.records = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return self

    def add(self, rec: dict[str, Any]) -> None:
        with self.lock:
            self.records.append(rec)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")

    def last_ok(self, name: str) -> dict[str, Any] | None:
        ok = [r for r in self.records if r["name"] == name and r["rc"] == 0]
        return ok[-1] if ok else None


def display_command(argv: list[str]) -> str:
    """The command line as a person would type it from the repo root (``python`` for the interpreter)."""
    shown = ["python" if a == sys.executable else a for a in argv]
    return repo_relative(shlex.join(shown))


def repo_path(path: Path) -> str:
    """A path as it is named from the repo root (the steps' working directory): relative when inside the repo."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def repo_relative(text: str) -> str:
    """Paths under the repo root written relative to it (commands are run from the root)."""
    return text.replace(str(REPO) + "/", "")


def run_in_process(argv: list[str], out: Path) -> int:
    """Run ``python -m PACKAGE ARGS`` (argv as built by the step builders) in this process, output to ``out``.
    The smoke preset uses it: a fresh interpreter and torch import per step cost more than its tiny steps."""
    package, args = argv[2], argv[3:]
    cli = importlib.import_module(f"{package}.cli")
    with out.open("w", encoding="utf-8") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            cli.main(args)
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except Exception:  # a bug in a step: its traceback goes to the step's log, the step fails
            traceback.print_exc(file=f)
            return 1
    return 0


@dataclass
class Runner:
    """Runs steps (skipping those whose marker exists) and records them in the log."""

    log: Log
    env: dict[str, str]
    logs_dir: Path
    verbose: bool = False
    in_process: bool = False
    deadline: float | None = None  # time.time() after which no step starts
    skipped_for_time: list[str] = field(default_factory=list)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.time() > self.deadline

    def run(self, step: Step) -> bool:
        """True when the step's output is there (run now or before); False when it was left out for time."""
        if step.marker.exists():
            print(f"[ablation] skip {step.name} ({step.marker} exists)", file=sys.stderr)
            if step.then is not None:
                step.then()
            return True
        if self.out_of_time():
            self.skipped_for_time.append(step.name)
            print(f"[ablation] not run (session time): {step.name}", file=sys.stderr)
            return False
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        out = self.logs_dir / f"{step.name}.log"
        print(f"[ablation] {step.name}: {display_command(step.argv)}", file=sys.stderr)
        t0 = time.perf_counter()
        if self.in_process:
            rc = run_in_process(step.argv, out)
        else:
            with out.open("a", encoding="utf-8") as f:  # a resumed step's parts, one after another
                rc = subprocess.run(step.argv, cwd=REPO, env={**self.env, **(step.env or {})},
                                    stdout=None if self.verbose else f,
                                    stderr=None if self.verbose else subprocess.STDOUT).returncode
        wall = time.perf_counter() - t0
        from shared.provenance import code_commit

        self.log.add({"name": step.name, "group": step.group, "command": display_command(step.argv),
                      "wall_s": round(wall, 2), "rc": rc, "load1": round(os.getloadavg()[0], 2),
                      "commit": code_commit(),  # at the step's end (the code it started on may be older)
                      "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        print(f"[ablation] {step.name}: exit {rc} in {wall:.1f} s", file=sys.stderr)
        if rc != 0:
            tail = "".join(out.read_text(errors="replace").splitlines(keepends=True)[-20:]) if out.is_file() else ""
            raise SystemExit(f"ablation step {step.name!r} failed (exit {rc}); log {out}:\n{tail}")
        if step.then is not None:
            step.then()
        return True


@dataclass(frozen=True)
class Paths:
    work: Path
    cfg_file: Path
    py: str = sys.executable
    vae: Path | None = None  # a trained VAE to encode with (issue 24's committed one); None: WORK/vae, trained here

    @property
    def vae_dir(self) -> Path:
        return self.vae if self.vae is not None else self.work / "vae"

    @property
    def c(self) -> list[str]:
        return ["--config", str(self.cfg_file)]

    def run_dir(self, arm: Arm, seed: int) -> Path:
        return self.work / f"{arm.slug}_s{seed}"

    def eval_dir(self, arm: Arm, seed: int) -> Path:
        return self.work / "eval" / f"{arm.slug}_s{seed}"

    def report(self, arm: Arm, seed: int) -> Path:
        return self.eval_dir(arm, seed) / "report.json"


def train_argv(p: Paths, out: Path, overrides: list[str]) -> list[str]:
    return [p.py, "-m", "trainer", "diffusion", *p.c, "--latents", str(p.work / "latents"), "--out", str(out),
            *overrides]


def run_chains(runner: Runner, chains: list[list[Step]], jobs: int) -> None:
    """Run each chain's steps in order, up to ``jobs`` chains at once (each step its own process). A failed step
    stops the whole run once the chains already going have finished."""
    def go(chain: list[Step]) -> None:
        for step in chain:
            if not runner.run(step):
                return

    if jobs <= 1:
        for chain in chains:
            go(chain)
        return
    from concurrent.futures import ThreadPoolExecutor

    # librosa's numba kernels cache their compiled code on disk (cache=True); two processes writing that cache at
    # once left it corrupt here (every later eval segfaulted in librosa.util.peak_pick). One cache dir per chain:
    # a chain's steps run one after another, so no two processes ever write the same cache.
    cache = runner.logs_dir.parent / "numba_cache"
    chains = [[replace(st, env={**(st.env or {}), "NUMBA_CACHE_DIR": str(cache / f"chain{i}")})
               for st in chain] for i, chain in enumerate(chains)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(go, chain) for chain in chains]
    for f in futures:
        f.result()  # re-raises a failed step's SystemExit
