"""Atomic file writes: readers see the old file or the new one, never half of one.

One idiom for the whole project: write a temporary file beside the target (same directory, so the
rename cannot cross filesystems), then ``os.replace`` it over the target. On any failure the temporary
file is removed and the target is untouched; a full disk becomes :class:`DiskFullError` naming the path.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.errors import DiskFullError


def is_enospc(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) is 'no space left on device' or a quota."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    tmp = _temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and is_enospc(e):
            raise DiskFullError(f"{path}: no space left on device") from e
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed and fsynced before the rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, **json_kwargs: Any) -> Path:
    text = json.dumps(obj, **json_kwargs)
    return atomic_write_text(path, text if text.endswith("\n") else text + "\n")
