"""`datagen run` / `datagen inspect` without Ray: local and process-pool executors, resume, refusals, readback.

Real audio synthesis, real EGL rendering (llvmpipe), real tar files read by stock webdataset.
Micro sizes: 32x32 frames, 8 kHz, 3 s clips at 8 fps (24 frames), 2 samples per shard.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shared import shards as S
from shared.command_line import run_cli
from shared.config import build_config
from tiny_disk import TinyDisk

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
# 3 s: the silence variant needs room for a silence segment with music around it.
MICRO = ["data.sample_rate=8000", "data.clip_seconds=3.0", "render.resolution=32", "render.fps=8",
         "timeline.n_fft=256", "render.chunk_frames=8", "data.samples_per_shard=2", "data.val_style_siblings=0"]


def micro_cfg(*extra: str, **flags):
    return build_config([TINY], flags=flags, overrides=MICRO + list(extra))


def datagen(*argv: str) -> int:
    return run_cli("datagen", "datagen.commands", "datagen", list(argv))


def shard_files(out: Path) -> dict[str, bytes]:
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(out.glob("*/shard-*.tar"))}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """3 train + 1 val shards written serially: the reference the other executors must reproduce."""
    from datagen.run import run_datagen

    out = tmp_path_factory.mktemp("local") / "pixels"
    cfg = micro_cfg(**{"data.train_shards": 3, "data.val_shards": 1, "run.executor": "local"})
    code, summary = run_datagen(cfg, out, progress=False)
    assert code == 0
    return out, summary


def test_local_run_layout_manifest_and_summary(local_run):
    out, summary = local_run
    files = shard_files(out)
    assert sorted(files) == ["train/shard-000000.tar", "train/shard-000001.tar", "train/shard-000002.tar",
                             "val/shard-000000.tar"]
    assert not list(out.rglob("*.partial"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["data"]["samples_per_shard"] == 2 and manifest["provenance"]["packages"]["numpy"]
    for rel, data in files.items():
        entry = manifest["shards"][rel]
        assert entry["bytes"] == len(data) and entry["samples"] == 2 and entry["frames"] == 48
        import hashlib
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["shards_written"] == 4 and summary["frames_written"] == 4 * 2 * 24
    assert summary["gl_contexts"] == 1 and summary["frames_per_s"] > 0
    # Val always holds both a silence and a debug clip.
    assert summary["variants"]["val"]["silence"] >= 1 and summary["variants"]["val"]["debug"] >= 1


def test_processes_executor_byte_identical_one_context_per_worker_each_pinned_to_a_gpu(local_run, tmp_path,
                                                                                       monkeypatch):
    """Also the GPU pinning: with two GPUs visible each worker gets its own CUDA_VISIBLE_DEVICES (here the GPUs
    do not exist, so each Renderer falls back to EGL's default device, llvmpipe, and the bytes stay the same)."""
    from datagen.run import run_datagen

    ref, _ = local_run
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    cfg = micro_cfg(**{"data.train_shards": 3, "data.val_shards": 1, "run.executor": "processes", "run.workers": 2})
    code, summary = run_datagen(cfg, tmp_path / "px", progress=False)
    assert code == 0
    assert shard_files(tmp_path / "px") == shard_files(ref)
    assert sorted(w["cuda_visible_devices"] for w in summary["workers"]) == ["3", "5"]
    # 2 workers for 4 shards: two GL contexts, one per spawned process, none in this process.
    assert summary["gl_contexts"] == 2
    pids = {w["pid"] for w in summary["workers"]}
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(w["renderers_in_process"] == 1 for w in summary["workers"])
    assert {s["worker"]["pid"] for s in json.loads((tmp_path / "px" / "manifest.json").read_text())["shards"].values()} <= pids


def test_stock_webdataset_readback_and_timelines_recompute_exactly(local_run):
    import webdataset as wds

    from shared.timeline import compute_audio_timeline

    out, _ = local_run
    cfg = micro_cfg()
    urls = [str(p) for p in sorted(out.glob("*/shard-*.tar"))]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert len(samples) == 8
    seeds = {split: {s["meta.json"]["seed"] for s in samples if s["meta.json"]["split"] == split} for split in ("train", "val")}
    assert len(seeds["train"]) == 6 and len(seeds["val"]) == 2 and not seeds["train"] & seeds["val"]
    for s in samples:
        wave, sr = S.decode_flac(s["audio.flac"])
        fresh, names = compute_audio_timeline(wave, sr, cfg.render.fps, cfg.timeline)
        np.testing.assert_array_equal(s["timeline.npy"], fresh)
        meta = s["meta.json"]
        assert meta["timeline_channels"] == names and meta["sample_key"] == s["__key__"] and "key" in meta  # musical key (None for debug clips)
        frames = [s[k] for k in sorted(k for k in s if S.is_frame_member(k))]
        assert len(frames) == fresh.shape[0] == meta["n_frames"] == 24
        assert frames[0].shape == (32, 32, 3) and frames[0].dtype == np.uint8
        assert meta["variant"] in ("normal", "silence", "debug")
        if meta["variant"] == "silence":
            assert any(seg["kind"] == "silence" for seg in meta["segments"])


def test_inspect_passes_then_names_corrupted_shard_and_sample(local_run, tmp_path, capsys):
    ref, _ = local_run
    assert datagen("inspect", str(ref)) == 0
    printed = capsys.readouterr().out
    assert "train: 3 shards, 6 samples" in printed and "val: 1 shards, 2 samples" in printed

    bad = tmp_path / "bad"
    shutil.copytree(ref, bad)
    target = bad / "train" / "shard-000001.tar"
    data = bytearray(target.read_bytes())
    # Overwrite the header of sample 1's first JPEG frame (markers and tables: undecodable whatever the
    # picture) with garbage; the tar stays well-formed.
    members = list(S.iter_tar_samples(target))
    jpg = members[1][1]["f0000.jpg"]
    at = bytes(data).index(jpg)
    data[at:at + 64] = b"\x00" * 64
    target.write_bytes(bytes(data))
    assert datagen("inspect", str(bad)) == 1
    err = capsys.readouterr().err
    assert "train/shard-000001.tar" in err and "sha256" in err
    assert "sample 000001-00001" in err and "undecodable" in err


def test_silence_mix_fraction_within_binomial_bounds_with_labelled_segments(tmp_path):
    """48 train clips at --silence-mix 0.3 (debug mix 0): silence count inside 4-sigma binomial bounds."""
    from datagen.run import run_datagen

    cfg = build_config([TINY], overrides=[
        "data.sample_rate=8000", "data.clip_seconds=3.0", "render.resolution=16", "render.fps=2",
        "timeline.n_fft=256", "data.samples_per_shard=12", "data.train_shards=4", "data.val_shards=1",
        "data.audio_debug_mix_prob=0", "data.audio_silence_mix_prob=0.3", "data.val_style_siblings=0",
        "run.executor=local"])
    code, summary = run_datagen(cfg, tmp_path / "px", progress=False)
    assert code == 0
    n, p = 48, 0.3
    silence = summary["variants"]["train"]["silence"]
    sd = (n * p * (1 - p)) ** 0.5
    assert n * p - 4 * sd <= silence <= n * p + 4 * sd, silence
    assert summary["variants"]["train"]["debug"] == 0
    for path in sorted((tmp_path / "px" / "train").glob("*.tar")):
        for _key, members in S.iter_tar_samples(path):
            meta = S.decode_json(members["meta.json"])
            if meta["variant"] == "silence":
                kinds = {seg["kind"] for seg in meta["segments"]}
                assert "silence" in kinds
                for seg in meta["segments"]:
                    assert 0 <= seg["start_s"] < seg["end_s"] <= 3.0 and seg["start_frame"] <= seg["end_frame"]


def test_interrupted_driver_then_rerun_keeps_finished_shards(local_run, tmp_path):
    """SIGKILL the driver after its first shard, re-run: finished shards untouched, no .partial, same bytes."""
    ref, _ = local_run
    out = tmp_path / "px"
    argv = ["--config", TINY, "--executor", "local", "--shards", "3", "--val-shards", "1", "--out", str(out),
            "--no-progress", *MICRO]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "datagen"), "run", *argv], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(out.glob("*/shard-*.tar")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    finished = {p: p.stat().st_mtime_ns for p in out.glob("*/shard-*.tar")}
    assert 1 <= len(finished) < 4, f"the driver should have been killed mid-run: {proc.stderr.read().decode()[-2000:]}"

    assert datagen("run", *argv) == 0
    assert not list(out.rglob("*.partial"))
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    assert shard_files(out) == shard_files(ref)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards_skipped"] == len(finished) and summary["shards_written"] == 4 - len(finished)
    assert datagen("inspect", str(out)) == 0


def test_manifest_rebuilt_when_behind_and_partial_redone(local_run, tmp_path):
    from datagen.run import run_datagen

    ref, _ = local_run
    out = tmp_path / "px"
    shutil.copytree(ref, out)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["shards"]["train/shard-000002.tar"]  # a manifest that is behind the finished files
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "train" / "shard-000001.tar").rename(out / "train" / "shard-000001.tar.partial")  # a crashed shard
    cfg = micro_cfg(**{"data.train_shards": 3, "data.val_shards": 1, "run.executor": "local"})
    code, summary = run_datagen(cfg, out, progress=False)
    assert code == 0 and summary["shards_written"] == 1 and summary["shards_skipped"] == 3
    rebuilt = json.loads((out / "manifest.json").read_text())["shards"]["train/shard-000002.tar"]
    assert rebuilt["rebuilt"] and rebuilt["samples"] == 2 and rebuilt["frames"] == 48
    assert shard_files(out) == shard_files(ref) and not list(out.rglob("*.partial"))


