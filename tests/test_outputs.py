"""shared/outputs.py: output files checked before work, write failures as one-line errors (real files)."""

from __future__ import annotations

import errno
import os

import pytest

from shared.errors import DiskFullError, OutputPathError
from shared.outputs import output_error, prepare_output_file, same_file
from shared.video import VideoError


def test_same_file_sees_paths_symlinks_and_hard_links(tmp_path):
    a = tmp_path / "a.wav"
    a.write_bytes(b"x")
    (tmp_path / "s.wav").symlink_to(a)
    os.link(a, tmp_path / "h.wav")
    (tmp_path / "b.wav").write_bytes(b"x")
    assert same_file(a, tmp_path / "d" / ".." / "a.wav")
    assert same_file(a, tmp_path / "s.wav") and same_file(tmp_path / "h.wav", tmp_path / "s.wav")
    assert not same_file(a, tmp_path / "b.wav") and not same_file(a, tmp_path / "missing.wav")


def test_prepare_output_file_creates_the_folder_and_refuses_the_rest(tmp_path):
    out = tmp_path / "new" / "deeper" / "x.mp4"
    assert prepare_output_file(out) == out and out.parent.is_dir() and not out.exists()
    (tmp_path / "f").write_text("keep")
    with pytest.raises(OutputPathError, match=r"--video .*'.*f' is a file, not a folder"):
        prepare_output_file(tmp_path / "f" / "a" / "x.mp4", flag="--video")
    with pytest.raises(OutputPathError, match="is a folder"):
        prepare_output_file(tmp_path / "new")
    with pytest.raises(OutputPathError, match="is the input"):
        prepare_output_file(tmp_path / "f", inputs=[tmp_path / "f"])
    assert (tmp_path / "f").read_text() == "keep"


def test_output_error_names_the_path_and_spots_a_full_disk(tmp_path):
    p = tmp_path / "x.mp4"
    e = output_error(OSError(errno.ENOSPC, "No space left on device"), p)
    assert isinstance(e, DiskFullError) and str(e) == f"{p}: no space left on device"
    ffmpeg = VideoError(f"{p}: ffmpeg failed with exit code 1: ffmpeg said: av_interleaved_write_frame(): "
                        "No space left on device")
    assert isinstance(output_error(ffmpeg, p), DiskFullError)
    e = output_error(PermissionError(errno.EACCES, "Permission denied"), p)
    assert type(e) is OutputPathError and str(e) == f"{p}: Permission denied"
    e = output_error(VideoError(f"{p}: ffmpeg failed with exit code 1: ffmpeg said: Invalid argument"), p)
    assert type(e) is OutputPathError and str(e).startswith(f"{p}: ffmpeg failed")  # no doubled path
    with pytest.raises(OSError) as real:  # a real ENOSPC from the kernel, wrapped as a write helper might
        with open("/dev/full", "wb", buffering=0) as f:
            f.write(b"x")
    assert real.value.errno == errno.ENOSPC
    try:
        raise RuntimeError("write failed") from real.value
    except RuntimeError as wrapped:
        assert isinstance(output_error(wrapped, p), DiskFullError)
