"""`trainer selftest` (the trainer image's last build step): a missing compiler fails it with a message naming it.

The passing checks run in the GPU suite's smoke run (tests/test_gpu_suite.py calls selftest.run_checks, with the
aot_eager backend there: a cold TorchInductor compile would cost 35-70 s of CI time on 2 cores).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_selftest_fails_with_one_line_naming_a_missing_compiler(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CC": str(tmp_path / "no-such-cc")}
    proc = subprocess.run([sys.executable, "-m", "trainer", "selftest", "--device", "cpu"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"selftest: compilers: FAILED: RuntimeError: no C compiler: CC={tmp_path / 'no-such-cc'} is not found" in proc.stdout
    assert "imports" not in proc.stdout and "compiled forward" not in proc.stdout  # it stops at the first failure
    assert "Traceback" in proc.stderr  # an environment problem keeps its traceback
