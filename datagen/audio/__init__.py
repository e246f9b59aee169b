"""Procedural audio (ARCHITECTURE.md): multi-track music rendered as stems, silence/dropout and debug variants.

Public API (docs/INTERFACES.md): ``TRACKS``, ``choose_variant(dcfg, seed)``,
``synthesize_clip(cfg, seed, variant) -> AudioClip``.
"""

from datagen.audio.music import TRACKS
from datagen.audio.synth import VARIANTS, AudioClip, choose_variant, synthesize_clip

__all__ = ["TRACKS", "VARIANTS", "AudioClip", "choose_variant", "synthesize_clip"]
