"""Stage 5 of the evaluation: ``report.json`` (machine-readable) and ``report.md`` (what a person reads).

report.json of the val shards::

    {"verdict": {...}, "config": {...}, "checkpoint": str, "info": {...},
     "variants": {"normal" | "silence" | "debug" | ...: {"n_clips": int, "clips": [keys], "note": str | None,
                  "metrics": {METRIC: {"generated": ENTRY, "floor": ENTRY, "ceiling": ENTRY, "note": str | None}}}},
     "vae_diagnostic": {"n_clips": int, "clips": [keys], "note": str | None, "psnr_db": float | None,
                        "metrics": {METRIC: {"input_own": ENTRY, "input_shuffled": ENTRY,
                                             "output_own": ENTRY, "output_shuffled": ENTRY}}},
     "videos": [{"variant", "clip", "kind": "generated" | "ground_truth" | "floor" | "side_by_side", "path"}],
     "plots": [{"title", "path"}], "definitions": {METRIC: str}, "better": {METRIC: str}, "notes": [str]}

with ENTRY = ``{"mean": float | null, "ci": [lo, hi] | null, "n": int}``; variants in report order, normal
first; ``verdict`` first of all (:func:`trainer.eval.verdict.verdict`: the answer to "does it follow the music?",
each goal of :mod:`trainer.eval.goals` met / not met / undecided with its n, the VAE's PSNR against its warning
floor, the rows that cannot apply to each variant). A folder of audio's report (``trainer eval --audio-dir``) has
one variant, ``audio_dir``, whose ceiling is the teacher on the same files (:mod:`trainer.eval.folder_ceiling`;
null with ``--no-teacher``), and instead of info, better and the VAE diagnostic: title, audio_dir, per_file (each
with its ``ceiling`` values and ``teacher`` info), skipped, retrieval, teacher and seconds. Both come through :func:`write_report` (json, md, html). Non-finite numbers never reach
the JSON (null). Each file is written to a temporary name and renamed (:func:`shared.fsutil.atomic_write_text`),
so a crash never leaves half a report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from shared.fsutil import atomic_write_text
from trainer.eval.verdict import not_applicable

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
HEADLINE = "normal"


def json_number(x: Any) -> Any:
    """Floats made JSON-safe: NaN -> None, +-inf -> "inf"/"-inf"; containers recursively."""
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if isinstance(x, dict):
        return {k: json_number(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_number(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy scalar
        return json_number(x.item())
    return x


def fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, str):
        return x
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.3g}"


def fmt_entry(e: dict[str, Any] | None) -> str:
    """``0.123 [0.05, 0.2]`` (CI in brackets when there is one), ``n/a`` when undefined."""
    if not e or e.get("mean") is None:
        return "n/a"
    ci = e.get("ci")
    return fmt(e["mean"]) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")


def metric_table(metrics: dict[str, dict[str, Any]], better: dict[str, str]) -> list[str]:
    """The rows of one variant; no "better" column when nothing says which way is better (a folder's report)."""
    col = " better |" if better else ""
    lines = ["| metric | floor (other audio) | generated | ceiling (ground truth) | n |" + col + " note |",
             "|---|---|---|---|---|" + ("---|" if better else "") + "---|"]
    for name, row in metrics.items():
        lines.append(f"| {name} | {fmt_entry(row['floor'])} | {fmt_entry(row['generated'])} | "
                     f"{fmt_entry(row['ceiling'])} | {row['generated']['n']} | "
                     + (f"{better.get(name, '')} | " if better else "") + f"{row.get('note') or ''} |")
    return lines


def intro(rep: dict[str, Any]) -> str:
    """What was evaluated, how, and what floor and ceiling mean: val shards (``info``) or a folder of audio."""
    if "info" not in rep:
        return (f"Checkpoint `{rep['checkpoint']}`, audio folder `{rep.get('audio_dir')}`; 95% bootstrap CIs over "
                f"files ({rep['config'].get('bootstrap')} resamples) in brackets; n = files where the metric is "
                "defined. " + ("Ceiling: the ground-truth visualizers rendered on the same files (the teacher)"
                               if rep.get("teacher") else "Ceiling: none (no ground truth)")
                + "; the floors are under Notes.")
    info = rep["info"]
    return (f"Checkpoint `{rep['checkpoint']}` (step {info.get('step')}), data `{info.get('data')}`; "
            f"{info.get('frames_per_clip')} frames per clip at {info.get('fps')} fps; sampler {info.get('sampler')}, "
            f"{info.get('steps')} steps, audio guidance {info.get('guidance')}; {info.get('seeds')} seed(s); 95% "
            f"bootstrap CIs over clips ({info.get('bootstrap')} resamples) in brackets; n = clips where the metric "
            "is defined. Floor: the same metric for video generated from a different clip's audio (same style and "
            "noise), scored against this clip's audio. Ceiling: the ground-truth frames.")


def per_file_lines(rep: dict[str, Any]) -> list[str]:
    """A folder report's files: duration, rate, detected silences and each per-file metric; the skipped files."""
    per_file = rep["per_file"]
    names = list(per_file[0]["metrics"]) if per_file else []
    lines = ["## Per file", "", "| file | s | rate | detected silences (s) | " + " | ".join(names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for p in per_file:
        vals = " | ".join(fmt(p["metrics"][m]) + (f" (teacher {fmt(p['ceiling'][m])})" if p.get("ceiling") else "")
                          for m in names)
        lines.append(f"| {p['file']} | {p['duration_s']:.2f} | {p['sample_rate']} | {p['detected_silences_s']} | "
                     f"{vals} |")
    lines += [f"- skipped {s['file']}: {s['reason']}" for s in rep.get("skipped", [])]
    if (rep.get("retrieval") or {}).get("skipped"):
        lines += ["", f"Retrieval skipped: {rep['retrieval']['skipped']}"]
    return lines + [""]


def verdict_lines(rep: dict[str, Any]) -> list[str]:
    """The verdict block (:mod:`trainer.eval.verdict`): the warnings, the answer, one row per goal."""
    v = rep.get("verdict")
    if not v:
        return []
    lines = [f"**WARNING: {w}.**" for w in v["warnings"]] + ([""] if v["warnings"] else [])
    lines += [f"## Verdict: {v['question']} {v['summary']}", "",
              "| goal | variant | rule | n | generated | target | verdict | why | what it means |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {g['goal']} | {g['variant']} | {g['rule']} | {g['n']} | {fmt_entry(g['generated'])} | "
              f"{fmt_entry(g['target'])} | **{g['status']}** | {g['why']} | {g['meaning']} |" for g in v["goals"]]
    lines += ["", "Met / not met: the generated 95% CI lies wholly on one side of the target's (the target's CI is "
              "the reference's, scaled); undecided: they overlap, too few clips to tell."]
    if v.get("vae") and not v["vae"]["broken"]:
        lines += ["", v["vae"]["text"] + "."]
    return lines + [""]


def applicable_table(metrics: dict[str, dict[str, Any]], better: dict[str, str]) -> list[str]:
    """A variant's table without the rows that cannot apply to it, those listed once below it."""
    na = not_applicable(metrics)
    return metric_table({k: r for k, r in metrics.items() if k not in na}, better) + [""] + na_lines(na)


def na_lines(na: dict[str, str]) -> list[str]:
    return ["Not applicable here: " + "; ".join(f"{k} ({why})" for k, why in na.items()) + ".", ""] if na else []


def markdown(rep: dict[str, Any]) -> str:
    better = rep.get("better", {})
    lines = [f"# {rep.get('title') or 'Synesthete evaluation: does the video follow the music?'}", ""]
    lines += verdict_lines(rep) + [intro(rep), ""]
    for i, (variant, v) in enumerate(rep["variants"].items()):
        head = "Normal music (the headline)" if variant == HEADLINE else f"Variant: {variant}"
        lines += [f"## {head}: {v['n_clips']} clip(s)", ""]
        if v["n_clips"] == 0:
            lines += [f"{v.get('note') or 'no clips'}.", ""]
            continue
        lines += applicable_table(v["metrics"], better)
    vd = rep.get("vae_diagnostic")
    if vd:
        lines += ["## VAE diagnostic (postmortem §4): metrics against the clip's own vs shuffled audio", "",
                  f"{vd['n_clips']} clip(s) ({vd.get('note') or ''}); input = ground-truth frames, output = the same "
                  f"frames encoded and decoded by the VAE (PSNR {fmt(vd.get('psnr_db'))} dB).", "",
                  "| metric | input, own audio | input, shuffled audio | output, own audio | output, shuffled audio |",
                  "|---|---|---|---|---|"]
        na = not_applicable(vd["metrics"])
        for name, row in ((k, r) for k, r in vd["metrics"].items() if k not in na):
            lines.append(f"| {name} | {fmt_entry(row['input_own'])} | {fmt_entry(row['input_shuffled'])} | "
                         f"{fmt_entry(row['output_own'])} | {fmt_entry(row['output_shuffled'])} |")
        lines += [""] + na_lines(na)
    if rep.get("per_file"):
        lines += per_file_lines(rep)
    lines += ["## Definitions", ""] + [f"- **{k}**: {d}" for k, d in rep["definitions"].items()]
    if rep.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in rep["notes"]]
    if rep.get("plots") or rep.get("videos"):
        lines += ["", "## Files", ""]
        lines += [f"![{p['title']}]({p['path']})\n\n*{p['title']}*\n" for p in rep.get("plots", [])]
        lines += [f"- [{v['kind']} {v['variant']} {v['clip']}]({v['path']})" for v in rep.get("videos", [])]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, rep: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``out_dir`` (each to a temporary name, then
    renamed)."""
    from trainer.eval.html import write_report_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = json_number(rep)
    pj = atomic_write_text(out / REPORT_JSON, json.dumps(rep, indent=2, allow_nan=False) + "\n")
    pm = atomic_write_text(out / REPORT_MD, markdown(rep))
    write_report_html(rep, out)
    return pj, pm


def keep_report(src: str | Path, dest: str | Path) -> Path:
    """Copy the report.json ``src`` to ``dest`` (a committed folder beside the card or table written from it), so
    that the figures quoted there can be checked against their raw report; returns ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest, Path(src).read_text(encoding="utf-8"))
    return dest
