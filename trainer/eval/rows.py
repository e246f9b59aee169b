"""Stage 4 of the evaluation: assemble the report's rows, per variant, each with n and a bootstrap CI.

An entry is ``{"mean": float | None, "ci": [lo, hi] | None, "n": int}`` (None where undefined: JSON null,
never NaN). A row is ``{"generated": entry, "floor": entry, "ceiling": entry, "note": str | None}``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from shared.config import Config
from trainer.eval import metrics as M
from trainer.eval import stats
from trainer.eval.registry import REGISTRY, ClipMetric, Pairs, PooledMetric, metric_statistic

NO_CLIPS = "no clips"
UNDEFINED_NOTES = {
    "silence_settle_ratio": "no clip with a labelled silence segment",
    "dropout_return": "no clip with a track-dropout segment that has 0.5 s of music on both sides of its end",
}


def entry(stat: Callable[[np.ndarray], float] | None, n: int, cfg: Config, seed: int) -> dict[str, Any]:
    """mean, 95% percentile-bootstrap CI over clips (``eval.bootstrap`` resamples) and n."""
    if stat is None or n == 0:
        return {"mean": None, "ci": None, "n": int(n)}
    point, ci = stats.bootstrap_ci(stat, n, cfg.eval.bootstrap, seed)
    finite = point is not None and math.isfinite(point)
    return {"mean": float(point) if finite else None, "ci": list(ci) if (ci and finite) else None,
            "n": int(n) if finite else 0}


def fixed(value: float | None, n: int) -> dict[str, Any]:
    """An entry without sampling error (chance levels) or without a bootstrap (one pooled loss)."""
    ok = value is not None and math.isfinite(value)
    return {"mean": float(value) if ok else None, "ci": None, "n": int(n)}


def empty_row(note: str) -> dict[str, Any]:
    e = {"mean": None, "ci": None, "n": 0}
    return {"generated": dict(e), "floor": dict(e), "ceiling": dict(e), "note": note}


def metric_row(metric: ClipMetric | PooledMetric, kinds: dict[str, Pairs], cfg: Config, seed: int) -> dict[str, Any]:
    """One registry metric for one variant: generated, floor and ceiling pairs scored the same way."""
    n_clips = len(kinds["generated"])
    if n_clips == 0:
        return empty_row(NO_CLIPS)
    if isinstance(metric, PooledMetric) and n_clips < 2:
        return empty_row("needs >= 2 clips with distinct audio")
    row: dict[str, Any] = {"note": None}
    for kind in ("generated", "floor", "ceiling"):
        pairs = kinds[kind]
        if kind == "floor" and isinstance(metric, PooledMetric) and metric.chance is not None:
            row[kind] = fixed(metric.chance(n_clips), n_clips)
            row["note"] = "floor = chance"
            continue
        if not pairs or (isinstance(metric, PooledMetric) and len(pairs) < 2):
            row[kind] = {"mean": None, "ci": None, "n": 0}
            continue
        stat, n = metric_statistic(metric, pairs, cfg)
        row[kind] = entry(stat, n, cfg, seed)
    if row["generated"]["mean"] is None and row["ceiling"]["mean"] is None:
        row["note"] = UNDEFINED_NOTES.get(metric.name, "undefined on every clip")
    return row


def registry_rows(kinds: dict[str, Pairs], cfg: Config, seed: int) -> dict[str, dict[str, Any]]:
    return {m.name: metric_row(m, kinds, cfg, seed) for m in REGISTRY}


def style_rows(own_summaries: np.ndarray, gt_summaries: np.ndarray, sibling_summaries: list[np.ndarray] | None,
               cfg: Config, seed: int) -> dict[str, dict[str, Any]]:
    """Style diversity like for like. ``own_summaries`` (K, N, S): the generated clips' frame statistics for K
    style/seed samples at fixed audio; ``gt_summaries`` (N, S); ``sibling_summaries``: per sibling group
    (G_i, S) ground-truth clips sharing audio (None: the data has no siblings split; [] none in this variant).

    * ``style_diversity``: generated = mean pairwise distance over the K samples of one clip's audio;
      ceiling = the ground truth's across different clips (per clip: mean distance to the other clips).
    * ``style_diversity_siblings``: generated as above; ceiling = the ground truth's at fixed audio, across
      the visual plans of a sibling group (per group: mean pairwise distance)."""
    n = gt_summaries.shape[0]
    if n == 0:
        return {"style_diversity": empty_row(NO_CLIPS), "style_diversity_siblings": empty_row(NO_CLIPS)}
    gen = np.array([M.mean_pairwise_distance(own_summaries[:, i]) for i in range(n)])
    d = np.linalg.norm(gt_summaries[:, None] - gt_summaries[None], axis=-1)
    gt = np.array([d[i, np.arange(n) != i].mean() for i in range(n)]) if n >= 2 else np.full(n, np.nan)
    none = {"mean": None, "ci": None, "n": 0}
    gen_e = entry(stats.nanmean_of(gen), n, cfg, seed)
    rows = {"style_diversity": {"generated": gen_e, "floor": dict(none),
                                "ceiling": entry(stats.nanmean_of(gt), int(np.isfinite(gt).sum()), cfg, seed),
                                "note": "generated: fixed audio across style seeds; ground truth: across different "
                                        "clips" + ("" if n >= 2 else " (needs >= 2 clips)")}}
    if sibling_summaries is None or not sibling_summaries:
        rows["style_diversity_siblings"] = {"generated": dict(gen_e), "floor": dict(none), "ceiling": dict(none),
                                            "note": "no siblings" if sibling_summaries is None
                                            else "no siblings in this variant"}
    else:
        sib = np.array([M.mean_pairwise_distance(g) for g in sibling_summaries])
        rows["style_diversity_siblings"] = {
            "generated": dict(gen_e), "floor": dict(none),
            "ceiling": entry(stats.nanmean_of(sib), len(sib), cfg, seed),
            "note": "both at fixed audio: generated across style seeds, ground truth across the visual plans of "
                    f"{len(sib)} sibling group(s) (val_siblings/)"}
    return rows


def sensitivity_row(m_own0: np.ndarray, m_floor0: np.ndarray, m_own1: np.ndarray, cfg: Config, seed: int
                    ) -> dict[str, Any]:
    """Output sensitivity S on motion curves (N, T) of the clips that have a floor partner."""
    n = len(m_own0)
    if n == 0:
        return empty_row("no clip with a different-audio floor partner")
    stat = lambda idx: M.output_sensitivity(m_own0[idx], m_floor0[idx], m_own1[idx])  # noqa: E731
    none = {"mean": None, "ci": None, "n": 0}
    return {"generated": entry(stat, n, cfg, seed), "floor": dict(none), "ceiling": dict(none),
            "note": "ratio of means over clips; the ground truth has no generator"}


def val_loss_row(losses: dict[str, float] | None, n_clips: int) -> dict[str, Any]:
    if n_clips == 0:
        return empty_row(NO_CLIPS)
    if losses is None:
        return empty_row("needs >= 2 snippets")
    return {"generated": fixed(losses["val_L_good"], n_clips), "floor": fixed(losses["val_L_bad"], n_clips),
            "ceiling": {"mean": None, "ci": None, "n": 0},
            "note": f"one value over {losses['snippets']} snippets (no CI); floor = the loss with wrong audio"}


EXTRA_DEFINITIONS = {
    "style_diversity": "mean pairwise distance of clip frame statistics (mean/std RGB, motion, 4x4 luma layout): "
                       "generated at fixed audio across style seeds, ground truth across different clips",
    "style_diversity_siblings": "the same with the ground truth at fixed audio: clips of val_siblings/ sharing "
                                "audio with different visual plans",
    "output_sensitivity_motion": "S = E||f(G(a,z)) - f(G(a',z))|| / E||f(G(a,z)) - f(G(a,z'))||, f = motion curve, "
                                 "a' the floor partner's audio (0 = audio ignored)",
    "val_loss": "val diffusion loss (EMA weights) with each clip's own audio (generated) and with wrong audio (floor)",
}
