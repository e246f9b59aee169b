"""Before/after table of the teacher (issue 29): the ground-truth visualizers of the old and the new generator,
both scored with *this* checkout's trainer metrics (``trainer teacher``, :mod:`trainer.teacher`).

Per cell of the grid (fps x clip seconds, one resolution) it runs ``trainer teacher`` as a subprocess on N normal +
N silence clips, once for this checkout ("after") and, with ``--baseline DIR``, once for the old generator
("before"): DIR is an older checkout (e.g. ``git worktree add /tmp/base <commit>``); a shim folder holding the
symlinks ``datagen -> DIR/datagen`` and ``shared -> DIR/shared`` is the subprocess's working directory and first
on its PYTHONPATH, so the old generator is imported while ``trainer`` comes from this checkout. Each report records
``datagen.__file__``; the script stops when the old code was not the one imported. The real-audio files are measured
in the first cell of each fps (their timeline does not depend on the clip length).

Writes ``JSON_DIR/{before,after}_fps{F}_s{S}.json`` (the reports), the first cell's contact sheets, and the section
``## Teacher before/after (issue 29)`` of ``--results-md`` (before | after | goal | met, per metric and cell) with the
commits and the command line.

    git worktree add /tmp/base <old commit>
    .venv/bin/python bench/teacher_ab.py --baseline /tmp/base              # fps {8, 24} x {4, 8} s, 64 px, 32 clips
    .venv/bin/python bench/teacher_ab.py --smoke --work /tmp/t --json-dir /tmp/t/json --results-md /tmp/t/R.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADING = "## Teacher before/after (issue 29)"
NORMAL_ROWS = ("loudness_motion_spearman", "loudness_brightness_spearman", "loudness_bright_area_spearman",
               "bands_colour_geometry_r2", "av_align", "beat_alignment_score", "retrieval_top1", "mean_motion_energy",
               "style_diversity")
SILENCE_ROWS = ("silence_settle_ratio", "dropout_return", "loudness_motion_spearman", "mean_motion_energy")
FILE_ROWS = ("loudness_motion_spearman", "loudness_brightness_spearman", "loudness_bright_area_spearman", "av_align",
             "beat_alignment_score")
LOUDNESS_ROWS = ("loudness std median (dB)", "share of clips with loudness std >= 8 dB")
DROP = 0.05  # real audio: "no metric drops by more than 0.05"
RHYTHM_DROP = 0.03  # AV-Align and beat score: ">= today's mean - 0.03"
SMOKE_OVERRIDES = ["data.sample_rate=8000", "timeline.n_fft=256", "eval.bootstrap=200"]

Goal = tuple[str, Callable[[float | None, float], bool] | None, bool]  # (text, check(before, after), absolute)


def goal_for(metric: str, kind: str = "normal") -> Goal:
    """(goal text, check(before, after), whether the check needs no before) of issue 29's goals; ``kind`` is
    "normal", "silence" or "file" (the real-audio rows). Edit here when the goals change."""
    if kind == "file":
        return f"≥ before − {DROP:g}", lambda b, a: a >= b - DROP, False
    if kind == "silence":
        if metric == "silence_settle_ratio":
            return "≤ before", lambda b, a: a <= b, False
        return "— (reported)", None, False
    if metric in ("loudness_motion_spearman", "loudness_brightness_spearman"):
        return "≥ 0.7", lambda b, a: a >= 0.7, True
    if metric == "bands_colour_geometry_r2":
        return "≥ 0.4", lambda b, a: a >= 0.4, True
    if metric in ("av_align", "beat_alignment_score"):
        return f"≥ before − {RHYTHM_DROP:g}", lambda b, a: a >= b - RHYTHM_DROP, False
    if metric == "style_diversity":
        return "≥ 0.9 × before", lambda b, a: a >= 0.9 * b, False
    if metric == LOUDNESS_ROWS[0]:
        return "≥ 4 dB", lambda b, a: a >= 4.0, True
    if metric == LOUDNESS_ROWS[1]:
        return "≥ 0.25", lambda b, a: a >= 0.25, True
    return "— (reported)", None, False


# ------------------------------------------------------------------ running trainer teacher


def shim_dir(baseline: Path, work: Path) -> Path:
    """A folder with ``datagen`` and ``shared`` linked to the baseline checkout's."""
    shim = work / "baseline_shim"
    shim.mkdir(parents=True, exist_ok=True)
    for pkg in ("datagen", "shared"):
        src = (baseline / pkg).resolve()
        if not (src / "__init__.py").is_file():
            raise SystemExit(f"error: --baseline {baseline}: no {pkg}/ package there")
        link = shim / pkg
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(src, target_is_directory=True)
    return shim


