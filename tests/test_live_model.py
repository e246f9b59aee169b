"""The live model's shape fields: the audio window's look-ahead and the channels the encoder takes."""

from __future__ import annotations

import pytest
import torch

from model_helpers import wake
from shared.config import build_config
from shared.timeline import channel_names
from trainer.conditioning import ConditioningSpec, channel_selection
from trainer.diffusion.model import Denoiser
from trainer.live.features import causal_channel_names
from trainer.live.generator import lookahead_frames


def _cfg(*overrides):
    return build_config(overrides=["diffusion.width=16", "diffusion.depth=1", "diffusion.heads=2",
                                   "diffusion.snippet_frames=2", "diffusion.audio_context_frames=2", *overrides])


def test_default_window_is_symmetric_and_future_zero_is_causal():
    spec = ConditioningSpec.from_config(_cfg())
    assert (spec.window, spec.future, spec.causal) == (5, 2, False)
    spec = ConditioningSpec.from_config(_cfg("diffusion.audio_context_future=0"))
    assert (spec.window, spec.future, spec.causal) == (3, 0, True)
    assert lookahead_frames(1, 0) == 0 and lookahead_frames(4, 2) == 5


def test_a_causal_denoiser_takes_past_only_windows():
    cfg = _cfg("diffusion.audio_context_future=0", "diffusion.snippet_frames=1")
    net = wake(Denoiser(cfg, latent_channels=4, latent_size=4, n_audio_channels=3)).eval()
    x, t = torch.randn(1, 1, 4, 4, 4), torch.full((1,), 0.5)
    cond = net.make_cond(torch.randn(1, 1, 3, 3), torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.long))
    assert net(x, t, cond).shape == x.shape
    with pytest.raises(ValueError, match=r"cond\['audio'\] must be \(1, 1, 3, 3\)"):
        net(x, t, net.make_cond(torch.randn(1, 1, 5, 3), torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.long)))


def test_channel_selection_by_name():
    tcfg = _cfg().timeline
    names = channel_names(tcfg)
    assert causal_channel_names(tcfg) == names
    assert channel_selection(names, None) is None
    assert channel_selection(names, ["onset", "rms", "is_silent"]) == [names.index("onset"), 1, names.index("is_silent")]
    with pytest.raises(ValueError, match=r"\['tempo'\] not in"):
        channel_selection(names, ["rms", "tempo"])
    with pytest.raises(ValueError, match="named twice"):
        channel_selection(names, ["rms", "rms"])
