"""diffusion.style_source=plan (issue 23): the teacher's visual plan as the style input.

The features' oracle values (the cosine palette, hue rotation about the grey axis, the knobs and primitives), the
style a seed means (the teacher's own plan sampler), and a plan model end to end on real latent shards through the
CLI: trained (no style encoder, no KL), sampled with two style seeds (two videos), and refused --style-from."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from shared import shards as S
from shared.config import build_config
from shared.style_features import (PALETTE_POINTS, PLAN_STYLE_DIM, VISUALIZERS, cosine_palette, hue_rotation_matrix,
                                   plan_style_features)
from shared.timeline import channel_names
from trainer import checkpoint as ckpt
from trainer.diffusion.synthetic import synthetic_timeline
from trainer.style import plan_features_of, style_for_seed, style_from_prior, style_input_dim
from trainer_shards import tiny_latent_config_and_vae

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _plan(d=(0.0, 0.0, 0.0), hue=0.0, visualizers=("rings",), background=(0.1, 0.0, 0.0)) -> dict:
    return {"version": 1, "variant": "normal",
            "layers": [{"visualizer": v, "blend": "alpha", "opacity": 1.0, "hue_offset": 0.0, "seed": 0.0}
                       for v in visualizers],
            "style": {"palette": {"a": [0.5] * 3, "b": [0.5] * 3, "c": [1.0] * 3, "d": list(d)},
                      "background": list(background), "symmetry": 12, "line_width": 1.2, "speed": math.e,
                      "detail": 1.1},
            "augment": {"hue_rotation_deg": hue, "flip_x": False, "flip_y": False, "zoom": 1.3, "rotation_deg": 0.0,
                        "spin_coupling": 0.0, "trail_tau_s": 0.06}}


# ---------------------------------------------------------------- the features


def test_grey_palette_features_by_hand():
    f = plan_style_features(_plan())
    assert f.shape == (PLAN_STYLE_DIM,) == (35,) and f.dtype == np.float32
    # a = b = 0.5, c = 1, d = 0: palette(t) = 0.5 + 0.5 cos(2 pi t) = 1, 0.5, 0, 0.5 at t = 0, 1/4, 1/2, 3/4
    # (grey, so any hue rotation leaves it); features 2 (x - 0.5)
    np.testing.assert_allclose(f[:12], [1, 1, 1, 0, 0, 0, -1, -1, -1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(plan_style_features(_plan(hue=123.0))[:12], f[:12], atol=1e-6)
    # knobs: (12 - 7.5) / 4.5, 1.2 - 1.2, log e, 1.1 - 1.1, 1.3 - 1.05, 0.06 / 0.12
    np.testing.assert_allclose(f[15:21], [1.0, 0.0, 1.0, 0.0, 0.25, 0.5], atol=1e-6)
    onehot = f[21:]
    assert onehot.sum() == 1 and onehot[VISUALIZERS.index("rings")] == 1


def test_hue_rotation_by_120_degrees_cycles_the_channels():
    # Rodrigues about the grey axis by 120 degrees maps R -> G -> B -> R: (r, g, b) -> (b, r, g)
    np.testing.assert_allclose(hue_rotation_matrix(120.0) @ [0.2, 0.5, 0.9], [0.9, 0.2, 0.5], atol=1e-12)
    d = (0.0, 0.2, 0.55)
    plain, turned = plan_style_features(_plan(d)), plan_style_features(_plan(d, hue=120.0))
    for i, t in enumerate(PALETTE_POINTS):
        rgb = cosine_palette(t, [0.5] * 3, [0.5] * 3, [1.0] * 3, d)
        np.testing.assert_allclose(plain[3 * i:3 * i + 3], 2 * (rgb - 0.5), atol=1e-6)
        np.testing.assert_allclose(turned[3 * i:3 * i + 3], 2 * (rgb[[2, 0, 1]] - 0.5), atol=1e-6)
    np.testing.assert_allclose(turned[12:15], 5 * np.array([0.0, 0.1, 0.0]), atol=1e-6)  # the background turns too


def test_primitives_are_multi_hot_and_bad_plans_are_named():
    f = plan_style_features(_plan(visualizers=("tunnel", "starfield", "debug_flash")))
    assert {VISUALIZERS[i] for i in np.flatnonzero(f[21:])} == {"tunnel", "starfield", "debug_flash"}
    bad = _plan()
    del bad["style"]["background"]
    with pytest.raises(ValueError, match="background"):
        plan_style_features(bad)
    with pytest.raises(ValueError, match="unknown visualizer"):
        plan_style_features(_plan(visualizers=("spirograph",)))
    with pytest.raises(ValueError, match="sample k7: meta.json has no visual_plan"):
        plan_features_of({"variant": "normal"}, "k7")


def test_datagen_draws_from_the_shared_names():
    from datagen.visual import plan as P

    assert P.PRIMITIVES + P.DEBUG_PRIMITIVES == VISUALIZERS
    cfg = build_config()
    for seed in range(20):  # every plan the teacher draws has features (nothing unknown, all finite)
        assert np.isfinite(plan_style_features(P.sample_visual_plan(cfg, seed, "normal"))).all()


# ---------------------------------------------------------------- what a style seed means


def test_a_style_seed_is_the_teachers_plan_of_that_seed_or_a_prior_draw():
    from datagen.visual.plan import sample_visual_plan

    plan_cfg = build_config(overrides=["diffusion.style_source=plan"])
    assert style_input_dim(plan_cfg) == PLAN_STYLE_DIM
    z = style_for_seed(plan_cfg, 5)
    assert z.shape == (1, PLAN_STYLE_DIM)
    np.testing.assert_array_equal(z[0].numpy(), plan_style_features(sample_visual_plan(plan_cfg, 5, "normal")))
    assert not torch.equal(z, style_for_seed(plan_cfg, 6))
    post = build_config(overrides=["diffusion.style_dim=3"])
    assert style_input_dim(post) == 3 and torch.equal(style_for_seed(post, 5), style_from_prior(3, 5))


# ---------------------------------------------------------------- a plan model end to end


@pytest.fixture(scope="module")
def plan_latents(tmp_path_factory):
    """Tiny latent shards whose meta.json carries the teacher's plan of each clip, and a random tiny VAE."""
    from datagen.visual.plan import sample_visual_plan

    root = tmp_path_factory.mktemp("style_plan")
    cfg, vae_run = tiny_latent_config_and_vae(root)
    names, n_frames, res = channel_names(cfg.timeline), int(cfg.data.clip_seconds * cfg.render.fps), 4
    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        with S.ShardWriter(root / "latents" / split / S.shard_name(0)) as writer:
            for i in range(4):
                feats = synthetic_timeline(n_frames, names, g)
                lat = torch.randn(n_frames, 2, res, res, generator=g).numpy()
                meta = {"variant": "debug", "tempo": 120.0, "fps": cfg.render.fps, "timeline_channels": names,
                        "visual_plan": sample_visual_plan(cfg, i, "normal")}
                writer.add_sample(S.sample_key(0, i), S.latent_members(lat, np.full_like(lat, 0.1), feats.numpy(), meta))
    (root / "latents" / "manifest.json").write_text(json.dumps({"latent_scale": 0.8, "vae": {
        "run": str(vae_run), "checkpoint": str(vae_run / "ckpt" / "step-00000005"), "step": 5}}))
    cfg_file = root / "cfg.yaml"
    cfg_file.write_text(json.dumps(cfg.model_dump(mode="json", exclude_unset=True)))
    return root, cfg_file


