"""Streaming loader: real tar shards read by webdataset, real DataLoader workers."""

from __future__ import annotations

import collections
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from shared import shards as S
from shared.config import build_config
from shared.timeline import channel_names
from shared.errors import DataError
from trainer.data import (
    ShardDataset, frame_loader, make_loader, resolve_shards, skip_counts, skipped_in, snippet_loader,
    timeshift_offset_frames, VARIANT_CODE,
)
from trainer.variant_mix import reweights_variants, stored_variant_counts, target_variant_mix
from trainer_shards import rewrite_member, write_index_latent_shard, write_pixel_shards

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pixel_dir(tmp_path_factory):
    cfg = _micro()
    root = tmp_path_factory.mktemp("pixels")
    keys = write_pixel_shards(root, cfg, train_shards=4, val_shards=1, samples_per_shard=3)
    return root, keys


def _micro(*overrides):
    """conftest's micro_cfg as a plain function (module-scoped fixtures need it), plus overrides."""
    return build_config([ROOT / "configs" / "tiny.yaml"], overrides=[
        "data.sample_rate=8000", "data.clip_seconds=2.0", "render.resolution=32", "render.fps=8",
        "data.samples_per_shard=4", "timeline.n_fft=256", *overrides])


def test_resolve_shards_forms(pixel_dir, tmp_path):
    root, _ = pixel_dir
    train = resolve_shards(root, "train")
    assert [os.path.basename(u) for u in train] == [S.shard_name(i) for i in range(4)]
    assert resolve_shards(root, "val") == [str(root / "val" / S.shard_name(0))]
    assert resolve_shards(str(root / "train" / "shard-*.tar")) == train
    assert resolve_shards(str(root / "train" / "shard-{000000..000003}.tar")) == train
    assert resolve_shards("https://example.invalid/shard-{000000..000001}.tar") == [
        "https://example.invalid/shard-000000.tar", "https://example.invalid/shard-000001.tar"]
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "shard-000000.tar.partial").write_bytes(b"")
    with pytest.raises(DataError, match="no finished shards"):
        resolve_shards(tmp_path, "train")
    with pytest.raises(DataError, match="missing"):
        resolve_shards(str(root / "train" / "shard-{000000..000009}.tar"))


def _keys_for_rank(urls, cfg, rank, epoch=0, workers=2):
    ds = ShardDataset(urls, cfg, "frames", seed=3, rank=rank, world_size=2, resampled=False, frames_per_clip=1,
                      shuffle=4)
    ds.set_epoch(epoch)
    loader = make_loader(ds, batch_size=1, num_workers=workers, drop_last=False)
    return [k for batch in loader for k in batch["key"]]


def test_every_sample_once_per_epoch_across_2_ranks_x_2_workers(pixel_dir):
    root, keys = pixel_dir
    cfg = _micro()
    urls = resolve_shards(root, "train")
    seen = _keys_for_rank(urls, cfg, 0) + _keys_for_rank(urls, cfg, 1)
    assert sorted(seen) == sorted(keys["train"]) and len(seen) == len(set(seen)) == 12
    # another epoch: another shard order, the same samples once each (workers=0 keeps this quick)
    again = _keys_for_rank(urls, cfg, 0, epoch=1, workers=0) + _keys_for_rank(urls, cfg, 1, epoch=1, workers=0)
    assert sorted(again) == sorted(keys["train"])


def test_stream_is_deterministic_per_seed_and_rank(pixel_dir):
    root, _ = pixel_dir
    cfg = _micro()
    urls = resolve_shards(root, "train")

    def first(seed, rank):
        ds = ShardDataset(urls, cfg, "frames", seed=seed, rank=rank, world_size=2, frames_per_clip=2, shuffle=8)
        return [(s["key"], float(s["frame"].sum())) for s in itertools.islice(iter(ds), 12)]

    assert first(1, 0) == first(1, 0)
    assert first(1, 0) != first(2, 0)
    assert first(1, 0) != first(1, 1)


def test_frame_samples_shape_and_range(pixel_dir):
    root, _ = pixel_dir
    batch = next(iter(frame_loader(root, _micro(), "train", batch_size=5, seed=0)))
    assert tuple(batch["frame"].shape) == (5, 3, 32, 32) and str(batch["frame"].dtype) == "torch.float32"
    assert float(batch["frame"].min()) >= -1.0 and float(batch["frame"].max()) <= 1.0
    assert len(batch["key"]) == 5