def test_refuses_other_config_unless_force(local_run, tmp_path, capsys):
    ref, _ = local_run
    out = tmp_path / "px"
    shutil.copytree(ref, out)
    before = shard_files(out)
    base = ["run", "--config", TINY, "--executor", "local", "--shards", "3", "--val-shards", "1", "--out", str(out),
            "--no-progress", *MICRO]
    with pytest.raises(SystemExit) as e:
        datagen(*base, "data.seed=5")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "different config" in err and "data.seed: 0 -> 5" in err and "--force" in err
    assert shard_files(out) == before
    # More shards with the same content config is not a different config: only the new shard is written.
    assert datagen(*base[:6], "4", *base[7:]) == 0
    assert json.loads((out / "summary.json").read_text())["shards_written"] == 1
    assert datagen(*base, "data.seed=5", "--force") == 0
    assert shard_files(out)["train/shard-000000.tar"] != before["train/shard-000000.tar"]


@pytest.mark.parametrize("args, needle", [
    (["--shards", "0"], "data.train_shards"),
    (["--silence-mix", "1.5"], "data.audio_silence_mix_prob"),
    (["--executor", "gpu"], "run.executor"),
    (["--samples-per-shard", "two"], "--samples-per-shard"),
    (["data.silence_mix=0.3"], "data.silence_mix"),
])
def test_invalid_flags_fail_before_work(tmp_path, capsys, args, needle):
    out = tmp_path / "px"
    with pytest.raises(SystemExit) as e:
        datagen("run", "--out", str(out), "--executor", "local", *args)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_unwritable_out_fails_before_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(SystemExit) as e:
        datagen("run", "--out", str(blocker / "pixels"), "--executor", "local", "--config", TINY, *MICRO)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--out" in err and "not writable" in err and str(blocker) in err


