"""Checkpoints: safetensors + JSON round trips, `latest` and pruning, file listings and the fallback past a
damaged checkpoint, stale temp dirs, shape refusal, no unpickling."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
from pathlib import Path

import pytest
import torch
import yaml

from shared.config import build_config
from shared.errors import CheckpointError, ConfigError
from trainer.checkpoint import (
    ShapeMismatchError, check_run_config, list_checkpoints, load_checkpoint, package_model, package_vae, prepare_run_dir,
    read_checkpoint, read_run_config, remove_stale_temp, save_checkpoint,
)
from trainer.runtime import EMA

ROOT = Path(__file__).resolve().parents[1]


def _trained_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GroupNorm(2, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ema = EMA(model, 0.9)
    for _ in range(3):
        model(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        ema.update(model)
    return model, opt, ema


def test_round_trip_restores_model_optimizer_and_ema(tmp_path):
    model, opt, ema = _trained_model()
    state = {"loader": {"epoch": 2}, "ema_updates": ema.num_updates}
    save_checkpoint(tmp_path, 3, {"model": model.state_dict(), "ema": ema.state_dict(), "optim": opt.state_dict()},
                    state, keep=3)

    step, tensors, loaded_state = load_checkpoint(tmp_path)
    assert step == 3 and loaded_state["loader"] == {"epoch": 2}
    model2, opt2, ema2 = _trained_model()
    with torch.no_grad():
        for p in model2.parameters():
            p.add_(1.0)
    model2.load_state_dict(tensors["model"])
    opt2.load_state_dict(tensors["optim"])
    ema2.load_state_dict(tensors["ema"])
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for k in s1["state"]:
        for name in s1["state"][k]:
            assert torch.equal(s1["state"][k][name], s2["state"][k][name]), (k, name)
    for k in ema.shadow:
        assert torch.equal(ema.shadow[k], ema2.shadow[k])


def test_latest_points_at_newest_and_only_keep_are_kept(tmp_path):
    model, opt, _ = _trained_model()
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, step, {"model": model.state_dict(), "optim": opt.state_dict()}, {}, keep=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step-00000030", "step-00000040"]
    assert os.readlink(tmp_path / "latest") == os.path.join("ckpt", "step-00000040")
    assert load_checkpoint(tmp_path)[0] == 40
    assert load_checkpoint(tmp_path / "ckpt" / "step-00000030")[0] == 30
    assert load_checkpoint(tmp_path / "nothing-here") is None
    # an interrupted save (temp dir left behind) is neither listed nor pointed to, and is removed at the next start
    stale = tmp_path / "ckpt" / ".tmp-step-00000050-1"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    assert [p.name for p in list_checkpoints(tmp_path)] == names and load_checkpoint(tmp_path)[0] == 40
    assert remove_stale_temp(tmp_path) == [stale] and not stale.exists()
    assert [p.name for p in list_checkpoints(tmp_path)] == names
    step_dir = tmp_path / "ckpt" / "step-00000040"
    files = {p.name for p in step_dir.iterdir()}
    assert files == {"model.safetensors", "optim.safetensors", "state.json"}
    listing = json.loads((step_dir / "state.json").read_text())["files"]  # every other file, with size and sha256
    assert set(listing) == files - {"state.json"}
    for name, entry in listing.items():
        data = (step_dir / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_a_damaged_checkpoint_is_passed_over_naming_the_file(tmp_path, capsys):
    model, opt, _ = _trained_model()
    for step in (10, 20):
        save_checkpoint(tmp_path, step, {"model": model.state_dict(), "optim": opt.state_dict()}, {"s": step}, keep=3)
    newest = tmp_path / "ckpt" / "step-00000020" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:-100])  # truncated
    ckpt = read_checkpoint(tmp_path)
    assert ckpt.step == 10 and ckpt.state == {"s": 10}
    err = capsys.readouterr().err
    assert "warning: damaged checkpoint passed over" in err and str(newest) in err and "cut short" in err
    with pytest.raises(CheckpointError, match=r"step-00000020/model.safetensors: \d+ bytes"):
        read_checkpoint(newest.parent)  # asked for by name: no fallback
    # same size, other bytes: the checksum catches it
    older = tmp_path / "ckpt" / "step-00000010" / "optim.safetensors"
    data = bytearray(older.read_bytes())
    data[-1] ^= 0xFF
    older.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="no intact checkpoint") as e:
        read_checkpoint(tmp_path)
    assert str(newest) in str(e.value) and f"{older}: sha256 differs" in str(e.value)
    assert "\n" not in str(e.value)


def test_an_unlisted_checkpoint_loads_with_a_warning(tmp_path, capsys):
    # the shipped model's checkpoint as an older version wrote it: state.json without the files' listing
    shipped = (ROOT / "models" / "synesthete-tiny" / "latest").resolve()
    old = tmp_path / shipped.name
    old.mkdir()
    (old / "ema.safetensors").write_bytes((shipped / "ema.safetensors").read_bytes())
    doc = json.loads((shipped / "state.json").read_text())
    doc.pop("files", None)
    (old / "state.json").write_text(json.dumps(doc))
    ckpt = read_checkpoint(old, names=["ema"])
    assert ckpt.step == int(shipped.name.removeprefix("step-")) and ckpt.tensors["ema"]
    assert "does not list its files" in capsys.readouterr().err


def test_loading_never_unpickles(tmp_path, monkeypatch):
    model, opt, ema = _trained_model()
    save_checkpoint(tmp_path, 1, {"model": model.state_dict(), "ema": ema.state_dict(), "optim": opt.state_dict()},
                    {"a": 1}, keep=1)

    def refuse(*a, **k):
        raise AssertionError("checkpoint loading unpickled something")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    step, tensors, _ = load_checkpoint(tmp_path)
    assert step == 1 and set(tensors) == {"model", "ema", "optim"}


def test_no_unsafe_torch_load_in_trainer():
    """Every torch.load in the trainer passes weights_only=True."""
    for path in (ROOT / "trainer").rglob("*.py"):
        for m in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text()):
            assert "weights_only=True" in m.group(1), f"{path}: {m.group(0)}"


def test_shape_change_is_refused_unless_forced(tmp_path, micro_cfg):
    model, opt, _ = _trained_model()
    prepare_run_dir(tmp_path, micro_cfg, ("vae",))
    save_checkpoint(tmp_path, 5, {"model": model.state_dict()}, {}, keep=1)
    same = micro_cfg.model_copy(deep=True)
    same.vae.lr = 1e-3  # not a shape field
    assert check_run_config(tmp_path, same, ("vae",)) == []
    wider = build_config(overrides=[f"vae.base_channels={micro_cfg.vae.base_channels * 2}"],
                         base=micro_cfg.model_dump(mode="json"))
    with pytest.raises(ShapeMismatchError, match="vae.base_channels"):
        check_run_config(tmp_path, wider, ("vae",))
    assert load_checkpoint(tmp_path)[0] == 5  # refusing touched nothing
    diffs = check_run_config(tmp_path, wider, ("vae",), force=True)
    assert any("vae.base_channels" in d for d in diffs)
    assert load_checkpoint(tmp_path) is None  # fresh start; the old ckpt dir was moved aside, not deleted
    assert any(p.name.startswith("ckpt.replaced-") for p in tmp_path.iterdir())


def test_unsupported_state_is_a_clear_error(tmp_path):
    with pytest.raises(TypeError, match="unsupported type"):
        save_checkpoint(tmp_path, 1, {"model": {"x": io.BytesIO()}}, {}, keep=1)
    assert list((tmp_path / "ckpt").iterdir()) == []  # the temp dir was cleaned up


def test_ema_follows_the_exponential_average():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, 0.5)
    for value in (1.0, 1.0):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update(model)
    assert float(ema.shadow["weight"]) == pytest.approx(0.75)  # 0 -> 0.5 -> 0.75
    copy = torch.nn.Linear(1, 1, bias=False)
    ema.copy_to(copy)
    assert float(copy.weight.detach()) == pytest.approx(0.75)


def test_precision_and_warmup_rules(micro_cfg):
    from trainer.loop import lr_at
    from trainer.runtime import autocast_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    micro_cfg.run.precision = "auto"
    assert autocast_dtype(micro_cfg.run, cpu) is None and autocast_dtype(micro_cfg.run, cuda) == torch.bfloat16
    micro_cfg.run.precision = "bf16"
    assert autocast_dtype(micro_cfg.run, cpu) == torch.bfloat16
    micro_cfg.run.precision = "fp32"
    assert autocast_dtype(micro_cfg.run, cuda) is None
    assert [lr_at(s, 1.0, 4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_metrics_logger_drops_lines_after_the_resumed_step(tmp_path):
    from trainer.runtime import MetricsLogger

    log = MetricsLogger(tmp_path)
    for step in (1, 2, 3):
        log.log(step, {"loss": 1.0 / step})
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')  # a line cut short by a crash
    log = MetricsLogger(tmp_path, resume_step=2)
    log.log(3, {"loss": 0.1})
    log.close()
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["loss"] == 0.1
    assert not MetricsLogger(tmp_path / "off", enabled=False).path.parent.exists()


def test_a_packaged_model_keeps_the_ema_weights_and_sampling_defaults_and_loads_checked(tmp_path, micro_cfg, capsys):
    model, opt, ema = _trained_model()
    run = tmp_path / "run"
    prepare_run_dir(run, micro_cfg, ("diffusion",), extra={"latent_scale": 0.5, "vae": "vae"})
    resume = {"ema_updates": ema.num_updates, "rng": {"torch": [1, 2]}, "latents": "/data/latents",
              "vae_source": "/runs/vae/ckpt/step-00000007"}
    for step in (10, 20):
        save_checkpoint(run, step, {"model": model.state_dict(), "ema": ema.state_dict(), "optim": opt.state_dict()},
                        resume, keep=2)
    save_checkpoint(run / "vae", 7, {"ema": model.state_dict()}, {"latent_scale": 0.5}, keep=1)
    dest = tmp_path / "models" / "tiny"
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("from an earlier packaging")

    files = package_model(run, dest, {"audio_guidance_scale": 3.0, "audio_guidance_schedule": "interval"})

    step_dir = dest / "ckpt" / "step-00000020"  # the newest checkpoint
    assert os.readlink(dest / "latest") == os.path.join("ckpt", "step-00000020")
    vae_files = sorted(q for q in (dest / "vae").rglob("*") if q.is_file() and not q.is_symlink())
    assert files == sorted([dest / "config.yaml", step_dir / "ema.safetensors", step_dir / "state.json", *vae_files])
    assert not (dest / "stale.txt").exists() and not (dest / "config.check.yaml").exists()
    # loads as a run dir (latest, the file listing checked, no warning): EMA weights only, no resume state
    packaged = read_checkpoint(dest)
    assert packaged.step == 20 and list(packaged.tensors) == ["ema"]
    assert packaged.state == {"ema_updates": ema.num_updates}
    assert json.loads((step_dir / "state.json").read_text())["files"].keys() == {"ema.safetensors"}
    assert "warning" not in capsys.readouterr().err
    _, _, ema2 = _trained_model()
    ema2.load_state_dict(packaged.tensors["ema"])
    for k in ema.shadow:
        assert torch.equal(ema.shadow[k], ema2.shadow[k])
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        read_checkpoint(dest, names=["model"])
    # the config: the run's, with the sampling defaults given, provenance and extras kept
    cfg, run_cfg = read_run_config(dest), read_run_config(run)
    assert cfg["inference"] == {**run_cfg["inference"], "audio_guidance_scale": 3.0,
                                "audio_guidance_schedule": "interval"}
    assert {k: v for k, v in cfg.items() if k != "inference"} == {k: v for k, v in run_cfg.items() if k != "inference"}
    assert build_config(base=cfg).inference.audio_guidance_schedule == "interval"
    doc = yaml.safe_load((dest / "config.yaml").read_text())
    assert doc["vae"] == "vae" and doc["latent_scale"] == 0.5 and "provenance" in doc
    assert load_checkpoint(dest / "vae")[0] == 7  # the VAE copy loads too
    # the source run is untouched
    assert read_checkpoint(run).tensors.keys() == {"model", "ema", "optim"} and read_checkpoint(run).state == resume

    with pytest.raises(ConfigError, match="audio_guidance_schedule"):
        package_model(run, tmp_path / "bad", {"audio_guidance_schedule": "nonsense"})
    with pytest.raises(CheckpointError, match="no checkpoint to package"):
        package_model(tmp_path / "untrained", tmp_path / "none")


def test_a_model_packaged_half_stores_float16_and_loads_into_float32(tmp_path, micro_cfg):
    """``half=True`` (the study-sized shipped model, issue 24): float16 weights listed by their own size and sha256,
    loaded into a float32 model within float16's rounding of the EMA weights."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64), torch.nn.Linear(64, 2))
    model(torch.randn(8, 64))  # BatchNorm's running stats and its int64 num_batches_tracked move
    ema = EMA(model, 0.9)
    ema.update(model)
    run = tmp_path / "run"
    prepare_run_dir(run, micro_cfg, ("diffusion",), extra={"latent_scale": 0.5, "vae": "vae"})
    save_checkpoint(run, 5, {"model": model.state_dict(), "ema": ema.state_dict()}, {"ema_updates": 0}, keep=1)
    save_checkpoint(run / "vae", 7, {"ema": model.state_dict()}, {"latent_scale": 0.5}, keep=1)

    package_model(run, tmp_path / "full")
    package_model(run, tmp_path / "half", half=True)

    full_f = tmp_path / "full" / "ckpt" / "step-00000005" / "ema.safetensors"
    half_f = tmp_path / "half" / "ckpt" / "step-00000005" / "ema.safetensors"
    assert half_f.stat().st_size < 0.55 * full_f.stat().st_size
    packaged = read_checkpoint(tmp_path / "half")  # the listing (size, sha256) is the half file's: checked on load
    dtypes = {k: v.dtype for k, v in packaged.tensors["ema"].items()}
    assert dtypes.pop("1.num_batches_tracked") == torch.int64 and set(dtypes.values()) == {torch.float16}
    state = json.loads((half_f.parent / "state.json").read_text())
    assert state["weights_dtype"] == "float16"
    assert state["source_sha256"] == hashlib.sha256((run / "ckpt" / "step-00000005" / "ema.safetensors").read_bytes()
                                                    ).hexdigest()
    loaded = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64), torch.nn.Linear(64, 2))
    loaded.load_state_dict(packaged.tensors["ema"])
    for k, v in loaded.state_dict().items():
        if k.endswith("num_batches_tracked"):
            assert v.dtype == torch.int64 and torch.equal(v, ema.shadow[k])
            continue
        assert v.dtype == torch.float32
        assert torch.equal(v, ema.shadow[k].half().float())  # exactly float16's rounding, nothing else
        assert torch.allclose(v, ema.shadow[k], rtol=1e-3, atol=1e-4)
    _, vae_tensors, _ = load_checkpoint(tmp_path / "half" / "vae")
    assert {v.dtype for v in vae_tensors["ema"].values() if v.is_floating_point()} == {torch.float32}  # not halved

    # a damaged source is refused, not repackaged with a fresh listing that vouches for it
    src = run / "ckpt" / "step-00000005" / "ema.safetensors"
    src.write_bytes(src.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(CheckpointError, match="sha256 differs"):
        package_model(run, tmp_path / "damaged", half=True)


def test_half_refuses_values_beyond_float16():
    from trainer.checkpoint import half_tensors

    ok = half_tensors({"a": torch.tensor([1.0, -65504.0, float("inf")]), "n": torch.tensor(3)})
    assert ok["a"].dtype == torch.float16 and ok["n"].dtype == torch.int64
    with pytest.raises(CheckpointError, match="'w' has values beyond float16"):
        half_tensors({"w": torch.tensor([1.0, 7e4])})

def test_a_packaged_vae_loads_its_ema_weights_and_nothing_to_resume(tmp_path, micro_cfg):
    from trainer.vae.model import FrameVAE, load_vae

    torch.manual_seed(0)
    model, ema_model = FrameVAE(micro_cfg.vae), FrameVAE(micro_cfg.vae)
    run = tmp_path / "vae-run"
    prepare_run_dir(run, micro_cfg, ("vae",))
    for step in (3, 6):
        save_checkpoint(run, step, {"model": model.state_dict(), "ema": ema_model.state_dict(),
                                    "optim": {"dummy": torch.zeros(2)}}, {"rng": {"torch": [1]}}, keep=2)
    dest = tmp_path / "models" / "vae"

    files = package_vae(run, dest)

    step_dir = dest / "ckpt" / "step-00000006"
    assert files == sorted([dest / "config.yaml", step_dir / "ema.safetensors", step_dir / "state.json"])
    loaded, cfg, found = load_vae(dest)
    assert found.resolve() == step_dir.resolve() and cfg.vae == micro_cfg.vae
    for k, v in ema_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert read_checkpoint(dest).state == {} and list(read_checkpoint(dest).tensors) == ["ema"]
    with pytest.raises(CheckpointError, match="no checkpoint to package"):
        package_vae(tmp_path / "untrained", tmp_path / "none")
