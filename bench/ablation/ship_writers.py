"""The ship study's write-ups: its section of docs/RESULTS.md (every pair, the rule, the shipped pair's goals, per-goal
tables, cost, every try) and the shipped model's MODEL_CARD.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .presets import SEEDS
from .rule import GOALS, entry, goal_value, headline_score, mean_of, value
from .ship import (
    CONFIRM_SEED_OFFSET, GUIDANCE_SWEEP, SHIP_RULE, Candidate, Pair, Study, sample30_name, ship_eval_dir,
    ship_run_dir, ship_train_overrides,
)
from .steps import Log, Paths, repo_relative
from .text import entry_text, fmt, seeds_text
from .writers import (
    NOT_RUN, device_name, goal_cells, goal_marks, kept_reports_dir, met_text, rel, run_seconds, still_of,
    teacher_line,
)

PAIRS_NOTE = ("Headline score: from the goal values averaged over the seeds (the rule's score), each seed's own score "
              "in brackets (capping at the goal makes the first differ from the mean of the second). Goal marks: ✓ met, "
              "✗ not met (mean of seeds), in the order of the columns. Retrieval top-1 over 8 clips moves in steps of "
              "0.125.")


def cell(vals: list[float | None]) -> str:
    """'mean (seed 0 / seed 1)'."""
    return f"{fmt(mean_of(vals))} ({seeds_text(vals)})"


def ship_train_seconds(p: Paths, log: Log, cand: Candidate) -> tuple[list[float | None], list[float | None]]:
    """(training loop s per seed from summary.json, training command wall s per seed from the log)."""
    loop = [run_seconds(ship_run_dir(p, cand, s)) for s in SEEDS]
    return loop, [(log.last_ok(f"ship-{cand.key}_s{s}-train") or {}).get("wall_s") for s in SEEDS]


def secs_text(xs: list[float | None]) -> str:
    """Seconds per seed, whole seconds: '358 / 1010'."""
    return " / ".join("n/a" if x is None else f"{x:.0f}" for x in xs)


def load_text(rec: dict[str, Any] | None) -> str:
    return "" if not rec or rec.get("load1") is None else f" (load average {rec['load1']:.2f} as it finished)"


def ship_goal_rows(reps: list[dict[str, Any] | None], per_seed_ci: bool = True) -> list[str]:
    """The goal table of one pair: mean of the seeds against the target, each seed with its CI."""
    rows = [f"| goal | clips | rule | target | mean of seeds | {' | '.join(f'seed {s}' + (' [95% CI]' if per_seed_ci else '') for s in SEEDS)} | verdict |",
            "|---|---|---|---|---|" + "---|" * len(SEEDS) + "---|"]
    for goal in GOALS:
        gv = goal_value(goal, reps)
        seeds = [entry_text(entry(r, goal.variant, gv.metric)) for r in reps]
        rows.append(f"| {goal.title} | {goal.variant} | {goal.rule} | {fmt(gv.target)} | {fmt(gv.generated)} | "
                    f"{' | '.join(seeds)} | {met_text(gv)} |")
    return rows


def pairs_table(p: Paths, log: Log, pairs: list[Pair], chosen: Pair | None) -> list[str]:
    """One row per pair: steps, seconds, headline score and each goal, mean (seed 0 / seed 1)."""
    L = ["| candidate | sampling | steps | training loop s (seed 0 / 1) | headline score | "
         + " | ".join(g.title for g in GOALS) + " | goals |", "|---|---|---|---|---|" + "---|" * len(GOALS) + "---|"]
    for q in pairs:
        mark = " **(shipped)**" if chosen is not None and q is chosen else ""
        loop, _ = ship_train_seconds(p, log, q.cand)
        if not q.complete:
            L.append(f"| {q.cand.key}{mark} | {q.samp.title} | {q.cand.steps} | {secs_text(loop)} | {NOT_RUN} |"
                     + " |" * (len(GOALS) + 1))
            continue
        score = f"{fmt(headline_score(q.reps))} ({seeds_text([headline_score([r]) for r in q.reps])})"
        goals = [cell([value(r, g.variant, goal_value(g, q.reps).metric) for r in q.reps]) for g in GOALS]
        L.append(f"| {q.cand.key}{mark} | {q.samp.title} | {q.cand.steps} | {secs_text(loop)} | {score} | "
                 + " | ".join(goals) + f" | {goal_marks(q.reps)} |")
    return L


def study_intro(s: Study) -> list[str]:
    """The section's heading, the PARTIAL warning, what was trained and swept, the rule, and every pair."""
    missing = [q.key for q in s.pairs if not q.complete]
    L = ["", f"## Shipped model `models/{s.name}` (issue 13 item 7): training budget, guidance, capacity", ""]
    if missing:
        L += [f"**PARTIAL: pairs {', '.join(missing)} {NOT_RUN}.** Their rows say so.", ""]
    L += [f"Arm {s.arm.key}'s recipe (training: arm {s.trained.key}'s overrides; sampling: {s.base.title}) trained as "
          f"{len(s.cands)} candidates, each with {len(SEEDS)} seeds (training and sampling seed "
          f"{', '.join(map(str, SEEDS))}) on the same data, VAE and latents as the table above; each candidate's "
          "checkpoints evaluated with the arm's own sampling and, where marked, over a guidance sweep (eval only: "
          "the same checkpoints sampled with another setting). Unlike the arms above these are not equal wall-clock: "
          "the point is how far a longer budget or a wider model goes, so each row gives its steps and seconds. "
          "Several steps ran two at a time (`--jobs`), so seconds include contention; the every-try table gives "
          "the load average at the end of each step.", "",
          "Candidates: " + "; ".join(f"`{c.key}` = {c.title}" + (f" (`{' '.join(c.extra)}`)" if c.extra else "")
                                     + ("" if c.sweep else ", own sampling only") for c in s.cands) + ".",
          "Guidance sweep: " + "; ".join(g.title for g in GUIDANCE_SWEEP) + " (interval = τ in the schema's "
          "default `inference.audio_guidance_interval`).", "", "**Rule.** " + SHIP_RULE, "",
          "### Every pair (mean of the seeds, seed 0 / seed 1 in brackets)", ""]
    return L + pairs_table(s.p, s.log, s.pairs, s.chosen) + ["", PAIRS_NOTE, ""]


