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
