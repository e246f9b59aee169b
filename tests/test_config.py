"""Config schema: layering, validation errors that name the field, dry-run, postmortem knob names."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from shared.config import Config, ConfigError, build_config, model_shape, shape_mismatch, to_yaml
from shared.postmortem_knobs import POSTMORTEM_KNOBS

ROOT = Path(__file__).resolve().parents[1]
POSTMORTEM_DIR = ROOT.parent / "shared" / "seeds"  # beside the checkout where CI puts it; never in a plain clone


def _field(dotted: str):
    section, name = dotted.split(".")
    return type(getattr(Config(), section)).model_fields.get(name)


@pytest.mark.parametrize("dotted", sorted(POSTMORTEM_KNOBS))
def test_postmortem_knobs_exist_with_description(dotted):
    info = _field(dotted)
    assert info is not None, f"{dotted} is not in the schema"
    assert info.description and len(info.description) > 20
    assert len(POSTMORTEM_KNOBS[dotted]) > 40  # where it comes from, in our words


# ------------------------------------------------- each postmortem knob changes behaviour


def _variant_counts(cfg, _model=None):
    from datagen.audio import choose_variant

    variants = [choose_variant(cfg.data, seed) for seed in range(300)]
    return tuple(variants.count(v) for v in ("normal", "silence", "debug"))


@pytest.fixture(scope="module")
def tiny_model():
    """A 1-block denoiser with woken adaLN layers and a fixed synthetic snippet batch."""
    import torch

    from model_helpers import wake
    from trainer.diffusion.model import Denoiser
    from trainer.diffusion.synthetic import n_audio_channels, synthetic_batch

    cfg = build_config(overrides=["diffusion.snippet_frames=4", "diffusion.audio_context_frames=1",
                                  "diffusion.width=32", "diffusion.depth=1", "diffusion.heads=2",
                                  "diffusion.style_dim=4", "diffusion.p_style_drop=0", "diffusion.p_prev_drop=0",
                                  "diffusion.p_audio_drop=0", "diffusion.audio_shuffle_loss_margin=1.0",
                                  "inference.steps=2", "render.resolution=32", "timeline.n_bands=4"])
    torch.manual_seed(0)
    model = wake(Denoiser(cfg, 2, 4, n_audio_channels(cfg))).eval()
    return cfg, model, synthetic_batch(cfg, 4, 2, 4, torch.Generator().manual_seed(3))


def _training_loss(cfg, tiny_model):
    import torch

    from trainer.diffusion.losses import diffusion_loss

    _, model, batch = tiny_model
    with torch.no_grad():
        loss, _ = diffusion_loss(model, batch, cfg, torch.Generator().manual_seed(1))
    return round(float(loss), 7)


def _sampled_latents(cfg, tiny_model):
    import torch

    from trainer.diffusion.sampler import sample_snippet

    _, model, batch = tiny_model
    mu, _ = model.encode_style(batch["style"].float())
    cond = model.make_cond(batch["audio"].float(), batch["is_silent"], batch["frame_index"], prev=batch["prev"].float(),
                           prev_valid=batch["prev_valid"], style_z=mu)
    with torch.no_grad():
        x0 = sample_snippet(model, cond, tuple(batch["x"].shape), cfg.inference.steps, cfg.inference.audio_guidance_scale,
                            torch.Generator().manual_seed(0), cfg.inference.sampler)
    return round(float(x0.abs().mean()), 6)


def _sampling_conditioning(cfg, tiny_model):
    from test_timeline import click_track  # tests/ is on the path, as for model_helpers
    from trainer.sample import audio_conditioning

    wave = click_track(120.0, 2.0, cfg.data.sample_rate)
    windows, _, _ = audio_conditioning(wave, cfg.data.sample_rate, cfg, 48)
    return round(float(abs(windows).mean()), 6)


# knob -> (a value other than the probe's base, the behaviour it changes)
KNOB_PROBES = {
    "data.audio_silence_mix_prob": ("0.9", _variant_counts),
    "data.audio_debug_mode": ("true", _variant_counts),
    "data.audio_debug_mix_prob": ("0.5", _variant_counts),
    "diffusion.audio_shuffle_loss_weight": ("5.0", _training_loss),
    "diffusion.audio_shuffle_loss_margin": ("3.0", _training_loss),
    "diffusion.audio_shuffle_loss_prob": ("0", _training_loss),
    "diffusion.p_audio_drop": ("0.5", _training_loss),
    "diffusion.audio_feature_normalize_per_clip": ("true", _sampling_conditioning),
    "inference.audio_guidance_scale": ("4.0", _sampled_latents),
}


def test_every_postmortem_knob_has_a_behaviour_probe():
    assert set(KNOB_PROBES) == set(POSTMORTEM_KNOBS)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("dotted", sorted(KNOB_PROBES))
def test_postmortem_knob_changes_behaviour(dotted, tiny_model):
    value, probe = KNOB_PROBES[dotted]
    base = tiny_model[0]
    changed = build_config(base=base.model_dump(mode="json"), overrides=[f"{dotted}={value}"])
    assert getattr(getattr(changed, dotted.split(".")[0]), dotted.split(".")[1]) != \
        getattr(getattr(base, dotted.split(".")[0]), dotted.split(".")[1])
    assert probe(base, tiny_model) == probe(base, tiny_model)  # the probe is deterministic
    assert probe(changed, tiny_model) != probe(base, tiny_model), f"{dotted}={value} changed nothing"


def _knobs_named_in(text: str) -> set[str]:
    """Config keys a text names in code spans (`section.key`, or a bare `key` that is a field of exactly one
    section), also where the span goes on (`p_audio_drop > 0`)."""
    import re

    sections = {name: set(type(getattr(Config(), name)).model_fields) for name in Config.model_fields}
    found = set()
    for token in re.findall(r"`([A-Za-z_][\w.]*)[^`]*`", text):  # the name that opens a code span
        if "." in token:
            section, _, key = token.partition(".")
            if key in sections.get(section, ()):
                found.add(token)
        else:
            owners = [s for s, keys in sections.items() if token in keys]
            if len(owners) == 1:
                found.add(f"{owners[0]}.{token}")
    return found


def test_postmortem_knob_list_matches_the_postmortem():
    """Where the postmortem is beside the checkout (CI), the project's list names exactly the knobs it names."""
    texts = sorted(POSTMORTEM_DIR.glob("*.txt")) if POSTMORTEM_DIR.is_dir() else []
    if not texts:
        pytest.skip(f"{POSTMORTEM_DIR} (the postmortem, outside the repository) is absent: the knob list "
                    "was checked against the schema only")
    named = set().union(*(_knobs_named_in(t.read_text()) for t in texts))
    assert named == set(POSTMORTEM_KNOBS), (f"named in the postmortem only: {sorted(named - set(POSTMORTEM_KNOBS))}; "
                                            f"in our list only: {sorted(set(POSTMORTEM_KNOBS) - named)}")


