"""Issue 24's results section in docs/RESULTS.md, written from WORK/study.json and the arms' reports (each also
copied to docs/results/study/reports/ as it was written), stamped with the commit measured on: the verdict of the registered rule (study.py), every goal
metric per arm with each seed's value and 95% CI beside the floor and the teacher, each comparison per seed, and
the study group's goals per arm. shared.markdown.replace_section puts it in place of its previous version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .rule import entry, goal_value, mean_of, value
from .study import GOALS, PRIMARY
from .steps import repo_relative
from .text import entry_text, fmt
from .writers import met_text

HEADING = "## Evidence study (issue 24): results"
ARM_ORDER = ("A", "B", "B0", "B+")
# (variant, metric, label): the rows the issue asks for, the primary metric first; the L_bad - L_good gap is read
# from the val_loss row (floor = loss with another clip's audio, generated = with the clip's own)
ROWS = ((*PRIMARY, "loudness → motion Spearman (primary)"),
        ("normal", "loudness_brightness_spearman", "loudness → brightness Spearman"),
        ("normal", "bands_colour_geometry_r2", "bands → colour/geometry R²"),
        ("normal", "av_align", "AV-Align"),
        ("normal", "beat_alignment_score", "beat alignment score"),
        ("normal", "retrieval_top1", "retrieval top-1"),
        ("normal", "style_diversity_siblings", "style diversity at fixed audio"),
        ("silence", "silence_settle_ratio", "settle ratio (silence clips, ≤ 0.1)"),
        ("normal", "memorisation_ratio", "memorisation ratio (≥ 0.5: not flagged)"))


def loss_gap(rep: dict[str, Any] | None) -> float | None:
    """L_bad − L_good of one report: the val loss with another clip's audio minus with the clip's own (> 0: the
    denoiser uses its audio)."""
    bad, good = value(rep, "normal", "val_loss", "floor"), value(rep, "normal", "val_loss")
    return None if bad is None or good is None else bad - good


def seed_cells(reps: list[dict[str, Any] | None], variant: str, metric: str, kind: str = "generated") -> str:
    """'mean of seeds (s0: v [lo, hi]; s1: ...)'."""
    per = [value(r, variant, metric, kind) for r in reps]
    seeds = "; ".join(f"s{i}: {entry_text(entry(r, variant, metric, kind))}" for i, r in enumerate(reps))
    return f"**{fmt(mean_of(per))}** ({seeds})"


def first(reps: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    return next((r for r in reps if r is not None), None)


def metric_table(reports: dict[str, list[dict[str, Any] | None]]) -> list[str]:
    arms = [k for k in ARM_ORDER if k in reports]
    teacher_rep = first(reports.get("B", [])) or first([r for reps in reports.values() for r in reps])
    L = ["| metric | teacher (ground truth) [95% CI] | " + " | ".join(f"arm {k}" for k in arms) + " |",
         "|---|---|" + "---|" * len(arms)]
    for variant, metric, label in ROWS:
        teacher = entry_text(entry(teacher_rep, variant, metric, "ceiling"))
        L.append(f"| {label} | {teacher} | " + " | ".join(seed_cells(reports[k], variant, metric) for k in arms)
                 + " |")
    gaps = [" / ".join(fmt(loss_gap(r)) for r in reports[k]) for k in arms]
    L.append("| L_bad − L_good (val loss, other clip's audio − own; s0 / s1) | n/a | " + " | ".join(gaps) + " |")
    return L


def floor_table(reports: dict[str, list[dict[str, Any] | None]]) -> list[str]:
    arms = [k for k in ARM_ORDER if k in reports]
    L = ["| metric (floor: the arm's video from another clip's audio) | " + " | ".join(f"arm {k}" for k in arms) + " |",
         "|---|" + "---|" * len(arms)]
    for variant, metric, label in ROWS:
        if metric == "memorisation_ratio":
            continue
        L.append(f"| {label} | " + " | ".join(seed_cells(reports[k], variant, metric, "floor") for k in arms) + " |")
    return L


def comparison_table(comparisons: dict[str, Any]) -> list[str]:
    L = ["| comparison | metric | per seed: difference (better > 0) vs combined half-width → verdict | verdict |",
         "|---|---|---|---|"]
    for name, comp in comparisons.items():
        if comp is None:
            L.append(f"| {name} | all | an arm's reports are missing | not decided yet |")
            continue
        for row in [comp["primary"], *comp["secondary"]]:
            per = "; ".join(f"s{i}: {fmt(s['difference'])} vs ±{fmt(s['half_width'])} → {s['verdict']}"
                            for i, s in enumerate(row["per_seed"]))
            star = "**" if row is comp["primary"] else ""
            L.append(f"| {name} | {star}{row['variant']} {row['metric']}{star} | {per} | {star}{row['verdict']}{star} |")
    return L


def goals_table(reports: dict[str, list[dict[str, Any] | None]]) -> list[str]:
    arms = [k for k in ARM_ORDER if k in reports]
    L = ["| goal (study group, mean of seeds) | rule | " + " | ".join(f"arm {k}" for k in arms) + " |",
         "|---|---|" + "---|" * len(arms)]
    for g in GOALS:
        cells = []
        for k in arms:
            gv = goal_value(g, reports[k])
            cells.append(f"{fmt(gv.generated)}: {met_text(gv)}")
        L.append(f"| {g.title} | {g.rule} | " + " | ".join(cells) + " |")
    return L


NOTES = "docs/results/notes_study.md"  # the hand-written reading of the tables, quoted in the section when it exists


def section(doc: dict[str, Any], reports: dict[str, list[dict[str, Any] | None]], kept: str, command: str,
            load: str, notes: str = "") -> list[str]:
    """The results section's lines (``notes``: the hand-written reading, :data:`NOTES`)."""
    if "steps" not in doc:
        return [HEADING, "", f"Not run yet: arm B was not calibrated ({command}).", ""]
    comps = doc["comparisons"]
    pending = "not decided yet (an arm's reports are missing)"
    whole = comps["B vs A"]["primary"]["verdict"] if comps.get("B vs A") else pending
    stronger = comps["B+ vs B"]["primary"]["verdict"] if comps.get("B+ vs B") else pending
    done = doc.get("reports_done")
    L = [HEADING, "",
         f"On the 2-core CPU box ({load}); command `{command}`. Every arm trained "
         f"{doc['steps']} steps (arm B's calibrated {fmt(doc['s_per_step_B'])} s/step × {fmt(doc['budget_s'] / 60)} "
         f"min), seeds {', '.join(map(str, doc['seeds']))}, up to {doc.get('jobs', 1)} runs at once with "
         f"OMP_NUM_THREADS=1; VAE `{repo_relative(str(doc.get('vae', 'WORK/vae')))}`. Raw reports: "
         f"`{kept}/arm<K>_s<seed>.json`; the verdicts: `{Path(kept).parent / 'study.json'}`. The rule is the "
         "registered one above; nothing here changes it.",
         "",
         *([f"**Reading** (hand-written, `{NOTES}`): {notes}", ""] if notes else []),
         f"**Verdict (B vs B0, loudness → motion): {doc['pressure']}.** The whole postmortem recipe (B vs A): "
         f"{whole}. A stronger hinge (B+ vs B): {stronger}."
         + (f" Not run for time: {', '.join(doc['not_run'])}." if doc.get("not_run") else "")
         + (" Reports so far: " + ", ".join(f"{k} {n}" for k, n in done.items()) + "." if done else ""),
         "",
         "### Every goal metric per arm: mean of seeds (each seed's value [95% CI over clips])",
         "",
         *metric_table(reports),
         "",
         "### The floor: each arm's video scored against another clip's audio",
         "",
         *floor_table(reports),
         "",
         "### The rule, per comparison and seed",
         "",
         *comparison_table(comps),
         "",
         "### The shipped model's goals, per arm",
         "",
         *goals_table(reports),
         ""]
    return L


