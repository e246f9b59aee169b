"""Output files of the commands: checked before any work, and write failures as one-line errors.

:func:`prepare_output_file` runs before a command renders anything: the output must not be one of its
inputs (also through a symlink or a hard link: the same inode), must not be a folder, and its folder must
exist or be creatable and be writable. :func:`output_error` turns what a failed write raised (an
``OSError``, or ffmpeg's complaint inside a :class:`shared.video.VideoError`) into an
:class:`~shared.errors.OutputPathError` naming the path, a :class:`~shared.errors.DiskFullError` for a
full disk; anything else is left alone (a bug keeps its traceback).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

from shared.errors import DiskFullError, OutputPathError
from shared.fsutil import is_enospc

_FFMPEG_NO_SPACE = "No space left on device"  # ffmpeg's wording of ENOSPC (strerror), found in its stderr


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file: equal resolved paths, or the same inode (hard links)."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def prepare_output_file(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = (),
                        flag: str = "--out") -> Path:
    """Check that ``out`` can be written without harming ``inputs``; create its folder. Returns ``out``.

    Raises :class:`OutputPathError` (one line, naming ``flag`` and the path) when ``out`` is an input,
    a folder, under a path component that is a file, or in a folder that cannot be created or written.
    """
    out = Path(out)
    for src in inputs:
        if same_file(out, Path(src)):
            raise OutputPathError(f"{flag} {str(out)!r} is the input {str(src)!r}: it would be overwritten")
    if out.is_dir():
        raise OutputPathError(f"{flag} {str(out)!r} is a folder; give a file name")
    parent = out.parent
    for folder in [parent, *parent.parents]:  # the nearest existing ancestor must be a folder
        if folder.exists():
            if not folder.is_dir():
                raise OutputPathError(f"{flag} {str(out)!r}: {str(folder)!r} is a file, not a folder")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(e, parent, f"{flag} {str(out)!r}: cannot create the folder") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {str(out)!r}: the folder {str(parent)!r} is not writable")
    return out


def output_error(exc: BaseException, path: str | os.PathLike[str], what: str | None = None) -> OutputPathError:
    """The one-line error for a failed write of ``path`` (``what`` replaces the path as the message's
    start): :class:`DiskFullError` when the disk is full (errno, or ffmpeg's wording of it)."""
    where = what or str(path)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if is_enospc(exc) or _FFMPEG_NO_SPACE in str(exc):
        return DiskFullError(f"{where}: no space left on device")
    if isinstance(exc, OSError):
        return OutputPathError(f"{where}: {exc.strerror or errno.errorcode.get(exc.errno or 0, text)}")
    return OutputPathError(text if text.startswith(str(path)) else f"{where}: {text}")
