"""One writer per output directory: ``datagen run``, ``cache-latents`` and training runs take this lock.

``flock`` on ``<dir>/.lock``, which holds the holder's host, pid, start time and what it is
doing, so a second writer fails at once with a line naming the holder. The kernel drops a flock when its
holder dies (even by SIGKILL), so a crashed run never leaves the directory locked. Where the filesystem
refuses ``flock`` (some network filesystems answer ENOLCK or EOPNOTSUPP), the lock is an ``O_EXCL`` file
``<dir>/.lock.excl`` instead; it survives a crash, so a lock file whose pid is dead on this
same host is taken over with a warning (a pid on another host cannot be checked and is never taken over).
The flock file is never deleted: unlinking it would let two processes lock two different inodes.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.errors import DiskFullError, LockHeldError
from shared.fsutil import is_enospc

LOCK_NAME = ".lock"  # the name ARCHITECTURE.md gives every owned directory
EXCL_NAME = LOCK_NAME + ".excl"
_FLOCK_REFUSED = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS})


def _holder_record(what: str) -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "what": what,
            "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _read_record(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads(path.read_text(encoding="utf-8") or "{}")
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def describe_holder(rec: dict[str, Any]) -> str:
    if not rec:
        return "another process (its lock record is empty)"
    return f"{rec.get('what', '?')} (pid {rec.get('pid', '?')} on {rec.get('host', '?')} since {rec.get('since', '?')})"


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` runs on this host: the one liveness check (lock takeover, and the watchdogs
    of :func:`exit_with_owner`). A zombie (dead, not yet reaped by its parent) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def exit_with_owner(owner_pid: int, interval_s: float = 1.0) -> None:
    """End this process (``os._exit``) within ``interval_s`` of the death of process ``owner_pid``.

    For worker processes (loader workers, datagen's pool workers and embedded Ray actors): a worker whose
    parent is not its owner (a fork server, a raylet) or that is re-parented to init when its owner is killed
    by SIGKILL would otherwise live on, holding memory, GL contexts and GPUs, and keep working for nobody.
    A daemon thread polls :func:`pid_alive`; nothing of the worker runs after its owner is gone.
    """
    def watch() -> None:
        while pid_alive(owner_pid):
            time.sleep(interval_s)
        os._exit(0)

    threading.Thread(target=watch, name="owner-watchdog", daemon=True).start()


def _write_record(fd: int, rec: dict[str, Any], path: Path) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(rec) + "\n").encode("utf-8"), 0)
        os.fsync(fd)
    except OSError as e:
        if is_enospc(e):
            raise DiskFullError(f"{path}: no space left on device") from e
        raise


@contextmanager
def _excl_lock(directory: Path, what: str) -> Iterator[dict[str, Any]]:
    path = directory / EXCL_NAME
    rec = _holder_record(what)
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            old = _read_record(path)
            stale = attempt == 0 and old.get("host") == rec["host"] and isinstance(old.get("pid"), int) \
                and not pid_alive(old["pid"])
            if not stale:
                raise LockHeldError(f"{directory} is locked by {describe_holder(old)}; "
                                    f"if that process is gone, remove {path}") from None
            print(f"warning: {directory}: taking over the lock of {describe_holder(old)}, "
                  "whose process is gone", file=sys.stderr)
            path.unlink(missing_ok=True)
    try:
        _write_record(fd, rec, path)
        yield rec
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


@contextmanager
def dir_lock(directory: str | os.PathLike[str], what: str) -> Iterator[dict[str, Any]]:
    """Hold ``directory`` exclusively for the duration of the block (the directory is created if needed).

    Raises :class:`LockHeldError` naming the holder when another process has it. Yields the holder record.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeldError(f"{directory} is locked by {describe_holder(_read_record(path))}") from None
        except OSError as e:
            if e.errno not in _FLOCK_REFUSED:
                raise
            os.close(fd)
            fd = -1
            with _excl_lock(directory, what) as rec:
                yield rec
            return
        rec = _holder_record(what)
        _write_record(fd, rec, path)
        try:
            yield rec
        finally:
            os.ftruncate(fd, 0)
    finally:
        if fd >= 0:
            os.close(fd)  # closing the last descriptor releases the flock