def test_snippets_are_contiguous_and_aligned_with_timeline(tmp_path):
    cfg = _micro("diffusion.snippet_frames=4", "diffusion.prev_frames=2", "diffusion.audio_context_frames=2",
                 "diffusion.audio_feature_normalize_per_clip=false")
    n_frames = 20
    url = str(tmp_path / S.shard_name(0))
    write_index_latent_shard(url, cfg, n_clips=3, n_frames=n_frames)
    ds = ShardDataset([url], cfg, "snippets", source="latents", seed=0, snippets_per_clip=8, shuffle=1,
                      latent_scale=0.5)
    names = channel_names(cfg.timeline)
    rms_c, sil_c = names.index("rms"), names.index("is_silent")
    bar = 4 * 60 * cfg.render.fps / 120.0
    n = 0
    for s in itertools.islice(iter(ds), 24):
        idx = s["frame_index"]
        assert s["x"].shape == (4, 4, 2, 2) and s["audio"].shape == (4, 5, len(names))
        assert np.array_equal(idx, np.arange(idx[0], idx[0] + 4))  # contiguous
        assert np.allclose(s["x"][:, 0, 0, 0], 0.5 * idx)  # latents of exactly those frames (scaled)
        # the window centre is the frame's own timeline row; neighbours are edge-padded rows
        assert np.allclose(s["audio"][:, 2, rms_c], idx + 1000.0 * rms_c)
        assert np.allclose(s["audio"][:, 0, rms_c], np.clip(idx - 2, 0, None) + 1000.0 * rms_c)
        assert np.array_equal(s["is_silent"], (idx % 2).astype(np.float32))
        # previous frames: the two before the snippet, zero and invalid before the clip start
        want_valid = np.arange(idx[0] - 2, idx[0]) >= 0
        assert np.array_equal(s["prev_valid"], want_valid)
        assert np.allclose(s["prev"][:, 0, 0, 0], np.where(want_valid, 0.5 * np.arange(idx[0] - 2, idx[0]), 0.0))
        # time-shifted audio: the same clip's rows, circularly shifted by a non-whole number of bars
        centre = s["audio_timeshift"][:, 2, rms_c] - 1000.0 * rms_c
        offset = int(round(centre[0] - idx[0])) % n_frames
        assert np.allclose(centre, (idx + offset) % n_frames)
        assert offset != 0 and abs(offset / bar - round(offset / bar)) > 1e-6
        assert s["style"].shape == (4, 4, 2, 2) and s["variant"] == 0
        n += 1
    assert n == 24


def test_pixel_snippets_decode_the_right_frames(pixel_dir):
    root, _ = pixel_dir
    cfg = _micro("diffusion.snippet_frames=3", "diffusion.prev_frames=1")
    urls = resolve_shards(root, "val")
    ds = ShardDataset(urls, cfg, "snippets", source="pixels", seed=0, shuffle=1, resampled=False)
    members = {m["__key__"]: m for m in wds.WebDataset(urls[0], shardshuffle=False)}  # stock webdataset reader
    for s in ds:
        clip = members[s["key"]]
        want = np.stack([S.decode_jpeg(clip[S.frame_member(int(i))]) for i in s["frame_index"]])
        got = np.moveaxis((s["x"] + 1.0) * 127.5, 1, -1)
        assert np.abs(got - want).max() < 0.51
        assert s["x"].shape == (3, 3, 32, 32)


def test_target_mix_schedule_and_modes():
    cfg = _micro("data.audio_silence_mix_prob=0.3", "data.audio_debug_mix_prob=0.1",
                 "data.audio_debug_mix_schedule_steps=100")
    assert target_variant_mix(cfg.data, 0) == pytest.approx({"normal": 0.0, "silence": 0.0, "debug": 1.0})
    mid = target_variant_mix(cfg.data, 50)
    assert mid["debug"] == pytest.approx(0.55) and mid["silence"] == pytest.approx(0.3)
    assert target_variant_mix(cfg.data, 1000) == pytest.approx({"normal": 0.6, "silence": 0.3, "debug": 0.1})
    assert target_variant_mix(_micro().data, 0) is None  # no knob given: draw what the shards hold
    assert target_variant_mix(_micro("data.audio_debug_mode=true").data, 0)["debug"] == 1.0
    # a schedule alone turns reweighting on, with the knobs' default final values
    sched = target_variant_mix(_micro("data.audio_debug_mix_schedule_steps=10").data, 10)
    assert sched == pytest.approx({"normal": 0.65, "silence": 0.3, "debug": 0.05})


