"""Confidence intervals: the percentile bootstrap over clips (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13).

A metric of a variant is a statistic of its clips, ``stat(idx)`` for an index array ``idx`` into them (the
mean of per-clip values, or a pooled fit such as the ridge R^2). The point estimate is ``stat(all clips)``;
the 95% interval is the 2.5th and 97.5th percentiles of ``stat`` over ``n_boot`` resamples of the clips
with replacement. Resamples where the statistic is undefined (NaN) are left out.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def nanmean_of(values: np.ndarray) -> Callable[[np.ndarray], float]:
    """``stat(idx)`` = mean of the finite ``values[idx]`` (NaN when none is finite)."""
    v = np.asarray(values, dtype=np.float64)

    def stat(idx: np.ndarray) -> float:
        x = v[idx]
        x = x[np.isfinite(x)]
        return float(x.mean()) if x.size else float("nan")
    return stat


def defined_mean(values) -> tuple[Callable[[np.ndarray], float], int]:
    """(``stat(idx)`` = the mean over the finite values (None and NaN: undefined, left out), n = how many are
    finite): the bootstrap resamples the clips where a value is defined."""
    v = np.asarray([np.nan if x is None else x for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    return nanmean_of(v), int(v.size)


def bootstrap_ci(stat: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int,
                 level: float = 0.95) -> tuple[float, tuple[float, float] | None]:
    """(point estimate, (lo, hi) percentile interval or None when fewer than 2 clips or no finite resample)."""
    point = stat(np.arange(n))
    if n < 2 or not np.isfinite(point):
        return point, None
    rng = np.random.default_rng(seed)
    draws = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)])
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return point, None
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(draws, [a, 1.0 - a])
    return point, (float(lo), float(hi))
