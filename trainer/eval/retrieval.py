"""Audio retrieval: can the audio a video was made from be picked out of the other clips' audio?

For generated video i and candidate audio j (the variant's clips, distinct audio), the score is
``s_ij = Spearman(motion_i, rms_j)`` over audio j's music frames (the loudness -> motion relation of
:mod:`trainer.eval.loudness`). The rank of the true audio in row i is ``1 + #{j: s_ij > s_ii} +
#{j != i: s_ij = s_ii} / 2`` (ties averaged), and top-1 is ``1 / (1 + #ties)`` when no candidate beats the
true audio, else 0 (ties split the credit), so a video that carries no audio information scores chance,
top-1 ``1/N`` and mean rank ``(N + 1) / 2``, in expectation, and exactly when every row is the same. This
is the retrieval protocol of audio-visual correspondence work (e.g. Arandjelovic & Zisserman, "Objects that
Sound", ECCV 2018: rank of the true pair among candidates), with our rank statistic as the similarity.
"""

from __future__ import annotations

import numpy as np

from trainer.eval.loudness import spearman_on


def score_matrix(motions: list[np.ndarray], rms: list[np.ndarray], music: list[np.ndarray]) -> np.ndarray:
    """``s[i, j]``: Spearman of video i's motion with audio j's RMS on audio j's music frames (NaN -> 0), on
    their first min(T_i, T_j) frames (a folder's files differ in length; the val clips do not)."""
    n = len(motions)
    s = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            t = min(len(motions[i]), len(rms[j]))
            v = spearman_on(rms[j][:t], motions[i][:t], music[j][:t])
            s[i, j] = v if np.isfinite(v) else 0.0
    return s


def true_audio_ranks(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row i: (rank of s[i, i] among s[i, :], ties averaged; top-1 credit)."""
    n = len(s)
    ranks, top1 = np.zeros(n), np.zeros(n)
    for i in range(n):
        higher = int(np.sum(s[i] > s[i, i]))
        ties = int(np.sum(s[i] == s[i, i])) - 1
        ranks[i] = 1 + higher + ties / 2
        top1[i] = 1.0 / (1 + ties) if higher == 0 else 0.0
    return ranks, top1


def chance(n: int) -> tuple[float, float]:
    """(top-1 accuracy, mean rank) of a video that carries no audio information: (1/N, (N+1)/2)."""
    return 1.0 / n, (n + 1) / 2.0
