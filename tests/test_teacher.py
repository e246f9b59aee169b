"""`trainer teacher` (trainer/teacher.py): the ground truth measured with the eval's metrics, through the real
synthesizer, timeline and EGL renderer (Mesa llvmpipe here) at 32 px, 8 fps, 2 s clips.

Oracles: the ground truth equals the bytes `datagen run` writes for the same seed; per-clip values equal the
registry's functions called directly and a plain numpy/scipy computation; variant means are the means of the
per-clip values; the style diversity equals metrics.style_diversity; same seed -> same numbers.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from shared.config import build_config
from trainer.eval import metrics as M
from trainer.eval.registry import REGISTRY, ClipMetric, audio_side, video_side
from trainer.teacher import (LOUD_STD_DB, VARIANT_STRIDE, clip_seed, file_ground_truth, file_plan_seed, ground_truth,
                             measure_teacher, measure_teacher_files, renderer_scope)

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
REAL = ROOT / "tests" / "data" / "real_audio"
MICRO = ["data.sample_rate=8000", "data.clip_seconds=2.0", "render.resolution=32", "render.fps=8",
         "data.samples_per_shard=3", "timeline.n_fft=256", "eval.bootstrap=200"]
SEED0 = 5
N = 3


@pytest.fixture(scope="module")
def cfg():
    return build_config([TINY], overrides=MICRO)


@pytest.fixture(scope="module")
def renderer(cfg):
    with renderer_scope(None, cfg.render.resolution) as r:
        yield r


@pytest.fixture(scope="module")
def report(cfg, renderer):
    return measure_teacher(cfg, N, ("normal", "silence"), seed0=SEED0, renderer=renderer)


def music_frames(meta: dict, n: int, fps: float) -> np.ndarray:
    """Frames outside labelled silence and the 0.5 s after it, written out plainly."""
    keep = np.ones(n, bool)
    for s in meta["segments"]:
        if s["kind"] == "silence":
            keep[s["start_frame"]:s["end_frame"] + math.ceil(0.5 * fps)] = False
    return keep


# ------------------------------------------------------------------ the ground truth


def test_ground_truth_is_what_a_shard_sample_of_the_seed_holds(cfg, renderer, tmp_path):
    from datagen.shard_job import ShardSpec, write_shard
    from shared import shards as S

    spec = ShardSpec("train", 0, str(tmp_path))
    write_shard(cfg, spec, renderer)
    samples = [S.decode_pixel_sample(m) for _, m in S.iter_tar_samples(spec.path)]
    assert len(samples) == 3
    for s in samples:
        gt = ground_truth(cfg, s["meta"]["seed"], s["meta"]["variant"], renderer)
        assert gt.sr == s["sr"] and np.array_equal(gt.wave, s["wave"])
        assert np.array_equal(gt.timeline, s["timeline"]) and gt.names == s["meta"]["timeline_channels"]
        assert gt.frames.dtype == np.uint8 and np.array_equal(gt.frames, s["frames"])
        assert gt.meta["segments"] == s["meta"]["segments"] and gt.meta["visual_plan"] == s["meta"]["visual_plan"]
    raw = ground_truth(cfg, samples[0]["meta"]["seed"], samples[0]["meta"]["variant"], renderer, jpeg=False)
    assert raw.frames.shape == samples[0]["frames"].shape and not np.array_equal(raw.frames, samples[0]["frames"])


def test_clip_seeds_are_distinct_per_variant_and_prefix_stable(report):
    assert report["variants"]["normal"]["seeds"] == [SEED0, SEED0 + 1, SEED0 + 2]
    assert report["variants"]["silence"]["seeds"] == [SEED0 + VARIANT_STRIDE + i for i in range(N)]
    assert clip_seed(SEED0, "debug", 4) == SEED0 + 2 * VARIANT_STRIDE + 4
    with pytest.raises(ValueError, match="unknown variant 'loud'"):
        clip_seed(0, "loud", 0)
    with pytest.raises(ValueError, match="n_clips"):
        measure_teacher(build_config([TINY], overrides=MICRO), 0)


# ------------------------------------------------------------------ per clip


def test_loudness_std_is_the_log_rms_std_over_music_frames(cfg, renderer, report):
    for variant, sec in report["variants"].items():
        for rec in sec["clips"]:
            gt = ground_truth(cfg, rec["seed"], variant, renderer)
            keep = music_frames(gt.meta, len(gt.timeline), cfg.render.fps)
            want = float(np.std(gt.timeline[keep, gt.names.index("log_rms")].astype(np.float64)))
            assert rec["loudness_std_db"] == pytest.approx(want, rel=1e-9, abs=1e-9)
        stds = np.array([c["loudness_std_db"] for c in sec["clips"]])
        ls = sec["loudness_std"]
        assert ls["median_db"] == pytest.approx(float(np.median(stds)))
        assert ls["share_ge_threshold"] == pytest.approx(float(np.mean(stds >= LOUD_STD_DB))) and ls["n"] == N


def test_clip_values_equal_the_registry_and_a_direct_computation(cfg, renderer, report):
    for variant in ("normal", "silence"):
        rec = report["variants"][variant]["clips"][0]
        gt = ground_truth(cfg, rec["seed"], variant, renderer)
        a = audio_side("x", gt.meta, gt.timeline, gt.names, gt.wave, gt.sr, cfg.render.fps)
        v = video_side(gt.frames)
        for m in REGISTRY:
            if isinstance(m, ClipMetric):
                want = m.fn(a, v, cfg)
                got = rec["values"][m.name]
                assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want, abs=1e-12), m.name
        # loudness -> motion without the eval's code: mean |frame difference| vs the rms channel, on music frames
        x = gt.frames.astype(np.float64) / 255.0
        motion = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))
        motion = np.concatenate([motion[:1], motion])
        keep = music_frames(gt.meta, len(gt.frames), cfg.render.fps)
        keep[0] = False  # frame 0's motion is a copy of frame 1's: the eval leaves it out
        rms = gt.timeline[:, gt.names.index("rms")].astype(np.float64)
        assert rec["values"]["loudness_motion_spearman"] == pytest.approx(
            spearmanr(rms[keep], motion[keep]).statistic, abs=1e-6)
    assert math.isnan(report["variants"]["normal"]["clips"][0]["values"]["silence_settle_ratio"])
    assert math.isfinite(report["variants"]["silence"]["clips"][0]["values"]["silence_settle_ratio"])


# ------------------------------------------------------------------ per variant


def test_variant_entries_are_the_means_of_the_clip_values_with_a_ci(report):
    for variant, sec in report["variants"].items():
        for m in REGISTRY:
            e = sec["metrics"][m.name]
            if not isinstance(m, ClipMetric):
                assert e["n"] == N and e["mean"] is not None
                continue
            vals = np.array([c["values"][m.name] for c in sec["clips"]])
            vals = vals[np.isfinite(vals)]
            assert e["n"] == vals.size, (variant, m.name)
            if vals.size:
                assert e["mean"] == pytest.approx(float(vals.mean()))
            else:
                assert e["mean"] is None and e["ci"] is None and e["note"]
            if vals.size >= 2 and np.ptp(vals) > 0:
                lo, hi = e["ci"]
                assert vals.min() - 1e-12 <= lo <= e["mean"] <= hi <= vals.max() + 1e-12
    assert report["variants"]["normal"]["metrics"]["silence_settle_ratio"]["n"] == 0
    assert report["variants"]["silence"]["metrics"]["silence_settle_ratio"]["n"] == N
    assert report["variants"]["normal"]["metrics"]["retrieval_top1"]["chance"] == pytest.approx(1 / N)


def test_style_diversity_is_the_ground_truths_across_clips(cfg, renderer, report):
    sec = report["variants"]["normal"]
    frames = [ground_truth(cfg, s, "normal", renderer).frames for s in sec["seeds"]]
    e = sec["metrics"]["style_diversity"]
    assert e["mean"] == pytest.approx(M.style_diversity(frames), rel=1e-9) and e["n"] == N


def test_same_seed_same_numbers_and_other_seed_other_numbers(cfg, renderer, report):
    again = measure_teacher(cfg, 2, ("normal",), seed0=SEED0, renderer=renderer)["variants"]["normal"]
    first = report["variants"]["normal"]
    for a, b in zip(again["clips"], first["clips"][:2]):
        assert a["seed"] == b["seed"] and a["loudness_std_db"] == b["loudness_std_db"]
        assert json.dumps(a["values"]) == json.dumps(b["values"])
    other = measure_teacher(cfg, 2, ("normal",), seed0=SEED0 + 100, renderer=renderer)["variants"]["normal"]
    assert other["clips"][0]["values"] != first["clips"][0]["values"]
    info = report["info"]
    assert (info["fps"], info["resolution"], info["clip_seconds"], info["sample_rate"]) == (8.0, 32, 2.0, 8000)
    assert info["datagen_path"] == str(ROOT / "datagen") and info["content_versions"]["timeline"] >= 1
    assert info["wall_s"] > 0 and info["renderer"].get("renderer")


# ------------------------------------------------------------------ real audio


def test_real_audio_files_per_file_values(cfg, renderer):
    paths = [REAL / "joplin_maple_leaf_rag.mp3", REAL / "bach_bwv66.6_organ.flac"]
    rep = measure_teacher_files(cfg, paths, seed0=0, renderer=renderer)
    assert [c["file"] for c in rep["clips"]] == [p.name for p in paths] and rep["n_clips"] == 2
    assert "retrieval_top1" not in rep["metrics"] and "bands_colour_geometry_r2" not in rep["metrics"]
    gt = file_ground_truth(cfg, paths[0], 0, renderer)
    assert gt.meta["seed"] == file_plan_seed(0, "elsewhere/joplin_maple_leaf_rag.mp3")  # by name only
    assert gt.sr == cfg.data.sample_rate and len(gt.frames) == len(gt.timeline)
    assert gt.meta["segments"], "the file has a silence cut in; the timeline detects it"
    a = audio_side("x", gt.meta, gt.timeline, gt.names, gt.wave, gt.sr, cfg.render.fps)
    v = video_side(gt.frames)
    rec = rep["clips"][0]
    for name in ("loudness_motion_spearman", "loudness_brightness_spearman", "loudness_bright_area_spearman",
                 "av_align", "beat_alignment_score", "silence_settle_ratio"):
        fn = next(m for m in REGISTRY if m.name == name).fn
        assert rec["values"][name] == pytest.approx(fn(a, v, cfg), abs=1e-12), name
        assert math.isfinite(rec["values"][name])
    again = measure_teacher_files(cfg, paths[:1], seed0=0, renderer=renderer)
    assert json.dumps(again["clips"][0]["values"]) == json.dumps(rec["values"])


def test_real_audio_figures_average_over_visual_plans(cfg, renderer):
    """plans=K: a file's value is the mean of its K single-plan values (seeds seed0..seed0+K-1), and the mean over
    files is the mean of those."""
    path = REAL / "joplin_maple_leaf_rag.mp3"
    two = measure_teacher_files(cfg, [path], seed0=3, renderer=renderer, plans=2)
    singles = [measure_teacher_files(cfg, [path], seed0=s, renderer=renderer)["clips"][0]["values"] for s in (3, 4)]
    rec = two["clips"][0]
    assert two["plans"] == 2 and json.dumps(rec["plan_values"]) == json.dumps(singles)  # NaN != NaN in a dict
    assert rec["plan_seeds"] == [file_plan_seed(3, path), file_plan_seed(4, path)]
    for name in ("loudness_motion_spearman", "av_align"):
        assert rec["values"][name] == pytest.approx((singles[0][name] + singles[1][name]) / 2, abs=1e-12)
        assert two["metrics"][name]["mean"] == pytest.approx(rec["values"][name], abs=1e-12)
    with pytest.raises(ValueError, match="plans"):
        measure_teacher_files(cfg, [path], plans=0, renderer=renderer)


# ------------------------------------------------------------------ the command


def teacher(*argv: str) -> int:
    from trainer.cli import main

    try:
        main(["teacher", *argv])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_cli_writes_report_json_md_and_png(tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(REAL / "joplin_maple_leaf_rag.mp3", audio)
    out = tmp_path / "out"
    rc = teacher("--config", str(TINY), *MICRO, "--clips", "2", "--seed", "3", "--out", str(out),
                 "--audio-dir", str(audio))
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "teacher: normal clip 2/2 (seed 4)" in cap.err and "teacher: file 1/1" in cap.err
    assert f"wrote {out / 'report.json'}" in cap.err and "loudness_motion_spearman" in cap.out
    rep = json.loads((out / "report.json").read_text())
    assert list(rep["variants"]) == ["normal", "silence"] and rep["variants"]["normal"]["seeds"] == [3, 4]
    assert rep["real_audio"]["clips"][0]["file"] == "joplin_maple_leaf_rag.mp3"
    md = (out / "report.md").read_text()
    assert "## normal: 2 clips" in md and "## silence: 2 clips" in md and "## Real audio: 1 files" in md
    assert "| metric | value | 95% CI | n |" in md and "Loudness std" in md and "## Definitions" in md
    png = out / "contact_sheet.png"
    assert png.stat().st_size < 1_000_000
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] >= 600 and im.size[1] >= 600
    prims = out / "primitives_sheet.png"
    with Image.open(prims) as im:  # 12 primitives under the loudness curve: a tall sheet
        assert im.format == "PNG" and im.size[1] > 1.2 * im.size[0] and prims.stat().st_size < 1_500_000


@pytest.mark.parametrize("argv,msg", [
    (["--clips", "1"], "--clips must be >= 2"),
    (["--variants", "normal", "loud"], "unknown variant 'loud'"),
    (["--audio-dir", "/nonexistent/teacher-audio"], "not found"),
    (["--seed", "-1"], "--seed must be >= 0"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, msg):
    rc = teacher(*MICRO, "--out", str(tmp_path / "o"), *argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and msg in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_bench_smoke_measures_the_baseline_generator_with_these_metrics(tmp_path):
    """bench/teacher_ab.py --smoke with a copy of the generator as the baseline: the copy is what is imported."""
    base = tmp_path / "base"
    for pkg in ("datagen", "shared"):
        shutil.copytree(ROOT / pkg, base / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(REAL / "joplin_maple_leaf_rag.mp3", audio)
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\n## Other\n\nkept\n")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "teacher_ab.py"), "--smoke", "--baseline", str(base),
                           "--work", str(tmp_path / "work"), "--json-dir", str(tmp_path / "json"),
                           "--results-md", str(md), "--audio-dir", str(audio)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(p.name for p in (tmp_path / "json").iterdir())
    assert written == ["after_fps8_s2.json", "after_fps8_s2_contact_sheet.png", "after_fps8_s2_primitives_sheet.png",
                       "before_fps8_s2.json", "before_fps8_s2_contact_sheet.png", "before_fps8_s2_primitives_sheet.png"]
    before = json.loads((tmp_path / "json" / "before_fps8_s2.json").read_text())
    after = json.loads((tmp_path / "json" / "after_fps8_s2.json").read_text())
    assert Path(before["info"]["datagen_path"]) == (base / "datagen").resolve()
    assert Path(after["info"]["datagen_path"]) == ROOT / "datagen"
    assert before["variants"]["normal"]["n_clips"] == 2 and after["real_audio"]["n_clips"] == 1
    text = md.read_text()
    assert "## Other\n\nkept" in text and "## Teacher before/after" in text
    b, a = (r["variants"]["normal"]["metrics"]["loudness_motion_spearman"]["mean"] for r in (before, after))
    assert f"| normal: loudness_motion_spearman | {b:.3g} [" in text and f"(n=2) | {a:.3g} [" in text
    assert "| joplin_maple_leaf_rag.mp3: av_align |" in text and "goals met: " in text
    assert str(base / "datagen") in text or str((base / "datagen").resolve()) in text


def test_bands_breakdown_is_the_eval_fit_split_by_column():
    """bench/teacher_bands.py's per-column split adds up to the eval's own pooled R^2 on the same data."""
    from bench_scripts import load_bench
    from trainer.eval.bands import pooled_r2_statistic

    tb = load_bench("teacher_bands")
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(20, 8)) for _ in range(6)]
    ys = [x[:, :1] @ rng.normal(size=(1, 12)) + 0.5 * rng.normal(size=(20, 12)) for x in xs]
    rep = tb.column_r2(xs, ys)
    assert rep["overall_r2"] == pytest.approx(pooled_r2_statistic(xs, ys)(np.arange(6)), abs=1e-12)
    shares = [c["share"] for c in rep["columns"]]
    assert len(shares) == 12 and sum(shares) == pytest.approx(1.0)
    assert sum(c["share"] * c["r2"] for c in rep["columns"]) == pytest.approx(rep["overall_r2"], abs=1e-12)
