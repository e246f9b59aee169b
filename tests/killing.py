"""Run a trainer command in a child process that kills itself with SIGKILL (kill -9) at a chosen point.

The child patches one function of the real code so that it sends itself SIGKILL the first time a condition
holds; nothing is mocked otherwise, and nothing runs after the kill (no finally blocks, no atexit).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import os, signal, sys
import {module} as target
from shared.command_line import run_cli

original = target.{attr}

def patched(*args, **kwargs):
    if {condition}:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)

{assign} = patched
sys.exit(run_cli("trainer", "trainer.commands", "trainer", sys.argv[1:]))
"""


def run_killed(argv: list[str], module: str, attr: str, condition: str, timeout: int = 240
               ) -> subprocess.CompletedProcess:
    """Run ``trainer *argv`` with ``module.attr`` replaced by a wrapper that kills the process when
    ``condition`` (a Python expression over ``args`` and ``kwargs``) is true. Returns the finished process."""
    owner, _, name = attr.rpartition(".")
    assign = f"target.{owner}.{name}" if owner else f"target.{name}"
    code = _CHILD.format(module=module, attr=attr, condition=condition, assign=assign)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


KILLED = -signal.SIGKILL


def kill_datagen_after_first_shard(argv: list[str], out: Path, env: dict[str, str] | None = None,
                                   timeout: float = 120) -> tuple[list, set[Path]]:
    """Start a real ``datagen run *argv`` (writing into ``out``), SIGKILL it once its first shard is on disk, and
    reap it (so its lock on ``out`` is gone when this returns). Returns the psutil processes it had started (its
    workers, their helpers, an embedded Ray cluster) and the shard files there were when it was gone."""
    import time

    import psutil

    proc = subprocess.Popen([str(Path(sys.executable).parent / "datagen"), "run", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while not list(out.glob("*/shard-*.tar")):
            assert proc.poll() is None, f"datagen run ended before its first shard: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no shard within the timeout"
            time.sleep(0.01)
        started = psutil.Process(proc.pid).children(recursive=True)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
    return started, set(out.glob("*/shard-*.tar"))


def still_running(processes: list, within_s: float) -> list:
    """Those of ``processes`` that are still running (zombies count as gone) after waiting up to ``within_s``;
    the ones left are killed (by pid) so that a failing test leaks nothing."""
    import time

    import psutil

    def running() -> list:
        left = []
        for p in processes:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p)
            except psutil.NoSuchProcess:
                pass
        return left

    deadline = time.monotonic() + within_s
    while running() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = running()
    for p in left:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return left
