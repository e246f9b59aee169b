"""datagen.visual: every primitive on real EGL (Mesa llvmpipe here), driven by real audio timelines.

One Renderer (one GL context) for the module; 32x32 frames at 16 fps; the test clip is real audio
(drums + chords with a loudness swell, a 1.5 s digital silence, then music again) through
shared.timeline.compute_audio_timeline.
"""

from __future__ import annotations

import gc
import itertools
import json
import shutil
import tracemalloc

import numpy as np
import pytest
from scipy.stats import spearmanr

from datagen.visual import (DEBUG_PRIMITIVES, PRIMITIVES, EGLContextError, Renderer, ShaderError, sample_visual_plan,
                            single_plan, style_vector)
from datagen.visual.drive import (DRIVE_NAMES, amplitude_to_unit, db_to_unit, integrate_drive, onset_to_unit,
                                  resample_bands)
from datagen.visual.plan import SHADER_DIR, validate_plan, visual_meta
from datagen.visual.renderer import egl_device_for_gpu, hue_rotation_matrix, query_egl_cuda_ids, visible_gpu_ordinal
from shared.timeline import compute_audio_timeline

SR = 8000
FPS = 16.0
RES = 32
SILENCE = (2.5, 4.0)  # seconds of digital silence in the test clip
SETTLE_S = 0.5
SETTLE_MAX_DIFF = 0.5  # mean |frame difference| (0..255) allowed once silence has lasted SETTLE_S
LOUD_MIN_DIFF = 2.0    # mean |frame difference| during music must clearly exceed it


def music(seconds: float, seed: int, swell: bool = True) -> np.ndarray:
    """Kick on every beat, hats on off-beats, a chord; optionally a loudness swell (x0.05 -> x1)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    bpm = 100 + 40 * rng.random()
    beat = 60.0 / bpm
    tb = t % beat
    kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-tb * 30)) * tb) * np.exp(-tb * 12)
    th = (t + beat / 2) % beat
    hat = rng.standard_normal(n) * np.exp(-th * 60) * 0.3
    root = 110 * 2 ** (rng.integers(0, 12) / 12)
    chord = sum(np.sin(2 * np.pi * root * r * t) for r in (1, 1.26, 1.5, 2.0)) * 0.08
    wave = kick * 0.6 + hat + chord * (0.5 + 0.5 * np.sin(2 * np.pi * t / (4 * beat)))
    if swell:
        wave *= np.interp(t, [0, seconds * 0.45, seconds], [0.05, 1.0, 0.3])
    return (0.5 * wave).astype(np.float32)


def timeline(wave: np.ndarray, tcfg) -> tuple[np.ndarray, list[str]]:
    return compute_audio_timeline(wave, SR, FPS, tcfg)


@pytest.fixture(scope="module")
def tcfg():
    from shared.config import build_config

    return build_config([], overrides=["timeline.n_fft=256"]).timeline


@pytest.fixture(scope="module")
def clip(tcfg):
    """The test clip's timeline: music 0-2.5 s, silence 2.5-4 s, music 4-5 s."""
    a = music(SILENCE[0], seed=1)
    s = np.zeros(int((SILENCE[1] - SILENCE[0]) * SR), np.float32)
    b = music(1.0, seed=2, swell=False)
    return timeline(np.concatenate([a, s, b]), tcfg)


@pytest.fixture(scope="module")
def other_clip(tcfg):
    """Another clip's features (same length): the 'shuffled' timeline."""
    return timeline(music(5.0, seed=7), tcfg)


@pytest.fixture(scope="module")
def renderer():
    r = Renderer(RES)
    yield r
    r.release()


def render_all(renderer, features, names, plan, chunk=64) -> np.ndarray:
    return np.concatenate(list(renderer.render(features, names, plan, FPS, chunk)))  # (T, H, W, 3)


@pytest.fixture(scope="module")
def frames(renderer, clip):
    """Every primitive (style of seed 0) on the test clip: name -> uint8 [T, H, W, 3]."""
    f, names = clip
    return {p: render_all(renderer, f, names, single_plan(p, 0)) for p in PRIMITIVES + DEBUG_PRIMITIVES}


