"""Issue 24's results writer (bench/ablation/study_writer.py) and the VAE report's PSNR (bench/study_vae.py):
the section is replaced in place, the loss gap and PSNR match their definitions (PSNR against OpenCV's)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from ablation.study_writer import HEADING, commit_stamp, loss_gap, section, write_study_results  # noqa: E402

_spec = importlib.util.spec_from_file_location("study_vae", ROOT / "bench" / "study_vae.py")
study_vae = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study_vae)


def test_the_section_is_appended_once_then_replaced_in_place_with_its_commit(tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text("# R\n\n## Before\n\nkept\n")
    doc = {}  # not calibrated yet: the section says so
    write_study_results(md, doc, {}, "k", "abc123", "python x", "load")
    once = md.read_text()
    assert once.startswith("# R\n\n## Before\n\nkept\n") and once.count(HEADING) == 1
    assert "Written on commit `abc123`" in once and "Not run yet" in once
    md.write_text(once + "\n## After\n\nalso kept\n")
    write_study_results(md, doc, {}, "k", "def456", "python x", "load")
    twice = md.read_text()
    assert twice.count(HEADING) == 1 and "def456" in twice and "abc123" not in twice
    assert "## Before\n\nkept" in twice and twice.endswith("## After\n\nalso kept\n")


def test_the_commit_line_names_each_reports_own_commit_and_those_not_recorded():
    line = commit_stamp("fff000", {"B": [{"info": {"commit": "aaa111"}}, {"info": {}}], "A": [None, {"info": {
        "commit": "bbb222-dirty"}}]})
    assert line.startswith("Written on commit `fff000`")
    assert "A s1 `bbb222-dirty`, B s0 `aaa111`; B s1: not recorded" in line and "A s0" not in line
    assert "not recorded" not in commit_stamp("fff000", {"B": [{"info": {"commit": "aaa111"}}]})


def _report(gen: float, floor: float, ceil: float, loss: float = 0.1, loss_bad: float = 0.15) -> dict:
    def e(m):
        return {"mean": m, "ci": [m - 0.05, m + 0.05], "n": 72}
    metrics = {m: {"generated": e(gen), "floor": e(floor), "ceiling": e(ceil)}
               for m in ("loudness_motion_spearman", "loudness_brightness_spearman", "bands_colour_geometry_r2",
                         "av_align", "beat_alignment_score", "retrieval_top1", "style_diversity_siblings",
                         "memorisation_ratio")}
    metrics["val_loss"] = {"generated": e(loss), "floor": e(loss_bad), "ceiling": None}
    silence = {"silence_settle_ratio": {"generated": e(0.05), "floor": e(0.9), "ceiling": e(0.001)}}
    return {"variants": {"normal": {"metrics": metrics}, "silence": {"metrics": silence}}}


def test_loss_gap_is_the_loss_with_other_audio_minus_with_its_own():
    assert loss_gap(_report(0.5, 0.0, 0.7, loss=0.1, loss_bad=0.16)) == pytest.approx(0.06)
    assert loss_gap(None) is None


def test_section_states_the_verdict_and_every_arm():
    reps = {"A": [_report(0.2, 0, 0.7)] * 2, "B": [_report(0.5, 0, 0.7)] * 2, "B0": [_report(0.3, 0, 0.7)] * 2,
            "B+": [_report(0.5, 0, 0.7)] * 2}
    verdict = {"verdict": "helps", "variant": "normal", "metric": "loudness_motion_spearman",
               "per_seed": [{"difference": 0.2, "half_width": 0.07, "verdict": "helps"}] * 2}
    comp = {"primary": verdict, "secondary": []}
    doc = {"steps": 1300, "s_per_step_B": 0.69, "budget_s": 900.0, "seeds": [0, 1], "jobs": 2,
           "pressure": "shuffle pressure helps", "comparisons": {"B vs B0": comp, "B vs A": comp, "B+ vs B": comp},
           "not_run": []}
    text = "\n".join(section(doc, reps, "docs/results/study/reports", "python x", "load average 2.0"))
    assert "**Verdict (B vs B0, loudness → motion): shuffle pressure helps.**" in text
    assert "| loudness → motion Spearman (primary) | 0.7 [0.65, 0.75] | **0.2** (s0: 0.2 [0.15, 0.25]; s1: 0.2 " in text
    assert "1300 steps" in text and "load average 2.0" in text


def test_clip_psnr_matches_opencv():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    flat_a, flat_b = a.reshape(-1, 16, 3), b.reshape(-1, 16, 3)  # one image holding every frame: the same MSE
    assert study_vae.clip_psnr(a, b) == pytest.approx(cv2.PSNR(flat_a, flat_b), abs=1e-9)
    assert study_vae.clip_psnr(a, a) == float("inf")


def test_study_vae_measures_every_val_clip_packages_and_writes_its_card(tmp_path, micro_cfg):
    """bench/study_vae.py end to end on micro shards and an untrained micro VAE: every val clip measured per
    variant, the packaged VAE loads, the picture and the card name the report (the figures mean nothing here)."""
    import json

    import torch
    from PIL import Image

    from trainer.checkpoint import prepare_run_dir, save_checkpoint
    from trainer.vae.model import FrameVAE, load_vae
    from trainer_shards import write_pixel_shards

    write_pixel_shards(tmp_path / "data", micro_cfg, train_shards=1, val_shards=2, samples_per_shard=3)
    torch.manual_seed(0)
    run = tmp_path / "vae"
    prepare_run_dir(run, micro_cfg, ("vae",))
    model = FrameVAE(micro_cfg.vae)
    save_checkpoint(run, 4, {"model": model.state_dict(), "ema": model.state_dict()}, {}, keep=1)
    dest, report = tmp_path / "models" / "vae", tmp_path / "vae.json"
    assert study_vae.main(["--vae", str(run), "--data", str(tmp_path / "data"), "--report", str(report),
                           "--package", str(dest), "--schedule", "4 steps"]) == 0
    rep = json.loads(report.read_text())
    assert rep["clips"] == 6 and sum(v["n"] for v in rep["psnr_db"].values()) == 6 == rep["psnr_db_all"]["n"]
    assert rep["goal"]["met"] is False and rep["vae"]["checkpoint"] == "step-00000004"
    assert load_vae(dest)[2].name == "step-00000004"
    pic = Image.open(dest / "recon.png")
    n_normal = rep["psnr_db"]["normal"]["n"]
    assert pic.size == (2 * micro_cfg.render.resolution * min(n_normal, 8), 2 * 2 * micro_cfg.render.resolution)
    card = (dest / "MODEL_CARD.md").read_text()
    assert "![originals above reconstructions](recon.png)" in card and str(report) in card and "4 steps" in card
