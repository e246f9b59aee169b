"""Shuffle pressure: negatives, the hinge and its gradient, every loss knob live, and that it works."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shared.config import ConfigError, build_config
from trainer.conditioning import ChannelLayout, audio_content_id
from trainer.diffusion import shuffle as Sh
from trainer.diffusion.losses import diffusion_loss, val_losses
from trainer.diffusion.model import Denoiser
from trainer.diffusion.synthetic import n_audio_channels, synthetic_batch
from model_helpers import wake

C, H = 2, 4
SMALL = ["diffusion.snippet_frames=4", "diffusion.audio_context_frames=1", "diffusion.width=32", "diffusion.depth=1",
         "diffusion.heads=2", "diffusion.style_dim=4"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def small_cfg(base, *overrides):
    return build_config(base=base.model_dump(mode="json"), overrides=SMALL + list(overrides))


# ---------------------------------------------------------------- negatives

LAYOUT_NAMES = ["log_rms", "rms", "band_00", "band_01", "band_02", "onset", "is_silent"]
LAYOUT = ChannelLayout.from_names(LAYOUT_NAMES)


def loader_like_batch(seed: int = 0) -> dict:
    """A batch shaped like the loader's, with what makes negatives hard to get right:

    rows 0, 1: two snippets of one clip (same audio_id, different windows); rows 2, 3, 4: copies of one
    debug clip (same audio_id, identical audio); row 5: another clip; rows 6, 7: two silent clips (different
    audio, e.g. beat channels, but every frame silent). F = 4 frames, windows 2k+1 = 3, 7 channels.
    """
    g = torch.Generator().manual_seed(seed)
    b, f, w, ch = 8, 4, 3, len(LAYOUT_NAMES)
    audio = torch.rand(b, f, w, ch, generator=g) + 0.1
    audio[3] = audio[2]
    audio[4] = audio[2]
    silent = torch.zeros(b, f)
    for i in (6, 7):  # the other channels stay random: silent clips still differ (think beat estimates)
        audio[i, :, :, 0] = -100.0  # log_rms floor
        silent[i] = 1.0
    audio[:, :, :, 6] = silent[:, :, None]
    ids = torch.tensor([11, 11, 22, 22, 22, 33, 44, 55])
    return {"audio": audio, "is_silent": silent, "audio_id": ids, "key": [f"k{i}" for i in range(b)]}


def _check_negatives_are_other_audio(batch, neg, batch_kind: bool):
    audio, silent, ids = batch["audio"], batch["is_silent"], batch["audio_id"]
    b, k = neg.valid.shape
    for i in range(b):
        for j in range(k):
            if not neg.valid[i, j]:
                continue
            a = neg.audio[i, j]
            assert not torch.equal(a, audio[i])  # never the snippet's own audio
            assert not (bool((neg.is_silent[i, j] > 0.5).all()) and bool((silent[i] > 0.5).all()))  # not silence vs silence
            if batch_kind:  # not the same clip, nor a copy of it: every row holding this audio has another id
                sources = [r for r in range(b) if torch.equal(audio[r], a)]
                assert sources and all(ids[r] != ids[i] for r in sources)
                assert torch.equal(neg.is_silent[i, j], silent[sources[0]])  # is_silent travels with its audio


@pytest.mark.parametrize("kind, k", [(kind, k) for kind in Sh.NEGATIVE_KINDS for k in (1, 3)
                                     if not (kind == "timeshift" and k > 1)])  # timeshift: one per snippet
def test_every_negative_is_different_audio(kind, k):
    """The guarantee of shuffle.py, on a batch with snippets of one clip, debug copies and silent clips."""
    batch = loader_like_batch()
    shifted = batch["audio"].roll(1, dims=1)  # a stand-in for the loader's shifted windows
    batch["audio_timeshift"] = shifted
    for seed in range(5):
        neg = Sh.draw_negatives(batch, kind, k, torch.Generator().manual_seed(seed), LAYOUT)
        assert neg.audio.shape == (8, k, 4, 3, 7) and neg.is_silent.shape == (8, k, 4) and neg.valid.shape == (8, k)
        _check_negatives_are_other_audio(batch, neg, kind in Sh.BATCH_KINDS)
        assert neg.valid[:6].all()  # every non-silent snippet finds K valid negatives in this batch
        if kind in Sh.OWN_CLIP_KINDS:  # the silent clips' own transforms are still silence: they sit out
            assert not neg.valid[6:].any()
        else:  # a silent clip may borrow music, never the other silent clip
            assert neg.valid[6:].all()


def test_no_valid_negative_in_the_batch_leaves_everyone_out():
    """Copies of one debug clip only, or silent clips only: no negative is valid (the pressure sits the batch out)."""
    batch = loader_like_batch()
    copies = {"audio": batch["audio"][2:5], "is_silent": batch["is_silent"][2:5], "audio_id": batch["audio_id"][2:5]}
    silence = {"audio": batch["audio"][6:], "is_silent": batch["is_silent"][6:], "audio_id": batch["audio_id"][6:]}
    for b, kinds in ((copies, Sh.BATCH_KINDS), (silence, Sh.BATCH_KINDS + ("band_permuted",))):
        for kind in kinds:
            assert not Sh.draw_negatives(b, kind, 1, torch.Generator().manual_seed(0), LAYOUT).valid.any()
    assert Sh.draw_negatives(copies, "band_permuted", 1, torch.Generator().manual_seed(0), LAYOUT).valid.all()
    # copies with *different* ids (a loader without audio_id) are still caught: their audio is identical
    relabelled = {**copies, "audio_id": torch.tensor([1, 2, 3])}
    assert not Sh.draw_negatives(relabelled, "derange", 1, torch.Generator().manual_seed(0), LAYOUT).valid.any()


def test_fewer_valid_candidates_than_k_marks_the_rest_invalid():
    batch = loader_like_batch()
    sub = {key: v[:3] if key != "key" else v[:3] for key, v in batch.items()}  # rows 0, 1 (clip 11), 2 (clip 22)
    neg = Sh.draw_negatives(sub, "derange", 2, torch.Generator().manual_seed(0), LAYOUT)
    assert neg.valid.tolist() == [[True, False], [True, False], [True, True]]
    torch.testing.assert_close(neg.audio[0, 0], batch["audio"][2])  # clip 11's only other audio is clip 22's


def test_derange_draws_uniformly_among_the_valid_clips():
    batch = loader_like_batch()
    counts = torch.zeros(8)
    for seed in range(400):
        neg = Sh.draw_negatives(batch, "derange", 1, torch.Generator().manual_seed(seed), LAYOUT)
        counts[[r for r in range(8) if torch.equal(batch["audio"][r], neg.audio[0, 0])][0]] += 1
    # row 0's valid rows: 2-4 (one audio, three rows), 5, 6, 7: each of the six rows drawn ~1/6 of the time
    assert counts[:2].sum() == 0 and counts[3:5].sum() == 0  # copies 3, 4 are found as row 2 (the same audio)
    assert counts[2] == pytest.approx(400 * 3 / 6, rel=0.2)
    for r in (5, 6, 7):
        assert counts[r] == pytest.approx(400 / 6, rel=0.35)


def test_hard_negative_is_the_most_dissimilar_other_clip():
    audio = torch.zeros(4, 2, 3, 5)
    audio[1] += 0.1  # close to clip 0
    audio[2] += 5.0  # far from everything
    audio[3] += 1.0
    ids = torch.arange(4)
    batch = {"audio": audio, "is_silent": torch.zeros(4, 2), "audio_id": ids}
    lay = ChannelLayout(is_silent=4, log_rms=0, bands=(1, 2))
    neg = Sh.draw_negatives(batch, "hard", 1, None, lay)
    src = [[r for r in range(4) if torch.equal(audio[r], neg.audio[i, 0])][0] for i in range(4)]
    assert src == [2, 2, 0, 2] and neg.valid.all()  # the farthest from clip 2 is clip 0
    batch["audio_id"] = torch.tensor([0, 0, 1, 1])  # clips 0/1 and 2/3 are the same audio: never each other
    neg = Sh.draw_negatives(batch, "hard", 1, None, lay)
    src = [[r for r in range(4) if torch.equal(audio[r], neg.audio[i, 0])][0] for i in range(4)]
    assert src == [2, 2, 0, 0]


def test_loudness_matched_picks_the_closest_rms_curve_of_another_clip():
    b, f = 5, 4
    audio = torch.rand(b, f, 3, len(LAYOUT_NAMES), generator=torch.Generator().manual_seed(1))
    curves = torch.tensor([[-20.0, -10, -20, -10], [-20, -10, -20, -11], [-21, -11, -21, -11],
                           [-40, -40, -40, -40], [-5, -5, -5, -5]])
    audio[:, :, :, LAYOUT.log_rms] = curves[:, :, None]
    batch = {"audio": audio, "is_silent": torch.zeros(b, f), "audio_id": torch.tensor([0, 0, 1, 2, 3])}
    neg = Sh.draw_negatives(batch, "loudness_matched", 2, None, LAYOUT)
    src = [[[r for r in range(b) if torch.equal(audio[r], neg.audio[i, j])][0] for j in range(2)] for i in range(b)]
    # rows 0 and 1 are one clip: each other's closest curve, never chosen; row 2 is next, then row 4 (15.8 dB)
    assert src[0] == [2, 4] and src[1] == [2, 4]
    assert src[2] == [1, 0]  # |-21,-11,-21,-11| is 1.0 dB from row 1 and 2.0 dB from row 0
    assert src[3] == [2, 1]


def test_band_permutation_moves_every_band_and_keeps_the_rest():
    for n in (2, 3, 8):
        sig = Sh.random_cycles(500, n, torch.Generator().manual_seed(n), "cpu")
        assert (sig.sort(dim=1).values == torch.arange(n)).all()  # permutations
        assert not (sig == torch.arange(n)).any()  # no band stays put
        if n == 3:
            assert {tuple(r) for r in sig.tolist()} == {(1, 2, 0), (2, 0, 1)}  # both derangements of 3 occur
        if n == 8:
            assert len({tuple(r) for r in sig.tolist()}) > 400  # many of the 5040 8-cycles
    with pytest.raises(ValueError, match="at least 2 bands"):
        Sh.random_cycles(1, 1, None, "cpu")
    batch = loader_like_batch()
    neg = Sh.draw_negatives(batch, "band_permuted", 3, torch.Generator().manual_seed(0), LAYOUT)
    bands = list(LAYOUT.bands)
    other = [c for c in range(len(LAYOUT_NAMES)) if c not in bands]
    for i in range(8):
        for j in range(3):
            torch.testing.assert_close(neg.audio[i, j][..., other], batch["audio"][i][..., other])  # loudness, flags
            got, own = neg.audio[i, j][..., bands], batch["audio"][i][..., bands]
            perm = [[c for c in range(3) if torch.equal(got[..., q], own[..., c])] for q in range(3)]
            if i < 6:  # distinct band values: each output band is exactly one other input band
                assert all(len(p) == 1 and p[0] != q for q, p in enumerate(perm))
    torch.testing.assert_close(neg.is_silent, batch["is_silent"][:, None].expand(-1, 3, -1))


def test_audio_ids_from_the_loader_or_the_key():
    feats = np.random.default_rng(0).random((20, 7)).astype(np.float32)
    a, b = audio_content_id(feats), audio_content_id(feats.copy())
    assert a == b and 0 <= a < 2 ** 63 and audio_content_id(feats + 1e-2) != a
    assert audio_content_id(feats * (1 + 1e-7)) == a  # last-bit differences (another machine's FFT) hash alike
    batch = loader_like_batch()
    assert torch.equal(Sh.batch_audio_ids(batch), batch["audio_id"])
    keyed = {"audio": batch["audio"][:3], "key": ["000001-00002", "000001-00002", "000001-00003"]}
    ids = Sh.batch_audio_ids(keyed)
    assert ids[0] == ids[1] != ids[2]
    with pytest.raises(KeyError, match="audio_id"):
        Sh.batch_audio_ids({"audio": batch["audio"]})


def test_negative_kinds_need_their_inputs(micro_cfg):
    batch = loader_like_batch()
    with pytest.raises(KeyError, match="audio_timeshift"):
        Sh.draw_negatives(batch, "timeshift", 1, None, LAYOUT)
    with pytest.raises(ValueError, match="audio_shuffle_negatives"):
        Sh.draw_negatives(batch, "random", 1, None, LAYOUT)
    with pytest.raises(ValueError, match="audio_contrastive_negatives"):
        Sh.draw_negatives(batch, "derange", 0, None, LAYOUT)


# ---------------------------------------------------------------- bad input, refused before training


@pytest.mark.parametrize("overrides, field", [
    (["diffusion.audio_contrastive_temperature=0"], "diffusion.audio_contrastive_temperature"),
    (["diffusion.audio_contrastive_temperature=-1"], "diffusion.audio_contrastive_temperature"),
    (["diffusion.audio_contrastive_negatives=0"], "diffusion.audio_contrastive_negatives"),
    (["diffusion.audio_shuffle_loss_type=infonce", "diffusion.batch_size=4", "diffusion.audio_contrastive_negatives=4"],
     "diffusion.audio_contrastive_negatives"),
    (["diffusion.audio_shuffle_loss_type=infonce", "diffusion.audio_shuffle_negatives=loudness_matched",
      "diffusion.batch_size=2", "diffusion.audio_contrastive_negatives=3"], "diffusion.audio_contrastive_negatives"),
    (["diffusion.audio_shuffle_loss_type=infonce", "diffusion.audio_shuffle_negatives=timeshift"],
     "diffusion.audio_contrastive_negatives"),
    (["diffusion.audio_shuffle_loss_type=infonce", "diffusion.audio_shuffle_negatives=band_permuted",
      "diffusion.batch_size=1"], "diffusion.batch_size"),
    (["diffusion.audio_shuffle_loss_type=contrastive"], "diffusion.audio_shuffle_loss_type"),
    (["diffusion.audio_shuffle_negatives=band_permuted", "timeline.n_bands=1"], "timeline.n_bands"),
    (["inference.audio_guidance_schedule=exponential"], "inference.audio_guidance_schedule"),
    (["inference.audio_guidance_interval=[0.5, 0.5]"], "inference.audio_guidance_interval"),
    (["inference.audio_guidance_interval=[0.8, 0.2]"], "inference.audio_guidance_interval"),
    (["inference.audio_guidance_interval=[-0.1, 0.5]"], "inference.audio_guidance_interval"),
    (["inference.audio_guidance_interval=[0.2, 1.5]"], "inference.audio_guidance_interval"),
    (["inference.audio_guidance_interval=[0.2]"], "inference.audio_guidance_interval"),
])
def test_bad_method_knobs_are_refused_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_config([], overrides=overrides)


def test_good_method_knobs_resolve():
    cfg = build_config([], overrides=["diffusion.audio_shuffle_loss_type=infonce", "diffusion.batch_size=4",
                                      "diffusion.audio_contrastive_negatives=3", "inference.audio_guidance_schedule=interval",
                                      "inference.audio_guidance_interval=[0, 1]"])
    assert cfg.diffusion.audio_contrastive_negatives == 3 and cfg.inference.audio_guidance_interval == (0.0, 1.0)
    # the hinge ignores K, so a small batch with the default K = 3 is fine
    assert build_config([], overrides=["diffusion.batch_size=2"]).diffusion.audio_shuffle_loss_type == "hinge"


def test_the_trainer_refuses_bad_knobs_before_any_work(capsys, tmp_path):
    from trainer.cli import main

    with pytest.raises(SystemExit) as e:
        main(["diffusion", "--dry-run", "--out", str(tmp_path / "run"), "diffusion.audio_shuffle_loss_type=infonce",
              "diffusion.batch_size=1"])
    assert e.value.code == 2
    assert "diffusion.batch_size" in capsys.readouterr().err and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- hinge


def test_hinge_is_zero_past_the_margin():
    good = torch.tensor([1.0, 1.0, 1.0])
    bad = torch.tensor([1.2, 1.05, 0.9])
    h = Sh.hinge(good, bad, 0.1)
    assert h[0].item() == 0.0  # L_bad >= L_good + margin
    assert h[1].item() == pytest.approx(0.05, abs=1e-6) and h[2].item() == pytest.approx(0.2, abs=1e-6)
    pen, active = Sh.shuffle_penalty(good, bad, torch.tensor([True, True, False]), 2.0, 0.1)
    assert pen.item() == pytest.approx(2.0 * 0.05 / 2, abs=1e-6) and active.item() == pytest.approx(0.5)
    pen, active = Sh.shuffle_penalty(good, bad, torch.zeros(3, dtype=torch.bool), 2.0, 0.1)
    assert pen.item() == 0.0 and active.item() == 0.0


def test_hinge_gradient_widens_the_gap():
    good = torch.tensor([1.0, 0.5], requires_grad=True)
    bad = torch.tensor([1.0, 0.4], requires_grad=True)
    pen, _ = Sh.shuffle_penalty(good, bad, torch.ones(2, dtype=torch.bool), 1.0, 0.1)
    pen.backward()
    assert (good.grad > 0).all() and (bad.grad < 0).all()  # descent lowers L_good and raises L_bad
    with torch.no_grad():
        gap_after = (bad - 0.1 * bad.grad) - (good - 0.1 * good.grad)
    assert (gap_after > (bad - good).detach()).all()
    done = torch.tensor([1.0], requires_grad=True)
    Sh.shuffle_penalty(done, torch.tensor([2.0]), torch.ones(1, dtype=torch.bool), 1.0, 0.1)[0].backward()
    assert done.grad.item() == 0.0  # satisfied samples get no push


def test_infonce_oracle():
    """Hand-computed: errors 1 (true), 2, 3 (negatives) at T = 1 give -log(e^-1 / (e^-1 + e^-2 + e^-3))."""
    pos = torch.tensor([1.0, 1.0, 2.0])
    neg = torch.tensor([[2.0, 3.0], [2.0, 3.0], [1.0, 1.0]])
    valid = torch.tensor([[True, True], [True, False], [True, True]])
    ce = Sh.infonce(pos, neg, valid, 1.0)
    assert ce[0].item() == pytest.approx(math.log(1 + math.exp(-1) + math.exp(-2)), abs=1e-6)  # 0.4076
    assert ce[1].item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)  # the invalid negative is left out
    assert ce[2].item() == pytest.approx(math.log(1 + 2 * math.exp(1)), abs=1e-6)  # the true audio loses: large
    # temperature 0.5 doubles the logits: errors 1, 2, 3 -> log(1 + e^-2 + e^-4)
    assert Sh.infonce(pos[:1], neg[:1], valid[:1], 0.5).item() == pytest.approx(math.log(1 + math.exp(-2) + math.exp(-4)), abs=1e-6)
    none = Sh.infonce(pos[:1], neg[:1], torch.zeros(1, 2, dtype=torch.bool), 1.0)
    assert none.item() == 0.0  # no valid negative: nothing to contrast
    pen, mean, acc = Sh.contrastive_penalty(pos, neg, valid, torch.tensor([True, True, False]), 2.0, 1.0)
    want = (math.log(1 + math.exp(-1) + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2  # sample 2 dropped (CFG)
    assert mean.item() == pytest.approx(want, abs=1e-6) and pen.item() == pytest.approx(2 * want, abs=1e-6)
    assert acc.item() == 1.0  # the true audio has the lowest error in both kept samples
    _, _, acc = Sh.contrastive_penalty(pos, neg, valid, torch.ones(3, dtype=torch.bool), 1.0, 1.0)
    assert acc.item() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="temperature"):
        Sh.infonce(pos, neg, valid, 0.0)


def test_infonce_gradient_lowers_the_true_error_relative_to_the_negatives():
    pos = torch.tensor([1.0, 0.5], requires_grad=True)
    neg = torch.tensor([[1.0, 1.2, 0.9], [0.4, 0.6, 0.5]], requires_grad=True)
    valid = torch.tensor([[True, True, True], [True, True, False]])
    pen, _, _ = Sh.contrastive_penalty(pos, neg, valid, torch.ones(2, dtype=torch.bool), 1.0, 0.1)
    pen.backward()
    assert (pos.grad > 0).all()  # descent lowers the error with the true audio
    assert (neg.grad[valid] < 0).all() and (neg.grad[~valid] == 0).all()  # and raises it with each valid negative
    with torch.no_grad():
        step = 0.01
        gap = lambda p, n: (n - p[:, None])[valid]  # noqa: E731
        assert (gap(pos - step * pos.grad, neg - step * neg.grad) > gap(pos, neg)).all()
    # the hardest negative (lowest error) gets the strongest push: the softmax weights it most
    assert neg.grad[0, 2] < neg.grad[0, 0] < neg.grad[0, 1]


# ---------------------------------------------------------------- proxies


def test_frame_statistics_and_motion():
    frames = torch.zeros(1, 3, 3, 4, 4)
    frames[0, 1] = 1.0  # frame 1 white, others black
    st = Sh.frame_statistics(frames)
    assert st.shape == (1, 3, 5)
    assert st[0, :, 0].tolist() == pytest.approx([0.0, 1.0, 0.0])  # brightness
    assert st[0, :, 4].tolist() == pytest.approx([0.0, 1.0, 1.0])  # motion energy
    x0 = torch.zeros(2, 4, 1, 2, 2)
    x0[0, 2:] = 1.0  # sample 0 moves between frames 1 and 2
    silent = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    keep = torch.ones(2, dtype=torch.bool)
    assert Sh.silence_motion_loss(x0, silent, keep).item() == pytest.approx(1.0 / 6)
    assert Sh.silence_motion_loss(x0, torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0] * 4]), keep).item() == 0.0
    assert Sh.silence_motion_loss(x0, silent, torch.tensor([False, True])).item() == 0.0


# ---------------------------------------------------------------- every knob is live


def _decoder(seed: int = 0) -> torch.nn.Module:
    """A small fixed conv decoder (latents -> RGB in [-1, 1]) standing in for the frame VAE's decoder."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.ConvTranspose2d(C, 3, 4, stride=2, padding=1), torch.nn.Tanh())