def motion(fr: np.ndarray) -> np.ndarray:
    """Mean absolute difference to the previous frame, per frame (0..255) [T-1]."""
    return np.abs(np.diff(fr.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))


def composite_plans() -> list[dict]:
    """Every primitive inside a 3-layer composite with blend modes and full augmentation (trails on)."""
    plans = []
    blends = ["alpha", "add", "screen", "multiply"]
    for k in range(0, len(PRIMITIVES), 3):
        plan = single_plan(PRIMITIVES[k], seed=k)
        plan["layers"] = [{"visualizer": p, "blend": blends[(k + j) % 4] if j else "alpha", "opacity": 0.9,
                           "hue_offset": 0.1 * j, "seed": 0.3 * j} for j, p in enumerate(PRIMITIVES[k:k + 3])]
        plan["augment"] = {"hue_rotation_deg": 40.0 * k, "flip_x": k % 2 == 0, "flip_y": True, "zoom": 1.2,
                           "rotation_deg": 30.0, "spin_coupling": 0.4, "trail_tau_s": 0.12}
        plans.append(plan)
    return plans


# ---------------------------------------------------------------------------------- rendering


def test_renderer_reports_gl_info(renderer):
    assert "llvmpipe" in renderer.info["renderer"].lower() or renderer.info["renderer"]
    assert set(renderer.info) == {"renderer", "vendor", "version"}


def test_every_primitive_renders_deterministically(renderer, clip, frames):
    f, names = clip
    assert len(PRIMITIVES) >= 10
    for p, fr in frames.items():
        assert fr.shape == (len(f), RES, RES, 3) and fr.dtype == np.uint8, p
        assert fr[:40].std() > 5, f"{p} renders (nearly) flat frames during music"
        again = render_all(renderer, f, names, single_plan(p, 0), chunk=7)  # other chunking, same frames
        np.testing.assert_array_equal(again, fr, err_msg=f"{p} is not deterministic across runs/chunk sizes")


def test_primitives_differ_pairwise(frames, clip):
    """Same timeline and style, different primitive: the frames' spatial patterns are weakly correlated."""
    music_frames = slice(4, 40)
    gray = {p: frames[p][music_frames].astype(np.float32).mean(-1).reshape(36, -1) for p in PRIMITIVES}
    worst = []
    for a, b in itertools.combinations(PRIMITIVES, 2):
        x = gray[a] - gray[a].mean(1, keepdims=True)
        y = gray[b] - gray[b].mean(1, keepdims=True)
        r = (x * y).sum(1) / np.sqrt((x * x).sum(1) * (y * y).sum(1) + 1e-9)  # per-frame spatial correlation
        worst.append((float(np.abs(r).mean()), a, b))
    worst.sort(reverse=True)
    assert worst[0][0] < 0.6, f"primitives too similar: {worst[:3]}"