def test_knob_extraction_reads_dotted_and_bare_names():
    text = "use `data.audio_debug_mode`, train with `p_audio_drop > 0`, not `compute_audio_timeline` or `data.nope`"
    assert _knobs_named_in(text) == {"data.audio_debug_mode", "diffusion.p_audio_drop"}


# ------------------------------------------------- numbers: finite, and never booleans


def _number_fields() -> list[tuple[str, bool]]:
    """(dotted name, is a float field) for every int or float field of the schema."""
    from shared.config import _is_number_field

    out = []
    for section in Config.model_fields:
        for name, info in type(getattr(Config(), section)).model_fields.items():
            if _is_number_field(info.annotation):
                out.append((f"{section}.{name}", float in (typing.get_args(info.annotation) or (info.annotation,))))
    return out


def test_number_fields_refuse_booleans_and_floats_refuse_inf_and_nan():
    fields = _number_fields()
    assert len(fields) > 40 and ("diffusion.steps", False) in fields and ("diffusion.audio_shuffle_loss_weight", True) in fields
    for dotted, is_float in fields:
        for value in ("true", "false"):
            with pytest.raises(ConfigError, match=rf"{re.escape(dotted)}: .*not a boolean"):
                build_config(overrides=[f"{dotted}={value}"])
        if is_float:
            for value in ("inf", ".inf", "-.inf", ".nan", "nan"):
                with pytest.raises(ConfigError, match=rf"{re.escape(dotted)}: .*finite number"):
                    build_config(overrides=[f"{dotted}={value}"])


def test_the_issue_examples_fail_naming_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"diffusion\.audio_shuffle_loss_weight: Input should be a finite number"):
        build_config(overrides=["diffusion.audio_shuffle_loss_weight=inf"])
    with pytest.raises(ConfigError, match=r"diffusion\.steps: .*must be a number, not a boolean"):
        build_config(overrides=["diffusion.steps=true"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("vae:\n  lr: .nan\n  steps: yes\n")  # YAML 1.1: yes is a boolean
    with pytest.raises(ConfigError, match=r"(?s)vae\.lr: .*finite.*vae\.steps: .*boolean"):
        build_config([bad])
    cfg = build_config(overrides=["diffusion.steps=3", "data.val_shards=null", "data.audio_debug_mode=true"])
    assert cfg.diffusion.steps == 3 and cfg.data.val_shards is None and cfg.data.audio_debug_mode is True
    with pytest.raises(ValueError, match="not a boolean"):  # assignment is validated too
        cfg.diffusion.steps = True


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


# The least each command needs besides overrides (`inspect` takes none: it has a positional of its own).
_REQUIRED = {"visualize": ["--audio", "a.wav", "--out", "a.mp4"], "sample": ["--audio", "a.wav"], "live": ["--audio", "-"],
             "studio": ["--audio-dir", "songs"]}


@pytest.mark.parametrize("prog,package", [("datagen", "datagen.commands"), ("trainer", "trainer.commands")])
def test_overrides_may_stand_anywhere_on_every_command(prog, package):
    """`datagen run ... data.clip_seconds=2 --executor local --out D render.jpeg_quality=80` used to fail with
    "unrecognized arguments": overrides split by an option now parse, on every command that takes them."""
    from shared.command_line import build_parser, parse_command_line

    parser, mods = build_parser(prog, package, "")
    checked = 0
    for name in mods:
        args = parse_command_line(parser, [name, "data.seed=7", "--dry-run", *_REQUIRED.get(name, []),
                                           "render.fps=8"]) if name not in ("inspect", "visualizers") else None
        if args is None:
            continue
        assert args.command == name and args.overrides == ["data.seed=7", "render.fps=8"] and args.dry_run
        checked += 1
    assert checked == len(mods) - (2 if prog == "datagen" else 0)
    assert parse_command_line(parser, ["inspect", "--repair", "D"] if prog == "datagen" else ["vae"]).command


def test_split_overrides_reach_the_resolved_config():
    r = _cli("run", "--config", "configs/tiny.yaml", "data.clip_seconds=2", "--executor", "local", "--out", "D",
             "render.jpeg_quality=80", "--dry-run")
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout)
    assert doc["data"]["clip_seconds"] == 2.0 and doc["render"]["jpeg_quality"] == 80
    assert doc["run"]["executor"] == "local"