def test_shard_that_keeps_failing_is_reported_after_the_others_finish(tmp_path, capsys):
    """An output path that cannot be written (a dangling symlink where the .partial goes): the shard is retried
    run.max_retries times, every other shard completes, and the run exits 1 naming the shard and the error."""
    out = tmp_path / "px"
    (out / "train").mkdir(parents=True)
    (out / "train" / "shard-000001.tar.partial").symlink_to(tmp_path / "no-such-dir" / "x")
    code = datagen("run", "--config", TINY, "--executor", "local", "--shards", "3", "--val-shards", "1",
                   "--out", str(out), "--no-progress", *MICRO, "run.max_retries=1")
    assert code == 1
    err = capsys.readouterr().err
    assert "train shard 1 (train/shard-000001.tar) failed" in err and "FileNotFoundError" in err
    summary = json.loads((out / "summary.json").read_text())
    assert [f["index"] for f in summary["shards_failed"]] == [1] and summary["retries"] == 1
    assert len(summary["attempt_failures"]) == 2 and summary["shards_written"] == 3
    assert sorted(p.name for p in out.glob("*/*.tar")) == ["shard-000000.tar", "shard-000000.tar", "shard-000002.tar"]


def test_actor_plan_sizes_actors_to_cpus_and_splits_gpus():
    from datagen.run import actor_plan

    assert actor_plan({"CPU": 16.0, "GPU": 1.0}, None, 2000) == (16, 1 / 16)  # one H100 shared by 16 actors
    assert actor_plan({"CPU": 16.0, "GPU": 8.0}, None, 2000) == (16, 0.5)
    assert actor_plan({"CPU": 4.0, "GPU": 8.0}, None, 2000) == (4, 1.0)  # never more than one GPU per actor
    assert actor_plan({"CPU": 2.0}, None, 2000) == (2, 0.0)  # CPU slots only
    assert actor_plan({"CPU": 2.0}, 6, 3) == (3, 0.0)  # no more actors than shards


