"""report.html: rendered by Debian's headless chromium, its h264/AAC videos play, every metric row is complete.

Debian's chromium decodes the project's mp4s (h264 yuv420p + AAC, shared/video.py), so the test asserts
playback itself (frames decoded, time advancing, audio decoded), not only loaded metadata.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from shared.video import Mp4Writer
from trainer.eval.html import REPORT_HTML, write_report_html

from browser import headless_chromium, play_videos

FPS = 8


def write_mp4(path, seconds: float, size: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = int(seconds * FPS)
    sr = 44100
    t = np.arange(int(seconds * sr)) / sr
    with Mp4Writer(path, FPS, size, size, audio=((0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sr)) as w:
        w.write((rng.random((n, size, size, 3)) * 255).astype(np.uint8))


def write_png(path):
    from PIL import Image

    Image.fromarray(np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (20, 1))).convert("RGB").save(path)


def stat(mean, ci, n):
    return {"mean": mean, "ci": ci, "n": n}


def per_variant_report() -> dict:
    """A report.json in the per-variant schema (variants deliberately out of order, nulls where allowed)."""
    row = lambda g, f, c, note=None: {"generated": g, "floor": f, "ceiling": c, "note": note}  # noqa: E731
    return {
        "title": "eval <test> & report",
        "config": {"eval": {"clips_per_variant": 8}},
        "checkpoint": "runs/diffusion/ckpt/step-00000010",
        "variants": {
            "debug": {"n_clips": 2, "clips": ["d0", "d1"], "metrics": {
                "av_align": row(stat(0.5, [0.4, 0.6], 2), stat(0.2, [0.1, 0.3], 2), stat(0.9, [0.85, 0.95], 2))}},
            "normal": {"n_clips": 8, "clips": [f"n{i}" for i in range(8)], "metrics": {
                "loudness_motion_spearman": row(stat(0.115, [0.02, 0.21], 8), stat(0.01, [-0.05, 0.07], 8),
                                                stat(0.281, [0.2, 0.35], 8)),
                "retrieval_top1": row(stat(0.25, [0.0, 0.5], 8), stat(0.125, None, 8), None, "chance = 1/8")}},
            "silence": {"n_clips": 0, "clips": [], "metrics": {}},
        },
        "videos": [{"variant": "normal", "clip": "n0", "kind": "side_by_side", "path": "videos/side by side n0.mp4"},
                   {"variant": "debug", "clip": "d0", "kind": "generated", "path": "videos/gen_d0.mp4"}],
        "plots": [{"title": "metrics", "path": "metrics.png"}],
        "definitions": {"av_align": "AV-Align (TempoTokens)", "loudness_motion_spearman": "Spearman of RMS and motion"},
        "info": {"step": 10, "fps": 8.0},
        "vae_diagnostic": {"n_clips": 2, "psnr_db": 31.5, "note": "the debug clips", "metrics": {
            "av_align": {"input_own": stat(0.9, [0.8, 1.0], 2), "output_own": stat(0.7, None, 1)}}},
    }


def test_report_html_renders_and_plays_its_videos(tmp_path):
    (tmp_path / "videos").mkdir()
    write_mp4(tmp_path / "videos" / "side by side n0.mp4", 2.0, size=48, seed=1)
    write_mp4(tmp_path / "videos" / "gen_d0.mp4", 1.5, seed=2)
    write_png(tmp_path / "metrics.png")
    rep = per_variant_report()
    page = write_report_html(rep, tmp_path)
    assert page == tmp_path / REPORT_HTML
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"<script|<link|@import|https?://", text), "report.html must need no external asset"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "a temp file was left behind"
    assert '<section id="variant-silence"><h2>silence <span class="note">(0 clips)</span></h2>\n<p class="note">no clips' in text

    with headless_chromium() as driver:
        states = play_videos(driver, page.as_uri())
        sections = driver.execute_script("return Array.from(document.querySelectorAll('section')).map(s => s.id)")
        rows = driver.execute_script("""return Array.from(document.querySelectorAll('tr[data-metric]')).map(tr =>
            [tr.closest('section').id, tr.dataset.metric, Array.from(tr.cells).map(c => c.textContent.trim())])""")
        img = driver.execute_script("const i = document.querySelector('img.plot'); return [i.src.slice(0, 22), i.naturalWidth]")
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")

    assert sections == ["variant-normal", "variant-silence", "variant-debug", "vae-diagnostic"], "normal music first"
    by_src = {s["src"]: s for s in states}
    assert set(by_src) == {"videos/side%20by%20side%20n0.mp4", "videos/gen_d0.mp4"}
    for src, want_s, want_w in (("videos/side%20by%20side%20n0.mp4", 2.0, 48), ("videos/gen_d0.mp4", 1.5, 32)):
        s = by_src[src]
        assert s["error"] is None and not s.get("playError") and not s.get("timedOut"), s
        assert s["readyState"] >= 2 and s["width"] == want_w and s["height"] == want_w, s
        assert abs(s["duration"] - want_s) < 0.1, s
        assert s["decodedFrames"] > 0 and s["time"] > 0, f"h264 did not play: {s}"
        assert s["audioBytes"] > 0, f"AAC did not decode: {s}"
    # every row: metric, then n / mean / 95% CI for generated, floor and ceiling, then the note
    cells = {(sec, m): c for sec, m, c in rows}
    assert cells[("variant-normal", "loudness_motion_spearman")] == [
        "loudness_motion_spearman", "8", "0.115", "[0.02, 0.21]", "8", "0.01", "[-0.05, 0.07]", "8", "0.281",
        "[0.2, 0.35]", ""]
    assert cells[("variant-normal", "retrieval_top1")] == [
        "retrieval_top1", "8", "0.25", "[0, 0.5]", "8", "0.125", "n/a", "", "n/a", "n/a", "chance = 1/8"]
    assert [m for sec, m, _ in rows] == ["loudness_motion_spearman", "retrieval_top1", "av_align", "av_align"]
    assert cells[("vae-diagnostic", "av_align")] == ["av_align", "2", "0.9", "[0.8, 1]", "1", "0.7", "n/a"]
    assert img == ["data:image/png;base64,", 40], "the plot is inlined and decodes"
    assert all(r.startswith("file:") for r in resources), resources


def test_report_html_write_is_atomic(tmp_path):
    """A report that cannot be rendered (an absolute video path) raises before anything is written: the old
    report.html stays as it was and no temporary file is left."""
    rep = per_variant_report()
    write_report_html(rep, tmp_path)
    before = (tmp_path / REPORT_HTML).read_bytes()
    bad = json.loads(json.dumps(rep))
    bad["videos"][0]["path"] = str(tmp_path / "videos" / "x.mp4")
    with pytest.raises(ValueError, match="relative"):
        write_report_html(bad, tmp_path)
    assert (tmp_path / REPORT_HTML).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [REPORT_HTML]
    assert b"plot missing: metrics.png" in before, "a missing plot is named, not silently dropped"


def test_report_html_verdict_first_rows_that_cannot_apply_and_captions_with_their_plots(tmp_path):
    """The verdict block (with the VAE warning above it) opens the page; a row that cannot apply to a variant is
    left out of its table and listed once below it; each plot sits in its variant's section with its caption
    nearer its own plot than any other."""
    from trainer.eval.verdict import verdict

    for name in ("metrics_normal.png", "timeline_n0.png", "metrics_debug.png", "shift.png"):
        write_png(tmp_path / name)
    rep = per_variant_report()
    rep["videos"] = []
    none = stat(None, None, 0)
    normal = rep["variants"]["normal"]["metrics"]
    normal["loudness_motion_spearman"]["generated"] = stat(0.32, [0.29, 0.35], 8)  # > 0.8 x [0.2, 0.35]
    normal["retrieval_top1"]["generated"] = stat(0.25, [0.125, 0.3], 8)             # < 3 x chance 1/8
    normal["silence_settle_ratio"] = {
        "generated": none, "floor": none, "ceiling": none, "note": "no clip with a labelled silence segment"}
    rep["plots"] = [{"title": "normal bars", "path": "metrics_normal.png", "variant": "normal"},
                    {"title": "normal timeline", "path": "timeline_n0.png", "variant": "normal"},
                    {"title": "debug bars", "path": "metrics_debug.png", "variant": "debug"},
                    {"title": "a plot of no variant", "path": "shift.png"}]
    rep = {"verdict": verdict(rep, 11.0, "the debug clips"), **rep}
    page = write_report_html(rep, tmp_path)
    with headless_chromium() as driver:
        driver.get(page.as_uri())
        order = driver.execute_script("""return Array.from(document.body.children).slice(0, 3).map(
            el => el.tagName + '#' + el.id)""")
        goals = driver.execute_script("""return Array.from(document.querySelectorAll('#verdict tr[data-goal]')).map(
            tr => [tr.dataset.goal, tr.dataset.variant, tr.cells[6].textContent, tr.cells[3].textContent])""")
        normal_rows = driver.execute_script("""return Array.from(document.querySelectorAll(
            '#variant-normal tr[data-metric]')).map(tr => tr.dataset.metric)""")
        na = driver.execute_script("return Array.from(document.querySelectorAll('#variant-normal .not-applicable'))"
                                   ".map(p => p.textContent)")
        figures = driver.execute_script("""return Array.from(document.querySelectorAll('figure.plot')).map(f => {
            const c = f.querySelector('figcaption').getBoundingClientRect();
            const own = f.querySelector('img');
            const d = i => { const r = i.getBoundingClientRect(); const y = (c.top + c.bottom) / 2;
                             return y < r.top ? r.top - y : y > r.bottom ? y - r.bottom : 0; };
            const others = Array.from(document.querySelectorAll('img.plot')).filter(i => i !== own).map(d);
            return [f.querySelector('figcaption').textContent, f.closest('section') ? f.closest('section').id : null,
                    d(own), Math.min(...others), own.naturalWidth]; })""")
    assert order == ["H1#", "P#vae-warning", "SECTION#verdict"], "the VAE warning, then the verdict, open the page"
    text = page.read_text(encoding="utf-8")
    assert "VAE broken: reconstruction PSNR 11.0 dB, below the 20 dB warning floor" in text
    assert ["loudness → motion Spearman", "normal", "met", "8"] in goals
    assert ["retrieval top-1", "normal", "not met", "8"] in goals
    assert ["bands → colour/geometry R²", "normal", "n/a", "0"] in goals  # not in this report
    assert normal_rows == ["loudness_motion_spearman", "retrieval_top1"], "the row that cannot apply is left out"
    assert na == ["not applicable here: silence_settle_ratio (no clip with a labelled silence segment)"]
    assert [(f[0], f[1]) for f in figures] == [("normal bars", "variant-normal"), ("normal timeline", "variant-normal"),
                                               ("debug bars", "variant-debug"), ("a plot of no variant", None)]
    for caption, _, own, other, width in figures:
        assert width == 40 and own < 20 and other > 2 * own + 10, (caption, own, other)  # the old layout: ~9 px both
