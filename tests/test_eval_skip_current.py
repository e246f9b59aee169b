"""`trainer eval --skip-current` (what a re-run of `make demo` passes): a report written after every file of the
checkpoint, the data and the eval code is kept, and the command says so; anything newer evaluates again."""

from __future__ import annotations

import os
from argparse import Namespace
from pathlib import Path

import pytest

from shared.command_line import run_cli
from trainer.commands.eval import REPORT_FILES, eval_inputs, report_is_current


def _at(path: Path, seconds: float) -> Path:
    os.utime(path, (seconds, seconds))
    return path


def _layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A step dir, a data dir and a report dir, every report file newer than every input (and than the code)."""
    step = tmp_path / "run" / "ckpt" / "step-00000004"
    step.mkdir(parents=True)
    (tmp_path / "run" / "latest").symlink_to(step)
    (step / "state.json").write_text("{}")
    _at(step / "state.json", 1e9)
    data = tmp_path / "pixels"
    (data / "val").mkdir(parents=True)
    (data / "val" / "shard-000000.tar").write_bytes(b"x")
    _at(data / "val" / "shard-000000.tar", 1e9)
    (data / "manifest.json").write_text("{}")  # rewritten by every `datagen run`: not an input of the eval
    out = tmp_path / "eval"
    out.mkdir()
    future = 4e9  # after the eval code's own files
    for name in REPORT_FILES:
        (out / name).write_text("report")
        _at(out / name, future)
    return tmp_path / "run", data, out


def test_a_report_newer_than_its_inputs_is_current_until_one_of_them_changes(tmp_path):
    run, data, out = _layout(tmp_path)
    inputs = eval_inputs(Namespace(audio_dir=None, data=str(data)))
    assert inputs == [data / "val"] and report_is_current(out, run, inputs)
    _at(data / "val" / "shard-000000.tar", 5e9)  # a regenerated shard
    assert not report_is_current(out, run, inputs)
    _at(data / "val" / "shard-000000.tar", 1e9)
    _at(run / "ckpt" / "step-00000004" / "state.json", 5e9)  # a newer checkpoint
    assert not report_is_current(out, run, inputs)
    _at(run / "ckpt" / "step-00000004" / "state.json", 1e9)
    assert report_is_current(out, run, inputs)
    (out / "report.html").unlink()  # an eval that stopped before its last file
    assert not report_is_current(out, run, inputs)
    assert not report_is_current(out, tmp_path / "nothing", inputs)
    assert eval_inputs(Namespace(audio_dir=None, data=str(tmp_path / "missing"))) == []
    assert eval_inputs(Namespace(audio_dir=str(data), data="ignored")) == [data]


def test_eval_skip_current_keeps_the_report_and_says_so(tmp_path, capsys):
    run, data, out = _layout(tmp_path)
    argv = ["eval", "--checkpoint", str(run), "--data", str(data), "--out", str(out), "--skip-current"]
    assert run_cli("trainer", "trainer.commands", "", argv) == 0  # the fake checkpoint is never loaded
    err = capsys.readouterr().err
    assert err.startswith(f"eval: kept {out / 'report.html'} (and .json, .md): written after every file of {run}, "
                          f"{data} and the eval code") and err.count("\n") == 1
    _at(data / "val" / "shard-000000.tar", 5e9)
    with pytest.raises(SystemExit) as e:  # evaluates again: loading the fake checkpoint fails, in one line
        run_cli("trainer", "trainer.commands", "", argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: no intact checkpoint") and "eval: kept" not in err