def test_processes_executor_hands_out_gpus_round_robin():
    from datagen.executors.processes import gpu_for_worker, visible_gpus

    assert visible_gpus("2,0", [0, 1, 2, None]) == ["2", "0"]  # CUDA_VISIBLE_DEVICES wins, in its order
    assert visible_gpus(None, [None, 1, 0]) == ["0", "1"]  # unset: the NVIDIA EGL devices' CUDA ordinals
    assert visible_gpus(None, [None]) == [] and visible_gpus("", [0]) == [] and visible_gpus("-1", [0]) == []
    assert [gpu_for_worker(j, ["0", "1"]) for j in range(5)] == ["0", "1", "0", "1", "0"]  # shared past 2 workers
    assert gpu_for_worker(3, []) is None  # Mesa: no pinning


def test_pipelined_shard_equals_the_serial_one_and_a_failure_leaves_no_shard(tmp_path, monkeypatch):
    """write_shard's helper threads (next clip prepared, JPEG encoding, ordered tar writes) change nothing: the
    shard is byte for byte the serial build_sample loop's; an error on a helper thread fails the shard with it."""
    import datagen.shard_job as J
    from datagen.visual import Renderer

    cfg = micro_cfg("data.samples_per_shard=4", "render.chunk_frames=5")  # more samples in flight than the bound
    spec = J.ShardSpec("train", 0, str(tmp_path / "threaded"))
    with Renderer(cfg.render.resolution) as r:
        J.write_shard(cfg, spec, r)
        with S.ShardWriter(tmp_path / "serial.tar") as w:
            for i in range(4):
                key, members, _ = J.build_sample(cfg, "train", 0, i, r)
                w.add_sample(key, members)
        assert spec.path.read_bytes() == (tmp_path / "serial.tar").read_bytes()

        def broken(frames, quality):
            raise RuntimeError("encoder broke")

        monkeypatch.setattr(J, "encode_frames", broken)
        bad = J.ShardSpec("train", 1, str(tmp_path / "threaded"))
        with pytest.raises(RuntimeError, match="encoder broke"):
            J.write_shard(cfg, bad, r)
    assert not bad.path.exists() and not list(bad.path.parent.glob("*.partial"))