def teacher_argv(args: argparse.Namespace, fps: float, seconds: float, out: Path, files: bool,
                 sheet: bool) -> list[str]:
    """The ``trainer teacher`` command line of one cell (``files``: with the real audio; ``sheet``: the PNG)."""
    argv = [sys.executable, "-m", "trainer", "teacher", "--clips", str(args.clips), "--variants", "normal", "silence",
            "--seed", str(args.seed), "--out", str(out)]
    argv += [a for c in args.config for a in ("--config", str(Path(c).resolve()))]
    argv += ["--audio-dir", str(Path(args.audio_dir).resolve()), "--file-plans", str(args.file_plans)] \
        if files and args.audio_dir else []
    argv += [] if sheet else ["--no-sheet"]
    return argv + [f"render.fps={fps:g}", f"data.clip_seconds={seconds:g}", f"render.resolution={args.resolution}",
                   *args.overrides]


def run_teacher(argv: list[str], cwd: Path, pythonpath: list[Path], expect_datagen: Path, log) -> dict[str, Any]:
    """One ``trainer teacher`` run; its report.json, after checking which generator it imported."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in pythonpath))
    log(f"$ (cd {cwd}; PYTHONPATH={env['PYTHONPATH']} {shlex.join(argv)})")
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: trainer teacher failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    rep = json.loads((Path(argv[argv.index("--out") + 1]) / "report.json").read_text())
    got = Path(rep["info"]["datagen_path"]).resolve()
    if got != expect_datagen.resolve():
        raise SystemExit(f"error: the run imported datagen from {got}, expected {expect_datagen.resolve()}")
    log(f"  {time.perf_counter() - t0:.1f} s, datagen from {got}")
    return rep


# ------------------------------------------------------------------ the table


def entry_value(e: dict[str, Any] | None) -> float | None:
    return None if not e or e.get("mean") is None else float(e["mean"])


def fmt_entry(e: dict[str, Any] | None) -> str:
    if e is None or e.get("mean") is None:
        return "n/a" if e is not None else "—"
    ci = e.get("ci")
    return f"{e['mean']:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "") + f" (n={e['n']})"


def loudness_entries(sec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ls = sec["loudness_std"]
    return {LOUDNESS_ROWS[0]: {"mean": ls.get("median_db"), "ci": None, "n": ls["n"]},
            LOUDNESS_ROWS[1]: {"mean": ls.get("share_ge_threshold"), "ci": None, "n": ls["n"]}}


def row(label: str, metric: str, before: dict | None, after: dict | None, has_before: bool, speech: bool = False,
        kind: str = "normal") -> tuple[str, bool | None]:
    """One table line and whether its goal is met (None: no goal or nothing to compare)."""
    text, check, absolute = goal_for(metric, kind)
    if speech:
        text, check = "— (speech, not music)", None
    b, a = entry_value(before), entry_value(after)
    met = check(b, a) if check is not None and a is not None and (absolute or b is not None) else None
    mark = {True: "yes", False: "**no**", None: "—"}[met]
    return f"| {label} | {fmt_entry(before) if has_before else '—'} | {fmt_entry(after)} | {text} | {mark} |", met


def cell_table(before: dict | None, after: dict) -> tuple[list[str], list[bool]]:
    lines = ["| variant: metric | before | after | goal | met |", "|---|---|---|---|---|"]
    mets = []
    for variant, names in (("normal", NORMAL_ROWS), ("silence", SILENCE_ROWS)):
        a_sec = after["variants"][variant]
        b_sec = before["variants"][variant] if before else None
        pairs = [(m, (b_sec or {}).get("metrics", {}).get(m), a_sec["metrics"].get(m)) for m in names]
        la, lb = loudness_entries(a_sec), loudness_entries(b_sec) if b_sec else {}
        pairs += [(m, lb.get(m), la[m]) for m in LOUDNESS_ROWS]
        for m, b, a in pairs:
            line, met = row(f"{variant}: {m}", m, b, a, before is not None, kind=variant)
            lines.append(line)
            mets += [met] if met is not None else []
    return lines, mets


def files_table(before: dict | None, after: dict, speech: set[str]) -> tuple[list[str], list[bool]]:
    lines = ["| file: metric | before | after | goal | met |", "|---|---|---|---|---|"]
    mets = []
    b_clips = {c["file"]: c for c in (before or {}).get("real_audio", {}).get("clips", [])}
    for c in after["real_audio"]["clips"]:
        for m in FILE_ROWS:
            val = lambda rec: None if rec is None else {"mean": rec["values"].get(m), "ci": None, "n": 1}  # noqa: E731
            line, met = row(f"{c['file']}: {m}", m, val(b_clips.get(c["file"])), val(c), before is not None,
                            speech=c["file"] in speech, kind="file")
            lines.append(line)
            mets += [met] if met is not None else []
    return lines, mets


def speech_files(audio_dir: str | None) -> set[str]:
    """Files that labels.json (tests/data/real_audio) marks as speech: the music goal does not apply to them."""
    p = Path(audio_dir or "") / "labels.json"
    if not audio_dir or not p.is_file():
        return set()
    return {n for n, d in json.loads(p.read_text()).get("files", {}).items() if "speech" in d.get("style", "")}


def section(args, results: list[dict[str, Any]], command: str, base_info: dict | None, after_info: dict,
            rel_sheets: list[str]) -> str:
    """The RESULTS.md section."""
    speech = speech_files(args.audio_dir)
    body, mets = [], []
    for r in results:
        fps, sec = r["fps"], r["seconds"]
        body += ["", f"### {fps:g} fps, {sec:g} s clips, {args.resolution} px: {args.clips} normal + {args.clips} "
                     f"silence clips", ""]
        lines, m = cell_table(r.get("before"), r["after"])
        body += lines
        mets += m
        if r["after"].get("real_audio"):
            body += ["", f"Real audio ({args.audio_dir}, {fps:g} fps; per file the mean over {args.file_plans} visual "
                         "plans seeded by its name, the same plans before and after), per file:", ""]
            lines, m = files_table(r.get("before"), r["after"], speech)
            body += lines
            mets += m
    head = [HEADING, "", f"Command: `{command}`", "",
            f"- after: this checkout, datagen `{after_info['datagen_path']}` at {after_info['datagen_commit']}",
            (f"- before: `{args.baseline}`, datagen imported from `{base_info['datagen_path']}` (checked in every "
             f"report) at {base_info['datagen_commit']}" if base_info else "- before: no --baseline given"),
            f"- metrics: trainer at {after_info['trainer_commit']} for both (the eval's registry, the ground truth "
            "against its own audio; 95% bootstrap CIs over clips)",
            f"- machine: {after_info['machine']}; renderer {after_info['renderer'].get('renderer')}",
            f"- goals met: {sum(mets)} of {len(mets)} checked; wall time {sum(r['wall_s'] for r in results):.0f} s",
            f"- reports: `{args.json_dir}`" + "".join(f"; ![sheet]({s})" for s in rel_sheets)]
    return "\n".join(head + body) + "\n"


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", default=None, metavar="DIR", help="An older checkout (its datagen/ and shared/).")
    p.add_argument("--fps", type=float, nargs="+", default=[8.0, 24.0])
    p.add_argument("--seconds", type=float, nargs="+", default=[4.0, 8.0])
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--clips", type=int, default=32, help="Clips per variant (normal and silence).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", action="append", default=[], metavar="FILE.yaml")
    p.add_argument("--audio-dir", default=str(ROOT / "tests" / "data" / "real_audio"))
    p.add_argument("--file-plans", type=int, default=6,
                   help="Visual plans per real-audio file (one plan's figure moves by ~0.1 with the plan alone).")
    p.add_argument("--work", default=None, help="Where the runs go (default: a temporary folder).")
    p.add_argument("--json-dir", default=str(ROOT / "docs" / "results" / "teacher"))
    p.add_argument("--results-md", default=str(ROOT / "docs" / "RESULTS.md"))
    p.add_argument("--smoke", action="store_true", help="2 clips, one cell (8 fps, 2 s, 32 px), tiny audio settings.")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="More config overrides for every run.")
    args = p.parse_args(argv)
    if args.smoke:
        args.fps, args.seconds, args.resolution, args.clips = [8.0], [2.0], 32, 2
        args.config = [str(ROOT / "configs" / "tiny.yaml")] + args.config
        args.overrides = SMOKE_OVERRIDES + args.overrides
    return args


def main(argv: list[str] | None = None) -> int:
    from shared.markdown import replace_section

    args = parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    work = Path(args.work or tempfile.mkdtemp(prefix="teacher_ab_")).resolve()
    json_dir, results_md = Path(args.json_dir).resolve(), Path(args.results_md).resolve()
    json_dir.mkdir(parents=True, exist_ok=True)
    sides = {"after": (ROOT, [ROOT], ROOT / "datagen")}
    if args.baseline:
        shim = shim_dir(Path(args.baseline), work)
        sides["before"] = (shim, [shim, ROOT], (shim / "datagen").resolve())
    results, sheets = [], []
    for i, fps in enumerate(args.fps):
        for j, seconds in enumerate(args.seconds):
            cell = {"fps": fps, "seconds": seconds, "wall_s": 0.0}
            for side, (cwd, path, expect) in sides.items():
                out = work / f"{side}_fps{fps:g}_s{seconds:g}"
                t0 = time.perf_counter()
                rep = run_teacher(teacher_argv(args, fps, seconds, out, files=j == 0, sheet=i == j == 0), cwd, path,
                                  expect, log)
                cell["wall_s"] += time.perf_counter() - t0
                shutil.copy(out / "report.json", json_dir / f"{out.name}.json")
                if i == j == 0:
                    for png in ("contact_sheet.png", "primitives_sheet.png"):
                        shutil.copy(out / png, json_dir / f"{out.name}_{png}")
                        sheets.append(os.path.relpath(json_dir / f"{out.name}_{png}", results_md.parent))
                cell[side] = rep
            results.append(cell)
    command = shlex.join(["python", "bench/teacher_ab.py", *(sys.argv[1:] if argv is None else argv)])
    md = section(args, results, command, results[0].get("before", {}).get("info"), results[0]["after"]["info"],
                 sheets)
    replace_section(results_md, HEADING, md)
    log(f"teacher_ab: wrote {json_dir} and the section {HEADING!r} of {results_md}")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