def commit_stamp(commit: str, reports: dict[str, list[dict[str, Any] | None]]) -> str:
    """The section's commit line: the runs were measured over several commits, so it names the one that wrote the
    section and, per report, the commit its eval recorded (``info.commit``; reports made before the eval recorded
    it say so, and the hand-written reading names theirs)."""
    seen = [f"{arm} s{seed} `{rep['info']['commit']}`" for arm in ARM_ORDER for seed, rep in
            enumerate(reports.get(arm, [])) if rep and (rep.get("info") or {}).get("commit")]
    missing = [f"{arm} s{seed}" for arm in ARM_ORDER for seed, rep in enumerate(reports.get(arm, []))
               if rep and not (rep.get("info") or {}).get("commit")]
    return (f"Written on commit `{commit}` by its generator (`-dirty`: with uncommitted code changes); the figures "
            "come from the arms' reports, each measured on the commit its eval ran on"
            + (f": {', '.join(seen)}" if seen else "")
            + (f"{'; ' if seen else ': '}{', '.join(missing)}: not recorded in the report (made before the eval "
               "recorded its commit; the reading names it)" if missing else "") + ".")


def write_study_results(path: Path, doc: dict[str, Any], reports: dict[str, list[dict[str, Any] | None]], kept: str,
                        commit: str, command: str, load: str) -> Path:
    """Replace (or append) the section in ``path``, stamped with the commit measured on (shared.markdown)."""
    from shared.markdown import replace_section

    from .steps import REPO

    notes_file = REPO / NOTES
    notes = " ".join(notes_file.read_text().split()) if notes_file.is_file() else ""
    body = "\n".join(section(doc, reports, kept, command, load, notes))
    return replace_section(path, HEADING, body, title="# Results", stamp=commit_stamp(commit, reports))


__all__ = ["HEADING", "ROWS", "commit_stamp", "loss_gap", "section", "write_study_results"]
