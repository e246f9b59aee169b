"""Seed derivation: every sample is a pure function of (config, base seed, split, shard, sample)."""

from __future__ import annotations

import numpy as np

# The salt of each split name in a seed path. Not the list of a shard set's split folders (shared.shards.SPLITS):
# preview and eval have salts but no folder. Fixed numbers: changing one changes every seed of that split.
SPLIT_SALTS = {"train": 0, "val": 1, "preview": 2, "eval": 3, "val_siblings": 4}


def derive_seed(base: int, *path: int | str) -> int:
    """A 63-bit seed from a base seed and a path of ints/split names (stable across runs and machines)."""
    words = [int(base)]
    for p in path:
        words.append(SPLIT_SALTS[p] if isinstance(p, str) else int(p))
    ss = np.random.SeedSequence(words)
    hi, lo = (int(x) for x in ss.generate_state(2, dtype=np.uint32))
    return ((hi << 32) | lo) & ((1 << 63) - 1)


def sample_seed(base: int, split: str, shard: int, sample: int) -> int:
    """Seed of one clip. Train and val use different split ids, so their seeds are disjoint."""
    return derive_seed(base, split, shard, sample)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)