def changed(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Mean |out - ref| over the music frames, and the reference's own mean |frame - background|."""
    ref = ref.astype(np.float32)
    background = ref[int(SILENCE[1] * FPS) - 1]  # deep in the silence: nothing but the background
    return float(np.abs(out[:40] - ref[:40]).mean()), float(np.abs(ref[:40] - background).mean())


def _zeroed(f, names, which):
    g = f.copy()
    if which == "bands":
        g[:, [i for i, n in enumerate(names) if n.startswith("band_")]] = 0.0
    else:
        g[:, names.index("log_rms")] = -100.0
        g[:, names.index("rms")] = 0.0
    return g


@pytest.mark.parametrize("which", ["bands", "rms"])
def test_zeroing_channels_changes_every_primitive(renderer, clip, frames, which):
    f, names = clip
    g = _zeroed(f, names, which)
    for p in PRIMITIVES:
        out = render_all(renderer, g, names, single_plan(p, 0))
        diff, content = changed(out, frames[p])
        assert diff > max(1.0, 0.25 * content), f"zeroing {which} barely changes {p} ({diff:.2f} vs content {content:.2f})"


def test_shuffled_timeline_changes_every_primitive(renderer, clip, other_clip, frames):
    f, names = clip
    g, _ = other_clip
    for p in PRIMITIVES + DEBUG_PRIMITIVES:
        out = render_all(renderer, g[:len(f)], names, single_plan(p, 0))
        diff, content = changed(out, frames[p])
        assert diff > max(1.0, 0.25 * content), f"another clip's timeline barely changes {p} ({diff:.2f} vs {content:.2f})"


def test_debug_visualizers_are_legible(renderer, clip, frames):
    """Disc radius follows loudness, its colour the dominant band; the flash lights up on onsets."""
    f, names = clip
    s0 = int(SILENCE[0] * FPS)
    disc = frames["debug_disc"].astype(np.float32)
    area = (disc.max(-1) > 60).mean(axis=(1, 2))  # (T,) fraction of the frame inside the disc
    assert spearmanr(area[:s0], f[:s0, names.index("log_rms")]).statistic > 0.8
    assert area[s0 + 8:int(SILENCE[1] * FPS)].max() == 0
    low, high = f.copy(), f.copy()
    bands = [i for i, n in enumerate(names) if n.startswith("band_")]
    low[:, bands[1:]] *= 0.01
    high[:, bands[:-1]] *= 0.01
    red = render_all(renderer, low, names, single_plan("debug_disc", 0))[10, RES // 2, RES // 2]
    violet = render_all(renderer, high, names, single_plan("debug_disc", 0))[10, RES // 2, RES // 2]
    assert red[0] > 200 and red[2] < 50 and violet[2] > 200, (red, violet)
    flash = frames["debug_flash"].astype(np.float32).mean(axis=(1, 2, 3))
    onset = f[:, names.index("onset")]
    assert flash[onset > 15].mean() > 100 and flash[s0 + 8:int(SILENCE[1] * FPS)].max() == 0


# ------------------------------------------------------------------- silence settles, music moves


def check_settles_and_reacts(name: str, fr: np.ndarray, rms: np.ndarray, music_only: bool = True) -> None:
    m = motion(fr)  # m[t-1]: change from frame t-1 to t
    s0, s1 = int(SILENCE[0] * FPS), int(SILENCE[1] * FPS)
    settled = m[s0 + int(SETTLE_S * FPS) - 1:s1 - 1]
    loud = m[4:s0 - 4]
    assert settled.max() < SETTLE_MAX_DIFF, f"{name}: still moving {SETTLE_S}s into silence: {settled.round(2)}"
    assert loud.mean() > LOUD_MIN_DIFF and loud.mean() > 10 * settled.max(), f"{name}: too little motion in music"
    assert m[s1:s1 + 4].max() > LOUD_MIN_DIFF, f"{name}: does not react when the music returns"
    brightness = fr.astype(np.float32).mean(axis=(1, 2, 3))
    rho_b = spearmanr(brightness, rms).statistic
    rho_m = spearmanr(m, rms[1:]).statistic
    assert max(rho_b, rho_m) >= 0.5, f"{name}: Spearman with RMS brightness {rho_b:.2f}, motion {rho_m:.2f}"
    if music_only:  # the same within the music alone (a loudness swell), silence left out
        rho_b = spearmanr(brightness[:s0], rms[:s0]).statistic
        rho_m = spearmanr(m[:s0 - 1], rms[1:s0]).statistic
        assert max(rho_b, rho_m) >= 0.5, f"{name}: in music, Spearman brightness {rho_b:.2f}, motion {rho_m:.2f}"


def test_each_primitive_settles_in_silence_and_follows_loudness(frames, clip):
    f, names = clip
    rms = f[:, names.index("rms")]
    assert f[int(SILENCE[0] * FPS) + 1:int(SILENCE[1] * FPS), names.index("is_silent")].all()
    for p, fr in frames.items():
        # The onset flash follows onsets, not loudness: within music it need not track RMS.
        check_settles_and_reacts(p, fr, rms, music_only=p != "debug_flash")


def test_composites_with_augmentation_settle_and_follow_loudness(renderer, clip):
    f, names = clip
    rms = f[:, names.index("rms")]
    for plan in composite_plans():
        fr = render_all(renderer, f, names, plan)
        check_settles_and_reacts("+".join(lay["visualizer"] for lay in plan["layers"]), fr, rms)


def test_sampled_plans_settle(renderer, clip):
    from shared.config import build_config

    cfg = build_config([], overrides=["render.max_layers=3"])
    f, names = clip
    rms = f[:, names.index("rms")]
    for seed in range(3):
        plan = sample_visual_plan(cfg, seed, "silence")
        check_settles_and_reacts(f"plan seed {seed}", render_all(renderer, f, names, plan), rms)


# ----------------------------------------------------------------------------- bounded memory


def test_ten_minute_clip_renders_with_bounded_memory(tcfg):
    """10 minutes of audio -> timeline -> frames, consumed chunk by chunk: peak memory stays O(chunk)."""
    seconds, fps, res, chunk = 600.0, 2.0, 16, 32
    t = np.arange(int(seconds * 4000)) / 4000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * t / 7))).astype(np.float32)
    f, names = compute_audio_timeline(wave, 4000, fps, tcfg)
    del wave, t
    assert len(f) == 1200
    r = Renderer(res)
    try:
        plan = single_plan("metaballs", 0, augment=True)
        plan["augment"]["trail_tau_s"] = 0.1
        tracemalloc.start()
        n = 0
        for out in r.render(f, names, plan, fps, chunk):
            n += len(out)
            # moderngl's draw and read calls leave ~180 B of cyclic garbage per frame, which the collector frees
            # when it runs (when depends on every other allocation): collect, so that what is measured is held.
            gc.collect()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        r.release()
    whole = len(f) * res * res * 3
    assert n == len(f)
    assert peak < whole / 8, f"peak {peak} bytes vs {whole} for the whole clip"


