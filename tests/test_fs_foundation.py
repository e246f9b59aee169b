"""shared.fsutil (atomic writes, full disk) and shared.runlock (one writer per directory), through real processes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shared import fsutil, runlock
from shared.errors import DiskFullError, LockHeldError, SynestheteError


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.json"
    fsutil.atomic_write_json(p, {"x": 1})
    fsutil.atomic_write_json(p, {"x": 2})
    assert json.loads(p.read_text()) == {"x": 2}
    assert sorted(os.listdir(tmp_path)) == ["a.json"]


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(ZeroDivisionError):
        with fsutil.atomic_path(p) as tmp:
            tmp.write_text("half")
            1 / 0
    assert p.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_enospc_becomes_one_line_disk_full(tmp_path, monkeypatch):
    p = tmp_path / "manifest.json"
    real_open = open

    def full_open(file, mode="r", *a, **k):
        if "w" in mode and str(file).startswith(str(tmp_path)):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(DiskFullError) as ei:
        fsutil.atomic_write_text(p, "x")
    assert str(ei.value) == f"{p}: no space left on device"
    assert isinstance(ei.value, SynestheteError)
    assert os.listdir(tmp_path) == []


def test_is_enospc_follows_the_cause_chain():
    try:
        try:
            raise OSError(errno.ENOSPC, "full")
        except OSError as inner:
            raise RuntimeError("shard 3 failed") from inner
    except RuntimeError as outer:
        assert fsutil.is_enospc(outer)
    assert not fsutil.is_enospc(OSError(errno.EACCES, "denied"))


_HOLDER = textwrap.dedent("""
    import sys, time
    from shared.runlock import dir_lock
    with dir_lock(sys.argv[1], "datagen run"):
        print("held", flush=True)
        time.sleep(60)
""")


def _start_holder(directory: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(directory)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_process_is_refused_naming_the_holder_and_lock_dies_with_it(tmp_path):
    proc = _start_holder(tmp_path)
    try:
        with pytest.raises(LockHeldError) as ei:
            with runlock.dir_lock(tmp_path, "cache-latents"):
                pass
        msg = str(ei.value)
        assert f"pid {proc.pid}" in msg and "datagen run" in msg and "\n" not in msg
    finally:
        proc.kill()
        proc.wait()
    with runlock.dir_lock(tmp_path, "cache-latents") as rec:  # SIGKILL released the flock
        assert rec["pid"] == os.getpid()
    with runlock.dir_lock(tmp_path, "again"):  # and release works
        pass


def _refuse_flock(monkeypatch):
    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(runlock.fcntl, "flock", no_flock)


def test_excl_fallback_refuses_a_live_holder(tmp_path, monkeypatch):
    _refuse_flock(monkeypatch)
    with runlock.dir_lock(tmp_path, "first"):
        assert (tmp_path / runlock.EXCL_NAME).exists()
        with pytest.raises(LockHeldError, match="first"):
            with runlock.dir_lock(tmp_path, "second"):
                pass
    assert not (tmp_path / runlock.EXCL_NAME).exists()


def test_excl_fallback_takes_over_a_dead_pid_on_this_host_with_a_warning(tmp_path, monkeypatch, capsys):
    _refuse_flock(monkeypatch)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rec = runlock._holder_record("crashed run") | {"pid": dead.pid}
    (tmp_path / runlock.EXCL_NAME).write_text(json.dumps(rec))
    with runlock.dir_lock(tmp_path, "new run") as held:
        assert held["pid"] == os.getpid()
    assert "taking over the lock of crashed run" in capsys.readouterr().err


def test_excl_fallback_never_takes_over_another_hosts_lock(tmp_path, monkeypatch):
    _refuse_flock(monkeypatch)
    rec = {"host": "some-other-host", "pid": 1, "what": "remote run", "since": "t"}
    (tmp_path / runlock.EXCL_NAME).write_text(json.dumps(rec))
    with pytest.raises(LockHeldError, match="remote run"):
        with runlock.dir_lock(tmp_path, "new run"):
            pass


def test_pid_alive_counts_a_zombie_as_gone():
    """The one liveness check (lock takeover, worker watchdogs): a killed child not yet reaped is gone."""
    import signal

    from shared.runlock import pid_alive

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not pid_alive(child.pid)
        assert child.poll() is None or child.returncode == -signal.SIGKILL  # gone before it was reaped
    finally:
        child.kill()
        child.wait()


def test_shard_writer_vetoed_commit_leaves_no_shard(tmp_path):
    """``before_commit`` raising (datagen's worker: its run is gone) leaves neither the shard nor its partial."""
    from shared.shards import ShardWriter

    def owner_gone() -> None:
        raise RuntimeError("owner gone")

    final = tmp_path / "train" / "shard-000000.tar"
    with pytest.raises(RuntimeError, match="owner gone"):
        with ShardWriter(final, before_commit=owner_gone) as w:
            w.add_sample("k0", [("txt", b"x")])
    assert list(tmp_path.rglob("*")) == [tmp_path / "train"]