def test_explicit_means_given_by_a_user_layer_not_a_saved_base(tmp_path):
    y = tmp_path / "mix.yaml"
    y.write_text("data:\n  audio_silence_mix_prob: 0.3\n")  # the default value, but given
    assert reweights_variants(build_config([y]).data)
    assert reweights_variants(build_config(flags={"data.audio_debug_mix_prob": 0.05}).data)
    assert not reweights_variants(build_config().data)
    saved = build_config([y]).model_dump(mode="json")  # a run's config.yaml spells out every key
    assert not reweights_variants(build_config(base=saved).data)
    assert reweights_variants(build_config(base=saved, overrides=["data.audio_debug_mix_prob=0.2"]).data)


def test_deprecated_reweight_variants_is_ignored_with_a_warning(tmp_path, capsys):
    y = tmp_path / "old.yaml"
    y.write_text("data:\n  reweight_variants: true\n")
    cfg = build_config([y], overrides=["data.reweight_variants=false"])
    err = capsys.readouterr().err
    assert err.count("data.reweight_variants is deprecated and ignored") == 2 and "mix knob" in err
    assert not reweights_variants(cfg.data) and "reweight_variants" not in cfg.data.model_dump()
    build_config(base={"data": {"reweight_variants": True}})  # a saved run's config: read silently
    assert "deprecated" not in capsys.readouterr().err


def _variant_counts(url, cfg, n, seed=0, start_step=0):
    ds = ShardDataset([url], cfg, "snippets", source="latents", seed=seed, shuffle=1, samples_per_step=8,
                      start_step=start_step)
    return collections.Counter(int(s["variant"]) for s in itertools.islice(iter(ds), n))


def test_variant_reweighting_hits_the_asked_proportions(tmp_path):
    url = str(tmp_path / S.shard_name(0))
    cfg = _micro("data.audio_silence_mix_prob=0.25", "data.audio_debug_mix_prob=0.1",
                 "diffusion.snippet_frames=2", "diffusion.prev_frames=1")
    # stored: one third of each variant
    write_index_latent_shard(url, cfg, n_clips=9, n_frames=6, variants=["normal", "silence", "debug"])
    n = 900
    counts = _variant_counts(url, cfg, n)
    for variant, p in {"normal": 0.65, "silence": 0.25, "debug": 0.1}.items():
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(counts[VARIANT_CODE[variant]] - n * p) < 4 * sigma, (variant, counts)
    only_debug = _variant_counts(url, _micro("data.audio_debug_mode=true", "diffusion.snippet_frames=2"), 60)
    assert set(only_debug) == {VARIANT_CODE["debug"]}
    no_silence = _variant_counts(url, _micro("data.audio_silence_mix_prob=0", "data.audio_debug_mix_prob=0",
                                             "diffusion.snippet_frames=2"), 60)
    assert set(no_silence) == {VARIANT_CODE["normal"]}


def test_default_draws_what_the_shards_hold(tmp_path):
    url = str(tmp_path / S.shard_name(0))
    cfg = _micro("diffusion.snippet_frames=2", "diffusion.prev_frames=1")
    write_index_latent_shard(url, cfg, n_clips=8, n_frames=6, variants=["normal"] * 6 + ["silence", "debug"])
    ds = ShardDataset([url], cfg, "snippets", source="latents", seed=0, shuffle=1, resampled=False)
    assert not ds.reweight
    counts = collections.Counter(int(s["variant"]) for s in ds)  # one pass, as stored: 6 normal, 1, 1
    assert counts == {VARIANT_CODE["normal"]: 6, VARIANT_CODE["silence"]: 1, VARIANT_CODE["debug"]: 1}


def test_bootstrap_curriculum_falls_from_debug_only_within_one_run(tmp_path):
    url = str(tmp_path / S.shard_name(0))
    cfg = _micro("data.audio_debug_mix_prob=0", "data.audio_silence_mix_prob=0", "data.audio_debug_mix_schedule_steps=20",
                 "diffusion.snippet_frames=2", "diffusion.prev_frames=1")
    write_index_latent_shard(url, cfg, n_clips=6, n_frames=6, variants=["normal", "debug"])
    debug = VARIANT_CODE["debug"]
    # batches of 8 (samples_per_step): the first batch is all debug, after step 20 none is
    ds = ShardDataset([url], cfg, "snippets", source="latents", seed=0, shuffle=1, samples_per_step=8)
    v = [int(s["variant"]) for s in itertools.islice(iter(ds), 8 * 30)]
    assert set(v[:8]) == {debug} and debug not in v[8 * 21:]
    early, late = v[8 * 2: 8 * 8].count(debug) / 48, v[8 * 12: 8 * 18].count(debug) / 48
    assert early > late  # falls linearly in between (expected 0.75 vs 0.25)
    # the stream is a function of (seed, start step): a restart at step 21 draws no debug clip at all
    assert debug not in _variant_counts(url, cfg, 40, start_step=21)
    assert _variant_counts(url, cfg, 80, start_step=5) == _variant_counts(url, cfg, 80, start_step=5)


