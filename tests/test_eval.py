"""`trainer eval` on a tiny checkpoint and tiny val pixel shards: every report file, sane ceilings, errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from shared.video import probe
from trainer.cli import main
from trainer.eval.evaluate import select_round_robin

from eval_fixtures import shared_tiny_checkpoint, tiny_config, torch_threads, write_val_pixel_shards

METRICS = ("val_loss_true_audio", "val_loss_shuffled_audio", "val_loss_gap", "output_sensitivity_motion",
           "output_sensitivity_latent", "style_diversity", "silence_settle_ratio", "av_align", "rms_motion_spearman",
           "mean_motion_energy")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    with torch_threads(1):
        ckpt = shared_tiny_checkpoint(tmp_path_factory)
        data = write_val_pixel_shards(tmp_path_factory.mktemp("pixels"), tiny_config(1))
        yield ckpt, data


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(["eval", *map(str, args)])
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_round_robin_selection_covers_every_variant():
    v = ["normal"] * 5 + ["silence"] * 2 + ["debug"]
    assert select_round_robin(v, 4) == [0, 5, 7, 1]
    assert sorted(select_round_robin(v, 20)) == list(range(8))


def test_eval_writes_every_report_file(setup, tmp_path, capsys):
    ckpt, data = setup
    out = tmp_path / "eval"
    with torch_threads(1):
        code, stdout, err = run_cli(capsys, "--checkpoint", ckpt, "--data", data, "--out", out, "--n", 3)
    assert code == 0, err
    for name in ("report.json", "report.md", "metrics.png", "vae_bottleneck.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rep = json.loads((out / "report.json").read_text())
    assert set(METRICS) <= set(rep["metrics"])
    for name, row in rep["metrics"].items():
        assert {"generated", "ground_truth", "better", "description"} <= set(row), name
    assert rep["info"]["clips"] == 3 and rep["info"]["frames_per_clip"] == 32
    assert [p["variant"] for p in rep["per_clip"]] == ["normal", "silence", "debug"]
    m = rep["metrics"]
    # the ground truth settles in its silence and follows its audio: its ceilings are where they should be
    assert m["silence_settle_ratio"]["ground_truth"] < 0.05
    assert m["rms_motion_spearman"]["ground_truth"] is not None
    assert 0.0 <= m["av_align"]["ground_truth"] <= 1.0 and 0.0 <= m["av_align"]["generated"] <= 1.0
    assert m["style_diversity"]["ground_truth"] > 0 and m["style_diversity"]["generated"] > 0
    for name in ("val_loss_true_audio", "val_loss_shuffled_audio", "output_sensitivity_motion", "silence_settle_ratio"):
        assert isinstance(m[name]["generated"], float) and math.isfinite(m[name]["generated"]), name
    assert set(rep["vae_bottleneck"]) >= {"av_align", "rms_motion_spearman", "silence_settle_ratio", "psnr_db"}
    files = rep["files"]
    assert len(files["plots_timeline"]) == 3 and len(files["videos_side_by_side"]) == 3
    for p in files["plots_timeline"] + files["videos_side_by_side"]:
        assert (out / p).is_file(), p
    info = probe(out / files["videos_side_by_side"][0])
    assert info["n_frames"] == 32 and info["has_audio"] and info["width"] == 3 * 32 + 4
    md = (out / "report.md").read_text()
    for name in METRICS:
        assert f"| {name} |" in md
    assert "silence_settle_ratio" in stdout


def test_eval_bad_inputs_exit_2_with_one_line(setup, tmp_path, capsys):
    ckpt, data = setup
    cases = [
        (["--checkpoint", ckpt, "--data", tmp_path / "no_pixels"], "no_pixels"),
        (["--checkpoint", tmp_path / "no_run", "--data", data], "no_run"),
        (["--checkpoint", ckpt, "--data", data, "render.resolution=64"], "64x64"),
    ]
    for args, needle in cases:
        code, _, err = run_cli(capsys, *args, "--out", tmp_path / "e")
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert code == 2 and needle in err and "Traceback" not in err, (args, err)
        assert lines[-1].startswith("error:")


def test_report_numbers_are_json_safe():
    from trainer.eval.report import fmt, json_number

    assert json_number({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5]}) == {"a": None, "b": ["inf", "-inf", 1.5]}
    assert fmt(None) == fmt(float("nan")) == "n/a" and fmt(float("inf")) == "inf" and fmt(0.123456) == "0.1235"


def test_an_audio_blind_model_scores_zero_sensitivity_and_gap(setup, tmp_path):
    """A freshly initialised denoiser outputs exactly 0 (adaLN-Zero), so its videos depend on the noise and
    style but not on the audio: the shuffled-audio generation shares the true one's noise and style, so S
    must be exactly 0 while the reseeded generation differs; the loss gap is 0 too."""
    from pathlib import Path

    from shared.timeline import channel_names
    from trainer.diffusion.model import Denoiser
    from trainer.eval.evaluate import evaluate
    from trainer.sample import SamplingModel
    from trainer.vae.model import FrameVAE

    _, data = setup
    cfg = tiny_config(1, ["eval.write_videos=false"])
    torch.manual_seed(0)
    model = SamplingModel(cfg=cfg, denoiser=Denoiser(cfg, 4, 8, len(channel_names(cfg.timeline))).eval(),
                          vae=FrameVAE(cfg.vae).eval(), latent_scale=1.0, latent_shape=(4, 8, 8), step=0,
                          step_dir=Path("initial"), device=torch.device("cpu"))
    with torch_threads(1), torch.no_grad():
        rep, pj, _ = evaluate(model, data, tmp_path, n_clips=3, log=lambda m: None)
    rows = {r.name: r for r in rep.rows}
    assert rows["output_sensitivity_motion"].generated == 0.0
    assert rows["output_sensitivity_latent"].generated == 0.0
    assert rows["val_loss_gap"].generated == 0.0
    assert rows["style_diversity"].generated > 0  # another style latent and seed do change the video
    assert "videos_side_by_side" not in json.loads(pj.read_text())["files"]
