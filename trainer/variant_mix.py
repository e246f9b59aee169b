"""The variant mix: which share of normal, silence and debug clips the loader draws at a training step.

The postmortem's bootstrap curriculum (debug clips first, back to diversity) and the silence / track-dropout
share as the trainer asks for them (``data.audio_debug_mode``, ``audio_debug_mix_prob``,
``audio_debug_mix_schedule_steps``, ``audio_silence_mix_prob``), the same rule as datagen's ``choose_variant``;
and what a shard set holds of each variant (its manifest, else its ``meta.json`` members), so that a mix asking
for a variant the shards lack fails before any training step. The loader (trainer/data.py) draws toward
:func:`target_variant_mix` with its ``reweight_variants`` stage.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from shared import shards as S
from shared.config import DataConfig
from shared.errors import DataError
from shared.shards import VARIANTS, is_url

MIX_KNOBS = ("audio_silence_mix_prob", "audio_debug_mix_prob")  # data fields that ask the trainer for a mix


def reweights_variants(data_cfg: DataConfig) -> bool:
    """Whether the loader reweights clips by variant (else it draws what the shards hold).

    It does when ``audio_debug_mode`` is on, when ``audio_debug_mix_schedule_steps > 0`` (the bootstrap
    curriculum), or when a mix knob was given explicitly: in a YAML file, a flag or an override, which is
    pydantic's ``model_fields_set`` as shared.config.build_config records it (a knob left at its default, or
    one that only came with a ``base`` tree such as a saved run's config, is not explicit).
    """
    return (data_cfg.audio_debug_mode or data_cfg.audio_debug_mix_schedule_steps > 0
            or bool(set(MIX_KNOBS) & data_cfg.model_fields_set))


def target_variant_mix(data_cfg: DataConfig, step: int) -> dict[str, float] | None:
    """The fraction of draws per variant at a training step, or None to draw as stored.

    ``audio_debug_mode`` -> debug only, for the whole run. Otherwise, when :func:`reweights_variants`, the
    debug fraction follows the bootstrap curriculum: it falls linearly from 1 to ``audio_debug_mix_prob``
    over ``audio_debug_mix_schedule_steps`` (postmortem, "curriculum back to diversity"; 0 steps: the final
    value from step 0); silence takes ``audio_silence_mix_prob`` as an absolute share, capped at what debug leaves
    (``min(audio_silence_mix_prob, 1 - debug)``, not a share of the rest); normal clips take the rest. The same
    rule as datagen's ``choose_variant``. A knob not given explicitly counts with its value (its default).
    """
    if data_cfg.audio_debug_mode:
        return {"normal": 0.0, "silence": 0.0, "debug": 1.0}
    if not reweights_variants(data_cfg):
        return None
    final = data_cfg.audio_debug_mix_prob
    n = data_cfg.audio_debug_mix_schedule_steps
    debug = final if n <= 0 else 1.0 + (final - 1.0) * min(1.0, max(0, step) / n)
    silence = min(data_cfg.audio_silence_mix_prob, 1.0 - debug)
    return {"normal": max(0.0, 1.0 - debug - silence), "silence": silence, "debug": debug}


def wanted_variants(data_cfg: DataConfig) -> set[str] | None:
    """The variants the loader draws at some step of the run (None: whatever the shards hold).

    The shares are linear in the step between 0 and the end of the curriculum and constant after it,
    so the two ends decide which are ever above 0.
    """
    ends = [target_variant_mix(data_cfg, step) for step in (0, data_cfg.audio_debug_mix_schedule_steps)]
    if ends[0] is None:
        return None
    return {v for mix in ends for v, p in mix.items() if p > 0}


def _manifest_variant_counts(root: Path) -> dict[str, dict[str, int]]:
    """``{split/shard name: {variant: clips}}`` that a set's manifest.json records (pixel manifests of
    ``datagen run``: ``shards[rel].variants``; latent manifests of ``cache-latents``: ``splits[split][i].variants``).
    Shards recorded without counts are left out."""
    try:
        doc = json.loads((root / S.MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, dict[str, int]] = {}
    for rel, entry in (doc.get("shards") or {}).items() if isinstance(doc.get("shards"), dict) else []:
        if isinstance(entry, dict) and isinstance(entry.get("variants"), dict):
            out[rel] = entry["variants"]
    for split, records in (doc.get("splits") or {}).items():
        for r in records if isinstance(records, list) else []:
            if isinstance(r, dict) and isinstance(r.get("variants"), dict):
                out[f"{split}/{r.get('name')}"] = r["variants"]
    return out


def scan_variant_counts(path: str | os.PathLike) -> dict[str, int]:
    """``{variant: clips}`` of a local shard, from its ``meta.json`` members only (tarfile seeks past the rest).

    Counts what can be read: an unparsable meta.json or a truncated tail is left to the stream's skip log.
    """
    counts = {v: 0 for v in VARIANTS}
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not (info.isfile() and info.name.endswith("." + S.META)):
                    continue
                try:
                    meta = S.decode_json(tar.extractfile(info).read())
                except ValueError:
                    continue
                v = meta.get("variant", "normal") if isinstance(meta, dict) else "normal"
                counts[v] = counts.get(v, 0) + 1
    except (tarfile.TarError, OSError, EOFError):
        pass
    return counts


_SCANNED: dict[tuple[str, int, int], dict[str, int]] = {}


def stored_variant_counts(urls: list[str]) -> dict[str, dict[str, int] | None]:
    """``{url: {variant: clips}}`` for each shard: from the manifest.json of its set (the split dir's parent)
    where it records them, else counted from a local file's ``meta.json`` members, else None (a URL)."""
    manifests: dict[Path, dict[str, dict[str, int]]] = {}
    out: dict[str, dict[str, int] | None] = {}
    for url in urls:
        if is_url(url) or not os.path.isfile(url):
            out[url] = None
            continue
        p = Path(url)
        root = p.parent.parent
        if root not in manifests:
            manifests[root] = _manifest_variant_counts(root) if (root / S.MANIFEST_NAME).is_file() else {}
        recorded = manifests[root].get(f"{p.parent.name}/{p.name}")
        if recorded is None:
            st = os.stat(url)  # scanned once per file version: the trainer rebuilds its loader at every checkpoint
            recorded = _SCANNED.get((url, st.st_size, st.st_mtime_ns))
            if recorded is None:
                recorded = _SCANNED[(url, st.st_size, st.st_mtime_ns)] = scan_variant_counts(url)
        out[url] = dict(recorded)
    return out


def check_variants_present(urls: list[str], data_cfg: DataConfig) -> bool:
    """Refuse, before any training, a shard set that lacks a variant the mix asks for (:func:`wanted_variants`).

    Raises :class:`DataError` naming the variant, the knob that asks for it and the shards. Returns False
    where some shard's counts cannot be known (URLs): the stream then fails the same way when it meets none.
    """
    wanted = wanted_variants(data_cfg)
    if not wanted:
        return True
    counts = stored_variant_counts(urls)
    known = {u: c for u, c in counts.items() if c is not None}
    if len(known) < len(counts):
        return False
    for v in VARIANTS:
        if v in wanted and not any(c.get(v, 0) for c in known.values()):
            why = ("data.audio_debug_mode=true (debug clips only)" if data_cfg.audio_debug_mode else
                   "data.audio_debug_mix_schedule_steps > 0 (the curriculum starts at debug clips only)"
                   if v == "debug" and data_cfg.audio_debug_mix_schedule_steps > 0 else
                   "the variant mix " + mix_text(target_variant_mix(data_cfg, data_cfg.audio_debug_mix_schedule_steps))
                   + " (data.audio_silence_mix_prob / data.audio_debug_mix_prob given explicitly)")
            held = sorted({k for c in known.values() for k, n in c.items() if n})
            names = [f"{Path(u).parent.name}/{Path(u).name}" for u in list(known)[:3]]
            more = f" and {len(known) - 3} more" if len(known) > 3 else ""
            raise DataError(f"{why} wants '{v}' clips, but none of the {len(known)} shards ({', '.join(names)}{more}) "
                            f"holds one (they hold: {', '.join(held) or 'nothing'}); generate data with that variant "
                            f"or change the mix knobs")
    return True


def mix_text(mix: dict[str, float]) -> str:
    return ", ".join(f"{v} {p:.3g}" for v, p in mix.items())


def mix_or_fail(data_cfg: DataConfig, step: int) -> dict[str, float]:
    mix = target_variant_mix(data_cfg, step)
    if mix is None:
        raise ValueError("reweighting asked for without a mix (reweights_variants is false)")
    return mix
