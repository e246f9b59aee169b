"""trainer/eval/memorisation.py: nearest-neighbour distances against scipy, the ratio on a model that replays its
training clips and on one that does not, the bank read from real latent shards, and the verdict's goal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from shared import shards as S
from shared.config import build_config
from shared.timeline import channel_names
from trainer.eval.goals import STUDY, VERDICT, goals_in
from trainer.eval.memorisation import (MIN_RATIO, NOT_MEASURED, memorisation_row, nearest_distances, train_latents_of,
                                       training_bank)
from trainer.eval.verdict import judge

CFG = build_config(overrides=["eval.bootstrap=200"])
GOAL = next(g for g in goals_in(VERDICT) if g.metric == "memorisation_ratio")


def test_nearest_distances_match_scipy():
    rng = np.random.default_rng(0)
    q, b = rng.normal(size=(37, 24)), rng.normal(size=(101, 24))
    np.testing.assert_allclose(nearest_distances(q, b, chunk=8), cdist(q, b).min(axis=1), rtol=1e-9)
    assert nearest_distances(b[:5], b).max() < 1e-6  # a bank frame is at distance 0 from itself
    with pytest.raises(ValueError, match="empty"):
        nearest_distances(q, b[:0])


def _clips(rng, n, t=6, shape=(4, 4, 4)):
    return [rng.normal(size=(t, *shape)).astype(np.float32) for _ in range(n)]


def test_a_model_that_replays_training_clips_is_flagged_and_one_that_does_not_is_not():
    rng = np.random.default_rng(1)
    train = _clips(rng, 40)
    bank = np.concatenate([c.reshape(len(c), -1) for c in train])
    truth = _clips(rng, 12)  # unseen real clips
    replay = [train[i] + 0.01 * rng.normal(size=train[i].shape).astype(np.float32) for i in range(12)]
    fresh = _clips(rng, 12)
    bad = memorisation_row(replay, truth, bank, CFG, 0)
    good = memorisation_row(fresh, truth, bank, CFG, 0)
    assert bad["generated"]["mean"] < 0.05 and bad["generated"]["ci"][1] < MIN_RATIO
    assert 0.8 < good["generated"]["mean"] < 1.2 and good["ceiling"]["mean"] == 1.0
    assert judge(GOAL, bad)["status"] == "not met" and judge(GOAL, good)["status"] == "met"
    assert "ground truth" in good["note"] and GOAL in goals_in(STUDY)
    none = memorisation_row(fresh, truth, None, CFG, 0)
    assert none["note"] == NOT_MEASURED and judge(GOAL, none)["status"] == "n/a"


def test_the_bank_is_every_other_frame_of_the_training_shards_times_the_latent_scale(tmp_path):
    cfg = build_config()
    names = channel_names(cfg.timeline)
    rng = np.random.default_rng(2)
    lats = [rng.normal(size=(5, 4, 2, 2)).astype(np.float16) for _ in range(3)]
    (tmp_path / "train").mkdir()
    with S.ShardWriter(tmp_path / "train" / S.shard_name(0)) as w:
        for i, lat in enumerate(lats):
            key = S.sample_key(0, i)
            meta = {"variant": "normal", "fps": 8.0, "n_frames": 5, "timeline_channels": names, "key": key}
            w.add_sample(key, S.latent_members(lat, np.ones_like(lat), np.zeros((5, len(names)), np.float32), meta))
    bank = training_bank(tmp_path / "train", latent_scale=2.0)
    want = np.concatenate([lat[::2].astype(np.float32).reshape(3, -1) * 2.0 for lat in lats])
    np.testing.assert_array_equal(bank, want)
    # the run's own record: state.json's "latents" (gone: None)
    step = tmp_path / "step"
    step.mkdir()
    (step / "state.json").write_text('{"state": {"latents": "%s"}}' % tmp_path)
    assert train_latents_of(step) == tmp_path / "train"
    (step / "state.json").write_text('{"state": {"latents": "%s"}}' % (tmp_path / "gone"))
    assert train_latents_of(step) is None


def test_a_run_records_what_its_training_shards_were_made_from(tmp_path):
    """trainer diffusion's state records the pixel set's content id and its data/timeline/render sections (datagen
    run's flags included), so that the eval's --train-latents regenerate remakes those shards exactly."""
    from trainer.diffusion.train import pixel_record

    pixels = tmp_path / "pixels"
    pixels.mkdir()
    (pixels / "manifest.json").write_text('{"config": {"data": {"train_shards": 4}, "timeline": {"n_bands": 8}, '
                                          '"render": {"fps": 12.0}, "vae": {"steps": 1}}}')
    rec = pixel_record({"pixel_content_id": "abc", "source": str(pixels)}, tmp_path / "latents")
    assert rec == {"pixel_content_id": "abc", "pixel_config": {"data": {"train_shards": 4}, "timeline": {"n_bands": 8},
                                                               "render": {"fps": 12.0}}}
    assert pixel_record({"pixel_content_id": "abc", "source": str(tmp_path / "gone")}, tmp_path) == {
        "pixel_content_id": "abc"}