# ------------------------------------------------------------------------------- clear errors


def test_broken_and_missing_shaders_name_the_file(tmp_path, clip):
    f, names = clip
    broken = tmp_path / "shaders"
    shutil.copytree(SHADER_DIR, broken)
    (broken / "rings.glsl").write_text((broken / "rings.glsl").read_text().replace("float r = length(p);",
                                                                                   "float r = length(p) +;"))
    (broken / "tunnel.glsl").unlink()
    (broken / "plasma.glsl").write_text('#include "nope.glsl"\n' + (broken / "plasma.glsl").read_text())
    r = Renderer(RES, shader_dir=broken)
    try:
        with pytest.raises(ShaderError, match=r"rings\.glsl[\s\S]*error"):
            r.render(f, names, single_plan("rings", 0), FPS)
        with pytest.raises(ShaderError, match=r"not found.*tunnel\.glsl"):
            r.render(f, names, single_plan("tunnel", 0), FPS)
        with pytest.raises(ShaderError, match=r'plasma\.glsl:1: #include "nope\.glsl" not found'):
            r.render(f, names, single_plan("plasma", 0), FPS)
        assert render_all(r, f[:4], names, single_plan("ribbon", 0)).shape == (4, RES, RES, 3)
    finally:
        r.release()


def test_includes_resolve_once_with_line_markers(tmp_path):
    from datagen.visual.shaders import assemble

    (tmp_path / "a.glsl").write_text('#include "b.glsl"\n#include "c.glsl"\nvoid main() {}\n')
    (tmp_path / "b.glsl").write_text('#include "c.glsl"\nfloat b() { return c(); }\n')
    (tmp_path / "c.glsl").write_text("float c() { return 1.0; }\n")
    src, files = assemble(tmp_path, "a.glsl")
    assert src.startswith("#version 330\n") and files == ["a.glsl", "b.glsl", "c.glsl"]
    assert src.count("float c()") == 1 and src.index("float c()") < src.index("float b()")
    assert "#line 1 2" in src and "#line 2 0" in src  # c.glsl starts; a.glsl resumes at its line 2
    (tmp_path / "c.glsl").write_text('#include "a.glsl"\nfloat c() { return 1.0; }\n')  # a cycle: included once
    assert assemble(tmp_path, "a.glsl")[0].count("void main()") == 1


def test_egl_context_failure_is_a_clear_error():
    with pytest.raises(EGLContextError, match=r"EGL.*device 99.*requested device index 99"):
        Renderer(RES, egl_device=99)