def test_stems_stored_only_when_asked(local_run):
    """data.store_stems adds stems.npz (one fp16 array per track, summing to the mix); the default run has none."""
    import io

    from datagen.audio import TRACKS
    from datagen.shard_job import build_sample
    from datagen.visual import Renderer

    ref, _ = local_run
    assert all("stems.npz" not in m for p in ref.glob("*/*.tar") for _k, m in S.iter_tar_samples(p))
    _key, members, _meta = build_sample(micro_cfg("data.store_stems=true"), "train", 0, 0, Renderer(32))
    members = dict(members)
    stems = np.load(io.BytesIO(members["stems.npz"]))
    assert sorted(stems.files) == sorted(TRACKS)
    wave, _sr = S.decode_flac(members["audio.flac"])
    mix = sum(stems[t].astype(np.float32) for t in TRACKS)
    assert np.abs(mix - wave).max() < 5e-3
    assert list(members)[-1] == "meta.json"


def test_processes_executor_survives_a_killed_worker_process(local_run, tmp_path):
    """SIGKILL one pool process mid-run: the broken pool is rebuilt, its in-flight shards are retried, and the
    output is byte-identical to the serial run."""
    import threading

    import psutil

    from datagen.run import run_datagen

    ref, _ = local_run
    out = tmp_path / "px"
    killed: list[int] = []

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(out.glob("*/shard-*.tar")):
            time.sleep(0.01)
        # Pool workers only (not multiprocessing's resource tracker).
        workers = [c for c in psutil.Process().children() if "spawn_main" in " ".join(c.cmdline())]
        if workers and len(list(out.glob("*/shard-*.tar"))) < 4:
            workers[0].kill()
            killed.append(workers[0].pid)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    cfg = micro_cfg(**{"data.train_shards": 3, "data.val_shards": 1, "run.executor": "processes", "run.workers": 2})
    code, summary = run_datagen(cfg, out, progress=False)
    killer.join()
    assert killed, "the run ended before a worker could be killed"
    assert code == 0 and summary["lost_workers"] >= 1 and summary["retries"] >= 1
    assert shard_files(out) == shard_files(ref) and not list(out.rglob("*.partial"))


def test_sigkilled_driver_leaves_no_worker_and_no_late_shard_then_resumes(local_run, tmp_path):
    """SIGKILL a real `datagen run --executor processes` after its first shard: within 10 s none of the processes
    it started runs (pool workers, resource tracker), no shard appears after its lock is gone, and a re-run
    resumes to the serial reference's bytes (issue 26: they used to live on with ppid 1 and keep writing)."""
    from killing import kill_datagen_after_first_shard, still_running

    ref, _ = local_run
    out = tmp_path / "px"
    argv = ["--config", TINY, "--executor", "processes", "--workers", "2", "--shards", "3", "--val-shards", "1",
            "--out", str(out), "--no-progress", *MICRO]
    started, at_death = kill_datagen_after_first_shard(argv, out)
    assert len(started) >= 2, [p.cmdline() for p in started]
    left = still_running(started, within_s=10)
    assert left == [], f"outlived the driver: {[' '.join(p.cmdline())[:100] for p in left]}"
    assert set(out.glob("*/shard-*.tar")) == at_death, "a shard was written after the driver's lock was gone"
    assert datagen("run", *argv) == 0
    assert shard_files(out) == shard_files(ref) and not list(out.rglob("*.partial"))


