"""The diffusion training loop: run layout, metrics every step, exact resume, shape refusal, CLI on real
latent shards (single process and `torchrun` with 2 gloo processes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from shared import shards as S
from shared.config import build_config
from shared.errors import DataError
from shared.seeding import derive_seed
from shared.timeline import channel_index, channel_names
from trainer import checkpoint as ckpt
from trainer.diffusion.synthetic import audio_to_latent_map, n_audio_channels, synthetic_batch, synthetic_timeline
from trainer.diffusion.train import train
from killing import KILLED, run_killed
from trainer_shards import rewrite_member, tiny_latent_config_and_vae

ROOT = Path(__file__).resolve().parents[1]
C, H = 2, 4
TINY_MODEL = ["diffusion.snippet_frames=2", "diffusion.audio_context_frames=1", "diffusion.width=32",
              "diffusion.depth=1", "diffusion.heads=2", "diffusion.style_dim=4", "diffusion.batch_size=4",
              "diffusion.warmup_steps=2", "run.log_every=1", "run.device=cpu"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _cfg(base, *overrides):
    return build_config(base=base.model_dump(mode="json"), overrides=TINY_MODEL + list(overrides))


def _synthetic_source(cfg):
    """Batches as a pure function of the step: resuming at step s sees exactly the batches from s on."""
    def make_batches(start: int):
        step = start
        while True:
            yield synthetic_batch(cfg, cfg.diffusion.batch_size, C, H, torch.Generator().manual_seed(derive_seed(0, step)))
            step += 1
    return make_batches


def _train(cfg, run_dir, **kw):
    val = [synthetic_batch(cfg, 4, C, H, torch.Generator().manual_seed(99))]
    return train(cfg, run_dir, _synthetic_source(cfg), val, latent_channels=C, latent_size=H,
                 n_audio_channels=n_audio_channels(cfg), show_progress=False, **kw)


def test_run_layout_metrics_and_exact_resume(micro_cfg, tmp_path):
    full = _cfg(micro_cfg, "diffusion.steps=6", "run.checkpoint_every=2", "diffusion.val_every=3")
    summary = _train(full, tmp_path / "a")
    a = tmp_path / "a"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "latest", "tb"):
        assert (a / name).exists(), name
    lines = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if "train/L_good" in x]
    assert [x["step"] for x in train_lines] == [1, 2, 3, 4, 5, 6]  # every step
    for key in ("train/L_good", "train/L_bad", "train/gap", "train/hinge_active_frac"):
        assert all(key in x for x in train_lines)
    vals = [x for x in lines if "val/val_gap" in x]
    assert [x["step"] for x in vals] == [3, 6] and "val/val_ema_gap" in vals[0]
    assert summary["val"]["val_gap"] == pytest.approx(vals[-1]["val/val_gap"])
    assert json.loads((a / "summary.json").read_text())["steps"] == 6

    # stopped at step 3 (off the data-segment grid of checkpoint_every=2), then resumed to 6: the resumed run
    # replays step 3's batch of the segment that starts at 2; identical weights, EMA and optimizer state
    _train(_cfg(micro_cfg, "diffusion.steps=3", "run.checkpoint_every=2", "diffusion.val_every=3"), tmp_path / "b")
    resumed = _train(full, tmp_path / "b")
    assert resumed["resumed_from"] == 3
    _, ta, _ = ckpt.load_checkpoint(a)
    step_b, tb, _ = ckpt.load_checkpoint(tmp_path / "b")
    assert step_b == 6
    for part in ("model", "ema"):
        for k in ta[part]:
            torch.testing.assert_close(ta[part][k], tb[part][k], rtol=0, atol=0, msg=f"{part}.{k}")
    torch.testing.assert_close(ta["optim"]["state"][0]["exp_avg"], tb["optim"]["state"][0]["exp_avg"], rtol=0, atol=0)
    b_lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in b_lines if "train/L_good" in x] == [1, 2, 3, 4, 5, 6]
    assert [x["train/loss"] for x in b_lines if "train/loss" in x] == [x["train/loss"] for x in train_lines]


def test_refuses_another_model_shape(micro_cfg, tmp_path):
    _train(_cfg(micro_cfg, "diffusion.steps=1"), tmp_path / "r")
    with pytest.raises(ckpt.ShapeMismatchError, match="diffusion.width"):
        _train(_cfg(micro_cfg, "diffusion.steps=2", "diffusion.width=16"), tmp_path / "r")
    summary = _train(_cfg(micro_cfg, "diffusion.steps=1", "diffusion.width=16"), tmp_path / "r", force=True)
    assert summary["resumed_from"] is None


# ---------------------------------------------------------------- on real latent shards, through the CLI


def _write_latent_dataset(root: Path, cfg, vae_run: Path) -> None:
    """Tiny latent shards (the latents a function of the timeline) and a manifest recording the VAE and scale."""
    names = channel_names(cfg.timeline)
    res = cfg.render.resolution // cfg.vae.downsample
    c = cfg.vae.latent_channels
    n_frames = int(cfg.data.clip_seconds * cfg.render.fps)
    in_cols = [channel_index(names, "rms")] + [i for i, n in enumerate(names) if n.startswith("band_")]
    w = audio_to_latent_map(len(in_cols), c, res)
    g = torch.Generator().manual_seed(0)
    for split, n_shards in (("train", 2), ("val", 2)):
        for shard in range(n_shards):
            with S.ShardWriter(root / split / S.shard_name(shard)) as writer:
                for sample in range(2):
                    feats = synthetic_timeline(n_frames, names, g)
                    lat = torch.tanh(feats[:, in_cols] @ w.T).reshape(n_frames, c, res, res).numpy()
                    meta = {"variant": "debug", "tempo": 120.0, "fps": cfg.render.fps, "timeline_channels": names}
                    writer.add_sample(S.sample_key(shard, sample),
                                      S.latent_members(lat, np.full_like(lat, 0.1), feats.numpy(), meta))
    (root / "manifest.json").write_text(json.dumps({"latent_scale": 0.8, "vae": {  # as cache-latents writes it
        "run": str(vae_run), "checkpoint": str(vae_run / "ckpt" / "step-00000005"), "step": 5}}))


@pytest.fixture(scope="module")
def latent_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion_cli")
    cfg, vae_run = tiny_latent_config_and_vae(root)
    _write_latent_dataset(root / "latents", cfg, vae_run)
    cfg_file = root / "cfg.yaml"
    # JSON is YAML; only the keys given (a full dump would give the variant mix knobs explicitly, and the loader
    # would refuse these debug-only shards for the default mix)
    cfg_file.write_text(json.dumps(cfg.model_dump(mode="json", exclude_unset=True)))
    return root, cfg_file


CLI_ARGS = ["--steps", "2", "--shuffle-weight", "0.5", "diffusion.val_every=2", "run.checkpoint_every=2", "run.num_workers=0",
            "diffusion.audio_shuffle_frame_proxy_weight=0.1"] + TINY_MODEL


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _damaged_copy(latents: Path, dst: Path) -> set[str]:
    """A copy of the latent shards with a broken meta.json in each train shard and a third, truncated train shard;
    returns the skip ids the loader must report (trainer.data.SkipLog)."""
    shutil.copytree(latents, dst)
    train = dst / "train"
    expect = set()
    for shard, victim in ((0, 1), (1, 0)):
        path = train / S.shard_name(shard)
        key = S.sample_key(shard, victim)
        rewrite_member(latents / "train" / S.shard_name(shard), path, f"{key}.{S.META}", lambda _: b"{not json")
        expect.add(f"sample:{path}#{key}")
    whole = (latents / "train" / S.shard_name(1)).read_bytes()
    cut = whole.find(f"{S.sample_key(1, 1)}.{S.LATENTS}".encode()) + 512 + 100  # inside the 2nd sample's latents
    (train / S.shard_name(2)).write_bytes(whole[:cut])
    expect.add(f"shard:{train / S.shard_name(2)}")
    return expect


def test_torchrun_two_gloo_processes_run_two_steps(latent_data):
    """2 ranks x 2 steps on shards with 2 corrupt samples and a truncated shard, each read many times by both
    ranks: the run counts 2 corrupt samples and 1 unreadable shard, once each, and saves them in its state."""
    root, cfg_file = latent_data
    out = root / "ddp"
    expect = _damaged_copy(root / "latents", root / "latents_damaged")
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "--no-python", str(Path(sys.executable).with_name("trainer")),
           "diffusion", "--config", str(cfg_file), "--latents", str(root / "latents_damaged"), "--out", str(out)] + CLI_ARGS
    cmd += ["run.log_every=2", "run.sample_every=1"]  # a preview at step 1 flushes metrics early on every rank
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=240)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "val gap" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    assert summary["latent_scale"] == 0.8 and summary["model_kwargs"]["latent_channels"] == 2
    assert summary["train"]["frame_proxy"] >= 0 and "val_gap" in summary["val"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "train/L_good" in x] == [1, 2]
    step, _, state = ckpt.load_checkpoint(out)
    assert step == 2 and set(state["skipped"]) == expect
    assert summary["skipped"] == {"corrupt_samples": 2, "unreadable_shards": 1}
    from trainer.vae.model import load_vae  # the VAE trained against is recorded in the run and loads on its own
    vae, vcfg, _ = load_vae(out / "vae")
    assert vcfg.vae.latent_channels == 2
    import matplotlib.image  # EMA samples decoded by the recorded VAE, under the decoded truth
    img = matplotlib.image.imread(out / "samples" / "step-00000002.png")
    assert img.shape[0] == 4 * 2 * 16 and img.shape[1] == 2 * 16  # 4 clips x (truth, sample) x 16 px; 2 frames
    assert (out / "samples" / "step-00000001.png").is_file()


def test_throughput_benchmark_runs_on_cpu_and_keeps_other_sections(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "bench"))
    import train_throughput

    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Render throughput\n\nkeep me\n")
    rc = train_throughput.main(["--size", "tiny", "--device", "cpu", "--batch", "2", "--steps", "1", "--warmup", "0",
                                "--write", "--results", str(results), "diffusion.depth=1", "diffusion.width=32",
                                "render.resolution=32"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["gflop_per_step"] > 0 and out["samples_per_s"] > 0 and 0 < out["mfu"] < 1
    text = results.read_text()
    assert "## Render throughput\n\nkeep me" in text and "## Diffusion training throughput" in text
    assert "still to be measured" in text


def test_latent_manifest_errors_name_what_is_missing(latent_data, tmp_path):
    from trainer.diffusion.train import latent_scale_of, read_latent_manifest, vae_path_of

    root, _ = latent_data
    manifest = read_latent_manifest(root / "latents")
    assert latent_scale_of(manifest) == 0.8
    assert ckpt.find_checkpoint(vae_path_of(manifest, root / "latents")) is not None
    with pytest.raises(DataError, match="cache-latents"):
        read_latent_manifest(tmp_path)
    with pytest.raises(DataError, match="latent_scale"):
        latent_scale_of({"vae": "x"})
    with pytest.raises(DataError, match="does not record the VAE"):
        vae_path_of({"latent_scale": 1.0}, tmp_path)
    with pytest.raises(DataError, match="is gone"):
        vae_path_of({"vae": {"run": str(tmp_path / "nowhere")}}, tmp_path)


def test_batch_of_one_is_refused_for_batch_negatives(micro_cfg, tmp_path):
    with pytest.raises(ValueError, match="diffusion.batch_size=1"):
        _train(_cfg(micro_cfg, "diffusion.steps=1", "diffusion.batch_size=1"), tmp_path / "one")


def test_a_run_keeps_the_vae_it_was_trained_against(latent_data, tmp_path):
    from trainer.diffusion.train import record_vae

    root, _ = latent_data
    vae_run = root / "vae_run"
    dest = record_vae(tmp_path, vae_run, 0.8)
    assert ckpt.load_checkpoint(dest)[2]["latent_scale"] == 0.8
    record_vae(tmp_path, vae_run, 0.8)  # the same VAE again (a resume) is fine
    with pytest.raises(ckpt.CheckpointError, match="trained against the VAE"):
        record_vae(tmp_path, vae_run, 0.5)
    record_vae(tmp_path, vae_run, 0.5, force=True)
    assert ckpt.load_checkpoint(dest)[2]["latent_scale"] == 0.5


def test_killed_during_a_checkpoint_write_resumes_to_the_same_weights(latent_data, tmp_path):
    """kill -9 while step 4's checkpoint is being written (2 loader workers on real latent shards), then the same
    command again: the half-written temp dir is removed, the run resumes from step 2 and ends bit-identical."""
    from shared.command_line import run_cli

    root, cfg_file = latent_data
    args = ["--config", str(cfg_file), "--latents", str(root / "latents"), "--steps", "6", "diffusion.val_every=100",
            "run.sample_every=100", *TINY_MODEL, "run.checkpoint_every=2", "run.num_workers=2"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("trainer", "trainer.commands", "trainer", ["diffusion", "--out", str(a), *args]) == 0
    proc = run_killed(["diffusion", "--out", str(b), *args], "trainer.checkpoint", "save_file",
                      "'step-00000004' in args[1] and args[1].endswith('ema.safetensors')")
    assert proc.returncode == KILLED, proc.stderr[-2000:]
    assert (b / "latest").resolve().name == "step-00000002"
    [stale] = (b / "ckpt").glob(".tmp-step-00000004-*")
    assert (stale / "model.safetensors").is_file()
    assert run_cli("trainer", "trainer.commands", "trainer", ["diffusion", "--out", str(b), *args]) == 0
    assert not stale.exists()
    _, ta, sa = ckpt.load_checkpoint(a)
    step_b, tb, sb = ckpt.load_checkpoint(b)
    assert step_b == 6 and sa["samples_seen"] == sb["samples_seen"] == 6 * 4
    for part in ("model", "ema"):
        for k in ta[part]:
            assert torch.equal(ta[part][k], tb[part][k]), (part, k)
    for i in ta["optim"]["state"]:
        for k in ta["optim"]["state"][i]:
            assert torch.equal(ta["optim"]["state"][i][k], tb["optim"]["state"][i][k]), (i, k)


def test_a_bug_inside_training_keeps_its_traceback(latent_data, tmp_path, monkeypatch):
    """Only bad input becomes a one-line exit 2: a KeyError raised inside a training step reaches the top as itself."""
    import trainer.diffusion.train as dt
    from shared.command_line import run_cli

    def broken_loss(*args, **kwargs):
        raise KeyError("a bug in the loss")

    monkeypatch.setattr(dt, "diffusion_loss", broken_loss)
    root, cfg_file = latent_data
    with pytest.raises(KeyError, match="a bug in the loss"):
        run_cli("trainer", "trainer.commands", "trainer", ["diffusion", "--config", str(cfg_file), "--latents",
                str(root / "latents"), "--out", str(tmp_path / "run"), *CLI_ARGS])
    assert ckpt.list_checkpoints(tmp_path / "run") == []


def test_audio_channels_are_checked_before_training_and_size_the_encoder(latent_data, tmp_path, capsys):
    """diffusion.audio_channels: a wrong name is a one-line error before any step; a causal selection trains a
    denoiser that takes exactly the named channels (past-only windows, audio_context_future=0)."""
    from shared.command_line import run_cli

    root, cfg_file = latent_data
    def args(out: str, *overrides: str) -> list[str]:
        return ["diffusion", "--config", str(cfg_file), "--latents", str(root / "latents"), "--out",
                str(tmp_path / out), *CLI_ARGS, *overrides]

    with pytest.raises(SystemExit) as e:
        run_cli("trainer", "trainer.commands", "trainer", args("bad", "diffusion.audio_channels=[rms,tempo]"))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diffusion.audio_channels" in err[0] and "'tempo'" in err[0]
    assert ckpt.list_checkpoints(tmp_path / "bad") == []
    run_cli("trainer", "trainer.commands", "trainer",
            args("live", "diffusion.audio_channels=[onset,rms,is_silent]", "diffusion.audio_context_future=0"))
    state = json.loads((ckpt.list_checkpoints(tmp_path / "live")[-1] / ckpt.STATE_FILE).read_text())
    assert state["state"]["model_kwargs"]["n_audio_channels"] == 3
