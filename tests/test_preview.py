"""`datagen preview`: a real mp4 (ffmpeg, ffprobe) with the clip's audio, its json sidecar, the timeline view."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datagen.preview_timeline import cursor_columns, draw_background
from shared.command_line import run_cli
from shared.timeline import channel_names
from shared.video import probe, read_video_frames

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
SMALL = ["render.resolution=48", "data.sample_rate=8000", "timeline.n_fft=256"]


def preview(*argv: str) -> int:
    return run_cli("datagen", "datagen.commands", "datagen", ["preview", *argv])


def test_preview_writes_mp4_with_audio_and_sidecar(tmp_path, tiny_cfg):
    out = tmp_path / "sub" / "clip.mp4"
    assert preview("--seed", "5", "--silence-mix", "1", "--view", "timeline", "--config", TINY, "--out", str(out), *SMALL) == 0
    info = probe(out)
    fps, seconds = tiny_cfg.render.fps, tiny_cfg.data.clip_seconds
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["has_audio"] and info["audio_codec"] == "aac"
    assert (info["width"], info["height"]) == (48, 48)
    assert abs(info["duration"] - seconds) <= 1.0 / fps  # the audio is seconds long: within one frame
    assert abs(info["video_duration"] - seconds) <= 1.0 / fps
    assert abs(info["audio_duration"] - seconds) <= 1.0 / fps
    assert info["n_frames"] == math.floor(seconds * fps)

    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["variant"] == "silence" and meta["seed"] == 5
    assert meta["fps"] == fps and meta["resolution"] == 48 and meta["n_frames"] == info["n_frames"]
    assert meta["timeline_channels"] == channel_names(tiny_cfg.timeline)
    for key in ("schema_version", "tempo", "key", "tracks", "track_mask"):
        assert key in meta
    kinds = {s["kind"] for s in meta["segments"]}
    assert "silence" in kinds
    for s in meta["segments"]:
        assert set(s) == {"kind", "tracks", "start_s", "end_s", "start_frame", "end_frame"}

    # the cursor moves left to right: the brightest column advances with the frame index
    frames = np.stack(list(read_video_frames(out)))  # (T, H, W, 3)
    brightest = frames.astype(np.float32).mean(axis=(1, 3)).argmax(axis=1)  # (T,)
    assert brightest[0] < 8 and brightest[-1] > 40 and np.all(np.diff(brightest) >= -1)
    # silence is shaded red: inside the silence segment the picture is redder than in the music before it
    sil = next(s for s in meta["segments"] if s["kind"] == "silence")
    last = frames[-1].astype(np.float32)  # the cursor is at the right edge there
    col = lambda t_s: int(t_s * fps / meta["n_frames"] * 48)  # noqa: E731
    inside = last[:, col(sil["start_s"]) + 1:col(sil["end_s"]) - 1]
    assert (inside[..., 0] - inside[..., 2]).mean() > 20


def test_preview_debug_clip_and_same_seed_same_sidecar(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    for out in (a, b):
        assert preview("--seed", "2", "--debug", "--seconds", "3", "--config", TINY, "--out", str(out), *SMALL) == 0
    ma, mb = (json.loads(p.with_suffix(".json").read_text()) for p in (a, b))
    assert ma == mb and ma["variant"] == "debug" and ma["events"]
    assert probe(a)["n_frames"] == math.floor(3 * ma["fps"])


def test_preview_dry_run_prints_the_config_and_exits_0():
    entry = "import sys; from datagen.cli import main; main(sys.argv[1:])"  # what the `datagen` script runs
    proc = subprocess.run([sys.executable, "-c", entry, "preview", "--dry-run", "--debug", "--silence-mix", "0.25",
                           "--seconds", "3", "render.fps=12"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for line in ("clip_seconds: 3.0", "audio_silence_mix_prob: 0.25", "audio_debug_mode: true", "fps: 12.0"):
        assert line in proc.stdout


def test_preview_bad_input_fails_naming_the_problem(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        preview("--out", str(tmp_path / "clip.avi"))
    assert e.value.code == 2 and "--out must name an .mp4" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        preview("--seed", "-3", "--out", str(tmp_path / "c.mp4"), *SMALL)
    assert e.value.code == 2 and "--seed must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        preview("--debug", "--variant", "normal", "--out", str(tmp_path / "c.mp4"), *SMALL)
    assert e.value.code == 2 and "contradicts data.audio_debug_mode" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        preview("--silence-mix", "1.5", "--out", str(tmp_path / "c.mp4"))
    assert e.value.code == 2 and "data.audio_silence_mix_prob" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_timeline_background_and_cursor_cover_the_picture(tiny_cfg):
    names = channel_names(tiny_cfg.timeline)
    feats = np.random.default_rng(0).random((30, len(names))).astype(np.float32)
    segs = [{"kind": "silence", "tracks": [], "start_s": 1.0, "end_s": 2.0, "start_frame": 8, "end_frame": 16}]
    bg = draw_background(feats, names, segs, 8.0, 64)
    assert bg.shape == (64, 64, 3) and bg.dtype == np.uint8 and bg.std() > 5
    cols = [cursor_columns(t, 30, 64) for t in range(30)]
    assert cols[0][0] == 0 and cols[-1][1] == 64
    assert all(b > a for a, b in cols) and all(cols[i][1] <= cols[i + 1][1] for i in range(29))