def test_wanted_variant_absent_is_refused_before_training(tmp_path):
    root = tmp_path / "latents"
    cfg = _micro("diffusion.snippet_frames=2", "diffusion.prev_frames=1")
    for i in range(2):
        write_index_latent_shard(root / "train" / S.shard_name(i), cfg, n_clips=3, n_frames=6,
                                 variants=["normal", "silence"])
    # debug mode on shards with no debug clip: one line before any sample (it used to die with StopIteration)
    with pytest.raises(DataError, match=r"audio_debug_mode=true.*'debug'.*2 shards \(train/shard-000000.tar, "
                                        r"train/shard-000001.tar\).*normal, silence") as e:
        snippet_loader(root, _micro("data.audio_debug_mode=true", "diffusion.snippet_frames=2"), "train", 2, seed=0)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="audio_debug_mix_schedule_steps > 0"):
        snippet_loader(root, _micro("data.audio_debug_mix_schedule_steps=5", "diffusion.snippet_frames=2"),
                       "train", 2, seed=0)
    with pytest.raises(DataError, match="'debug'"):  # an explicit debug share
        snippet_loader(root, _micro("data.audio_debug_mix_prob=0.1", "diffusion.snippet_frames=2"), "train", 2, seed=0)
    ok = _micro("data.audio_debug_mix_prob=0", "data.audio_silence_mix_prob=0.5", "diffusion.snippet_frames=2")
    next(iter(snippet_loader(root, ok, "train", 2, seed=0)))  # no debug wanted: fine
    # the counts come from the manifest where it records them (cache-latents does): here it claims debug clips
    (root / "manifest.json").write_text(json.dumps({"kind": "latents", "splits": {"train": [
        {"name": S.shard_name(i), "samples": 3, "variants": {"normal": 1, "silence": 1, "debug": 1}}
        for i in range(2)]}}))
    assert stored_variant_counts(resolve_shards(root, "train"))[str(root / "train" / S.shard_name(0))]["debug"] == 1


def test_timeshift_offset_is_never_whole_bars():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        tempo, fps = rng.uniform(30, 300), rng.choice([4.0, 8.0, 12.5, 24.0, 30.0, 60.0])
        n_frames = int(rng.integers(2, 400))
        o = timeshift_offset_frames(tempo, fps, n_frames, rng)
        bar = 240.0 * fps / tempo
        assert 1 <= o < n_frames
        assert abs(o / bar - round(o / bar)) > 1e-9, (tempo, fps, n_frames, o)
    # exact whole-bar candidates exist and are avoided: 120 BPM at 8 fps is 16 frames a bar
    offsets = {timeshift_offset_frames(120.0, 8.0, 64, rng) for _ in range(500)}
    assert not offsets & {16, 32, 48}
    assert all(min(o % 16, 16 - o % 16) >= 4 for o in offsets)  # at least a quarter bar away
    with pytest.raises(ValueError, match=">= 2 frames"):
        timeshift_offset_frames(120.0, 8.0, 1, rng)


