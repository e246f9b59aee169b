"""Reap what a process leaves behind when it is killed: its descendants, and a temporary directory.

For services a process starts that outlive it by design or by accident, e.g. the embedded Ray cluster of
``datagen run``: Ray's raylet and GCS share its fate, but its dashboard and runtime-env agents wait a minute
for the dead GCS before they exit, and the cluster's temp dir stays. :func:`start_reaper` starts a small
watcher process; while the owner lives it records the owner's descendants every ``interval_s``; when the owner
dies (:func:`shared.runlock.pid_alive`, the one liveness check) it kills the recorded ones still running and
removes the directory. A normal shutdown stops the watcher first (:func:`stop_reaper`), so it then does nothing.

Run as ``python -m shared.reaper OWNER_PID DIR``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

from shared.runlock import pid_alive


def reap_when_gone(owner_pid: int, directory: str, interval_s: float = 0.5) -> list[int]:
    """Wait for ``owner_pid`` to die, then kill its recorded descendants and remove ``directory``.

    Returns the pids it killed. psutil's kill refuses a pid reused by another process since it was recorded.
    """
    import psutil

    me = os.getpid()
    seen: dict[int, psutil.Process] = {}
    try:
        owner = psutil.Process(owner_pid)
    except psutil.NoSuchProcess:
        owner = None
    while owner is not None and pid_alive(owner_pid):
        try:
            seen.update((p.pid, p) for p in owner.children(recursive=True) if p.pid != me)
        except psutil.NoSuchProcess:
            break
        time.sleep(interval_s)
    killed = []
    for p in seen.values():
        try:
            p.kill()
            killed.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    shutil.rmtree(directory, ignore_errors=True)
    return killed


def start_reaper(directory: str, interval_s: float = 0.5) -> subprocess.Popen:
    """Start the watcher of this process (see the module docstring); stop it with :func:`stop_reaper`."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout, installed or not
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "shared.reaper", str(os.getpid()), directory, str(interval_s)],
                            stdin=subprocess.DEVNULL, close_fds=True, env=env)


def stop_reaper(proc: subprocess.Popen) -> None:
    """End the watcher without reaping (its owner shuts down normally)."""
    proc.terminate()
    proc.wait()


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to the owner's terminal is the owner's to handle
    reap_when_gone(int(argv[0]), argv[1], float(argv[2]) if len(argv) > 2 else 0.5)


if __name__ == "__main__":
    main(sys.argv[1:])
