"""`datagen visualize` and `datagen visualizers` end to end: real audio files, real EGL, real ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datagen.cli import main
from datagen.visual import PRIMITIVES
from shared.timeline import compute_audio_timeline
from shared.video import probe, read_video_frames

SR = 16000


def song(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    beat = t % 0.5
    kick = np.sin(2 * np.pi * (50 + 90 * np.exp(-beat * 30)) * beat) * np.exp(-beat * 10)
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * 0.1
    return (0.4 * kick + chord).astype(np.float32)


@pytest.fixture(scope="module")
def audio_file(tmp_path_factory):
    """1.5 s of music then 1 s of digital silence, stereo flac at 16 kHz."""
    wave = np.concatenate([song(1.5), np.zeros(SR, np.float32)])
    path = tmp_path_factory.mktemp("audio") / "clip.flac"
    sf.write(path, np.stack([wave, 0.5 * wave], axis=1), SR)
    return path


def datagen(*argv: str) -> int:
    try:
        main(list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_visualize_one_primitive_mp4_follows_the_audio(audio_file, tmp_path, capsys):
    out = tmp_path / "rings.mp4"
    assert datagen("visualize", "--audio", str(audio_file), "--out", str(out), "--visualizer", "rings",
                   "--resolution", "32", "--fps", "8", "timeline.n_fft=256") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("renders: the primitive 'rings' alone, full frame (seed 0's style), not the layered "
                        "composite a model is trained on (--composite renders that)")
    assert lines[-1].startswith("wrote")
    info = probe(out)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], video["width"], video["height"], video["pix_fmt"]) == ("h264", 32, 32, "yuv420p")
    assert audio["codec_name"] == "aac"
    frames = np.stack(list(read_video_frames(out))).astype(np.float32)  # (T, H, W, 3)
    assert len(frames) == 20  # floor(2.5 s * 8 fps)
    motion = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    assert motion[1:11].mean() > 3.0  # music
    assert motion[-4:].max() < 1.0    # settled 0.5 s into the silence (h264 noise aside)


def test_visualize_all_is_a_grid_of_every_primitive(audio_file, tmp_path, capsys):
    out = tmp_path / "all.mp4"
    assert datagen("visualize", "--audio", str(audio_file), "--out", str(out), "--resolution", "64", "--fps", "4",
                   "timeline.n_fft=256") == 0
    first = capsys.readouterr().out.splitlines()[0]  # the first line says what the video shows
    assert first.startswith("renders: the 12 visualizer primitives, each alone")
    assert "not the layered composite a model is trained on (--composite renders that)" in first
    assert first.endswith("grid (row-major): " + ", ".join(PRIMITIVES))
    video = next(s for s in probe(out)["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (64, 48)  # 4 x 3 tiles of 16 px


def test_grid_labels_name_each_tile():
    from datagen.commands.visualize import grid_shape, label_overlay

    rows, cols = grid_shape(len(PRIMITIVES))
    assert (rows, cols) == (3, 4) and label_overlay(list(PRIMITIVES), rows, cols, 32) is None
    alpha, rgb = label_overlay(list(PRIMITIVES), rows, cols, 64)
    assert alpha.shape == (192, 256, 1) and rgb.shape == (192, 256, 3)
    for k in range(len(PRIMITIVES)):
        r, c = divmod(k, cols)
        corner = alpha[r * 64:r * 64 + 16, c * 64:c * 64 + 60]
        rest = alpha[r * 64 + 20:(r + 1) * 64, c * 64:(c + 1) * 64]
        assert corner.max() > 0.5 and rest.max() == 0  # a label in the corner, nothing over the picture


def test_visualize_composite_is_the_shards_rendering_and_reads_other_formats(audio_file, tmp_path, capsys):
    """--composite draws the seed's visual plan through the shards' own render call (datagen.shard_job.render_chunks)
    on the training timeline; `--visualizer mix` is the same video."""
    from types import SimpleNamespace

    from datagen.commands.visualize import visualize_timeline
    from datagen.shard_job import render_chunks
    from datagen.visual import Renderer, sample_visual_plan
    from shared.audio_io import load_audio
    from shared.config import build_config

    mp3 = tmp_path / "clip.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(audio_file), "-ar", "22050", str(mp3)], check=True)
    flags = ["--seed", "3", "--resolution", "32", "--fps", "8", "timeline.n_fft=256"]
    out, mix = tmp_path / "composite.mp4", tmp_path / "mix.mp4"
    assert datagen("visualize", "--audio", str(mp3), "--out", str(out), "--composite", *flags) == 0
    cfg = build_config(overrides=["render.resolution=32", "render.fps=8", "timeline.n_fft=256"])
    plan = sample_visual_plan(cfg, 3, "normal")
    layers = ", ".join(f"{lay['visualizer']} ({lay['blend']})" for lay in plan["layers"])
    assert capsys.readouterr().out.splitlines()[0] == (
        "renders: the composite a model learns from: seed 3's visual plan as `datagen run` renders it into shards; "
        f"layers: {layers}")
    assert probe(out)["format"]["format_name"].startswith("mov")
    features, names = visualize_timeline(*load_audio(mp3), cfg)
    with Renderer(32) as renderer:
        def shard_frames(p: dict) -> np.ndarray:
            clip = SimpleNamespace(features=features, names=names, plan=p)
            return np.concatenate(list(render_chunks(cfg, clip, renderer))).astype(np.float32)  # (T, H, W, 3)

        same, other = shard_frames(plan), shard_frames(sample_visual_plan(cfg, 4, "normal"))
    got = np.stack(list(read_video_frames(out))).astype(np.float32)
    err = np.abs(got - same).mean()
    assert got.shape == same.shape and err < 12.0 and err < 0.5 * np.abs(got - other).mean(), err
    assert datagen("visualize", "--audio", str(mp3), "--out", str(mix), "--visualizer", "mix", *flags) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("renders: the composite a model learns from")
    np.testing.assert_array_equal(np.stack(list(read_video_frames(mix))), got.astype(np.uint8))


def test_visualize_help_says_what_it_renders(capsys):
    assert datagen("visualize", "--help") == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "by default a labelled grid of every primitive alone; --composite for the layered composite a model " \
           "is trained on" in text
    assert "--composite Render the composite a model learns from" in text


def test_visualize_bad_input_is_a_clear_error(audio_file, tmp_path, capsys):
    assert datagen("visualize", "--audio", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "x.mp4")) == 2
    assert "missing.wav" in capsys.readouterr().err
    assert datagen("visualize", "--audio", str(audio_file), "--out", str(tmp_path / "x.mp4"),
                   "--visualizer", "nonesuch") == 2
    assert "unknown visualizer 'nonesuch'" in capsys.readouterr().err
    assert datagen("visualize", "--audio", str(audio_file), "--out", str(tmp_path / "x.mp4"),
                   "--visualizer", "rings", "--composite") == 2
    assert one_error_line(capsys.readouterr().err) == ("error: --composite renders the layered composite; drop "
                                                       "--visualizer rings (one or the other)")
    assert not (tmp_path / "x.mp4").exists()


def test_visualizers_lists_every_primitive_one_line_each(capsys):
    assert datagen("visualizers") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(PRIMITIVES)
    assert all(len(line.split(None, 1)[1]) > 40 for line in lines)


def test_preview_visual_is_the_default_view_and_sidecar_records_the_plan(tmp_path, capsys):
    """`datagen preview` (default view: visual) renders the clip's plan; the sidecar names it."""
    import json

    from datagen.visual import sample_visual_plan
    from shared.config import build_config

    out = tmp_path / "clip.mp4"
    argv = ["--seed", "5", "--silence-mix", "1", "--seconds", "3", "render.resolution=32", "render.fps=8",
            "data.sample_rate=8000", "timeline.n_fft=256"]
    assert datagen("preview", *argv, "--out", str(out)) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    plan = sample_visual_plan(build_config([], overrides=argv[6:] + ["data.clip_seconds=3"]), 5, meta["variant"])
    assert meta["view"] == "visual" and meta["visual_plan"] == plan
    assert meta["visualizers"] == [lay["visualizer"] for lay in plan["layers"]] and len(meta["style_vector"]) == 19
    frames = np.stack(list(read_video_frames(out))).astype(np.float32)  # (T, H, W, 3)
    sil = next(s for s in meta["segments"] if s["kind"] == "silence")
    motion = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    settled = motion[sil["start_frame"] + 4:sil["end_frame"] - 1]  # 0.5 s into the silence
    assert len(settled) and settled.max() < 1.0 and motion.max() > 3.0
    timeline = tmp_path / "t.mp4"
    assert datagen("preview", *argv, "--view", "timeline", "--out", str(timeline)) == 0
    assert json.loads(timeline.with_suffix(".json").read_text())["visual_plan"] == plan