def test_corrupt_sample_is_skipped_and_counted_across_workers(pixel_dir, tmp_path):
    root, keys = pixel_dir
    urls = resolve_shards(root, "train")
    bad = tmp_path / "shard-000000.tar"
    victim = keys["train"][1]
    rewrite_member(urls[0], bad, f"{victim}.{S.frame_member(3)}", lambda data: b"\xff\xd8 not a jpeg at all" + data[40:80])
    # a truncated shard as well: its first sample survives, the shard is counted once
    truncated = tmp_path / "shard-000001.tar"
    data = open(urls[1], "rb").read()
    first_two = [k for k in keys["train"] if k.startswith("000001")][:2]
    cut = data.find(f"{first_two[1]}.meta.json".encode())
    truncated.write_bytes(data[: cut + 512 + 10])  # inside the last member's body
    urls = [str(bad), str(truncated), urls[2], urls[3]]
    got: collections.Counter = collections.Counter()
    skipped: list[str] = []
    for epoch in range(2):  # two passes read the damage twice; it is still one corrupt sample and one bad shard
        ds = ShardDataset(urls, _micro(), "frames", seed=0, resampled=False, frames_per_clip=64, shuffle=4)
        ds.set_epoch(epoch)
        for batch in make_loader(ds, 4, num_workers=2, drop_last=False):
            got.update(batch["key"])
            skipped += sorted(skipped_in(batch))
    assert sorted(skipped) == sorted(2 * [f"sample:{bad}#{victim}", f"shard:{truncated}"])  # once per read
    assert skip_counts(set(skipped)) == {"corrupt_samples": 1, "unreadable_shards": 1}  # once per sample
    n_frames = 16
    expect = {k for k in keys["train"] if k.startswith(("000000", "000002", "000003"))} - {victim}
    expect |= {first_two[0]}
    assert set(got) == expect
    assert all(v == 2 * n_frames for v in got.values())


_THREE_PASSES = """
import json, sys
sys.path.insert(0, sys.argv[1])
from test_loader import _micro
from trainer.data import ShardDataset, make_loader, skipped_in
urls, workers = json.loads(sys.argv[2]), int(sys.argv[3])
skipped = []
ds = ShardDataset(urls, _micro(), "frames", seed=0, resampled=False, frames_per_clip=1, shuffle=1)
for epoch in range(3):
    if epoch == 2:  # a new dataset, as the trainer builds one per checkpoint segment
        ds = ShardDataset(urls, _micro(), "frames", seed=0, resampled=False, frames_per_clip=1, shuffle=1)
    ds.set_epoch(epoch)
    for batch in make_loader(ds, 2, num_workers=workers, drop_last=False):
        skipped += sorted(skipped_in(batch))
print(json.dumps(skipped))
"""


