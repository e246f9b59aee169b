"""The training loop (trainer/loop.py) itself: deferred metrics, the non-finite stop, the run-directory lock,
errors that keep their traceback, and a one-line error when no checkpoint is intact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import numpy as np
import torch

from shared.command_line import run_cli
from shared.config import build_config
from shared.errors import LockHeldError
from shared.runlock import dir_lock
from trainer import checkpoint as ckpt
from trainer.loop import Hyper, NonFiniteLossError, Task, done_word, train

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


class LinearTask(Task):
    """Least squares on a fixed target, batches a pure function of the step; the batch of ``poison_step`` holds inf."""

    name = "linear"
    shape_sections = ("vae",)
    val_every = 1000

    def __init__(self, steps: int, poison_step: int | None = None):
        self.hyper = Hyper(steps=steps, lr=0.05, warmup_steps=0, grad_clip=10.0, ema_decay=0.9, batch_size=8,
                           compile=False)
        self.poison_step = poison_step

    def build_model(self):
        return torch.nn.Linear(3, 1)

    def make_optimizer(self, model):
        return torch.optim.SGD(model.parameters(), lr=self.hyper.lr)

    def batches(self, start_step: int):
        step = start_step
        while True:
            x = torch.randn(8, 3, generator=torch.Generator().manual_seed(step))
            if step == self.poison_step:
                x[0, 0] = float("inf")
            yield {"x": x, "y": x @ torch.tensor([[1.0], [-2.0], [0.5]])}
            step += 1

    def loss(self, net, batch, generator, step):
        err = (net(batch["x"]) - batch["y"]).pow(2)
        return err.mean(), {"max_err": err.max()}


def _cfg(**run):
    return build_config(overrides=[f"run.{k}={v}" for k, v in {"device": "cpu", **run}.items()])


def test_metrics_are_flushed_every_log_every_steps_one_line_per_step(tmp_path):
    summary = train(LinearTask(steps=7), _cfg(log_every=3, checkpoint_every=5), tmp_path, show_progress=False)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]  # flushed at 3, 5 (checkpoint), 6 and 7 (the end)
    assert all({"train/loss", "train/max_err", "train/grad_norm", "train/lr"} <= set(r) for r in rows)
    assert [r["step"] for r in rows if "train/samples_per_s" in r] == [3, 5, 6, 7]
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    assert summary["train"]["loss"] == rows[-1]["train/loss"] and summary["steps"] == 7
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000005", "step-00000007"]


def test_a_finished_run_says_so_and_keeps_its_summary(tmp_path, capsys):
    """Re-running a finished run (a re-run of `make demo`) trains nothing, says the run is already finished and
    returns its own summary (its real samples/s), leaving summary.json as it was; with no summary.json of that
    step it writes one with no rate (no step ran this session) instead of 0 samples/s."""
    first = train(LinearTask(steps=4), _cfg(checkpoint_every=2), tmp_path, show_progress=False)
    saved = (tmp_path / "summary.json").read_text()
    capsys.readouterr()
    again = train(LinearTask(steps=3), _cfg(checkpoint_every=2), tmp_path, show_progress=False)
    assert capsys.readouterr().out == (f"linear: {tmp_path} already finished at step 4 (linear.steps=3); nothing to "
                                       "train (a larger --steps continues it)\n")
    assert again == dict(first, already_finished=True) and again["samples_per_s"] > 0
    assert (tmp_path / "summary.json").read_text() == saved
    assert done_word(again) == "already finished" and done_word(first) == "done"
    (tmp_path / "summary.json").unlink()
    rewritten = train(LinearTask(steps=4), _cfg(checkpoint_every=2), tmp_path, show_progress=False)
    assert "already finished at step 4 (linear.steps=4); nothing to train, writing its summary" in capsys.readouterr().out
    assert rewritten["samples_per_s"] is None and rewritten["steps"] == 4 and "already_finished" not in rewritten
    assert json.loads((tmp_path / "summary.json").read_text())["train"] == first["train"]


def test_a_non_finite_loss_stops_the_run_and_is_never_checkpointed(tmp_path):
    # inf in step 6's batch (index 5); checkpoints every 2 steps, metrics flushed every 10: the flush before the
    # checkpoint at step 6 sees it
    with pytest.raises(NonFiniteLossError) as e:
        train(LinearTask(steps=10, poison_step=5), _cfg(log_every=10, checkpoint_every=2), tmp_path,
              show_progress=False)
    msg = str(e.value)
    assert "at step 6" in msg and "loss=nan" in msg and "max_err=nan" in msg, msg
    assert str(tmp_path / "ckpt" / "step-00000004") in msg and "\n" not in msg
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000002", "step-00000004"]
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # the bad step is on record
    assert not (tmp_path / ".lock").read_text()  # the lock was released (its holder record cleared)


def test_a_held_run_dir_is_refused_and_stale_temp_dirs_go_under_the_lock(tmp_path, capsys):
    run = tmp_path / "run"
    with dir_lock(run, "another trainer"):
        with pytest.raises(LockHeldError, match="is locked by another trainer"):
            train(LinearTask(steps=2), _cfg(), run, show_progress=False)
    assert not (run / "ckpt").exists()  # refused before touching anything
    stale = run / "ckpt" / ".tmp-step-00000002-12345"
    stale.mkdir(parents=True)
    train(LinearTask(steps=2), _cfg(), run, show_progress=False)
    assert not stale.exists() and f"removed {stale}" in capsys.readouterr().out


def test_sampling_with_no_intact_checkpoint_is_a_one_line_error(tmp_path, capsys):
    run = tmp_path / "model"
    shutil.copytree(ROOT / "models" / "synesthete-tiny", run, symlinks=True)
    [ema] = (run / "ckpt").glob("step-*/ema.safetensors")
    ema.write_bytes(ema.read_bytes()[: ema.stat().st_size // 2])  # cut in half
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(8000, np.float32), 8000)
    with pytest.raises(SystemExit) as e:
        run_cli("trainer", "trainer.commands", "trainer",
                ["sample", "--audio", str(wav), "--checkpoint", str(run), "--out", str(tmp_path / "a.mp4")])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert e.value.code == 2 and len(lines) == 1 and str(ema) in lines[0], lines
    assert "no intact checkpoint" in lines[0] and not (tmp_path / "a.mp4").exists()