def _loss(cfg, model, batch, decoder=None) -> tuple[float, dict]:
    loss, m = diffusion_loss(model, batch, cfg, torch.Generator().manual_seed(7), decoder)
    return loss.item(), {k: float(v) for k, v in m.items()}


BASE = ["diffusion.p_style_drop=0", "diffusion.p_audio_drop=0", "diffusion.p_prev_drop=0"]


@pytest.fixture(scope="module")
def fixed():
    cfg = build_config([], overrides=SMALL + BASE + ["render.resolution=32", "timeline.n_bands=4"])
    torch.manual_seed(0)
    model = wake(Denoiser(cfg, C, H, n_audio_channels(cfg)))
    batch = synthetic_batch(cfg, 6, C, H, torch.Generator().manual_seed(3))
    batch["is_silent"][:, :] = torch.tensor([1.0, 1.0, 1.0, 0.0])  # consecutive silent frames for the motion loss
    return cfg, model, batch


@pytest.mark.parametrize("knob", [
    "diffusion.p_style_drop=1", "diffusion.p_audio_drop=0.5", "diffusion.p_prev_drop=1", "diffusion.prev_noise_aug=0.5",
    "diffusion.audio_shuffle_negatives=hard", "diffusion.audio_shuffle_negatives=timeshift",
    "diffusion.audio_shuffle_loss_space=x0", "diffusion.silence_motion_loss_weight=1.0",
    "diffusion.audio_shuffle_loss_weight=5.0", "diffusion.audio_shuffle_loss_margin=1.0",
    "diffusion.audio_shuffle_loss_prob=0", "diffusion.style_kl_weight=1.0", "diffusion.style_kl_free_bits=1.0",
    "diffusion.min_snr_gamma=0",
    "diffusion.prediction=eps", "diffusion.audio_shuffle_negatives=band_permuted",
    "diffusion.audio_shuffle_negatives=loudness_matched", "diffusion.audio_shuffle_loss_type=infonce",
])
def test_every_knob_changes_the_loss(fixed, knob):
    cfg, model, batch = fixed
    base_loss, base_m = _loss(cfg, model, batch)
    assert base_loss == _loss(cfg, model, batch)[0]  # fixed batch and seed: deterministic
    changed = build_config(base=cfg.model_dump(mode="json"), overrides=[knob])
    loss, m = _loss(changed, model, batch)
    assert loss != pytest.approx(base_loss, rel=1e-6, abs=1e-9)


