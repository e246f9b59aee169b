"""`trainer sample` on a tiny checkpoint built by the real trainer modules (tests/eval_fixtures.py)."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from shared.timeline import frame_count
from shared.video import probe
from trainer.cli import main
from trainer.eval.metrics import motion_energy
from trainer.sample import (SampleSettings, audio_conditioning, generate_frames, load_sampling_model, stream_spec,
                            style_from_prior)
from trainer.sample_core import StreamSpec, crossfade_weights, frame_index_for, latent_stream, snippet_starts

from eval_fixtures import shared_tiny_checkpoint, torch_threads

FPS = 8  # the tiny checkpoint's render.fps


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    with torch_threads(1):
        yield shared_tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def one_thread():
    with torch_threads(1):
        yield


def music(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Tones whose loudness changes every half second, with a silent stretch."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    env = np.repeat(rng.uniform(0.05, 1.0, int(seconds * 2) + 1), sr // 2)[: len(t)]
    env[(t > seconds * 0.4) & (t < seconds * 0.6)] = 0.0
    return (0.3 * env * np.sin(2 * np.pi * 330 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def run_cli(capsys, *args, size: str | None = "native") -> tuple[int, str]:
    """``trainer sample`` in-process; ``size`` its --size (native: the model's 32 px, fast; None: the default)."""
    capsys.readouterr()
    try:
        code = main(["sample", "--no-progress", *(["--size", size] if size else []), *map(str, args)])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


# ------------------------------------------------------------------ pure planning


def test_snippet_plan_covers_every_frame_once():
    assert snippet_starts(0, 4, 1) == []
    assert snippet_starts(3, 4, 1) == [0]
    assert snippet_starts(10, 4, 1) == [0, 3, 6]
    assert snippet_starts(8, 4, 0) == [0, 4]
    with pytest.raises(ValueError, match="overlap"):
        snippet_starts(10, 4, 4)
    assert np.allclose(crossfade_weights(3), [0.25, 0.5, 0.75]) and crossfade_weights(0).size == 0
    # inside a training clip the index is absolute; past it, starts cycle through [P, clip - F]
    assert list(frame_index_for(4, 4, 1, 32)) == [4, 5, 6, 7]
    for start in range(29, 200, 3):
        idx = frame_index_for(start, 4, 1, 32)
        assert idx[0] >= 1 and idx[-1] <= 31 and list(np.diff(idx)) == [1, 1, 1]


class OracleDenoiser(nn.Module):
    """A denoiser that knows the answer: its x0 is frame t's audio value (audio[:, f, k, 0]) everywhere, so
    DDIM returns exactly that; it records the conditioning of every call. Used to check the stitching."""

    def __init__(self, prev_frames: int, shape=(2, 2, 2)):
        super().__init__()
        self.prev_frames, self.c, self.h, self.w, self.style_dim = prev_frames, *shape, 3
        self.prediction = "v"
        self.calls: list[dict] = []

    def make_cond(self, audio, is_silent, frame_index, prev=None, prev_valid=None, style_z=None):
        return {"audio": audio, "is_silent": is_silent, "frame_index": frame_index, "prev": prev,
                "prev_valid": prev_valid, "audio_null": torch.zeros(audio.shape[0], dtype=torch.bool)}

    def forward(self, x_t, t, cond):
        from trainer.diffusion import schedule as S

        center = cond["audio"].shape[2] // 2
        x0 = cond["audio"][:, :, center, 0][:, :, None, None, None].expand_as(x_t)
        a, s = S.alpha_sigma(S.logsnr_cosine(t))
        self.calls.append({k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in cond.items()})
        return (S.bcast(a, x_t) * x_t - x0) / S.bcast(s, x_t)  # v such that alpha x_t - sigma v = x0


@pytest.mark.parametrize("overlap", [0, 1, 2])
def test_stream_stitches_snippets_in_order_with_prev_and_crossfade(overlap):
    f, p, n = 4, 2, 23
    model = OracleDenoiser(p)
    value = torch.arange(n, dtype=torch.float32) * 10.0  # frame t's target latent value
    audio = value[None, :, None, None].expand(2, n, 3, 1).clone()  # (B=2, T, 2k+1, Ch)
    audio[1] += 1000.0
    spec = StreamSpec(snippet_frames=f, prev_frames=p, latent_shape=(2, 2, 2), clip_frames=16, overlap=overlap,
                      steps=2, guidance=1.0, sampler="ddim")
    chunks = list(latent_stream(model, spec, audio, torch.zeros(2, n), None, torch.Generator().manual_seed(0), "cpu"))
    firsts = [s for s, _ in chunks]
    lat = torch.cat([c for _, c in chunks], dim=1)  # (B, T, C, h, w)
    assert lat.shape == (2, n, 2, 2, 2) and firsts == sorted(firsts) and firsts[0] == 0
    # the oracle's answer is the same for the old and the new snippet, so the cross-fade must reproduce it
    assert torch.allclose(lat[:, :, 0, 0, 0], audio[:, :, 0, 0], atol=1e-3)
    starts = snippet_starts(n, f, overlap)
    snippet_calls = [c for c in model.calls[:: spec.steps]]  # the first step of each snippet
    assert len(snippet_calls) == len(starts)
    for s, cond in zip(starts, snippet_calls):
        want = audio[:, np.clip(np.arange(s, s + f), 0, n - 1)]
        assert torch.equal(cond["audio"], want)  # each snippet sees its own frames' audio
        if s == 0:
            assert cond["prev"] is None  # first snippet: previous frames absent
        else:  # the P final latents just before the snippet
            got = cond["prev"][:, :, 0, 0, 0]
            valid = cond["prev_valid"]
            expect = lat[:, max(0, s - p):s, 0, 0, 0]
            assert torch.allclose(got[:, p - expect.shape[1]:], expect, atol=1e-3) and valid[:, p - expect.shape[1]:].all()


def test_crossfade_blends_disagreeing_snippets_linearly():
    """When consecutive snippets disagree on the shared frames, the output ramps between them."""
    f, o, n = 4, 2, 10
    model = OracleDenoiser(1)
    audio = torch.zeros(1, n, 1, 1)
    spec = StreamSpec(snippet_frames=f, prev_frames=1, latent_shape=(2, 2, 2), clip_frames=64, overlap=o,
                      steps=1, guidance=1.0, sampler="ddim")
    # snippet j predicts the constant j (through its frame index): the shared frames blend old and new
    orig = model.forward

    def forward(x_t, t, cond):
        cond = {**cond, "audio": (cond["frame_index"][:, :1] // (f - o)).float()[:, :, None, None].expand(-1, f, 1, 1)}
        return orig(x_t, t, cond)

    model.forward = forward
    lat = torch.cat([c for _, c in latent_stream(model, spec, audio, torch.zeros(1, n), None,
                                                 torch.Generator().manual_seed(0), "cpu")], dim=1)[0, :, 0, 0, 0]
    # frames 0,1 from snippet 0; 2,3 shared by snippets 0 and 1 (weights 1/3, 2/3 on the new one); ...
    assert torch.allclose(lat[:4], torch.tensor([0.0, 0.0, 1 / 3, 2 / 3]), atol=1e-3)
    assert torch.allclose(lat[4:6], torch.tensor([1 + 1 / 3, 1 + 2 / 3]), atol=1e-3)


# ------------------------------------------------------------------ the command


@pytest.mark.parametrize("schedule, doubled", [("constant", [1, 1, 1, 1]), ("linear", [0, 1, 1, 1]),
                                               ("interval", [0, 0, 1, 0])])
def test_stream_applies_the_guidance_schedule_of_its_spec(schedule, doubled):
    """Every snippet runs the schedule: steps at tau = 1, 0.75, 0.5, 0.25; w = 1 steps are conditional only."""
    f, n, b = 4, 10, 2
    model = OracleDenoiser(1)
    rows = []
    orig = model.forward
    model.forward = lambda x_t, t, cond: (rows.append(x_t.shape[0]), orig(x_t, t, cond))[1]
    spec = StreamSpec(snippet_frames=f, prev_frames=1, latent_shape=(2, 2, 2), clip_frames=16, overlap=1, steps=4,
                      guidance=3.0, sampler="ddim", guidance_schedule=schedule, guidance_interval=(0.4, 0.6))
    audio = torch.rand(b, n, 3, 1, generator=torch.Generator().manual_seed(0))
    list(latent_stream(model, spec, audio, torch.zeros(b, n), None, torch.Generator().manual_seed(0), "cpu"))
    per_snippet = [b * (1 + d) for d in doubled]
    assert rows == per_snippet * len(snippet_starts(n, f, 1))


@pytest.mark.parametrize("sampler", ["ddim", "heun"])
def test_the_sampling_loop_never_reads_a_device_value(sampler):
    """No host sync per step: the whole stream runs on the meta device, where reading any value (.item(),
    bool(), .tolist()) raises, so a sync anywhere in the loop (or the model's forward) fails this test."""
    from shared.config import build_config
    from trainer.diffusion.model import Denoiser

    cfg = build_config([], overrides=["diffusion.snippet_frames=4", "diffusion.audio_context_frames=1", "diffusion.width=16",
                                      "diffusion.depth=1", "diffusion.heads=2", "diffusion.style_dim=4", "timeline.n_bands=2"])
    n_ch = 9  # log_rms, rms, 2 bands, onset, centroid, is_silent, beat_phase, downbeat
    model = Denoiser(cfg, 2, 4, n_ch).to("meta").eval()
    spec = StreamSpec(snippet_frames=4, prev_frames=1, latent_shape=(2, 4, 4), clip_frames=16, overlap=1, steps=3,
                      guidance=2.0, sampler=sampler, guidance_schedule="cosine")
    audio = torch.rand(2, 11, 3, n_ch)
    with pytest.raises(RuntimeError, match="meta"):
        torch.zeros(1, device="meta").item()  # the premise: a read of a meta tensor raises
    chunks = list(latent_stream(model, spec, audio, torch.zeros(2, 11), None, torch.Generator().manual_seed(0), "meta"))
    assert sum(c.shape[1] for _, c in chunks) == 11 and chunks[0][1].device.type == "meta"


def test_sample_and_eval_take_the_schedule_from_the_config(tiny_cfg):
    from types import SimpleNamespace

    from shared.config import build_config
    from trainer.diffusion.sampler import Guidance

    cfg = build_config(base=tiny_cfg.model_dump(mode="json"), overrides=[
        "inference.audio_guidance_schedule=cosine", "inference.audio_guidance_interval=[0.2, 0.7]"])
    model = SimpleNamespace(cfg=cfg, latent_shape=(2, 2, 2))  # all stream_spec reads of a SamplingModel
    spec = stream_spec(model, SampleSettings(guidance=4.0))  # trainer eval builds its spec through stream_spec too
    assert (spec.guidance, spec.guidance_schedule, spec.guidance_interval) == (4.0, "cosine", (0.2, 0.7))
    assert spec.guidance_rule().weight(1.0) == 1.0 and spec.guidance_rule().weight(0.0) == 4.0
    assert spec.guidance_rule() == Guidance.from_config(cfg.inference, 4.0)  # the one rule sample_snippet takes


@pytest.mark.parametrize("kind", ["wav-44k-stereo", "flac-16k-mono"])
def test_sample_writes_mp4_matching_the_audio(ckpt, tmp_path, capsys, one_thread, kind):
    if kind == "wav-44k-stereo":
        sr, seconds = 44100, 2.3
        wave = music(sr, seconds)
        path = tmp_path / "song.wav"
        sf.write(path, np.stack([wave, 0.5 * wave], axis=1), sr)
        out = tmp_path / "video.mp4"
        code, err = run_cli(capsys, "--audio", path, "--checkpoint", ckpt, "--out", out, "--seed", 3, size=None)
    else:
        sr, seconds = 16000, 1.7
        wave = music(sr, seconds, seed=1)
        path = tmp_path / "voice.flac"
        sf.write(path, wave, sr, subtype="PCM_16")
        out = path.with_suffix(".mp4")  # the default: beside the audio
        code, err = run_cli(capsys, "--audio", path, "--checkpoint", ckpt / "latest", "--steps", 2, "--guidance", 1.5)
    assert code == 0, err
    info = probe(out)
    n_expected = frame_count(len(wave), sr, FPS)
    assert info["n_frames"] == n_expected == math.floor(seconds * FPS)
    assert info["has_audio"] and info["audio_codec"] == "aac"
    # the default writes a viewable 512 px (the model's 32 px frames scaled by the encoder); --size native keeps 32
    px = 512 if kind == "wav-44k-stereo" else 32
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["width"] == info["height"] == px
    assert f"frames of {px} px" in err
    assert abs(info["video_duration"] - n_expected / FPS) < 1e-6
    assert abs(info["audio_duration"] - seconds) < 0.05
    assert info["audio_channels"] == (2 if kind.endswith("stereo") else 1)  # the input's own channels are muxed
    assert "frames/s" in err


def test_several_files_and_a_folder_are_sampled_as_one_batch(ckpt, tmp_path, capsys, one_thread):
    """Files of different lengths share one batched stream; each video has its own length and audio; a batch of
    one is the one-file path exactly."""
    songs = tmp_path / "songs"
    songs.mkdir()
    lengths = {"a.wav": 1.0, "b.wav": 1.6, "c.flac": 0.5}
    for i, (name, seconds) in enumerate(lengths.items()):
        sf.write(songs / name, music(16000, seconds, seed=i), 16000)
    (songs / "notes.txt").write_text("not audio")
    out = tmp_path / "videos"
    code, err = run_cli(capsys, "--audio", songs, "--checkpoint", ckpt, "--out", out, "--steps", 2)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4", "c.mp4"]
    assert err.count("in a batch of 3") == 3
    for name, seconds in lengths.items():
        info = probe(out / (name.rsplit(".", 1)[0] + ".mp4"))
        assert info["n_frames"] == math.floor(seconds * FPS) and info["has_audio"]
        assert abs(info["audio_duration"] - seconds) < 0.05
    # a batch of one: the frames `trainer sample --audio FILE` writes
    code, _ = run_cli(capsys, "--audio", songs / "a.wav", "--audio", songs / "b.wav", "--checkpoint", ckpt, "--out",
                      tmp_path / "two", "--steps", 2, "inference.batch_snippets=1")
    assert code == 0
    code, _ = run_cli(capsys, "--audio", songs / "b.wav", "--checkpoint", ckpt, "--out", tmp_path / "b.mp4", "--steps", 2)
    assert code == 0
    raw = [subprocess.run(["ffmpeg", "-v", "error", "-i", str(p), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                          capture_output=True, check=True).stdout for p in (tmp_path / "two" / "b.mp4", tmp_path / "b.mp4")]
    assert raw[0] == raw[1]
    code, err = run_cli(capsys, "--audio", tmp_path / "videos", "--checkpoint", ckpt)
    assert code == 2 and "holds no audio files" in err


def test_folder_mode_skips_an_unreadable_file_with_its_reason_and_samples_the_rest(ckpt, tmp_path, capsys, one_thread):
    """Like `eval --audio-dir`: one bad file in a folder no longer aborts the batch (issue 26); a folder of nothing
    usable is one error line and exit 2."""
    songs = tmp_path / "songs"
    songs.mkdir()
    sf.write(songs / "a.wav", music(16000, 1.0), 16000)
    (songs / "b.wav").write_bytes(b"RIFF but not audio" * 8)
    sf.write(songs / "c.wav", music(16000, 0.5, seed=1), 16000)
    sf.write(songs / "d.wav", np.zeros(10, np.float32), 16000)  # shorter than one frame
    out = tmp_path / "videos"
    code, err = run_cli(capsys, "--audio", songs, "--checkpoint", ckpt, "--out", out, "--steps", 2)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "c.mp4"]
    assert err.count("in a batch of 2") == 2 and "Traceback" not in err
    skips = [line for line in err.splitlines() if line.startswith("sample: skipped ")]
    assert len(skips) == 2, err
    assert str(songs / "b.wav") in skips[0] and str(songs / "d.wav") in skips[1]
    assert "shorter than one frame" in skips[1]
    for name in ("a.wav", "c.wav"):
        (songs / name).unlink()
    code, err = run_cli(capsys, "--audio", songs, "--checkpoint", ckpt, "--out", out, "--steps", 2)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and errors == ["error: none of the 2 audio files could be used"], err


def test_all_silent_audio_gives_a_valid_video(ckpt, tmp_path, capsys, one_thread):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000 * 2, np.float32), 16000)
    code, err = run_cli(capsys, "--audio", path, "--checkpoint", ckpt, "--out", tmp_path / "s.mp4")
    assert code == 0, err
    info = probe(tmp_path / "s.mp4")
    assert info["n_frames"] == 16 and info["has_audio"]


def test_style_from_reference_image(ckpt, tmp_path, capsys, one_thread):
    from PIL import Image

    img = tmp_path / "ref.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(img)
    path = tmp_path / "a.wav"
    sf.write(path, music(16000, 1.0), 16000)
    code, err = run_cli(capsys, "--audio", path, "--checkpoint", ckpt, "--out", tmp_path / "a.mp4", "--style-from", img)
    assert code == 0, err
    assert probe(tmp_path / "a.mp4")["n_frames"] == 8
    code, err = run_cli(capsys, "--audio", path, "--checkpoint", ckpt, "--style-from", tmp_path / "nope.png")
    assert code == 2 and "nope.png" in err


def test_bad_inputs_give_one_line_errors_and_exit_2(ckpt, tmp_path, capsys):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    good = tmp_path / "good.wav"
    sf.write(good, music(16000, 1.0), 16000)
    no_weights = tmp_path / "run_without_weights"
    no_weights.mkdir()
    (no_weights / "config.yaml").write_text("config: {}\n")
    broken = tmp_path / "run_with_broken_config"
    shutil.copytree(ckpt, broken, symlinks=True)
    (broken / "config.yaml").write_text("config: [unclosed\n")
    cases = [
        (["--audio", good, "--checkpoint", broken], "run_with_broken_config"),
        (["--audio", tmp_path / "missing.wav", "--checkpoint", ckpt], "missing.wav"),
        (["--audio", garbage, "--checkpoint", ckpt], "garbage.wav"),
        (["--audio", empty, "--checkpoint", ckpt], "empty.wav"),
        (["--audio", good, "--checkpoint", no_weights], "no weights"),
        (["--audio", good, "--checkpoint", tmp_path / "no_such_run"], "not found"),
    ]
    for args, needle in cases:
        code, err = run_cli(capsys, *args, "--out", tmp_path / "x.mp4")
        assert code == 2, (args, err)
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (args, err)
        assert "Traceback" not in err
    assert not (tmp_path / "x.mp4").exists()


# ------------------------------------------------------------------ seams


def test_snippet_borders_are_seamless_on_a_20s_sample(ckpt, one_thread):
    """Frame difference across snippet borders (and where a cross-fade ends) is at most 1.5x the median
    frame difference inside snippets, on a 20 s sample of the tiny model."""
    model = load_sampling_model(ckpt)
    sr = 16000
    wave = music(sr, 20.0, seed=2)
    n = frame_count(len(wave), sr, FPS)
    windows, silent, _ = audio_conditioning(wave, sr, model.cfg, n)
    spec = stream_spec(model, SampleSettings())
    assert spec.overlap >= 1
    frames = np.concatenate([c[0] for c in generate_frames(model, windows[None], silent[None],
                                                           style_from_prior(model.cfg.diffusion.style_dim, 0), spec, 0)])
    assert frames.shape == (n, 32, 32, 3)
    motion = motion_energy(frames)
    starts = snippet_starts(n, spec.snippet_frames, spec.overlap)[1:]
    border = sorted({s for s in starts} | {s + spec.overlap for s in starts if s + spec.overlap < n})
    inside = np.setdiff1d(np.arange(1, n), border)
    assert len(border) > 40 and len(inside) > 40
    ratio = motion[border].mean() / np.median(motion[inside])
    assert ratio <= 1.5, f"border/inside frame difference ratio {ratio:.3f}"


def test_default_checkpoint_is_runs_diffusion_then_the_shipped_model(tmp_path, monkeypatch):
    import trainer.models as models
    from trainer.models import ModelNotFound, model_defaults, resolve_model

    monkeypatch.chdir(tmp_path)
    # from a directory without models/: the checkout's shipped model (trainer sample works from anywhere) ...
    checkout = Path(models.__file__).resolve().parents[1] / "models" / models.SHIPPED[0]
    assert resolve_model() == checkout and (checkout / "config.yaml").is_file()
    assert resolve_model(model="synesthete-tiny-live") == checkout.parent / "synesthete-tiny-live"
    # the settings --help shows are the model's own (synesthete-tiny samples at guidance 1.0, synesthete-small-plan at
    # 2.0; both at 10 steps)
    for name, guidance in (("synesthete-tiny", 1.0), ("synesthete-small-plan", 2.0)):
        own = model_defaults(checkout.parent / name)
        assert (own["inference.audio_guidance_scale"], own["inference.steps"]) == (guidance, 10)
        step_dir = next((checkout.parent / name / "ckpt").glob("step-*"))
        assert model_defaults(step_dir) == own  # a step dir: its run's config
    # ... and where the package runs without a checkout beside it, one line naming what is missing
    monkeypatch.setattr(models, "CHECKOUT_MODELS", tmp_path / "no-checkout" / "models")
    with pytest.raises(ModelNotFound, match="runs/diffusion.*models"):
        resolve_model()
    with pytest.raises(ModelNotFound, match="--model 'synesthete-tiny': not a shipped model"):
        resolve_model(model="synesthete-tiny")
    (tmp_path / "models").symlink_to(checkout.parent, target_is_directory=True)
    assert resolve_model() == Path("models") / models.SHIPPED[0]  # the working directory's models/ first
    (tmp_path / "runs" / "diffusion").mkdir(parents=True)
    assert str(resolve_model()) == "runs/diffusion"
    assert str(resolve_model("elsewhere")) == "elsewhere"


def test_help_shows_the_settings_of_the_model_it_will_run(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 10, from" in text and "schema default 25" in text  # --steps: the shipped model's own
    assert "(default: 2.0, from models/synesthete-small-plan)" in text  # --guidance (the same as the schema's)
