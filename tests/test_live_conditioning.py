"""A live model's audio conditioning: the loader selects channels by name, builds past-only windows from the
causal timeline, and equals what the live scheduler builds from the streamed audio."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from shared import shards as S
from shared.audio_io import load_audio
from shared.config import build_config
from shared.errors import ConfigError
from shared.timeline import channel_names, compute_audio_timeline
from trainer.conditioning import ConditioningSpec
from trainer.data import ShardDataset
from trainer.live.features import causal_channel_names, live_timeline
from trainer.live.generator import SnippetTimings, lookahead_frames
from trainer.live.scheduler import LiveScheduler
from trainer.live.sources import FileSource, SimClock

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real_audio"
PICK = ["onset", "rms", "is_silent"]



def model_audio(feats, names, cfg):
    """What the loader, offline sampling and the eval feed a model of ``cfg`` from a stored timeline."""
    return ConditioningSpec.from_config(cfg).model_audio(feats, names)

def _cfg(*overrides):
    return build_config([ROOT / "configs" / "tiny.yaml"], overrides=[
        "data.sample_rate=8000", "data.clip_seconds=2.0", "render.resolution=32", "render.fps=8",
        "timeline.n_fft=256", "diffusion.snippet_frames=2", "diffusion.prev_frames=1",
        "diffusion.audio_context_frames=2", "diffusion.audio_feature_normalize_per_clip=false", *overrides])


# log_rms per frame (dB): loud and quiet runs, so a trailing and a centred median of 3 differ
LOG_RMS = np.array([-90, -90, -20, -90, -20, -20, -90, -90, -20, -90, -90, -90, -20, -20, -20, -90], np.float32)


def _write_shard(path: Path, cfg) -> list[str]:
    """Latent shard whose timeline row t holds ``t + 1000 c`` (names its frame and channel), with LOG_RMS in log_rms
    and the *offline* is_silent (a centred median) stored, as datagen stores it."""
    names = channel_names(cfg.timeline)
    n = len(LOG_RMS)
    t = np.arange(n, dtype=np.float32)
    feats = t[:, None] + 1000.0 * np.arange(len(names), dtype=np.float32)[None, :]
    feats[:, names.index("log_rms")] = LOG_RMS
    padded = np.concatenate([LOG_RMS[:1], LOG_RMS, LOG_RMS[-1:]])
    feats[:, names.index("is_silent")] = [float(np.median(padded[i:i + 3]) < -60) for i in range(n)]
    lat = np.broadcast_to(t[:, None, None, None], (n, 4, 2, 2))
    meta = {"variant": "normal", "tempo": 120.0, "fps": cfg.render.fps, "n_frames": n, "timeline_channels": names}
    with S.ShardWriter(path) as w:
        w.add_sample(S.sample_key(0, 0), S.latent_members(lat, np.ones_like(lat), feats, meta))
    return names


def _trailing_silence(t: int) -> float:
    """Oracle: median of log_rms over frames t-2 .. t (frame 0 repeated before the start) under -60 dB."""
    vals = [LOG_RMS[max(0, i)] for i in range(t - 2, t + 1)]
    return float(sorted(vals)[1] < -60)


def test_loader_selects_named_channels_in_past_only_causal_windows(tmp_path):
    cfg = _cfg("diffusion.audio_context_future=0", f"diffusion.audio_channels={PICK}")
    url = str(tmp_path / S.shard_name(0))
    names = _write_shard(Path(url), cfg)
    ds = ShardDataset([url], cfg, "snippets", source="latents", seed=0, snippets_per_clip=8, shuffle=1)
    cols = [names.index(c) for c in PICK]
    for s in itertools.islice(iter(ds), 16):
        idx = s["frame_index"]
        assert s["audio"].shape == (2, 3, 3) and s["audio_timeshift"].shape == (2, 3, 3)  # (F, k+1+0, picked)
        for j in range(3):  # window column j is frame clip(t - 2 + j): no column after t
            rows = np.clip(idx - 2 + j, 0, None)
            np.testing.assert_array_equal(s["audio"][:, j, 0], rows + 1000.0 * cols[0])  # onset, picked first
            np.testing.assert_array_equal(s["audio"][:, j, 1], rows + 1000.0 * cols[1])  # then rms
            np.testing.assert_array_equal(s["audio"][:, j, 2], [_trailing_silence(r) for r in rows])  # causal
        assert (s["audio"][:, :, 1] - 1000.0 * cols[1]).max() <= idx.max()  # oracle: no future frame
        np.testing.assert_array_equal(s["is_silent"], [_trailing_silence(t) for t in idx])


def test_causal_silence_is_not_the_stored_centred_one():
    cfg = _cfg("diffusion.audio_context_future=0", f"diffusion.audio_channels={PICK}")
    names = channel_names(cfg.timeline)
    feats = np.zeros((len(LOG_RMS), len(names)), np.float32)
    feats[:, names.index("log_rms")] = LOG_RMS
    _, silent = model_audio(feats, names, cfg)
    want = [_trailing_silence(t) for t in range(len(LOG_RMS))]
    assert silent.tolist() == want and want[:4] == [1.0, 1.0, 1.0, 1.0]  # frame 2's loud blip is smoothed away
    assert want[5] == 0.0 and want[6] == 0.0 and want[7] == 1.0  # switches one frame after the centred median


def test_default_config_windows_are_unchanged():
    """No selection, symmetric future: exactly the former ``out[t, j] = feats[clip(t - k + j)]``, all channels."""
    cfg = _cfg()
    names = channel_names(cfg.timeline)
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((11, len(names))).astype(np.float32)
    feats[:, names.index("is_silent")] = rng.integers(0, 2, 11)
    win, silent = model_audio(feats, names, cfg)
    idx = np.clip(np.arange(11)[:, None] - 2 + np.arange(5)[None, :], 0, 10)
    np.testing.assert_array_equal(win, feats[idx])
    np.testing.assert_array_equal(silent, feats[:, names.index("is_silent")])


def test_causal_model_refuses_beat_channels_and_wrong_names():
    names = channel_names(_cfg().timeline)
    feats = np.zeros((6, len(names)), np.float32)
    with pytest.raises(ConfigError, match=r"diffusion.audio_channels: \['tempo'\] not in"):
        model_audio(feats, names, _cfg("diffusion.audio_channels=[rms,tempo]"))
    with pytest.raises(ConfigError, match=r"causal model .* cannot take \['beat_phase', 'downbeat'\]"):
        model_audio(feats, names, _cfg("diffusion.audio_context_future=0"))  # null: all channels, beats included
    with pytest.raises(ConfigError, match="audio_feature_normalize_per_clip"):
        model_audio(feats, names, _cfg("diffusion.audio_context_future=0", f"diffusion.audio_channels={PICK}",
                                       "diffusion.audio_feature_normalize_per_clip=true"))


class CaptureGenerator:
    """Stands in for the model in the live scheduler: records the windows of each 1-frame snippet."""

    snippet_frames, past, future, full_steps = 1, 3, 0, 1
    lookahead = lookahead_frames(1, 0)

    def __init__(self):
        self.windows, self.silent = [], []

    def warm_up(self):
        return SnippetTimings(0.0, 0.0)

    def generate(self, start, windows, silent, steps):
        self.windows.append(windows[0])
        self.silent.append(silent[0])
        return np.zeros((1, 2, 2, 3), np.uint8), SnippetTimings(0.0, 0.0)


class Discard:
    def on_audio(self, samples): pass
    def on_frames(self, first, frames, infos): pass
    def on_status(self, status): pass
    def close(self, summary): pass


@pytest.mark.parametrize("name,seconds", [("speech_gettysburg.wav", 6.0), ("mozart_k545_piano.mp3", 4.0)])
def test_offline_future0_windows_equal_the_live_schedulers(name, seconds):
    """Real audio: the loader's windows (offline timeline, made causal) equal the live scheduler's (streamed)."""
    sr = 16000
    cfg = _cfg("data.sample_rate=16000", "timeline.n_fft=512", "diffusion.snippet_frames=1",
               "diffusion.audio_context_frames=3", "diffusion.audio_context_future=0",
               f"diffusion.audio_channels={[n for n in causal_channel_names(_cfg().timeline) if 'beat' not in n][::-1]}")
    wave, _ = load_audio(REAL / name, sr)
    wave = np.concatenate([wave[: int(seconds * sr)], np.zeros(sr, np.float32)])  # a second of silence after it
    feats, names = compute_audio_timeline(wave, sr, cfg.render.fps, cfg.timeline)
    offline, offline_silent = model_audio(feats, names, cfg)

    tcfg, channels = live_timeline(cfg)
    assert not tcfg.beat_channels  # the model takes no beat channel: the tracker is not run live
    clock, gen = SimClock(0.0), CaptureGenerator()
    LiveScheduler(FileSource(wave, sr, clock, realtime=False), gen, [Discard()], clock, sr, cfg.render.fps, tcfg,
                  realtime=False, channels=channels).run()
    live = np.stack(gen.windows)
    assert live.shape == offline.shape == (len(feats), 4, len(cfg.diffusion.audio_channels))
    np.testing.assert_allclose(live, offline, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.array(gen.silent), offline_silent)
    assert 0 < offline_silent.sum() < len(offline_silent)  # the audio exercises both states of is_silent


def test_shuffle_negatives_read_the_frames_own_row_of_a_causal_window():
    """The hard negatives compare each frame's own features: the last row of a past-only window (t-k .. t)."""
    import torch

    from trainer.diffusion import shuffle as Sh
    from trainer.diffusion.losses import shuffle_layout

    cfg = _cfg("diffusion.audio_context_future=0", f"diffusion.audio_channels={PICK}")
    layout = shuffle_layout(cfg)
    assert (layout.frame_row, layout.is_silent, layout.log_rms) == (2, 2, -1)  # PICK has no log_rms
    with pytest.raises(ConfigError, match="loudness_matched needs log_rms"):
        shuffle_layout(_cfg("diffusion.audio_context_future=0", f"diffusion.audio_channels={PICK}",
                            "diffusion.audio_shuffle_negatives=loudness_matched", "diffusion.audio_shuffle_loss_weight=0.5"))
    audio = torch.zeros(3, 1, 3, 3)  # (B, F, k+1, Ch): rows t-2, t-1, t
    audio[1, :, 2], audio[2, :, 2] = 5.0, 0.1  # the frame itself: clip 1 is far from clip 0, clip 2 near
    audio[1, :, 1], audio[2, :, 1] = 0.1, 5.0  # the frame before: the other way round
    batch = {"audio": audio, "is_silent": torch.zeros(3, 1), "audio_id": torch.arange(3)}
    neg = Sh.draw_negatives(batch, "hard", 1, None, layout)
    assert torch.equal(neg.audio[0, 0], audio[1])  # the most dissimilar by the frame's own row (row 1 would say 2)