def test_negative_kinds_and_spaces_change_l_bad(fixed):
    cfg, model, batch = fixed
    seen = set()
    for kind in Sh.NEGATIVE_KINDS:
        for space in ("pred", "x0"):
            c = build_config(base=cfg.model_dump(mode="json"),
                             overrides=[f"diffusion.audio_shuffle_negatives={kind}", f"diffusion.audio_shuffle_loss_space={space}"])
            seen.add(round(_loss(c, model, batch)[1]["L_bad"], 7))
    assert len(seen) == 2 * len(Sh.NEGATIVE_KINDS)


@pytest.mark.parametrize("knob", ["diffusion.audio_contrastive_negatives=1", "diffusion.audio_contrastive_temperature=1.0",
                                  "diffusion.audio_shuffle_negatives=hard"])
def test_infonce_knobs_change_the_loss(fixed, knob):
    cfg, model, batch = fixed
    nce = build_config(base=cfg.model_dump(mode="json"), overrides=["diffusion.audio_shuffle_loss_type=infonce"])
    base_loss, m = _loss(nce, model, batch)
    assert m["pressure"] == pytest.approx(nce.diffusion.audio_shuffle_loss_weight * m["infonce"], rel=1e-6)
    assert m["neg_valid_frac"] == 1.0 and 0 <= m["infonce_acc"] <= 1
    changed = build_config(base=nce.model_dump(mode="json"), overrides=[knob])
    assert _loss(changed, model, batch)[0] != pytest.approx(base_loss, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("loss_type", ["hinge", "infonce"])
def test_a_batch_without_valid_negatives_trains_the_denoiser_only(fixed, loss_type):
    """Copies of one clip (one audio_id): no snippet has a negative, so the pressure term is 0, not a wrong push."""
    cfg, model, batch = fixed
    c = build_config(base=cfg.model_dump(mode="json"), overrides=[f"diffusion.audio_shuffle_loss_type={loss_type}",
                                                                  "diffusion.audio_shuffle_loss_weight=5.0"])
    copies = {k: (v[:1].expand(6, *v.shape[1:]).clone() if isinstance(v, torch.Tensor) else [v[0]] * 6)
              for k, v in batch.items()}
    copies["audio_id"] = torch.full((6,), 7)
    loss, m = _loss(c, model, copies)
    off = build_config(base=c.model_dump(mode="json"), overrides=["diffusion.audio_shuffle_loss_weight=0"])
    assert m["neg_valid_frac"] == 0.0 and m["pressure"] == 0.0 and m["hinge"] == 0.0
    assert loss == pytest.approx(_loss(off, model, copies)[0], rel=1e-6)


def test_frame_proxy_is_live_and_needs_a_decoder(fixed):
    cfg, model, batch = fixed
    dec = _decoder()
    base, _ = _loss(cfg, model, batch, dec)
    c = build_config(base=cfg.model_dump(mode="json"), overrides=["diffusion.audio_shuffle_frame_proxy_weight=10"])
    loss, m = _loss(c, model, batch, dec)
    assert m["frame_proxy"] > 0 and loss == pytest.approx(base + m["frame_proxy"], rel=1e-5)
    with pytest.raises(ValueError, match="decoder"):
        _loss(c, model, batch, None)


def test_audio_dropped_samples_are_left_out_of_the_hinge(fixed):
    cfg, model, batch = fixed
    c = build_config(base=cfg.model_dump(mode="json"), overrides=["diffusion.p_audio_drop=1"])
    loss, m = _loss(c, model, batch)
    assert m["audio_drop_frac"] == 1.0 and m["hinge"] == 0.0 and m["hinge_active_frac"] == 0.0


@pytest.mark.parametrize("kind, loss_type", [(k, t) for k in Sh.NEGATIVE_KINDS for t in ("hinge", "infonce")
                                               if not (k == "timeshift" and t == "infonce")])
def test_the_loss_and_its_negatives_never_read_a_device_value(fixed, kind, loss_type):
    """No host sync in a training step's loss: it runs forward and backward on the meta device, where reading
    any value raises (masks instead of data-dependent branches; the generator's draws are on the CPU)."""
    cfg, model, batch = fixed
    c = build_config(base=cfg.model_dump(mode="json"), overrides=[f"diffusion.audio_shuffle_negatives={kind}",
                                                                  f"diffusion.audio_shuffle_loss_type={loss_type}"])
    meta_model = Denoiser(c, C, H, n_audio_channels(c)).to("meta")
    b = {k: (v.to("meta") if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    b["audio_id"] = torch.arange(6, device="meta")
    loss, metrics = diffusion_loss(meta_model, b, c, torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.device.type == "meta" and metrics["neg_valid_frac"].device.type == "meta"


# ---------------------------------------------------------------- it works


def _train(cfg, steps: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = Denoiser(cfg, C, H, n_audio_channels(cfg))
    g = torch.Generator().manual_seed(seed)
    data = [synthetic_batch(cfg, 16, C, H, g) for _ in range(10)]
    val = synthetic_batch(cfg, 32, C, H, torch.Generator().manual_seed(99))  # unseen clips
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    lg = torch.Generator().manual_seed(seed + 1)
    for step in range(steps):
        loss, _ = diffusion_loss(model, data[step % len(data)], cfg, lg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return val_losses(model, val, cfg, torch.Generator().manual_seed(5))


GAP_RUN = ["diffusion.snippet_frames=2", "diffusion.audio_shuffle_loss_margin=0.3"]


@pytest.fixture(scope="module")
def gap_without_pressure():
    from conftest import TINY_YAML

    tiny = build_config([TINY_YAML])
    with_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(small_cfg(tiny, *GAP_RUN, "diffusion.audio_shuffle_loss_weight=0"), 200)["val_gap"]
    finally:
        torch.set_num_threads(with_threads)


@pytest.mark.parametrize("objective", [
    ["diffusion.audio_shuffle_loss_weight=1.0"],
    ["diffusion.audio_shuffle_loss_weight=0.2", "diffusion.audio_shuffle_loss_type=infonce",
     "diffusion.audio_contrastive_negatives=3", "diffusion.audio_contrastive_temperature=0.1"],
], ids=["hinge", "infonce"])
def test_shuffle_pressure_opens_a_val_gap(tiny_cfg, gap_without_pressure, objective):
    """Few hundred steps on debug-like clips: pressure gives a positive val gap, larger than without."""
    with_p = _train(small_cfg(tiny_cfg, *GAP_RUN, *objective), 200)
    print(f"val gap with pressure {with_p['val_gap']:.4f}, without {gap_without_pressure:.4f}")
    assert with_p["val_gap"] > 0
    assert with_p["val_gap"] > gap_without_pressure + 0.05
