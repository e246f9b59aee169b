"""`datagen inspect DIR`: verify every shard against the manifest and print totals by split and variant."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

NAME = "inspect"
HELP = ("Verify the shards in DIR against DIR/manifest.json (count, sha256, every sample decodable, "
        "meta.json valid); print totals by split and variant; exit 1 listing every bad shard and sample "
        "(--repair: regenerate them first).")

_SEGMENT_KEYS = ("kind", "tracks", "start_s", "end_s", "start_frame", "end_frame")
_META_KEYS = ("schema_version", "seed", "shard", "sample", "variant", "segments", "fps", "resolution",
              "timeline_channels", "n_frames")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="A `datagen run --out` directory (holds manifest.json).")
    parser.add_argument("--json", action="store_true", help="Print the totals as JSON.")
    parser.add_argument("--repair", action="store_true",
                        help="Hash every shard in full and regenerate the ones that differ from the manifest or are "
                             "missing (`datagen run` with the manifest's config; takes DIR's lock), then inspect again.")
    parser.add_argument("--executor", choices=("local", "processes", "ray"), default="local",
                        help="Executor that --repair regenerates shards with.")


def meta_problems(meta: Any, key: str, n_frames: int, timeline_shape: tuple[int, ...],
                  frame_shape: tuple[int, ...] | None) -> list[str]:
    """What is wrong with one sample's meta.json against its other members (empty list: valid)."""
    from datagen.shard_job import VARIANTS
    from shared.shards import sample_key

    if not isinstance(meta, dict):
        return [f"meta.json is a {type(meta).__name__}, not an object"]
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        return [f"meta.json lacks {', '.join(missing)}"]
    out = []
    if meta["variant"] not in VARIANTS:
        out.append(f"variant {meta['variant']!r} not in {VARIANTS}")
    if sample_key(meta["shard"], meta["sample"]) != key:
        out.append(f"meta shard/sample ({meta['shard']}, {meta['sample']}) do not match key {key}")
    if meta["n_frames"] != n_frames:
        out.append(f"meta n_frames {meta['n_frames']} != {n_frames} frame members")
    if timeline_shape != (n_frames, len(meta["timeline_channels"])):
        out.append(f"timeline shape {timeline_shape} != ({n_frames} frames, {len(meta['timeline_channels'])} channels)")
    if frame_shape is not None and frame_shape != (meta["resolution"], meta["resolution"], 3):
        out.append(f"frame shape {frame_shape} != resolution {meta['resolution']}")
    segs = meta["segments"]
    if not isinstance(segs, list) or any(not isinstance(s, dict) or any(k not in s for k in _SEGMENT_KEYS) for s in segs):
        out.append(f"segments must be a list of {{{', '.join(_SEGMENT_KEYS)}}}")
    elif meta["variant"] == "silence" and not segs:
        out.append("silence-variant clip without labelled segments")
    return out


def verify_shard(path: Path, entry: dict[str, Any]) -> tuple[list[str], Counter]:
    """Check one shard file; returns (problems, variant counts). Problems name the sample where they can."""
    from shared.shards import file_sha256
    from shared import shards as S

    rel = entry.get("path", path.name)
    if not path.exists():
        return [f"{rel}: listed in the manifest but missing"], Counter()
    problems: list[str] = []
    size = path.stat().st_size
    if size != entry.get("bytes"):
        problems.append(f"{rel}: {size} bytes, manifest says {entry.get('bytes')}")
    sha = file_sha256(path)
    if sha != entry.get("sha256"):
        problems.append(f"{rel}: sha256 {sha[:12]}… differs from the manifest's {str(entry.get('sha256'))[:12]}…")
    variants: Counter = Counter()
    n = 0
    key = "(before the first sample)"
    try:
        for key, members in S.iter_tar_samples(path):
            n += 1
            try:
                d = S.decode_pixel_sample(members)
            except Exception as e:  # noqa: BLE001 - any decode failure is a corrupt sample
                problems.append(f"{rel}: sample {key}: undecodable ({type(e).__name__}: {e})")
                continue
            frame_shape = tuple(d["frames"].shape[1:]) if len(d["frames"]) else None
            for p in meta_problems(d["meta"], key, len(d["frames"]), tuple(d["timeline"].shape), frame_shape):
                problems.append(f"{rel}: sample {key}: {p}")
            if isinstance(d["meta"], dict) and "variant" in d["meta"]:
                variants[d["meta"]["variant"]] += 1
    except Exception as e:  # noqa: BLE001 - a broken tar stream
        problems.append(f"{rel}: unreadable tar after sample {key} ({type(e).__name__}: {e})")
    if n != entry.get("samples"):
        problems.append(f"{rel}: {n} samples, manifest says {entry.get('samples')}")
    return problems, variants