# ------------------------------------------------------------ input and output safety (issue 15, items 1 and 9)

FAST = ["--visualizer", "rings", "--resolution", "32", "--fps", "8", "timeline.n_fft=256"]


def one_error_line(err: str) -> str:
    """The command's stderr holds one ``error:`` line and no traceback; returns it."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_visualize_refuses_to_overwrite_its_input(audio_file, tmp_path, capsys):
    wav = tmp_path / "tone.wav"
    wav.write_bytes(audio_file.read_bytes())
    before = wav.read_bytes()
    (tmp_path / "link.wav").symlink_to(wav)
    (tmp_path / "hard.wav").hardlink_to(wav)
    for audio, out in ((wav, wav), (wav, tmp_path / "link.wav"), (tmp_path / "link.wav", wav),
                       (wav, tmp_path / "hard.wav"), (wav, tmp_path / "sub" / ".." / "tone.wav")):
        assert datagen("visualize", "--audio", str(audio), "--out", str(out), *FAST) == 2
        assert "it would be overwritten" in one_error_line(capsys.readouterr().err)
        assert wav.read_bytes() == before
    assert not (tmp_path / "sub").exists()


def test_visualize_output_problems_are_one_line_errors(audio_file, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    cases = [(tmp_path / "afile" / "x.mp4", f"{str(tmp_path / 'afile')!r} is a file, not a folder"),
             (tmp_path / "afile" / "deeper" / "x.mp4", "is a file, not a folder"),
             (tmp_path / "adir", "is a folder; give a file name")]
    for out, expected in cases:
        assert datagen("visualize", "--audio", str(audio_file), "--out", str(out), *FAST) == 2
        assert expected in one_error_line(capsys.readouterr().err)
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to fill a disk")
def test_visualize_full_disk_is_one_line_and_keeps_the_old_output(audio_file, tmp_path, capsys):
    """ffmpeg writes <out>.partial; pointing that at /dev/full makes every write fail with ENOSPC."""
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"the previous video")
    (tmp_path / "clip.mp4.partial").symlink_to("/dev/full")
    assert datagen("visualize", "--audio", str(audio_file), "--out", str(out), *FAST) == 2
    assert one_error_line(capsys.readouterr().err) == f"error: {out}: no space left on device"
    assert out.read_bytes() == b"the previous video"  # untouched
    assert not (tmp_path / "clip.mp4.partial").exists() and not (tmp_path / "clip.mp4.partial").is_symlink()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_visualize_unwritable_folder_is_one_line(audio_file, capsys):
    """Runs as root too (CI does): nobody, root included, may create files in /proc/self; a chmod-ed folder
    would not stop root."""
    out = Path("/proc/self/x.mp4")
    assert datagen("visualize", "--audio", str(audio_file), "--out", str(out), *FAST) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "is not writable" in line and "/proc/self" in line
    assert not out.exists()


def test_visualize_resamples_to_the_training_rate_like_trainer_sample(tmp_path, capsys):
    """The ground truth for a 16 or 44.1 kHz file is what training renders: the timeline at data.sample_rate,
    identical to what `trainer sample` conditions on."""
    from datagen.commands.visualize import visualize_timeline
    from shared.config import build_config
    from trainer.sample import audio_conditioning

    cfg = build_config(overrides=["render.fps=8", "timeline.n_fft=256"])
    for sr in (16000, 44100):
        t = np.arange(int(1.5 * sr)) / sr
        wave = (0.3 * np.sin(2 * np.pi * 3000.0 * t) * (t % 0.5 < 0.1)).astype(np.float32)
        feats, names = visualize_timeline(wave, sr, cfg)
        n_frames = int(1.5 * 8)
        _, _, info = audio_conditioning(wave, sr, cfg, n_frames)
        assert feats.shape == (n_frames, len(names))
        np.testing.assert_array_equal(feats, info["features"])
        native, _ = compute_audio_timeline(wave, sr, 8.0, cfg.timeline)  # what it used to compute
        assert not np.allclose(native, feats, rtol=1e-3)  # band edges and levels depend on the rate
        path = tmp_path / f"clip{sr}.wav"
        sf.write(path, wave, sr)
        assert datagen("visualize", "--audio", str(path), "--out", str(tmp_path / f"clip{sr}.mp4"), *FAST) == 0
        assert f"resampled {sr} -> 22050 Hz (data.sample_rate)" in capsys.readouterr().out