def shipped_part(s: Study) -> list[str]:
    """The chosen pair: its goals, the confirmation with fresh sampling noise, the 30-s sampling time, a still."""
    chosen, confirm = s.chosen, s.confirm
    if chosen is None:
        return ["**Nothing shipped**: no pair was measured with both seeds.", ""]
    L = [f"### Shipped: `{chosen.cand.key}` ({chosen.cand.title}) sampled with {chosen.samp.title}", "",
         f"`models/{s.name}` is this pair's seed-0 checkpoint. Its goals, mean of the {len(SEEDS)} seeds (each "
         "seed's value with its 95% bootstrap CI over clips):", ""]
    L += ship_goal_rows(chosen.reps)
    if confirm is not None and confirm.complete:
        L += ["", f"Confirmation with fresh sampling noise (sampling seeds {CONFIRM_SEED_OFFSET}, "
              f"{CONFIRM_SEED_OFFSET + 1}; same checkpoints, same clips): headline score "
              f"{fmt(headline_score(confirm.reps))} against {fmt(headline_score(chosen.reps))} in the choice.",
              ""]
        L += ship_goal_rows(confirm.reps)
    rec = s.log.last_ok(sample30_name(chosen))
    if rec:
        L += ["", f"Sampling 30 s of audio with it took {rec['wall_s']:.1f} s{load_text(rec)}: "
              f"`{repo_relative(rec['command'])}`."]
    png = still_of(chosen.reps[0], ship_eval_dir(s.p, chosen.cand, chosen.samp, SEEDS[0]),
                   s.stills_dir / f"shipped_{s.name}.png")
    if png is not None:
        L += ["", f"![models/{s.name}: ground truth | generated | floor (other audio), 4 frames top to bottom]"
              f"({rel(png, s.results)})"]
    L.append("")
    return L


def per_goal_pairs(s: Study) -> list[str]:
    """One table per goal: every pair (and the confirmation) with floor, seeds and CIs, ground truth, verdict."""
    confirmed = [s.confirm] if s.confirm is not None and s.confirm.complete else []
    L = ["### Per goal, every pair with 95% CIs", ""]
    for goal in GOALS:
        L += [f"#### {goal.title}: goal {goal.rule} ({goal.variant} clips)", "",
              "| candidate | sampling | floor | generated (mean of seeds) | seed 0 [95% CI] | seed 1 [95% CI] | "
              "ground truth [95% CI] | target | verdict |", "|---|---|---|---|---|---|---|---|---|"]
        for q in s.pairs + confirmed:
            label = q.cand.key + (" (confirmation)" if q is s.confirm else "")
            if not q.complete:
                L.append(f"| {label} | {q.samp.title} | {NOT_RUN} | | | | | | |")
                continue
            L.append(f"| {label} | {q.samp.title} | " + " | ".join(goal_cells(goal, q.reps)) + " |")
        L.append("")
    return L


