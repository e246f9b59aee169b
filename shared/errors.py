"""The errors a user can fix: bad config, data, checkpoints, audio, output paths, a held lock.

Each is raised where the input is checked, with a message that names the thing that is wrong.
Commands catch only :class:`SynestheteError` and print ``error: <message>`` (exit 2); every other
exception (a bug, CUDA running out of memory) keeps its traceback.
"""

from __future__ import annotations


class SynestheteError(Exception):
    """Bad input a user can fix; the message is one line naming what is wrong."""


class ConfigError(SynestheteError, ValueError):
    """A bad config: the message names the dotted field."""


class DataError(SynestheteError):
    """Shards, manifests or caches that cannot be used as they are."""


class CheckpointError(SynestheteError):
    """A checkpoint that is missing, damaged or does not fit the model."""


class AudioError(SynestheteError):
    """An audio input that cannot be read or is too short to use."""


class OutputPathError(SynestheteError):
    """An output path that cannot be written (unwritable, a file where a folder should be, the input itself)."""


class DiskFullError(OutputPathError):
    """A write failed because the filesystem is full; the message names the path."""


class LockHeldError(SynestheteError):
    """Another process holds the directory this one wants to write."""


def one_line(e: BaseException | str) -> str:
    """An error message folded onto one line (YAML and ffmpeg errors span several)."""
    return " ".join(str(e).split())