def test_dry_run_prints_a_plan_that_matches_the_run(local_run, capsys):
    """`datagen run --dry-run` prints, after the resolved config (still valid YAML), the plan: clips per variant
    and split (exactly those the run writes), frames, the size on disk and the time here from probe clips."""
    import yaml

    from datagen.plan import build_plan

    ref, summary = local_run
    with pytest.raises(SystemExit) as e:
        datagen("run", "--config", TINY, "--executor", "local", "--shards", "3", "--val-shards", "1",
                "--out", str(ref.parent / "never"), "--dry-run", *MICRO)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["data"]["train_shards"] == 3 and not (ref.parent / "never").exists()
    plan_text = out[out.index("# plan:"):]
    assert "#   train: 3 shards, 6 clips (" in plan_text and "#   frames: 192 (24 per clip)" in plan_text
    assert "expected size on disk: " in plan_text and "expected time here: " in plan_text
    plan = build_plan(micro_cfg(**{"data.train_shards": 3, "data.val_shards": 1, "run.workers": 1}))
    assert plan["variants"] == summary["variants"]
    assert plan["frames"] == summary["frames_written"]
    on_disk = sum(p.stat().st_size for p in ref.glob("*/shard-*.tar"))
    assert 0.6 < plan["bytes"] / on_disk < 1.6, (plan["bytes"], on_disk)
    assert plan["seconds"] > 0 and plan["renderer"]["renderer"]


# ------------------------------------------------------------ concurrency, verification, fingerprints, full disk


def _datagen_proc(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).parent / "datagen"), "run", *argv], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_second_run_on_the_same_out_is_refused_naming_the_holder(local_run, tmp_path):
    """Two real `datagen run` processes on one --out: the second exits 2 with one line naming the first
    (pid, host) and leaves its shards alone; the first completes byte-identical to the serial reference.
    The first is paused (SIGSTOP) while it holds the lock, so the overlap does not depend on speed."""
    ref, _ = local_run
    out = tmp_path / "px"
    argv = ["--config", TINY, "--executor", "local", "--shards", "3", "--val-shards", "1", "--out", str(out),
            "--no-progress", *MICRO]
    first = _datagen_proc(*argv)
    try:
        deadline = time.monotonic() + 60
        while not (out / ".lock").exists() or not (out / ".lock").read_text().strip():
            assert time.monotonic() < deadline and first.poll() is None, first.stderr.read()
            time.sleep(0.005)
        first.send_signal(signal.SIGSTOP)
        partials = sorted(out.rglob("*.partial"))
        second = subprocess.run([str(Path(sys.executable).parent / "datagen"), "run", *argv], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert sorted(out.rglob("*.partial")) == partials  # the first's unfinished shard is not deleted
        first.send_signal(signal.SIGCONT)
        _, first_err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
            first.kill()
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert f"{out.resolve()} is locked by datagen run (pid {first.pid} on " in lines[0]
    assert first.returncode == 0, first_err
    assert shard_files(out) == shard_files(ref)
    assert datagen("inspect", str(out)) == 0


def _corrupt_same_size(path: Path, keep_mtime: bool = False) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 16] = bytes(b ^ 0xFF for b in data[mid:mid + 16])
    path.write_bytes(bytes(data))
    assert path.stat().st_size == st.st_size
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_rerun_regenerates_a_same_size_corrupted_shard(local_run, tmp_path, capsys):
    ref, _ = local_run
    out = tmp_path / "px"
    shutil.copytree(ref, out)
    _corrupt_same_size(out / "train" / "shard-000001.tar")
    argv = ["run", "--config", TINY, "--executor", "local", "--shards", "3", "--val-shards", "1", "--out", str(out),
            "--no-progress", *MICRO]
    assert datagen(*argv) == 0
    assert "train/shard-000001.tar: size or sha256 differs from the manifest; regenerating" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards_written"] == 1 and summary["shards_skipped"] == 3
    assert shard_files(out) == shard_files(ref)
    assert datagen("inspect", str(out)) == 0


