"""`trainer eval --audio-dir`: the default shipped model on real audio (tests/data/real_audio: wav/flac/mp3 at
16 / 22.05 / 48 kHz), its report (json, md, html with playing videos), the shift test and retrieval on
oracle curves, and bad input."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from shared.audio_io import resample
from shared.config import build_config
from shared.provenance import code_commit
from shared.video import probe
from trainer.cli import main
from trainer.eval.clips import list_audio_files
from trainer.eval.evaluate import folder_report
from trainer.eval.folder_ceiling import NO_CEILING, folder_teacher
from trainer.eval.goals import VERDICT, goals_in
from trainer.eval.generate import FrameCurves
from trainer.eval.metrics import motion_energy
from trainer.eval.registry import FileAudio, FileRun, VideoSide
from trainer.eval.rows import SHIFTS_S, shift_frames
from trainer.eval.scalars import eval_run_dir, log_eval_scalars
from trainer.models import SHIPPED
from trainer.sample import audio_inputs
from trainer.teacher import file_plan_seed

from browser import headless_chromium, play_videos

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real_audio"
DEFAULT = ROOT / "models" / SHIPPED[0]  # what eval runs without --checkpoint (trainer/models.py)
MODEL = ROOT / "models" / "synesthete-tiny"  # the fast one, named with --checkpoint: 8 fps, 32 px
FILES = ("bach_bwv66.6_organ.flac", "joplin_maple_leaf_rag.mp3", "speech_gettysburg.wav")  # 22.05 / 48 / 16 kHz


def run_cli(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(["eval", *map(str, args)])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """The shipped model on three real files of different formats and rates, once for the module."""
    folder = tmp_path_factory.mktemp("audio")
    for name in FILES:
        shutil.copy(REAL / name, folder / name)
    (folder / "notes.txt").write_text("not audio: ignored")
    out = tmp_path_factory.mktemp("report")
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))  # no runs/diffusion here: no --checkpoint is the shipped model (README)
    try:
        code = main(["eval", "--audio-dir", str(folder), "--out", str(out), "--steps", "4"])
    except SystemExit as e:
        code = e.code
    finally:
        os.chdir(here)
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert Path(report["checkpoint"]).resolve().parent.parent == DEFAULT.resolve()  # DEFAULT/ckpt/step-N
    return out, report


def test_audio_dir_report_on_real_audio(real_run):
    out, rep = real_run
    labels = json.loads((REAL / "labels.json").read_text())["files"]
    v = rep["variants"]["audio_dir"]
    assert rep["commit"] == code_commit()  # the code that measured it (the cwd was elsewhere)
    assert v["n_clips"] == 3 and v["clips"] == sorted(FILES)
    fps = rep["config"]["render"]["fps"]
    for name, r in v["metrics"].items():
        assert set(r) == {"generated", "floor", "ceiling", "note"}, name
        assert set(r["generated"]) == {"mean", "ci", "n"}, name
        # the ceiling: the teacher on the same files, the same rows, CI over files
        assert set(r["ceiling"]) == {"mean", "ci", "n"} and r["ceiling"]["n"] == 3 and r["ceiling"]["ci"], name
    for p in rep["per_file"]:
        lab = labels[p["file"]]
        assert p["sample_rate"] == lab["sample_rate"]  # mixed rates read as they are ...
        assert abs(p["duration_s"] - lab["duration_s"]) < 0.05
        # ... resampled to data.sample_rate, where the timeline finds each cut-in silence to within a frame
        assert len(p["detected_silences_s"]) == len(lab["silences_s"]), p["file"]
        for (a, b), (la, lb) in zip(p["detected_silences_s"], lab["silences_s"]):
            assert abs(a - la) <= 1 / fps + 1e-6 and abs(b - lb) <= 1 / fps + 1e-6, (p["file"], a, b, la, lb)
        assert all(SHIFTS_S[0] <= s <= SHIFTS_S[-1] for s in p["shift_test"]["shifts_s"]) and p["shift_test"]["shifts_s"]
        meta = probe(out / p["video"])
        vs = next(s for s in meta["streams"] if s["codec_type"] == "video")
        assert vs["codec_name"] == "h264" and int(vs["nb_frames"]) == p["frames"] == math.floor(lab["duration_s"] * fps)
        assert any(s["codec_type"] == "audio" for s in meta["streams"])
    # the shipped model goes still in silence (its model card's claim): far below the floor
    settle = v["metrics"]["settle_ratio"]
    assert settle["generated"]["n"] == 3 and settle["generated"]["mean"] < 0.5 < settle["floor"]["mean"]
    assert len(rep["retrieval"]["scores"]) == 3 and v["metrics"]["retrieval_top1"]["floor"]["mean"] == pytest.approx(1 / 3)
    assert v["metrics"]["shift_test_win_rate"]["floor"]["mean"] == 0.5
    # the AV offset: pooled over files, per file with its floor and the teacher's; the teacher within half a frame
    off = v["metrics"]["av_offset_ms"]
    assert off["generated"]["n"] == off["floor"]["n"] == 3 and abs(off["ceiling"]["mean"]) < 500 / fps
    assert all({"av_offset_ms", "av_offset_peak"} <= set(p[k]) for p in rep["per_file"] for k in ("metrics", "floor"))
    assert "DeSync" in rep["definitions"]["av_offset_ms"] and "folder's files" in rep["definitions"]["av_offset_peak"]
    md = (out / "report.md").read_text()  # the same writer as the val shards' report: floor | generated | ceiling | n
    assert "\n| settle_ratio | " in md and " | 3 | 3 of 3 files have detected silence |\n" in md
    assert md.index("## Verdict: Does it follow the music?") < md.index("## Variant: audio_dir")
    # the teacher: per file, the plan `datagen visualize --visualizer mix --seed PLAN_SEED` renders, as many frames
    # as the generated video; the visualizers go still in detected silence (the settle ceiling)
    for p in rep["per_file"]:
        assert p["teacher"]["plan_seed"] == file_plan_seed(0, p["file"]) and p["teacher"]["frames"] == p["frames"]
        assert set(p["ceiling"]) == set(p["metrics"]) and p["ceiling"]["settle_ratio"] < 0.05, p["file"]
    assert v["metrics"]["settle_ratio"]["ceiling"]["mean"] < 0.05
    assert rep["teacher"]["seconds"] < 30, "the ceiling must stay cheap (3 files)"
    assert rep["notes"][0].startswith("Ceiling: the ground-truth visualizers")
    verdict = rep["verdict"]
    assert [g["goal"] for g in verdict["goals"]] == [g.title for g in goals_in(VERDICT) if g.variant == "audio_dir"]
    assert all(g["n"] == 3 and g["status"] != "n/a" for g in verdict["goals"]), verdict["goals"]
    assert verdict["vae"]["source"].startswith("the teacher's frames") and 0 < verdict["vae"]["psnr_db"] < 60
    assert bool(verdict["warnings"]) == (verdict["vae"]["psnr_db"] < 20)
    assert [p["title"] for p in rep["plots"]][-2:] == ["shift test: loudness-motion Spearman against shifted audio",
                                                      "retrieval scores (rows: videos, columns: audio)"]


def test_audio_dir_report_html_plays_in_chromium(real_run):
    out, rep = real_run
    with headless_chromium() as driver:
        states = play_videos(driver, (out / "report.html").as_uri())
        first = driver.execute_script("return document.querySelector('section').id")
        goals = driver.execute_script("return document.querySelectorAll('#verdict tr[data-goal]').length")
        ceiling = driver.execute_script("""return Array.from(document.querySelectorAll(
            '#variant-audio_dir tr[data-metric]')).map(tr => tr.cells[8].textContent)""")
    assert first == "verdict" and goals == len(rep["verdict"]["goals"]), "the verdict is the page's first section"
    assert ceiling and all(c != "n/a" for c in ceiling), "the ceiling column is filled (the teacher)"
    assert sorted(s["src"] for s in states) == sorted(v["path"] for v in rep["videos"])
    for s in states:
        assert s["error"] is None and s["decodedFrames"] > 0 and s["time"] > 0 and s["audioBytes"] > 0, s


def test_audio_dir_bad_input(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no audio here")
    for folder, msg in ((empty, "no audio files"), (tmp_path / "missing", "not found"),
                        (empty / "readme.txt", "not a directory")):
        code, err = run_cli(capsys, "--checkpoint", MODEL, "--audio-dir", folder, "--out", tmp_path / "o")
        assert code == 2 and err.strip().count("\n") == 0 and msg in err, err
    assert not (tmp_path / "o").exists(), "a refused folder writes nothing"
    # a corrupt file is skipped with its reason; a single usable file: retrieval skipped, with the reason
    one = tmp_path / "one"
    one.mkdir()
    wave, sr = sf.read(str(REAL / "bach_bwv66.6_organ.flac"), dtype="float32")
    clip = resample(wave[: int(3.5 * sr)], sr, 44100)
    sf.write(str(one / "bach_3s.wav"), np.stack([clip, 0.5 * clip], axis=1), 44100)  # 44.1 kHz stereo
    (one / "broken.mp3").write_bytes(b"not an mp3 at all")
    code, err = run_cli(capsys, "--checkpoint", MODEL, "--audio-dir", one, "--out", tmp_path / "o1", "--no-teacher")
    assert code == 0, err
    rep = json.loads((tmp_path / "o1" / "report.json").read_text())
    # --no-teacher: no ceiling, said so; the goals that need one are n/a
    assert all(r["ceiling"] is None for r in rep["variants"]["audio_dir"]["metrics"].values())
    assert rep["notes"][0].startswith(NO_CEILING) and "teacher" not in rep and rep["verdict"]["vae"] is None
    assert {g["goal"]: g["status"] for g in rep["verdict"]["goals"]}["loudness → motion Spearman"] == "n/a"
    assert [s["file"] for s in rep["skipped"]] == ["broken.mp3"] and "not readable as audio" in rep["skipped"][0]["reason"]
    assert "retrieval needs at least 2 audio files" in rep["retrieval"]["skipped"]
    assert rep["variants"]["audio_dir"]["metrics"]["retrieval_top1"]["generated"]["n"] == 0
    assert rep["variants"]["audio_dir"]["metrics"]["av_align"]["floor"] is None
    assert rep["per_file"][0]["shift_test"]["shifts_s"] == [1.5]  # 3.5 s leaves room for the 1.5 s shift only
    assert rep["per_file"][0]["sample_rate"] == 44100 and rep["per_file"][0]["frames"] == 28
    assert "retrieval skipped" in (tmp_path / "o1" / "report.html").read_text()
    # nothing usable at all: exit 2, one line naming the folder
    (one / "bach_3s.wav").unlink()
    code, err = run_cli(capsys, "--checkpoint", MODEL, "--audio-dir", one, "--out", tmp_path / "o2")
    assert code == 2 and "none of the 1 audio files could be used" in err.splitlines()[-1]


def test_frame_curves_streamed_in_chunks_equal_the_whole_video():
    from trainer.eval.rhythm import farneback_flow_magnitude

    rng = np.random.default_rng(0)
    frames = (rng.random((13, 16, 16, 3)) * 255).astype(np.uint8)
    curves = FrameCurves()
    for a, b in ((0, 1), (1, 4), (4, 4), (4, 13)):  # a one-frame first chunk and an empty one
        curves(frames[a:b])
    video = curves.side()
    np.testing.assert_allclose(video.motion, motion_energy(frames))
    np.testing.assert_allclose(video.flow, farneback_flow_magnitude(frames), rtol=1e-6)


def test_sample_and_eval_pick_the_same_files_from_a_folder(tmp_path):
    """`trainer sample --audio DIR` and `trainer eval --audio-dir DIR` read one folder alike: every suffix
    shared.audio_io.AUDIO_SUFFIXES names (any case), regular files only, in name order."""
    from shared.audio_io import AUDIO_SUFFIXES

    names = [f"f{i:02d}{s.upper() if i % 2 else s}" for i, s in enumerate(AUDIO_SUFFIXES)]
    for name in names + ["notes.txt", "cover.jpg", "noext", "video.mp4"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.wav").mkdir()  # a folder named like audio is not a file
    picked = list_audio_files(tmp_path)
    assert picked == audio_inputs([tmp_path]) == sorted(tmp_path / n for n in names)


def oracle_run(name: str, rms: np.ndarray, motion: np.ndarray, fps: float, silent: np.ndarray | None = None) -> FileRun:
    silent = np.zeros(len(rms)) if silent is None else silent
    audio = FileAudio(rms=rms, is_silent=silent, onsets_s=np.zeros(0), beats_s=np.zeros(0), fps=fps)
    return FileRun(name=name, audio=audio, video=VideoSide(motion=motion, flow=motion), path=Path(f"{name}.mp4"),
                   info={"duration_s": len(rms) / fps, "sample_rate": 16000, "frames": len(rms),
                         "detected_silences_s": []})


def test_shift_test_and_retrieval_on_oracle_curves():
    """A video whose motion IS its audio's loudness retrieves its own audio every time and beats every shift;
    a still video (audio-blind) ties everywhere and scores chance exactly: top-1 1/N, mean rank (N + 1) / 2."""
    cfg = build_config()
    fps, n = 8.0, 80  # 10 s: shifts 1.5 ... 6 s all fit
    rng = np.random.default_rng(1)
    rms = [np.convolve(rng.random(n + 8), np.ones(8) / 8, "valid")[:n] for _ in range(3)]  # smooth, distinct
    follower = [oracle_run(f"f{i}", r, r.copy(), fps) for i, r in enumerate(rms)]
    rep = folder_report(follower, [], cfg, "ckpt", Path("dir"), [])
    m = rep["variants"]["audio_dir"]["metrics"]
    assert m["retrieval_top1"]["generated"]["mean"] == 1.0 and m["retrieval_mean_rank"]["generated"]["mean"] == 1.0
    assert m["loudness_motion_spearman"]["generated"]["mean"] == pytest.approx(1.0)
    assert rep["per_file"][0]["shift_test"]["shifts_s"] == [k / fps for k in shift_frames(n, fps)] == list(SHIFTS_S)
    assert all(v < 1.0 for p in rep["per_file"] for v in p["shift_test"]["loudness_motion_spearman"])
    win = m["shift_test_win_rate"]
    # per file: Spearman wins all 7 shifts; AV-Align ties 7 times (no onsets: IoU 0 both ways); no beats, no beat
    # score: (7 * 1 + 7 * 0.5) / 14
    assert win["generated"]["mean"] == 0.75 and win["generated"]["n"] == 3 and win["floor"]["mean"] == 0.5
    still = [oracle_run(f"s{i}", r, np.full(n, 0.1), fps) for i, r in enumerate(rms)]
    m = folder_report(still, [], cfg, "ckpt", Path("dir"), [])["variants"]["audio_dir"]["metrics"]
    assert m["retrieval_top1"]["generated"]["mean"] == pytest.approx(1 / 3) == m["retrieval_top1"]["floor"]["mean"]
    assert m["retrieval_mean_rank"]["generated"]["mean"] == 2.0 == m["retrieval_mean_rank"]["floor"]["mean"]


class OffsetVAE:
    """A model whose VAE moves every value by 10 (PSNR 10 log10(255^2 / 100) = 28.1 dB): enough for
    :func:`folder_teacher`."""

    def __init__(self, cfg):
        self.cfg = cfg

    def encode(self, frames):
        return frames

    def decode(self, latents):
        return np.where(latents < 128, latents + 10, latents - 10).astype(np.uint8)


def frames_moving_with(level: np.ndarray) -> np.ndarray:
    """Grey frames whose mean |frame difference| rises and falls with ``level`` (a teacher that follows it)."""
    signs = np.where(np.arange(len(level)) % 2 == 0, 1.0, -1.0)
    values = np.round(128 + signs * 120 * level / level.max()).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (len(level), 8, 8, 3)).copy()


def test_folder_ceiling_is_the_teacher_scored_like_the_video():
    """The ceiling column is the teacher's frames measured and scored as the generated videos are: a teacher that
    follows the loudness gives a ceiling near 1 where a still generated video scores chance, and the verdict
    says the still video misses 0.8 x the ceiling."""
    cfg = build_config()
    fps, n = 8.0, 80
    rng = np.random.default_rng(2)
    rms = [np.convolve(rng.random(n + 8), np.ones(8) / 8, "valid")[:n] for _ in range(4)]
    runs = [oracle_run(f"f{i}.wav", r, np.full(n, 0.1), fps) for i, r in enumerate(rms)]  # still: audio-blind
    rep = folder_report(runs, [], cfg, "ckpt", Path("dir"), [])
    by_name = {f"f{i}.wav": frames_moving_with(r) for i, r in enumerate(rms)}
    psnr = folder_teacher(OffsetVAE(cfg), rep, runs, [Path("dir") / k for k in by_name],
                          lambda p: (by_name[p.name], {"plan_seed": 7}), log=lambda m: None)
    assert psnr == pytest.approx(10 * np.log10(255 ** 2 / 100)) == rep["teacher"]["vae_psnr_db"]
    m = rep["variants"]["audio_dir"]["metrics"]
    assert m["loudness_motion_spearman"]["ceiling"]["mean"] > 0.8 and m["loudness_motion_spearman"]["ceiling"]["n"] == 4
    assert m["retrieval_top1"]["ceiling"]["mean"] == 1.0 and m["retrieval_top1"]["generated"]["mean"] == 0.25
    assert rep["per_file"][0]["teacher"]["plan_seed"] == 7 and rep["per_file"][0]["teacher"]["frames"] == n
    assert rep["per_file"][0]["ceiling"]["loudness_motion_spearman"] > 0.8
    from trainer.eval.verdict import verdict

    status = {g["goal"]: g["status"] for g in verdict(rep)["goals"]}
    assert status["loudness → motion Spearman"] == "not met" and status["retrieval top-1"] == "not met"


def test_settle_and_floor_use_the_right_audio():
    """Settle is scored against the file's own detected silence; the floor against the next file's audio."""
    cfg = build_config()
    fps, n = 8.0, 64
    sil_a = np.zeros(n)
    sil_a[20:40] = 1
    motion = np.where(sil_a > 0, 0.0, 0.2)  # still exactly in a's silence
    a = oracle_run("a", np.linspace(0.1, 0.2, n), motion, fps, sil_a)
    sil_b = np.zeros(n)
    sil_b[44:60] = 1
    b = oracle_run("b", np.linspace(0.1, 0.2, n), np.full(n, 0.2), fps, sil_b)
    rep = folder_report([a, b], [], cfg, "ckpt", Path("dir"), [])
    pa = rep["per_file"][0]
    assert pa["metrics"]["settle_ratio"] == pytest.approx(1e-4 / (0.2 + 1e-4))
    assert pa["floor_audio"] == "b" and pa["floor"]["settle_ratio"] > 0.5  # a's video moves in b's silence


def test_eval_scalars_go_under_the_run_never_models(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rep = {"variants": {"normal": {"metrics": {"av_align": {"generated": {"mean": 0.4, "ci": None, "n": 3},
                                                            "floor": {"mean": 0.1, "ci": None, "n": 3},
                                                            "ceiling": None, "note": None}}}}}
    step_dir = tmp_path / "run" / "ckpt" / "step-00000007"
    step_dir.mkdir(parents=True)
    tb = log_eval_scalars(rep, step_dir, 7)
    assert tb == (tmp_path / "run" / "tb").resolve()
    acc = EventAccumulator(str(tb))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["eval/normal/av_align/floor", "eval/normal/av_align/generated"]
    assert [(e.step, round(e.value, 4)) for e in acc.Scalars("eval/normal/av_align/generated")] == [(7, 0.4)]
    assert eval_run_dir(MODEL / "ckpt" / "step-00002000") is None and log_eval_scalars(rep, MODEL, 1) is None
