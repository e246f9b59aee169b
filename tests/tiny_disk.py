"""A nearly full disk for tests: ENOSPC injected where the project writes files.

The project writes every file through the builtin ``open`` called from shared.shards (ShardWriter) and
shared.fsutil (atomic writes); ``TinyDisk.install(monkeypatch)`` replaces that name in both modules with
one that meters the bytes written and raises ``OSError(ENOSPC)`` past ``free`` (what a full filesystem
raises from write()). CI cannot mount a small tmpfs; the same behaviour was checked once on one by hand.
"""

from __future__ import annotations

import builtins
import errno
import os


class TinyDisk:
    """A filesystem with ``free`` bytes left, injected where the project writes files (the builtin ``open``
    that shared.shards' ShardWriter and shared.fsutil's atomic writes call): a write past it raises ENOSPC."""

    def __init__(self, free: int):
        self.free = free

    def open(self, file, mode="r", *args, **kwargs):
        f = builtins.open(file, mode, *args, **kwargs)
        return f if not any(c in mode for c in "wax+") else _Metered(f, self)

    def install(self, monkeypatch) -> "TinyDisk":
        import shared.fsutil
        import shared.shards

        monkeypatch.setattr(shared.shards, "open", self.open, raising=False)
        monkeypatch.setattr(shared.fsutil, "open", self.open, raising=False)
        return self


class _Metered:
    def __init__(self, f, disk: TinyDisk):
        self._f, self._disk = f, disk

    def write(self, data) -> int:
        if len(data) > self._disk.free:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self._f.name))
        self._disk.free -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