def test_inspect_repair_hashes_in_full_and_regenerates(local_run, tmp_path, capsys):
    """A corruption that keeps size and mtime passes a re-run's size+mtime hash cache (documented), but
    `inspect --repair` hashes every shard, regenerates the bad one, and the set then inspects clean."""
    ref, _ = local_run
    out = tmp_path / "px"
    shutil.copytree(ref, out, copy_function=shutil.copy2)  # copy2 keeps mtimes: the manifest's cache keys hold
    _corrupt_same_size(out / "val" / "shard-000000.tar", keep_mtime=True)
    assert datagen("inspect", str(out)) == 1
    capsys.readouterr()
    assert datagen("inspect", "--repair", str(out)) == 0
    captured = capsys.readouterr()
    assert "val/shard-000000.tar: failed `datagen inspect`; regenerating" in captured.err
    assert "1 shard(s) regenerated" in captured.err and f"datagen inspect: {out} OK" in captured.out
    assert shard_files(out) == shard_files(ref)


def test_force_with_a_content_change_removes_the_old_shards_beyond_the_new_count(local_run, tmp_path, capsys):
    from shared.errors import DataError
    from shared.shards import check_shard_set

    ref, _ = local_run
    out = tmp_path / "px"
    shutil.copytree(ref, out)
    check_shard_set(out)  # one content fingerprint: accepted
    base = ["run", "--config", TINY, "--executor", "local", "--val-shards", "1", "--shards", "1", "--out", str(out),
            "--no-progress"]
    assert datagen(*base, "--force", *MICRO, "render.resolution=16") == 0
    err = capsys.readouterr().err
    assert "removed 2 shards of the old set beyond the new count" in err and "render.resolution: 32 -> 16" in err
    assert sorted(shard_files(out)) == ["train/shard-000000.tar", "val/shard-000000.tar"]
    assert json.loads((out / "summary.json").read_text())["shards_removed"] == 2
    check_shard_set(out)
    # A set that mixes contents (an old shard copied back in) is refused, naming both fingerprints.
    shutil.copy(ref / "train" / "shard-000002.tar", out / "train" / "shard-000002.tar")
    with pytest.raises(DataError, match=r"shards from 2 different content fingerprints: [0-9a-f]{16} \(2 shards, "
                                        r"e.g. train/shard-000000.tar\); not in manifest.json \(1 shards, e.g. "
                                        r"train/shard-000002.tar\)"):
        check_shard_set(out)
    # The same config over the same dir is not a content change: nothing is removed.
    os.unlink(out / "train" / "shard-000002.tar")
    assert datagen(*base, *MICRO, "render.resolution=16") == 0
    assert json.loads((out / "summary.json").read_text())["shards_removed"] == 0


def test_content_id_names_config_and_timeline_version(monkeypatch):
    import shared.timeline
    from datagen.manifest import content_fingerprint, content_id

    cfg = micro_cfg()
    a = content_id(content_fingerprint(cfg))
    assert content_fingerprint(cfg)["versions"]["timeline"] == shared.timeline.TIMELINE_VERSION
    assert content_id(content_fingerprint(micro_cfg("data.train_shards=9"))) == a  # a count is not content
    assert content_id(content_fingerprint(micro_cfg("data.seed=1"))) != a
    monkeypatch.setattr(shared.timeline, "TIMELINE_VERSION", 3)
    assert content_id(content_fingerprint(cfg)) != a


@pytest.mark.parametrize("module, name", [("datagen.audio.synth", "AUDIO_VERSION"),
                                          ("datagen.visual.drive", "VISUAL_VERSION")])
def test_content_id_names_audio_and_visual_versions(monkeypatch, module, name):
    import importlib

    from datagen.manifest import content_fingerprint, content_id

    cfg = micro_cfg()
    a = content_id(content_fingerprint(cfg))
    mod = importlib.import_module(module)
    monkeypatch.setattr(mod, name, getattr(mod, name) + 1)
    assert content_id(content_fingerprint(cfg)) != a