@pytest.mark.parametrize("workers", [0, 2])
def test_a_truncated_shard_is_warned_about_once_per_process_and_counted_at_every_read(pixel_dir, tmp_path, workers):
    """Three passes over a set with a really truncated tar (two epochs of one dataset, then a new dataset) in a
    process of their own (whose loader workers write to its stderr): one warning, three skip reports, one
    unreadable shard."""
    root, keys = pixel_dir
    urls = resolve_shards(root, "train")
    truncated = tmp_path / "shard-000001.tar"
    data = open(urls[1], "rb").read()
    cut = data.find(f"{[k for k in keys['train'] if k.startswith('000001')][1]}.meta.json".encode())
    truncated.write_bytes(data[: cut + 512 + 10])  # inside a member's body
    urls = [urls[0], str(truncated), urls[2]]
    run = subprocess.run([sys.executable, "-c", _THREE_PASSES, str(ROOT / "tests"), json.dumps(urls), str(workers)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    skipped = json.loads(run.stdout.splitlines()[-1])
    assert skipped == 3 * [f"shard:{truncated}"]  # reported with every read
    assert skip_counts(set(skipped)) == {"corrupt_samples": 0, "unreadable_shards": 1}
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: skipped shard:{truncated}: "), run.stderr


def test_a_set_mixing_content_fingerprints_is_refused_naming_the_shards(tmp_path):
    cfg = _micro()
    write_pixel_shards(tmp_path, cfg, train_shards=2, val_shards=1, samples_per_shard=1)
    (tmp_path / "manifest.json").write_text(json.dumps({"content_id": "aaaa", "shards": {
        "train/shard-000000.tar": {"content_id": "aaaa"}, "train/shard-000001.tar": {"content_id": "bbbb"},
        "val/shard-000000.tar": {"content_id": "aaaa"}}}))
    with pytest.raises(DataError, match=r"2 different content fingerprints.*aaaa.*bbbb \(1 shards, e.g. "
                                        r"train/shard-000001.tar\)"):
        frame_loader(tmp_path, cfg, "train", batch_size=1, seed=0)
    with pytest.raises(DataError, match="different content fingerprints"):
        snippet_loader(tmp_path, cfg, "val", batch_size=1, seed=0, source="pixels")


def test_copies_of_one_debug_clip_share_an_audio_id(tmp_path):
    cfg = _micro("diffusion.snippet_frames=2", "diffusion.prev_frames=1")
    # the helper writes every clip of a shard with the same timeline (copies, as debug clips are);
    # a clip of another length is other audio
    copies = write_index_latent_shard(tmp_path / S.shard_name(0), cfg, n_clips=2, n_frames=6, variants=["debug"])
    other = write_index_latent_shard(tmp_path / S.shard_name(1), cfg, n_clips=1, n_frames=7, variants=["debug"])
    urls = [str(tmp_path / S.shard_name(i)) for i in range(2)]
    ds = ShardDataset(urls, cfg, "snippets", source="latents", seed=0, shuffle=1, resampled=False)
    batch = next(iter(make_loader(ds, batch_size=3, num_workers=0, drop_last=False)))
    ids = dict(zip(batch["key"], batch["audio_id"].tolist()))
    assert str(batch["audio_id"].dtype) == "torch.int64" and set(ids) == {*copies, *other}
    assert ids[copies[0]] == ids[copies[1]] != ids[other[0]]


def test_style_frames_come_from_outside_the_target_snippet(tmp_path):
    cfg = _micro("diffusion.snippet_frames=4", "diffusion.prev_frames=1")
    long_url, short_url = str(tmp_path / S.shard_name(0)), str(tmp_path / S.shard_name(1))
    write_index_latent_shard(long_url, cfg, n_clips=2, n_frames=12)  # latents[t] = t: a style frame names itself
    write_index_latent_shard(short_url, cfg, n_clips=1, n_frames=6)  # 2 frames outside a snippet, 4 style frames
    for url, n_frames in ((long_url, 12), (short_url, 6)):
        ds = ShardDataset([url], cfg, "snippets", source="latents", seed=0, shuffle=1, snippets_per_clip=16)
        for s in itertools.islice(iter(ds), 32):
            style_t = s["style"][:, 0, 0, 0].astype(int)
            assert s["style"].shape == (4, 4, 2, 2)
            assert not set(style_t) & set(s["frame_index"].tolist()), (style_t, s["frame_index"])
            assert set(style_t) <= set(range(n_frames))
    # a clip exactly one snippet long has nothing outside it: the snippet's own frames (documented fallback)
    one = str(tmp_path / S.shard_name(2))
    write_index_latent_shard(one, cfg, n_clips=1, n_frames=4)
    s = next(iter(ShardDataset([one], cfg, "snippets", source="latents", seed=0, shuffle=1)))
    assert set(s["style"][:, 0, 0, 0].astype(int)) <= set(range(4))


def test_snippets_per_clip_from_the_config_and_fp16_latents(tmp_path):
    cfg = _micro("data.snippets_per_clip=3", "diffusion.snippet_frames=2", "diffusion.prev_frames=1")
    keys = write_index_latent_shard(tmp_path / "train" / S.shard_name(0), cfg, n_clips=2, n_frames=9)
    batches = list(snippet_loader(tmp_path, cfg, "train", 2, seed=0, resampled=False, shuffle=1, drop_last=False))
    got = [k for b in batches for k in b["key"]]
    assert got == [keys[0]] * 3 + [keys[1]] * 3  # three snippets of each clip read, one pass
    b = batches[0]
    assert {str(b[f].dtype) for f in ("x", "prev", "style")} == {"torch.float16"}  # as stored: half the bytes
    assert str(b["audio"].dtype) == "torch.float32"
    assert len({tuple(s.tolist()) for b in batches for s in b["frame_index"]}) > 1  # different windows


def test_pixel_manifest_counts_decide_for_the_vae_frame_loader(tmp_path):
    cfg = _micro()
    write_pixel_shards(tmp_path, cfg, train_shards=1, val_shards=1, samples_per_shard=3)  # normal, silence, debug
    # as `datagen run` records them (shards[rel].variants); here it says the train shard holds no debug clip
    (tmp_path / "manifest.json").write_text(json.dumps({"content_id": "c", "shards": {
        "train/shard-000000.tar": {"content_id": "c", "variants": {"normal": 2, "silence": 1, "debug": 0}},
        "val/shard-000000.tar": {"content_id": "c", "variants": {"normal": 1, "silence": 1, "debug": 1}}}}))
    debug = _micro("data.audio_debug_mode=true")
    with pytest.raises(DataError, match=r"wants 'debug' clips, but none of the 1 shards \(train/shard-000000.tar\)"):
        frame_loader(tmp_path, debug, "train", batch_size=1, seed=0)
    batch = next(iter(frame_loader(tmp_path, debug, "val", batch_size=2, seed=0)))
    assert set(batch["key"]) == {S.sample_key(0, 2)}  # the val shard's debug clip only
