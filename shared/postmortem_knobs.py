"""The knobs the method postmortem names, kept in the repository so a plain clone can check them.

The postmortem (the audio-responsiveness write-up this project's method comes from; it lives beside the
repository as ``../shared/seeds/000_*.txt`` and is not part of it) names these config keys, and the
project keeps their names exactly. Each entry says, in our words, which part of the postmortem it comes
from and what it does here. ``tests/test_config.py`` checks that each exists in the schema and changes
behaviour, and, where the postmortem text is present, that this list and the text name the same knobs.
"""

from __future__ import annotations

POSTMORTEM_KNOBS: dict[str, str] = {
    "data.audio_silence_mix_prob":
        "What finally worked, 1: clips with a fully silent segment and segments where some tracks drop out, "
        "so a person can see whether the video settles and comes back. The fraction of such clips.",
    "diffusion.audio_shuffle_loss_weight":
        "What finally worked, 2 (the key principle): a hinge that makes the loss with shuffled audio exceed "
        "the loss with the true audio by a margin. Its weight; next step 1 says raise it until artifacts show.",
    "diffusion.audio_shuffle_loss_margin":
        "What finally worked, 2: the margin the shuffled-audio loss must exceed the true-audio loss by.",
    "diffusion.audio_shuffle_loss_prob":
        "What finally worked, 2: how often a training step applies the shuffle hinge.",
    "diffusion.audio_feature_normalize_per_clip":
        "What finally worked, 3: z-scoring the audio features per clip hides absolute loudness, which the "
        "silence test needs; this switch turns that normalisation off (our default).",
    "data.audio_debug_mode":
        "Principle D and next step 3: a bootstrap mode that trains on a small deterministic set of strongly "
        "reactive debug clips, to prove audio dependence can be learnt at all.",
    "data.audio_debug_mix_prob":
        "Next step 3: the share of debug clips mixed back into diverse data while the shuffle pressure stays on.",
    "diffusion.p_audio_drop":
        "Next step 4: dropping the audio conditioning during training so audio classifier-free guidance works.",
    "inference.audio_guidance_scale":
        "Next step 4: the audio classifier-free guidance scale at sampling time; raise it until artifacts show.",
}
