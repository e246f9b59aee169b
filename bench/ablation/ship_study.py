"""Running the ship study (``--ship NAME``): every (candidate, seed) trained and evaluated, then, in SHIP_RULE's
order, each pair confirmed with fresh sampling noise, packaged as models/NAME (trainer.checkpoint.package_model) and
timed sampling 30 s of audio, until one samples in time; its model card, the size check, and the study's section
appended to the results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .arms import Arm
from .presets import SEEDS
from .ship import (
    MAX_SAMPLE30_S, SHIP_CANDIDATES, Candidate, Pair, Sampling, Study, rank_pairs, sample30_name, sampling_of,
    ship_chain, ship_eval_step, ship_pairs, ship_recipe, ship_run_dir,
)
from .ship_writers import model_card, ship_section
from .steps import REPO, Paths, Runner, Step, display_command, run_chains

if TYPE_CHECKING:
    import numpy as np


def demo_song(seconds: float, sr: int = 22050, seed: int = 0) -> np.ndarray:
    """A plain test song: a kick-like pulse at 120 BPM with a noise hat, a 3 s silence in the middle."""
    import numpy as np

    t = np.arange(int(seconds * sr)) / sr
    phase = t % 0.5
    kick = np.sin(2 * np.pi * (50 + 120 * np.exp(-phase * 30)) * phase) * np.exp(-phase * 8)
    hat = np.random.default_rng(seed).standard_normal(len(t)) * np.exp(-((t + 0.25) % 0.5) * 40) * 0.2
    wave = 0.6 * kick + hat
    mid = len(t) // 2
    wave[mid:mid + 3 * sr] = 0.0
    return wave.astype(np.float32)


def check_sizes(dest: Path, per_file: int = 16 << 20, total: int = 48 << 20) -> None:
    """Refuse a model whose files exceed the repository limits (16 MiB each, 48 MiB in all)."""
    files = [q for q in dest.rglob("*") if q.is_file() and not q.is_symlink()]
    big = [q for q in files if q.stat().st_size > per_file]
    if big or sum(q.stat().st_size for q in files) > total:
        raise SystemExit(f"shipped model too large: {[str(q) for q in big]} / total "
                         f"{sum(q.stat().st_size for q in files)} bytes")


def ship_plan(args: argparse.Namespace, plan: dict[str, Any]) -> tuple[Arm, Arm, Sampling, list[Candidate]]:
    """(the arm shipped, the arm whose recipe trains it, its sampling setting, the candidates), checked."""
    arm, trained = ship_recipe(args.ship_arm, plan, args.tune)
    if trained.train is None:
        raise SystemExit(f"--ship-arm {args.ship_arm}: arm {trained.key} has no training recipe")
    base = sampling_of(arm.infer)
    unknown = [k for k in args.ship_candidates if k not in SHIP_CANDIDATES]
    if unknown:
        raise SystemExit(f"--ship-candidates: unknown {unknown} (known: {', '.join(SHIP_CANDIDATES)})")
    return arm, trained, base, [SHIP_CANDIDATES[k] for k in args.ship_candidates]


def ship_notes(args: argparse.Namespace) -> str:
    """The hand-written reading of the study (--ship-notes, else docs/results/notes_ship_PRESET.md), or ''."""
    note_file = Path(args.ship_notes) if args.ship_notes else REPO / "docs" / "results" / f"notes_ship_{args.preset}.md"
    return note_file.read_text().strip() if note_file.is_file() else ""


def package_pair(p: Paths, q: Pair, dest: Path) -> list[Path]:
    """The pair's seed-0 checkpoint packaged as ``dest``, its config.yaml sampling with the pair's setting."""
    from trainer.checkpoint import package_model

    return package_model(ship_run_dir(p, q.cand, SEEDS[0]), dest, q.samp.inference)


def time_sampling(p: Paths, runner: Runner, q: Pair, dest: Path) -> bool:
    """`trainer sample` of 30 s of the test song with the packaged model, a logged step; False when left out for
    time."""
    import soundfile as sf

    song = p.work / "ship_test_30s.wav"
    if not song.is_file():
        sf.write(song, demo_song(30.0), 22050)
    video = p.work / f"ship_test_30s_{q.cand.key}_{q.samp.key}.mp4"
    return runner.run(Step(sample30_name(q), [p.py, "-m", "trainer", "sample", "--audio", str(song),
                                              "--checkpoint", str(dest), "--out", str(video), "--no-progress"],
                           video, "ship"))


def choose_pair(s: Study, runner: Runner, dest: Path, jobs: int) -> Pair | None:
    """SHIP_RULE's first pair that samples 30 s in time: each pair in rank order is evaluated again with fresh
    sampling noise, packaged as ``dest`` and timed. None when none is, or time runs out."""
    for q in rank_pairs(s.pairs):
        run_chains(runner, [[ship_eval_step(s.p, q.cand, q.samp, seed, confirm=True)] for seed in SEEDS], jobs)
        package_pair(s.p, q, dest)
        if not time_sampling(s.p, runner, q, dest):
            return None
        if runner.log.last_ok(sample30_name(q))["wall_s"] < MAX_SAMPLE30_S:
            return q
        print(f"[ablation] {q.key}: 30 s of audio took >= {MAX_SAMPLE30_S:.0f} s to sample; next pair",
              file=sys.stderr)
    return None


def finish_chosen(s: Study, chosen: Pair, dest: Path) -> None:
    """The chosen pair's confirmation, its model card and the size check."""
    s.confirm = next(c for c in ship_pairs(s.p, [chosen.cand], s.base, confirm=True) if c.samp == chosen.samp)
    card = model_card(s, dest, yaml.safe_load((dest / "config.yaml").read_text())["config"],
                      display_command(ship_chain(s.p, s.trained, s.base, chosen.cand, SEEDS[0], s.extra)[0].argv))
    check_sizes(dest)
    print(f"[ablation] shipped {dest} ({card.name}): {chosen.key}", file=sys.stderr)


def append_section(results: Path, section: list[str]) -> None:
    text = results.read_text() if results.is_file() else ""
    results.write_text(text.rstrip("\n") + "\n" + "\n".join(section), encoding="utf-8")


def ship(args: argparse.Namespace, p: Paths, runner: Runner, plan: dict[str, Any], results: Path,
         stills_dir: Path) -> None:
    """The ship study (module docstring): candidates x seeds, evals, the rule, packaging, card, RESULTS section."""
    arm, trained, base, cands = ship_plan(args, plan)
    jobs = 1 if runner.in_process else args.jobs
    run_chains(runner, [ship_chain(p, trained, base, c, s, args.ship_override) for c in cands for s in SEEDS], jobs)
    s = Study(p, runner.log, args.preset, args.ship, arm, trained, base, cands, args.ship_override, results,
              stills_dir, ship_notes(args), ship_pairs(p, cands, base))
    dest = Path(args.models) / args.ship
    try:
        s.chosen = choose_pair(s, runner, dest, jobs)
        if s.chosen is not None:
            finish_chosen(s, s.chosen, dest)
    finally:
        append_section(results, ship_section(s))
    if s.chosen is None:
        raise SystemExit("ship: no pair measured with both seeds (or none samples 30 s in time): nothing shipped")