def inspect_dir(root: Path, bad: set[str] | None = None) -> tuple[list[str], dict[str, Any]]:
    """Verify every shard of a run dir (sha256 in full, every sample decoded); returns (problems, totals)
    and adds the ``split/shard-NNNNNN.tar`` names of the listed shards that failed to ``bad``."""
    from datagen.shard_job import SPLITS
    from shared import shards as S

    mpath = root / "manifest.json"
    if not mpath.exists():
        return [f"{mpath}: no manifest (is {root} a `datagen run --out` dir?)"], {}
    try:
        manifest = json.loads(mpath.read_text())
        entries: dict[str, dict[str, Any]] = manifest["shards"]
        expected = manifest["splits"]
    except (OSError, ValueError, KeyError) as e:
        return [f"{mpath}: invalid manifest ({type(e).__name__}: {e})"], {}
    problems: list[str] = []
    totals: dict[str, Any] = {}
    for split in SPLITS:
        on_disk = {f"{split}/{p.name}" for p in (root / split).glob("shard-*.tar")}
        listed = {k for k, e in entries.items() if e.get("split") == split}
        if split not in ("train", "val") and not (on_disk or listed or expected.get(split)):
            continue  # an optional split (val_siblings) this set does not have
        for rel in sorted(on_disk - listed):
            problems.append(f"{rel}: on disk but not in the manifest")
        for p in sorted((root / split).glob(f"*{S.PARTIAL_SUFFIX}")):
            problems.append(f"{split}/{p.name}: unfinished shard (re-run `datagen run` to complete it)")
        missing = [i for i in range(int(expected.get(split, 0))) if f"{split}/{S.shard_name(i)}" not in listed]
        if missing:
            problems.append(f"{split}: {len(missing)} of {expected[split]} shards not finished (first: index {missing[0]})")
        variants: Counter = Counter()
        n_bytes = 0
        for rel in sorted(listed):
            shard_problems, v = verify_shard(root / rel, entries[rel])
            problems += shard_problems
            if shard_problems and bad is not None:
                bad.add(rel)
            variants += v
            n_bytes += int(entries[rel].get("bytes") or 0)
        totals[split] = {"shards": len(listed), "samples": sum(variants.values()), "bytes": n_bytes,
                         "variants": dict(sorted(variants.items()))}
    return problems, totals


def repair(root: Path, executor: str) -> None:
    """Regenerate every shard of ``root`` that fails inspection (its full sha256 differs from the manifest's, or
    a sample does not decode) and every missing one, with the manifest's config."""
    from datagen.run import run_datagen
    from shared.config import Config
    from shared.errors import DataError

    try:
        cfg = Config.model_validate(json.loads((root / "manifest.json").read_text())["config"])
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{root / 'manifest.json'}: cannot repair without a readable manifest and config "
                        f"({type(e).__name__}: {e})") from None
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"executor": executor})})
    bad: set[str] = set()
    inspect_dir(root, bad)
    code, summary = run_datagen(cfg, root, progress=False, redo=frozenset(bad))
    print(f"datagen inspect --repair: {summary['shards_written']} shard(s) regenerated, "
          f"{len(summary['shards_failed'])} failed", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from shared.cli import fail
    from shared.errors import SynestheteError

    root = Path(args.dir)
    if args.repair:
        try:
            repair(root, args.executor)
        except SynestheteError as e:
            fail(str(e))
    problems, totals = inspect_dir(root)
    if args.json:
        print(json.dumps({"ok": not problems, "totals": totals, "problems": problems}, indent=1))
    else:
        for split, t in totals.items():
            mix = ", ".join(f"{v} {n} ({n / max(1, t['samples']):.0%})" for v, n in t["variants"].items())
            print(f"{split}: {t['shards']} shards, {t['samples']} samples, {t['bytes'] / 1e6:.1f} MB; {mix}")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        print(f"datagen inspect: {len(problems)} problem(s) in {root}", file=sys.stderr)
        return 1
    print(f"datagen inspect: {root} OK")
    return 0
