"""Does the model replay its training clips? The memorisation check (issue 24).

Video diffusion models can memorise: MM-Diffusion's released model was found replaying training clips. The check
compares, in the diffusion latent space (the VAE's posterior means times the run's latent scale), how close each
*generated* val clip sits to the training set with how close the *ground truth* of the same val clip sits to it:

* a frame's distance to the training set is its Euclidean distance to the nearest training frame
  (:func:`nearest_distances`; the bank holds every ``FRAME_STRIDE``-th frame of every training clip);
* a clip's distance is the mean over its frames (:func:`clip_distance`);
* per val clip, ``ratio = d(generated) / d(ground truth)``; the row ``memorisation_ratio`` is the mean ratio over
  the variant's clips with its bootstrap CI. A model that generates new clips sits about as far from the training
  set as real unseen clips do (ratio near 1, or above: its pictures are blurrier); one that replays training
  clips sits much closer. The goal table (trainer/eval/goals.py) flags a mean ratio below :data:`MIN_RATIO`.

The training latents are the run's own (its ``state.json`` records the latent shards it trained on), or a
``--train-latents DIR`` given to ``trainer eval``; the shards are a pure function of the config and seed, so
``datagen run`` and ``trainer cache-latents`` with the run's config and VAE remake them where they are gone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shared import shards as S
from shared.config import Config
from trainer.eval import stats

MIN_RATIO = 0.5     # generated clips closer to the training set than half the ground truth's distance: flagged
FRAME_STRIDE = 2    # every 2nd training frame goes into the bank (neighbouring frames are near-duplicates)
NOT_MEASURED = "not measured: no training latents (the run records none, e.g. a shipped model; pass --train-latents DIR)"
DEFINITION = ("mean over clips of d(generated) / d(ground truth), d = a clip's mean latent distance from each frame to "
              f"its nearest training frame; below {MIN_RATIO:g}: the model replays training clips")


def nearest_distances(queries: np.ndarray, bank: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """(Q,) Euclidean distance from each row of ``queries`` (Q, D) to its nearest row of ``bank`` (M, D).

    ``|q - b|² = |q|² + |b|² - 2 q·b`` in float64 per chunk of queries (exact enough for distances well above the
    float32 epsilon of the norms; clipped at 0 before the root)."""
    if len(bank) == 0:
        raise ValueError("the training bank is empty")
    q = np.asarray(queries, np.float64).reshape(len(queries), -1)
    b = np.asarray(bank, np.float64).reshape(len(bank), -1)
    bb = (b * b).sum(axis=1)
    out = np.empty(len(q))
    for i in range(0, len(q), chunk):
        x = q[i:i + chunk]
        d2 = (x * x).sum(axis=1)[:, None] + bb[None, :] - 2.0 * x @ b.T
        out[i:i + chunk] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def clip_distance(latents: np.ndarray, bank: np.ndarray) -> float:
    """A clip's latents (T, C, h, w) -> the mean over its frames of the distance to the nearest training frame."""
    return float(nearest_distances(np.asarray(latents).reshape(len(latents), -1), bank).mean())


def train_latents_of(step_dir: str | Path) -> Path | None:
    """The training split of the latent shards a run trained on (its state.json's ``latents``), if still there."""
    try:
        state = json.loads((Path(step_dir) / "state.json").read_text()).get("state", {})
    except (OSError, ValueError):
        return None
    root = state.get("latents")
    return Path(root) / "train" if root and (Path(root) / "train").is_dir() else None


def training_bank(train_dir: str | Path, latent_scale: float, stride: int = FRAME_STRIDE) -> np.ndarray:
    """Every ``stride``-th frame of every training clip in the latent shards of ``train_dir``: (M, C*h*w) float32,
    in the diffusion space (stored posterior means times ``latent_scale``)."""
    rows = []
    for tar in sorted(Path(train_dir).glob("shard-*.tar")):
        for _, members in S.iter_tar_samples(str(tar)):
            if S.LATENTS in members:
                lat = S.decode_npy(members[S.LATENTS])[::stride].astype(np.float32) * latent_scale
                rows.append(lat.reshape(len(lat), -1))
    if not rows:
        raise ValueError(f"no latent samples in {train_dir}")
    return np.concatenate(rows)


def memorisation_row(generated: list[np.ndarray], ground_truth: list[np.ndarray], bank: np.ndarray | None,
                     cfg: Config, seed: int) -> dict[str, Any]:
    """The ``memorisation_ratio`` row of a variant: generated = the mean ratio with its CI; ceiling = the ground truth
    against itself (1 by definition); the note gives both mean distances. No bank: a row saying why not."""
    if bank is None or not generated:
        e = {"mean": None, "ci": None, "n": 0}
        return {"generated": dict(e), "floor": dict(e), "ceiling": dict(e),
                "note": NOT_MEASURED if bank is None else "no clips"}
    d_gen = np.array([clip_distance(g, bank) for g in generated])
    d_gt = np.array([clip_distance(t, bank) for t in ground_truth])
    ratio = d_gen / np.maximum(d_gt, 1e-12)
    stat, n = stats.defined_mean(ratio.tolist())
    point, ci = stats.bootstrap_ci(stat, n, cfg.eval.bootstrap, seed)
    return {"generated": {"mean": float(point), "ci": list(ci) if ci else None, "n": n},
            "floor": {"mean": None, "ci": None, "n": 0}, "ceiling": {"mean": 1.0, "ci": None, "n": n},
            "note": (f"mean latent distance to the nearest training frame: generated {d_gen.mean():.4g}, ground truth "
                     f"{d_gt.mean():.4g} ({len(bank)} training frames)")}