def test_a_renderer_inherited_through_fork_refuses_to_render(renderer, clip):
    """The fork trap (PLATFORM_NOTES.md): the child gets a clear error instead of a hang."""
    import os

    f, names = clip
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no GL call is made before the check
        try:
            renderer.render(f, names, single_plan("rings", 0), FPS)
            msg = b"rendered"
        except EGLContextError as e:
            msg = str(e).encode()
        os.write(write, msg)
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    msg = os.read(read, 4096).decode()
    os.close(read)
    assert "inherited through fork" in msg and "inside the worker process" in msg


def test_bad_timeline_and_plan_are_clear_errors(renderer, clip):
    f, names = clip
    with pytest.raises(ValueError, match="channel names"):
        renderer.render(f, names[:-1], single_plan("rings", 0), FPS)
    with pytest.raises(ValueError, match="log_rms"):
        renderer.render(f[:, 1:], names[1:], single_plan("rings", 0), FPS)
    bad = single_plan("rings", 0)
    bad["layers"][0]["visualizer"] = "nonesuch"
    with pytest.raises(ValueError, match="nonesuch"):
        renderer.render(f, names, bad, FPS)
    bad = single_plan("rings", 0)
    del bad["style"]["palette"]["c"], bad["style"]["speed"]
    with pytest.raises(ValueError, match="style lacks speed, palette.c"):
        renderer.render(f, names, bad, FPS)


# ------------------------------------------------------------------------- plans, drive, devices


def test_plans_are_seeded_json_and_respect_config():
    from shared.config import build_config

    cfg = build_config([], overrides=["render.min_layers=1", "render.max_layers=3",
                                      "render.visualizers=[rings,plasma,tunnel,starfield]"])
    plans = [sample_visual_plan(cfg, s, "normal") for s in range(30)]
    assert plans[3] == sample_visual_plan(cfg, 3, "normal")
    assert json.loads(json.dumps(plans[3])) == plans[3]
    counts = {len(p["layers"]) for p in plans}
    assert counts == {1, 2, 3}
    for p in plans:
        validate_plan(p)
        assert {lay["visualizer"] for lay in p["layers"]} <= {"rings", "plasma", "tunnel", "starfield"}
        assert p["layers"][0]["blend"] == "alpha"
        assert len(style_vector(p)) == 19
    assert {lay["blend"] for p in plans for lay in p["layers"][1:]} == {"alpha", "add", "screen", "multiply"}
    assert len({tuple(style_vector(p)) for p in plans}) == 30
    debug = sample_visual_plan(cfg, 5, "debug")
    assert [lay["visualizer"] for lay in debug["layers"]] == list(DEBUG_PRIMITIVES)
    assert debug == sample_visual_plan(cfg, 6, "debug")
    assert visual_meta(debug)["visualizers"] == list(DEBUG_PRIMITIVES)
    off = build_config([], overrides=["render.augment=false"])
    assert sample_visual_plan(off, 1, "normal")["augment"]["trail_tau_s"] == 0.0
    with pytest.raises(ValueError, match="nonesuch"):
        sample_visual_plan(build_config([], overrides=["render.visualizers=[nonesuch]"]), 0, "normal")