TINY = ["--steps", "2", "diffusion.val_every=2", "run.checkpoint_every=2", "run.num_workers=0",
        "diffusion.snippet_frames=2", "diffusion.audio_context_frames=1", "diffusion.width=32", "diffusion.depth=1",
        "diffusion.heads=2", "diffusion.batch_size=4", "diffusion.warmup_steps=2", "run.log_every=1", "run.device=cpu",
        "diffusion.style_source=plan", "diffusion.p_style_drop=0"]


def test_a_plan_model_trains_samples_two_styles_and_refuses_a_reference(plan_latents, tmp_path, capsys):
    from safetensors.torch import load_file

    from shared.command_line import run_cli
    from shared.video import read_video_frames
    from trainer.sample import SampleSettings, load_sampling_model, sample_file

    root, cfg_file = plan_latents
    run = tmp_path / "run"
    run_cli("trainer", "trainer.commands", "trainer",
            ["diffusion", "--config", str(cfg_file), "--latents", str(root / "latents"), "--out", str(run), *TINY])
    step = ckpt.list_checkpoints(run)[-1]
    state = json.loads((step / ckpt.STATE_FILE).read_text())["state"]
    assert state["metrics"]["style_kl"] == 0.0 and state["metrics"]["style_kl_term"] == 0.0  # no posterior, no KL
    weights = load_file(str(step / "ema.safetensors"))
    assert not any(k.startswith("style_encoder.") for k in weights)
    assert weights["style_proj.0.weight"].shape[1] == PLAN_STYLE_DIM

    # a wave file -> two style seeds at one noise seed: two different videos (the style input reaches the frames)
    import soundfile as sf
    wav = tmp_path / "tone.wav"
    t = np.arange(8000 * 2) / 8000
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 8000)
    model = load_sampling_model(str(run), "cpu")
    videos = []
    for s in (0, 1):
        out = tmp_path / f"s{s}.mp4"
        sample_file(str(wav), str(out), model, SampleSettings(style_seed=s, steps=2), progress=False)
        videos.append(np.stack(list(read_video_frames(out))))
    assert videos[0].shape == videos[1].shape and not np.array_equal(videos[0], videos[1])
    # style guidance (inference.style_guidance_scale) moves the same seeds' video along the style (a large scale: after
    # two steps the adaLN-zero blocks barely read the style yet)
    guided = tmp_path / "g.mp4"
    sample_file(str(wav), str(guided), model, SampleSettings(style_seed=0, steps=2, style_guidance=50.0), progress=False)
    assert not np.array_equal(np.stack(list(read_video_frames(guided))), videos[0])

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_cli("trainer", "trainer.commands", "trainer",
                ["sample", "--checkpoint", str(run), "--audio", str(wav), "--out", str(tmp_path / "r.mp4"),
                 "--style-from", str(wav), "--size", "native"])
    assert e.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--style-from" in err[0] and "--style-seed" in err[0]


def test_a_plan_model_on_latents_without_plans_is_one_line_before_any_step(plan_latents, tmp_path, capsys):
    """Latents cached from shards that record no visual_plan: a one-line error naming the field, no checkpoint."""
    from shared.command_line import run_cli

    root, cfg_file = plan_latents
    bare = tmp_path / "bare"
    (bare / "train").mkdir(parents=True)
    (bare / "val").mkdir()
    (bare / "manifest.json").write_text((root / "latents" / "manifest.json").read_text())
    for split in ("train", "val"):
        with S.ShardWriter(bare / split / S.shard_name(0)) as writer:
            for key, members in S.iter_tar_samples(root / "latents" / split / S.shard_name(0)):
                meta = S.decode_json(members[S.META])
                del meta["visual_plan"]
                members = {**members, S.META: json.dumps(meta).encode()}
                writer.add_sample(key, list(members.items()))
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_cli("trainer", "trainer.commands", "trainer",
                ["diffusion", "--config", str(cfg_file), "--latents", str(bare), "--out", str(tmp_path / "r"), *TINY])
    assert e.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "visual_plan" in err[0] and "style_source=plan" in err[0]
    assert ckpt.list_checkpoints(tmp_path / "r") == []
