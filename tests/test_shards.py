"""Shard format: round trips through real tar, soundfile, simplejpeg and stock webdataset."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile

import numpy as np
import pytest

from shared import shards as S


def _sample(rng: np.random.Generator, n_frames: int = 3, res: int = 16, sr: int = 8000):
    wave = (rng.standard_normal(sr) * 0.2).astype(np.float32)
    timeline = rng.standard_normal((n_frames, 5)).astype(np.float32)
    frames = rng.integers(0, 256, (n_frames, res, res, 3), dtype=np.uint8)
    meta = {"variant": "silence", "seed": 7, "segments": [{"kind": "silence", "start_s": 0.5}], "fps": 8.0}
    return wave, sr, timeline, frames, meta


def _write(path, samples, quality=90):
    with S.ShardWriter(path) as w:
        for i, (wave, sr, tl, frames, meta) in enumerate(samples):
            jpgs = [S.encode_jpeg(f, quality) for f in frames]
            w.add_sample(S.sample_key(3, i), S.pixel_members(wave, sr, tl, jpgs, meta))
    return path


def test_names():
    assert S.sample_key(12, 3) == "000012-00003"
    assert S.frame_member(7) == "f0007.jpg"
    assert S.frame_index("f0007.jpg") == 7 and not S.is_frame_member("meta.json")
    assert S.shard_name(5) == "shard-000005.tar"
    assert S.shard_index("/x/shard-000005.tar.partial") == 5
    assert S.split_key("000012-00003.f0001.jpg") == ("000012-00003", "f0001.jpg")
    with pytest.raises(ValueError, match="shard file name"):
        S.shard_index("foo.tar")


def test_flac_is_deterministic_and_quantisation_matches():
    rng = np.random.default_rng(0)
    wave = np.concatenate([(rng.standard_normal(4000) * 0.5).astype(np.float32),
                           np.array([1.0, -1.0, 1.7, -1.7, 0.5 / 32768, 1.5 / 32768, -0.5 / 32768, 2.5 / 32768], np.float32)])
    a, b = S.encode_flac(wave, 8000), S.encode_flac(wave, 8000)
    assert a == b
    back, sr = S.decode_flac(a)
    assert sr == 8000 and back.dtype == np.float32 and back.shape == wave.shape
    np.testing.assert_array_equal(back, S.quantize_pcm16(wave))
    # Re-encoding quantised audio is lossless.
    np.testing.assert_array_equal(S.decode_flac(S.encode_flac(back, 8000))[0], back)


def test_codecs_round_trip():
    rng = np.random.default_rng(1)
    tl = rng.standard_normal((6, 4)).astype(np.float32)
    np.testing.assert_array_equal(S.decode_timeline(S.encode_timeline(tl)), tl)
    assert S.decode_timeline(S.encode_timeline(tl)).dtype == np.float32
    meta = {"b": 1, "a": [1.5, "x"], "c": {"z": None}}
    assert S.encode_json(meta) == S.encode_json(dict(reversed(list(meta.items()))))
    assert S.decode_json(S.encode_json(meta)) == meta
    # A smooth image survives 4:2:0 JPEG closely; the stream really is 4:2:0 (SOF component sampling 0x22).
    yy, xx = np.mgrid[0:32, 0:32]
    img = np.stack([xx * 8, yy * 8, (xx + yy) * 4], -1).astype(np.uint8)
    jpg = S.encode_jpeg(img, 95)
    assert b"\x01\x22" in jpg[: 400]
    assert np.abs(S.decode_jpeg(jpg).astype(int) - img).mean() < 3
    with pytest.raises(ValueError, match="uint8"):
        S.encode_jpeg(img.astype(np.float32), 90)


def test_round_trip_and_byte_identical_rewrite(tmp_path):
    rng = np.random.default_rng(2)
    samples = [_sample(rng) for _ in range(2)]
    p1 = _write(tmp_path / "a" / "shard-000003.tar", samples)
    p2 = _write(tmp_path / "b" / "shard-000003.tar", samples)
    assert p1.read_bytes() == p2.read_bytes()
    assert not (tmp_path / "a" / "shard-000003.tar.partial").exists()

    got = list(S.iter_tar_samples(p1))
    assert [k for k, _ in got] == ["000003-00000", "000003-00001"]
    for (key, members), (wave, sr, tl, frames, meta) in zip(got, samples):
        assert list(members) == ["audio.flac", "timeline.npy", "f0000.jpg", "f0001.jpg", "f0002.jpg", "meta.json"]
        d = S.decode_pixel_sample(members)
        np.testing.assert_array_equal(d["wave"], S.quantize_pcm16(wave))
        np.testing.assert_array_equal(d["timeline"], tl)
        assert d["frames"].shape == frames.shape and d["meta"] == meta and d["sr"] == sr

    with tarfile.open(p1) as tar:
        for info in tar.getmembers():
            assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (0, 0, 0, "", "", 0o644)


def test_tar_cli_lists_members(tmp_path):
    p = _write(tmp_path / "shard-000003.tar", [_sample(np.random.default_rng(3), n_frames=2)])
    out = subprocess.run(["tar", "-tf", str(p)], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["000003-00000.audio.flac", "000003-00000.timeline.npy", "000003-00000.f0000.jpg",
                   "000003-00000.f0001.jpg", "000003-00000.meta.json"]


def test_stock_webdataset_reads_members(tmp_path):
    import webdataset as wds

    rng = np.random.default_rng(4)
    samples = [_sample(rng) for _ in range(3)]
    p = _write(tmp_path / "shard-000003.tar", samples)
    ds = wds.WebDataset(str(p), shardshuffle=False).decode("rgb8")
    got = list(ds)
    assert [s["__key__"] for s in got] == [S.sample_key(3, i) for i in range(3)]
    for s, (wave, sr, tl, frames, meta) in zip(got, samples):
        np.testing.assert_array_equal(s["timeline.npy"], tl)  # standard npy decoder
        assert s["meta.json"] == meta  # standard json decoder
        assert s["f0001.jpg"].shape == (16, 16, 3) and s["f0001.jpg"].dtype == np.uint8  # PIL image decoder
        np.testing.assert_array_equal(S.decode_flac(s["audio.flac"])[0], S.quantize_pcm16(wave))


def test_latent_members_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    lat = rng.standard_normal((4, 4, 8, 8)).astype(np.float32)
    with S.ShardWriter(tmp_path / "shard-000000.tar") as w:
        w.add_sample("000000-00000", S.latent_members(lat, lat * 0 + 0.1, np.zeros((4, 3), np.float32), {"k": 1}))
    (key, m), = list(S.iter_tar_samples(tmp_path / "shard-000000.tar"))
    assert list(m) == ["latents.npy", "latents_std.npy", "timeline.npy", "meta.json"]
    got = S.decode_npy(m["latents.npy"])
    assert got.dtype == np.float16 and got.shape == (4, 4, 8, 8)
    np.testing.assert_allclose(got, lat, atol=2e-3)


def test_failing_writer_leaves_no_final_file(tmp_path):
    final = tmp_path / "shard-000000.tar"
    rng = np.random.default_rng(6)
    with pytest.raises(RuntimeError, match="boom"):
        with S.ShardWriter(final) as w:
            wave, sr, tl, frames, meta = _sample(rng)
            w.add_sample("000000-00000", S.pixel_members(wave, sr, tl, [S.encode_jpeg(f, 90) for f in frames], meta))
            assert w.partial_path.exists() and not final.exists()
            raise RuntimeError("boom")
    assert not final.exists() and not w.partial_path.exists()


def test_writer_rejects_bad_keys_and_duplicates(tmp_path):
    with S.ShardWriter(tmp_path / "shard-000000.tar") as w:
        with pytest.raises(ValueError, match="contain no"):
            w.add_sample("a.b", [("x.npy", b"1")])
        w.add_sample("k", [("meta.json", b"{}")])
        with pytest.raises(ValueError, match="duplicate sample key"):
            w.add_sample("k", [("meta.json", b"{}")])
    h = hashlib.sha256((tmp_path / "shard-000000.tar").read_bytes()).hexdigest()
    assert len(h) == 64


@pytest.mark.parametrize("name", ["000000_000000.frame_00000.jpg", "k.meta.json", "x", "a" * 100, "é.flac"])
def test_member_headers_are_tarfiles_own(name):
    """The writer's template headers equal TarInfo.tobuf's, byte for byte (checksum included), for any size."""
    for size in (0, 1, 511, 512, 513, 123_456, 8 ** 11 - 1):
        assert S._member_header(name, size) == S._tarinfo(name, size).tobuf(tarfile.USTAR_FORMAT), (name, size)
    with pytest.raises(ValueError, match="name is too long"):  # what USTAR cannot hold fails as tarfile fails
        S._member_header("b" * 101, 1)
    with pytest.raises(ValueError, match="overflow"):
        S._member_header(name, 8 ** 11)
