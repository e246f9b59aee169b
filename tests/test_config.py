"""Config schema: layering, validation errors that name the field, dry-run, postmortem knob names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared.config import Config, ConfigError, build_config, model_shape, shape_mismatch, to_yaml

ROOT = Path(__file__).resolve().parents[1]

POSTMORTEM_KNOBS = [
    "data.audio_silence_mix_prob", "data.audio_debug_mode", "data.audio_debug_mix_prob",
    "diffusion.audio_shuffle_loss_weight", "diffusion.audio_shuffle_loss_margin", "diffusion.audio_shuffle_loss_prob",
    "diffusion.audio_feature_normalize_per_clip", "diffusion.p_audio_drop", "inference.audio_guidance_scale",
]


@pytest.mark.parametrize("dotted", POSTMORTEM_KNOBS)
def test_postmortem_knobs_exist_with_description(dotted):
    section, name = dotted.split(".")
    info = type(getattr(Config(), section)).model_fields[name]
    assert info.description and len(info.description) > 20


def test_postmortem_knob_names_appear_in_the_postmortem():
    seeds = sorted((ROOT.parent / "shared" / "seeds").glob("*.txt"))
    if not seeds:  # the design card lives beside the checkout; CI clones put it there too
        pytest.fail("../shared/seeds is missing: cannot check knob names against the postmortem")
    text = seeds[0].read_text()
    for dotted in POSTMORTEM_KNOBS:
        assert dotted.split(".")[1] in text


def test_full_yaml_spells_out_the_defaults():
    assert build_config([ROOT / "configs" / "full.yaml"]) == Config()


def test_every_shipped_config_validates():
    for f in (ROOT / "configs").glob("*.yaml"):
        build_config([f])


def test_unknown_key_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"diffusion\.audio_shuffle_los_weight.*did you mean 'diffusion\.audio_shuffle_loss_weight'"):
        build_config(overrides=["diffusion.audio_shuffle_los_weight=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  silence_mix: 0.3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*data\.silence_mix"):
        build_config([bad])
    with pytest.raises(ConfigError, match="unknown config section 'dat'"):
        build_config(overrides=["dat.seed=1"])


def test_wrong_type_and_out_of_range_name_the_field():
    with pytest.raises(ConfigError, match=r"render\.resolution.*integer"):
        build_config(overrides=["render.resolution=big"])
    with pytest.raises(ConfigError, match=r"data\.audio_silence_mix_prob.*less than or equal to 1.*1\.5"):
        build_config(overrides=["data.audio_silence_mix_prob=1.5"])
    with pytest.raises(ConfigError, match=r"vae\.downsample"):
        build_config(overrides=["vae.downsample=6"])


def test_layering_order(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("data:\n  audio_silence_mix_prob: 0.1\n  seed: 5\n")
    b = tmp_path / "b.yaml"
    b.write_text("data:\n  audio_silence_mix_prob: 0.2\n")
    assert build_config([a]).data.audio_silence_mix_prob == 0.1
    assert build_config([a, b]).data.audio_silence_mix_prob == 0.2          # later file wins
    assert build_config([a, b]).data.seed == 5                              # untouched keys survive
    flags = {"data.audio_silence_mix_prob": 0.3}
    assert build_config([a, b], flags).data.audio_silence_mix_prob == 0.3   # short flag over YAML
    cfg = build_config([a, b], flags, ["data.audio_silence_mix_prob=0.4"])
    assert cfg.data.audio_silence_mix_prob == 0.4                           # dotted override over flag
    assert build_config([a], {"data.audio_silence_mix_prob": None}).data.audio_silence_mix_prob == 0.1  # flag not given


def test_yaml_round_trip():
    cfg = build_config(overrides=["diffusion.audio_shuffle_negatives=hard", "render.visualizers=[rings, tunnel]"])
    assert Config.model_validate(yaml.safe_load(to_yaml(cfg))) == cfg
    assert cfg.render.visualizers == ["rings", "tunnel"]


def test_model_shape_detects_shape_changes():
    a, b = Config(), build_config(overrides=["diffusion.width=128", "diffusion.lr=1e-3"])
    diff = shape_mismatch(model_shape(a, ("diffusion",)), model_shape(b, ("diffusion",)))
    assert diff == ["diffusion.width: checkpoint has 768, config asks 128"]  # lr is not a shape field


def _cli(*args):
    return subprocess.run([sys.executable, "-c", "import sys; from datagen.cli import main; main(sys.argv[1:])", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_dry_run_prints_resolved_config_and_exits_0():
    r = _cli("preview", "--config", "configs/tiny.yaml", "--silence-mix", "0.7", "--dry-run", "data.seed=9")
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout)
    assert doc["data"]["audio_silence_mix_prob"] == 0.7 and doc["data"]["seed"] == 9
    assert doc["render"]["resolution"] == 64


def test_cli_bad_value_fails_naming_field():
    r = _cli("preview", "--config", "configs/tiny.yaml", "data.audio_silence_mix_prob=1.5", "--dry-run")
    assert r.returncode == 2
    assert "data.audio_silence_mix_prob" in r.stderr
