"""Bands -> geometry / colour: how much of the picture's colour and layout a linear map can predict from the
timeline's band energies, pooled over the clips of a variant with clip-wise folds.

Per frame, the video side is :func:`colour_geometry_stats` (mean RGB, a coarse hue histogram, luminance in
3 radial rings); the audio side is ``log10(band + 1e-5)`` of the timeline's ``band_00..`` channels. A ridge
regression (inputs and targets standardised with the training folds' mean and std, penalty
:data:`RIDGE_LAMBDA` on the standardised weights, the closed form ``W = (X'X + lambda I)^-1 X'Y`` of Hoerl &
Kennard 1970) is fitted on the music frames of all clips but one fold's and scored on the held-out clips,
after removing each clip's own means (within-clip variation is what follows the audio); the score is the
variance-weighted out-of-fold R^2, 1 - SS_res / SS_tot summed over frames and target columns. Folds hold
whole clips (:data:`N_FOLDS`, fewer when there are fewer clips), so a clip is never predicted from itself.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from trainer.eval import metrics as M

RIDGE_LAMBDA = 1.0
N_FOLDS = 4
HUE_BINS = 6
SAT_MIN, VAL_MIN = 0.2, 0.1  # a pixel counts in the hue histogram when it has a colour at all
BAND_FLOOR = 1e-5


def hue_saturation_value(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HSV of RGB in [0, 1] (hexcone model, Smith 1978): hue in [0, 1), saturation, value."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(axis=-1), x.min(axis=-1)
    c = mx - mn
    safe = np.where(c > 0, c, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6.0
    h = np.where(c > 0, h, 0.0) % 1.0
    s = np.where(mx > 0, c / np.where(mx > 0, mx, 1.0), 0.0)
    return h, s, mx


def colour_geometry_stats(frames: np.ndarray) -> np.ndarray:
    """Per-frame statistics ``[T, 3 + HUE_BINS + 3]``: mean R, G, B; the fraction of all pixels that are
    coloured (saturation > 0.2, value > 0.1) in each of ``HUE_BINS`` equal hue sectors; mean luma in the
    rings r < 1/3, 1/3 <= r < 2/3, r >= 2/3 of the distance from the centre (1 = half the width)."""
    x = M.to_unit(frames).astype(np.float64)  # (T, H, W, 3)
    t, h, w, _ = x.shape
    mean_rgb = x.mean(axis=(1, 2))
    hue, sat, val = hue_saturation_value(x)
    coloured = (sat > SAT_MIN) & (val > VAL_MIN)
    bins = np.minimum((hue * HUE_BINS).astype(np.int64), HUE_BINS - 1)
    hist = np.stack([(coloured & (bins == k)).mean(axis=(1, 2)) for k in range(HUE_BINS)], axis=1)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy + 0.5) / h - 0.5, (xx + 0.5) / w - 0.5) / 0.5
    ring = np.minimum((r * 3).astype(np.int64), 2)  # (H, W) ring index
    luma = x @ M.LUMA  # (T, H, W)
    rings = np.stack([luma[:, ring == k].mean(axis=1) for k in range(3)], axis=1)
    return np.concatenate([mean_rgb, hist, rings], axis=1)


def band_inputs(bands: np.ndarray) -> np.ndarray:
    """Ridge inputs from linear band amplitudes ``[T, B]``: ``log10(band + 1e-5)``."""
    return np.log10(np.asarray(bands, dtype=np.float64) + BAND_FLOOR)


def _standardise(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    mu, sd = train.mean(axis=0), train.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return tuple((a - mu) / sd for a in (train, *others))


def ridge_fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, lam: float = RIDGE_LAMBDA
                      ) -> np.ndarray:
    """Ridge regression on standardised inputs and targets, predictions in the targets' own units."""
    xs, xt = _standardise(x_train, x_test)
    mu, sd = y_train.mean(axis=0), y_train.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    ys = (y_train - mu) / sd
    w = np.linalg.solve(xs.T @ xs + lam * np.eye(xs.shape[1]), xs.T @ ys)
    return xt @ w * sd + mu


def folds_of(groups: np.ndarray, k: int = N_FOLDS) -> np.ndarray:
    """Fold of each row: whole groups (clips) per fold, the sorted distinct groups dealt round robin into
    ``min(k, n_groups)`` folds."""
    uniq = np.unique(groups)
    fold_of_group = {g: i % min(k, len(uniq)) for i, g in enumerate(uniq)}
    return np.array([fold_of_group[g] for g in groups], dtype=np.int64)


def pooled_r2_statistic(inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> Callable[[np.ndarray], float]:
    """``stat(idx)``: the out-of-fold R^2 over the clips ``idx`` (repeats allowed, as in a bootstrap resample).

    Inputs and targets are centred per clip first (the clip's own palette and layout are its style, not
    something the audio's changes over time could predict; what is scored is how colour and geometry follow
    the bands *within* a clip). The ridge maps are fitted once, with clip-wise folds over all clips; each
    clip then contributes its residual and total sums of squares over frames and target columns (all in [0, 1]
    units), and ``stat(idx) = 1 - sum_idx SS_res / sum_idx SS_tot`` (the variance-weighted R^2: a column that
    hardly varies in a clip, e.g. an unused hue, cannot blow the ratio up), so resampling clips resamples
    held-out clips, not fits. NaN with fewer than 2 clips."""
    n = len(inputs)
    if n < 2:
        return lambda idx: float("nan")
    xs = [x - x.mean(axis=0) for x in inputs]
    ys = [y - y.mean(axis=0) for y in targets]
    x, y = np.concatenate(xs), np.concatenate(ys)
    groups = np.concatenate([np.full(len(a), i) for i, a in enumerate(xs)])
    folds = folds_of(groups)
    pred = np.empty_like(y, dtype=np.float64)
    for f in np.unique(folds):
        test = folds == f
        pred[test] = ridge_fit_predict(x[~test], y[~test], x[test])
    ss_res = np.array([((y[groups == i] - pred[groups == i]) ** 2).sum() for i in range(n)])
    ss_tot = np.array([(y[groups == i] ** 2).sum() for i in range(n)])  # centred: around the clip's own mean

    def stat(idx: np.ndarray) -> float:
        tot = ss_tot[idx].sum()
        return float(1.0 - ss_res[idx].sum() / tot) if tot > 1e-12 else float("nan")
    return stat
