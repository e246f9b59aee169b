"""Loudness -> motion / brightness / size: Spearman rank correlations of the audio RMS with per-frame video
statistics, on music frames only.

The postmortem's problem statement asks for "louder -> stronger motion, brightness, size"; a monotone
relation is what it asks for, so a rank correlation (Spearman) is the measure, as in our earlier
``rms_motion_spearman``. Statistics (all in [0, 1]):

* motion energy: mean absolute frame difference (:func:`trainer.eval.metrics.motion_energy`);
* brightness: mean Rec. 601 luma (:func:`trainer.eval.metrics.brightness`);
* bright-area fraction: share of pixels whose luma exceeds :data:`BRIGHT_LUMA` (how much of the picture is
  lit, a size proxy for the visualizers' shapes on a dark ground).
"""

from __future__ import annotations

import numpy as np

from trainer.eval import metrics as M

BRIGHT_LUMA = 0.5


def bright_area_fraction(frames: np.ndarray, threshold: float = BRIGHT_LUMA) -> np.ndarray:
    """Per-frame fraction ``[T]`` of pixels with Rec. 601 luma above ``threshold``."""
    x = M.to_unit(frames)
    luma = x.astype(np.float64) @ M.LUMA  # (T, H, W)
    return (luma > threshold).mean(axis=(1, 2))


def spearman_on(audio: np.ndarray, video: np.ndarray, music: np.ndarray) -> float:
    """Spearman correlation of two per-frame curves over the music frames (frame 0 dropped: its motion is a
    copy of frame 1's). NaN when fewer than 3 music frames remain."""
    keep = np.asarray(music, dtype=bool).copy()
    keep[:1] = False
    if keep.sum() < 3:
        return float("nan")
    return M.spearman(np.asarray(audio)[keep], np.asarray(video)[keep])