def test_unmanifested_input_warns_that_nothing_is_checked(local_run, capsys):
    from shared.shards import check_shard_set

    ref, _ = local_run
    check_shard_set(str(ref / "train" / "shard-*.tar"))
    err = capsys.readouterr().err
    assert "no manifest.json" in err and "nothing is checked" in err


def test_full_disk_is_one_line_naming_the_path_and_keeps_finished_shards(local_run, tmp_path, monkeypatch, capsys):
    ref, _ = local_run
    out = tmp_path / "px"
    sizes = {rel: len(b) for rel, b in shard_files(ref).items()}
    # Room for val/0 and train/0 and the manifest writes, not for train/1.
    TinyDisk(sizes["val/shard-000000.tar"] + sizes["train/shard-000000.tar"] + 60_000).install(monkeypatch)
    argv = ["run", "--config", TINY, "--executor", "local", "--shards", "3", "--val-shards", "1", "--out", str(out),
            "--no-progress", *MICRO]
    with pytest.raises(SystemExit) as e:
        datagen(*argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    # one line in all (the shard's own failure line is not printed besides it), with the shard and the reason
    assert [line for line in err.splitlines() if "no space left" in line] == errors, err
    assert errors[0].startswith("error: shard train/shard-000001.tar (index 1) failed: DiskFullError: "), errors[0]
    assert "no space left on device" in errors[0] and str(out.resolve() / "train") in errors[0], errors[0]
    leftovers = [p.name for p in out.rglob("*") if p.is_file() and (".partial" in p.name or ".tmp" in p.name)]
    assert leftovers == [], leftovers
    finished = shard_files(out)
    assert finished and all(finished[k] == shard_files(ref)[k] for k in finished), sorted(finished)
    assert "train/shard-000001.tar: no space left on device; the 2 finished shards are kept" in errors[0]
    monkeypatch.undo()  # space freed: the re-run resumes and completes the set
    assert datagen(*argv) == 0
    assert shard_files(out) == shard_files(ref)


def test_val_style_siblings_share_audio_with_different_visual_plans_in_their_own_split(local_run, tmp_path):
    """data.val_style_siblings=1: val_siblings/shard-000000.tar holds 3 normal-music clips with the same audio and
    timeline bytes and different visual plans and frames (read with stock webdataset); train/ and val/ are the
    bytes of a run without siblings; inspect checks the new split."""
    import webdataset as wds

    from datagen.run import run_datagen

    ref, _ = local_run
    out = tmp_path / "px"
    cfg = micro_cfg("data.val_style_siblings=1", **{"data.train_shards": 3, "data.val_shards": 1,
                                                    "run.executor": "local"})
    code, summary = run_datagen(cfg, out, progress=False)
    assert code == 0 and summary["variants"]["val_siblings"] == {"normal": 3, "silence": 0, "debug": 0}
    files = shard_files(out)
    assert {k: v for k, v in files.items() if not k.startswith("val_siblings/")} == shard_files(ref)
    samples = list(wds.WebDataset([str(out / "val_siblings" / "shard-000000.tar")], shardshuffle=False))
    assert len(samples) == 3
    assert len({s["audio.flac"] for s in samples}) == 1 and len({s["timeline.npy"] for s in samples}) == 1
    metas = [json.loads(s["meta.json"]) for s in samples]
    assert {m["sibling_group"] for m in metas} == {0} and len({m["seed"] for m in metas}) == 1
    assert len({m["style_seed"] for m in metas}) == 3
    assert len({json.dumps(m["visual_plan"], sort_keys=True) for m in metas}) == 3
    assert len({s["f0010.jpg"] for s in samples}) == 3
    val_seeds = {json.loads(s["meta.json"])["seed"] for s in wds.WebDataset([str(out / "val" / "shard-000000.tar")],
                                                                              shardshuffle=False)}
    assert not val_seeds & {m["seed"] for m in metas}
    assert datagen("inspect", str(out)) == 0