def study_cost_and_tries(s: Study) -> list[str]:
    """Cost per candidate, the hand-written reading, every command of the study, the re-run line."""
    L = ["### Cost per candidate", "", "| candidate | steps | training loop s (seed 0 / 1) | train command s "
         "(seed 0 / 1) | training overrides (seed 0) |", "|---|---|---|---|---|"]
    for c in s.cands:
        loop, cmd = ship_train_seconds(s.p, s.log, c)
        L.append(f"| {c.key} | {c.steps} | {secs_text(loop)} | {secs_text(cmd)} | "
                 f"`{' '.join(ship_train_overrides(s.trained, s.base, c, SEEDS[0], s.extra))}` |")
    if s.note_text:
        L += ["", "### Reading the shipped model's figures", "", s.note_text]
    L += ["", "### Every try (ship study)", "", "| step | exit | wall s | load avg | finished (UTC) | command |",
          "|---|---|---|---|---|---|"]
    for rec in s.log.records:
        if rec["group"] == "ship":
            L.append(f"| {rec['name']} | {rec['rc']} | {rec['wall_s']:.1f} | {fmt(rec.get('load1'))} | "
                     f"{rec.get('finished_utc', '')} | `{repo_relative(rec['command'])}` |")
    L += ["", f"Re-run: `python bench/responsiveness_ablation.py --preset PRESET --ship {s.name} --ship-candidates "
          f"{','.join(c.key for c in s.cands)}` (resumable).", ""]
    return L


def ship_section(s: Study) -> list[str]:
    """The RESULTS.md section of the ship study: every try, the rule, the shipped pair's goal table."""
    return study_intro(s) + shipped_part(s) + per_goal_pairs(s) + study_cost_and_tries(s)


def kept_report_path(p: Paths, results: Path, preset: str, pair: Pair, seed: int) -> str:
    """The committed copy of a ship pair's report.json (see :func:`keep_eval_reports`), repository-relative."""
    src = ship_eval_dir(p, pair.cand, pair.samp, seed) / "report.json"
    return repo_relative(str(kept_reports_dir(results.resolve(), preset) / src.relative_to(p.work / "eval")))


def card_head(s: Study, chosen: Pair, cfg: dict[str, Any], train_cmd: str) -> list[str]:
    """The card's title, honest quality line, teacher, recipe and rule, and the normal-music table's heading."""
    d, r, df = cfg["data"], cfg["render"], cfg["diffusion"]
    n_normal = (chosen.reps[0]["variants"].get("normal") or {}).get("n_clips")
    eval_rec = s.log.last_ok(f"ship-{chosen.cand.key}_s{SEEDS[0]}-eval-{chosen.samp.key}")
    return [f"# {s.name}", "",
            f"A tiny audio-conditioned latent diffusion model for Synesthete, trained on {device_name()} by "
            f"`python bench/responsiveness_ablation.py --preset {s.preset} --ship {s.name} --ship-candidates "
            f"{','.join(dict.fromkeys(q.cand.key for q in s.pairs))}` (issue 13 item 7). It turns any "
            f"audio file into a {r['resolution']}² px video at {r['fps']:g} fps: `python -m trainer sample --audio "
            "song.wav` uses it when no `--checkpoint` is given and `runs/diffusion/` does not exist.", "",
            f"**Quality, honestly:** a demonstration-size model: a {df['width']}-wide {df['depth']}-block denoiser "
            f"trained {chosen.cand.steps} steps on {d['train_shards'] * d['samples_per_shard']} procedural clips of "
            f"{d['clip_seconds']:g} s. Its pictures are blurry blobs in the visualizers' palettes; what it shows is "
            "whether the picture follows the audio. It settles in silence; on normal music it meets some of issue "
            "13's goals and misses others (table below).", "",
            teacher_line(), "",
            "## Recipe", "",
            f"Arm {s.arm.key} of the responsiveness ablation ({s.arm.title}), trained as candidate "
            f"`{chosen.cand.key}` ({chosen.cand.title}) and sampled with {chosen.samp.title}, {r['fps']:g} fps, "
            f"{cfg['inference']['steps']} {cfg['inference']['sampler']} steps. This is seed 0 of the pair chosen by "
            f"the rule below; data: `datagen run` with the ablation's `{s.preset}` preset (timeline version 2), frame "
            f"VAE downsample {cfg['vae']['downsample']}, {cfg['vae']['steps']} steps (copy in `vae/`). Training "
            "command:", "",
            f"```\n{train_cmd}\n```", "",
            "Its `config.yaml` is that run's with the sampling setting of the pair: "
            f"`{' '.join(chosen.samp.overrides)}`.", "", "**How it was chosen.** " + SHIP_RULE, "",
            "## Evaluation: normal music (`trainer eval`, this model)", "",
            f"{n_normal} normal-music val clips (music frames only: without labelled silence and the 0.5 s after it), "
            "95% bootstrap CIs over clips in brackets. *Floor* = the same metric for video generated from another "
            "clip's audio with the same style and noise (chance for retrieval); *ground truth* = the data's frames "
            f"(the ceiling). Command: `{repo_relative(eval_rec['command'])}`." if eval_rec else "", "",
            f"Raw report behind this table: `{kept_report_path(s.p, s.results, s.preset, chosen, SEEDS[0])}` "
            "(written with docs/RESULTS.md; the other seeds' and pairs' reports are beside it).", "",
            "| metric | floor (other audio) | generated | ground truth | n |", "|---|---|---|---|---|"]