def test_fixed_feature_mappings_use_no_clip_statistics():
    np.testing.assert_allclose(db_to_unit(np.array([-100.0, -60.0, -30.0, 0.0, 6.0])), [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(amplitude_to_unit(np.array([0.0, 1e-3, 1.0])), [0, 0, 1])
    np.testing.assert_allclose(onset_to_unit(np.array([0.0, 3.0, 9.0, 15.0, 40.0])), [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(resample_bands(np.array([[0.0, 1.0]]), 3), [[0, 0.5, 1]])
    np.testing.assert_allclose(resample_bands(np.array([[0.4]]), 8), np.full((1, 8), 0.4))


def test_drive_freezes_in_silence_and_speeds_with_loudness(clip):
    f, names = clip
    d = integrate_drive(f, names, FPS)
    phase, level = d[:, DRIVE_NAMES.index("phase")], d[:, DRIVE_NAMES.index("level")]
    s0, s1 = int(SILENCE[0] * FPS), int(SILENCE[1] * FPS)
    settle = s0 + int(SETTLE_S * FPS)
    assert np.ptp(phase[settle:s1]) < 1e-3 and level[settle:s1].max() < 0.01
    rate = np.diff(phase)
    quiet, loud = rate[0:4].mean(), rate[14:26].mean()  # the swell starts at 5% amplitude
    assert loud > 1.5 * quiet > 0


def test_loudness_mappings_are_fixed_and_louder_means_faster_and_brighter():
    """The drive's loudness formulas (issue 29): a fixed dBFS reference, a clock doubling per SPEED_DOUBLING_DB,
    a gain growing with loudness, and both at rest in silence."""
    from datagen.visual import drive as D

    np.testing.assert_allclose(D.loudness_to_unit(np.array([-100.0, D.LOUD_FLOOR_DB, -32.5, D.LOUD_FULL_DB, 0.0])),
                               [0, 0, 0.5, 1, 1])
    unit = lambda db: float(D.loudness_to_unit(np.array(db)))  # noqa: E731
    ref = D.clock_speed(unit(D.SPEED_REF_DB))
    assert ref == pytest.approx(D.CLOCK_RATE)
    assert D.clock_speed(unit(D.SPEED_REF_DB + D.SPEED_DOUBLING_DB)) == pytest.approx(2 * ref)
    assert D.clock_speed(unit(D.SPEED_REF_DB - D.SPEED_DOUBLING_DB)) == pytest.approx(ref / 2)
    levels = np.linspace(0, 1, 41)
    assert np.all(np.diff([D.clock_speed(x) for x in levels]) >= 0) and D.clock_speed(0.0) == 0.0
    assert np.all(np.diff([D.brightness_gain(x) for x in levels]) > 0)
    assert D.brightness_gain(unit(-20.0)) > 2 * D.brightness_gain(unit(-35.0))
    assert D.warmth(np.zeros(8)) == 0.0
    warm, cool = np.array([0.8] * 3 + [0.4] * 2 + [0.1] * 3), np.array([0.2] * 3 + [0.4] * 2 + [0.6] * 3)
    assert D.warmth(warm) > 0.5 and D.warmth(cool) < -0.5
    assert D.size_factor(warm, 0.0) > D.size_factor(cool, 0.0) and D.size_factor(warm, 1.0) > D.size_factor(warm, 0.0)


def steady_timeline(tcfg, gains_db: list[float], seconds_each: float = 1.5, seed: int = 3):
    """A steady loop (kick, hats, chord; no swell) played at each of ``gains_db`` in turn: its timeline."""
    base = music(seconds_each, seed=seed, swell=False)
    wave = np.concatenate([base * np.float32(10 ** (g / 20)) for g in gains_db])
    return timeline(wave, tcfg)


@pytest.fixture()
def fresh_renderer():
    """A renderer of its own: another test's Renderer may have made its own EGL context current since."""
    r = Renderer(RES)
    yield r
    r.release()


def test_every_primitive_moves_faster_and_shines_brighter_when_louder(fresh_renderer, tcfg):
    """The same music 12 dB louder: about twice the motion energy or more and clearly more light, in every primitive.
    (Before issue 29's drive, 5 of the 12 primitives moved less than 1.8x as much and two brightened by only 13%.)"""
    f, names = steady_timeline(tcfg, [-12.0, 0.0])
    half = len(f) // 2
    for p in PRIMITIVES:
        fr = render_all(fresh_renderer, f, names, single_plan(p, 0)).astype(np.float32)
        m = motion(fr)
        quiet_m, loud_m = m[4:half - 1].mean(), m[half + 4:].mean()
        quiet_b, loud_b = fr[4:half].mean(), fr[half + 4:].mean()
        assert loud_m > 1.9 * quiet_m, f"{p}: motion {quiet_m:.2f} quiet vs {loud_m:.2f} loud"
        assert loud_b > 1.15 * quiet_b, f"{p}: brightness {quiet_b:.1f} quiet vs {loud_b:.1f} loud"


def test_every_primitive_makes_an_event_of_an_onset(fresh_renderer, tcfg):
    """A lone onset in a steady pad: the frame where it lands changes more than the steady frames around it."""
    t = np.arange(int(3.0 * SR)) / SR
    pad = (0.05 * sum(np.sin(2 * np.pi * 220 * r * t) for r in (1, 1.25, 1.5))).astype(np.float32)
    hit = int(1.5 * SR)
    tail = np.arange(len(t) - hit) / SR
    pad[hit:] += (0.6 * np.sin(2 * np.pi * 60 * tail) * np.exp(-tail * 20)).astype(np.float32)
    pad[hit:] += (0.3 * np.random.default_rng(0).standard_normal(len(tail)) * np.exp(-tail * 40)).astype(np.float32)
    f, names = timeline(pad, tcfg)
    k = int(1.5 * FPS)
    assert f[k, names.index("onset")] > 15.0
    for p in PRIMITIVES:
        m = motion(render_all(fresh_renderer, f, names, single_plan(p, 0)).astype(np.float32))  # m[i]: frame i+1 vs i
        steady = np.median(m[k - 8:k - 2])
        assert m[k - 1:k + 1].max() > 1.5 * steady + 0.5, f"{p}: onset frame {m[k - 1:k + 1]} vs steady {steady:.2f}"


def test_gpu_to_egl_device_mapping():
    assert visible_gpu_ordinal(None, None) is None
    assert visible_gpu_ordinal(None, "3") == 0  # Ray/SLURM narrowed the process to one GPU
    assert visible_gpu_ordinal(2, "4,5,6,7") == 2
    assert visible_gpu_ordinal(None, "-1") is None
    # EGL lists devices in its own order, reporting CUDA ordinals relative to CUDA_VISIBLE_DEVICES.
    assert egl_device_for_gpu(1, [None, 2, 0, 1, 3]) == 3
    assert egl_device_for_gpu(None, [0, 1]) is None
    assert egl_device_for_gpu(0, [None]) is None  # Mesa only: EGL's default device
    with pytest.raises(EGLContextError, match="CUDA GPU 5"):
        egl_device_for_gpu(5, [0, 1])


def test_a_gpu_request_renders_on_the_matching_or_default_egl_device(caplog):
    """Same code path everywhere: with NVIDIA EGL devices GPU 0 maps to one of them; on a Mesa-only
    machine (this CI box) EGL lists no NVIDIA device and the request falls back to the default device."""
    ids = query_egl_cuda_ids()
    with caplog.at_level("WARNING"):
        r = Renderer(16, gpu_index=0)
    try:
        if any(i is not None for i in ids):
            assert egl_device_for_gpu(0, ids) is not None and "NVIDIA" in r.info["vendor"]
        else:
            assert "no EGL device is an NVIDIA GPU" in caplog.text and r.info["renderer"]
    finally:
        r.release()


def test_hue_rotation_keeps_grey_and_is_a_rotation():
    m = hue_rotation_matrix(123.0)
    np.testing.assert_allclose(m @ np.ones(3), np.ones(3), atol=1e-12)
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(hue_rotation_matrix(120.0) @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)


class FloatReadback(Renderer):
    """The readback before the output pass, as the oracle: the post pass's float target converted to bytes
    by glReadPixels itself, rows bottom-up (flipped below, on the CPU)."""

    def _draw_output(self, frame_tex) -> None:
        self._out_fbo = self.ctx.framebuffer([frame_tex])


def test_rgba_readback_flipped_in_the_shader_equals_glreadpixels_of_the_float_frame(clip, tcfg):
    from shared.config import build_config

    f, names = clip
    cfg = build_config([], overrides=["render.resolution=37"])
    plans = [sample_visual_plan(cfg, seed, v) for seed, v in ((3, "normal"), (4, "silence"), (5, "debug"))]
    with Renderer(37) as new, FloatReadback(37) as old:  # 37: rows not a multiple of 4 bytes
        for plan in plans:
            got = list(new.render(f[:7], names, plan, FPS, 3))  # chunks of 3, 3, 1: both pixel buffers reused
            want = np.concatenate(list(old.render(f[:7], names, plan, FPS, 7)))[:, ::-1]
            assert [c.shape for c in got] == [(3, 37, 37, 3), (3, 37, 37, 3), (1, 37, 37, 3)]
            np.testing.assert_array_equal(np.concatenate(got), want)
            assert want.std() > 0  # frames with content, not a blank that any path reproduces