def card_metrics(rep: dict[str, Any]) -> list[str]:
    """The normal-music table's rows (every metric with normal-music values), then the silence-settle line."""
    L = []
    for mname, row in rep.get("variants", {}).get("normal", {}).get("metrics", {}).items():
        if not (row.get("generated") or {}).get("n"):
            continue  # a silence metric: no silence in normal clips' music frames
        L.append(f"| {mname} | {entry_text(row.get('floor'))} | {entry_text(row.get('generated'))} | "
                 f"{entry_text(row.get('ceiling'))} | {(row.get('generated') or {}).get('n')} |")
    sil = rep.get("variants", {}).get("silence", {}).get("metrics", {}).get("silence_settle_ratio") or {}
    return L + ["", "## Silence clips", "",
                f"Silence-settle ratio (motion in labelled silence over motion in the music around it; goal ≤ 0.1): "
                f"{entry_text(sil.get('generated'))}, ground truth {entry_text(sil.get('ceiling'))}, floor "
                f"{entry_text(sil.get('floor'))} (n = {(sil.get('generated') or {}).get('n')}).", ""]


def card_goals(s: Study, chosen: Pair) -> list[str]:
    """The goal table (mean of the seeds) and the confirmation's goals."""
    L = [f"## Goal (issue 13): mean of {len(SEEDS)} seeds", "",
         "Seed 0 is this model; seed 1 the same recipe trained and sampled with seed 1.", ""]
    L += ship_goal_rows(chosen.reps)
    confirm = s.confirm
    if confirm is not None and confirm.complete:
        L += ["", f"The choice took the best of {sum(q.complete for q in s.pairs)} pairs, which flatters it: sampled "
              f"again with sampling seeds {CONFIRM_SEED_OFFSET} and {CONFIRM_SEED_OFFSET + 1} (same checkpoints and "
              f"clips) its headline score is {fmt(headline_score(confirm.reps))} (in the choice "
              f"{fmt(headline_score(chosen.reps))})."]
        for goal in GOALS:
            gv = goal_value(goal, confirm.reps)
            L.append(f"- {goal.title}: {fmt(gv.generated)} ({seeds_text(gv.per_seed)}), {met_text(gv)}")
    return L


def card_tail(s: Study, chosen: Pair, dest: Path, files: list[Path]) -> list[str]:
    """What was tried, what stands in the way, the files, the 30-s sampling time and how to use the model."""
    L = ["", "## What was tried", "",
         "Every pair measured (the full tables with CIs and every command: `docs/RESULTS.md`, section "
         f"\"Shipped model `models/{s.name}`\"):", ""]
    L += pairs_table(s.p, s.log, s.pairs, chosen)
    L += ["", PAIRS_NOTE]
    if s.note_text:
        L += ["", "## What stands in the way", "", s.note_text]
    L += ["", "## Files", "", "| file | bytes |", "|---|---|"]
    L += [f"| {q.relative_to(dest)} | {q.stat().st_size} |" for q in files]
    L += [f"| total | {sum(q.stat().st_size for q in files)} |", "", "## Use", ""]
    sample = s.log.last_ok(sample30_name(chosen))
    if sample:
        L += [f"Sampling 30 s of audio on {device_name()} took {sample['wall_s']:.1f} s (one command, start-up "
              f"included{load_text(sample).replace(' (', '; ').rstrip(')')}): `{repo_relative(sample['command'])}`.",
              ""]
    L += ["```\npython -m trainer sample --audio song.wav --out song.mp4            # this model (default)\n"
          f"python -m trainer sample --audio song.wav --checkpoint models/{s.name}\n```", ""]
    return L


def model_card(s: Study, dest: Path, cfg: dict[str, Any], train_cmd: str) -> Path:
    """MODEL_CARD.md of the chosen pair: the normal-music table first (this model: seed 0), silence settle, the goal
    table (mean of the seeds), what was tried, what stands in the way, files, the 30-s sampling time, use."""
    chosen = s.chosen
    assert chosen is not None
    files = sorted(q for q in dest.rglob("*") if q.is_file() and not q.is_symlink() and q.name != "MODEL_CARD.md")
    L = card_head(s, chosen, cfg, train_cmd) + card_metrics(chosen.reps[0]) + card_goals(s, chosen)
    L += card_tail(s, chosen, dest, files)
    out = dest / "MODEL_CARD.md"
    out.write_text("\n".join(L), encoding="utf-8")
    return out
