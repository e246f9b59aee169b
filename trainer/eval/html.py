"""report.html: the evaluation report as one self-contained page a person opens in a browser.

Written from the report.json dict (the same for ``trainer eval`` and ``trainer eval --audio-dir``): first
the warnings (a broken VAE) and the verdict block (:mod:`trainer.eval.verdict`, one row per goal: met / not
met / undecided with its n); then variants in the order normal, silence, debug, then any others (normal
music is the headline); one table per variant with every metric's n, mean, 95% CI, floor and ceiling (rows
that cannot apply to the variant listed once below it instead), its plots (each caption above its plot,
the figures spaced apart so a caption is never nearer another plot); the videos as
``<video controls>`` elements linking the mp4s beside the page (relative links, so the folder can be
moved or served as it is); the plots inlined as base64 PNG; per-file rows, definitions, notes and the
config. No external asset (no script, stylesheet, font or image from elsewhere). Written to a temporary
name and renamed.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shared.fsutil import atomic_write_text
from shared.shards import VARIANTS
from trainer.eval.verdict import not_applicable

REPORT_HTML = "report.html"
KIND_ORDER = ("side_by_side", "generated", "ground_truth", "floor")

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 78em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6em 0; } th, td { border: 1px solid #ccc; padding: .25em .55em; }
th { background: #f3f3f3; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.na { color: #999; text-align: right; } .note { color: #555; font-size: .92em; }
.videos { display: flex; flex-wrap: wrap; gap: 1em; margin-bottom: 1.5em; } figure { margin: 0; } figcaption { font-size: .9em; color: #444; }
video { image-rendering: pixelated; background: #000; min-width: 160px; } img.plot { max-width: 100%; border: 1px solid #eee; }
dt { font-weight: 600; } dd { margin: 0 0 .5em 1.5em; } pre { background: #f7f7f7; padding: .6em; overflow: auto; }
figure.plot { margin: 0 0 2em; } figure.plot figcaption { font-weight: 600; margin-bottom: .3em; }
.warning { background: #fde8e8; border: 2px solid #c0392b; padding: .5em .8em; font-weight: 600; }
#verdict { border: 1px solid #bbb; padding: 0 1em .6em; background: #fafafa; }
td.met { background: #dff3e0; font-weight: 600; } td.not-met { background: #fbe3e3; font-weight: 600; }
td.undecided { background: #fff4d6; font-weight: 600; } td.n-a { color: #999; }
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def href(path: str) -> str:
    """A relative link to a file beside the page (each path segment percent-encoded)."""
    p = Path(path)
    if p.is_absolute():
        raise ValueError(f"report.html links must be relative to the report folder, got {path!r}")
    return "/".join(quote(part) for part in p.parts)


def variant_order(names: list[str]) -> list[str]:
    """normal, silence, debug first (in that order), then the others by name."""
    return [v for v in VARIANTS if v in names] + sorted(v for v in names if v not in VARIANTS)


def _num(x: Any) -> str | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return f"{x:.4g}"


def _mean_ci(s: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """An entry's mean and ``[lo, hi]`` as text (None where missing)."""
    if not isinstance(s, dict):
        return None, None
    ci = s.get("ci")
    lo, hi = (_num(ci[0]), _num(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
    return _num(s.get("mean")), (f"[{lo}, {hi}]" if lo is not None and hi is not None else None)


def _cells(s: dict[str, Any] | None) -> str:
    """Two cells: mean, 95% CI ("n/a" when missing)."""
    return "".join(f'<td class="num">{x}</td>' if x is not None else '<td class="na">n/a</td>' for x in _mean_ci(s))


def _n(s: dict[str, Any] | None) -> str:
    return esc(s.get("n", "")) if isinstance(s, dict) else ""


def verdict_block(report: dict[str, Any]) -> str:
    """The verdict section (the warnings first, then the answer and one row per goal); "" without a verdict."""
    v = report.get("verdict")
    if not isinstance(v, dict):
        return ""
    out = [f'<p class="warning" id="vae-warning">WARNING: {esc(w)}</p>' for w in v.get("warnings") or []]
    out.append(f'<section id="verdict"><h2>{esc(v.get("question"))} <span class="answer">{esc(v.get("summary"))}'
               '</span></h2>')
    rows = ['<table class="verdict"><thead><tr><th>goal</th><th>variant</th><th>rule</th><th>n</th>'
            '<th>generated (95% CI)</th><th>target (95% CI)</th><th>verdict</th><th>why</th><th>what it means</th>'
            '</tr></thead><tbody>']
    for g in v.get("goals") or []:
        status = str(g.get("status", ""))
        cls = status.replace(" ", "-").replace("/", "-")
        rows.append(f'<tr data-goal="{esc(g.get("goal"))}" data-variant="{esc(g.get("variant"))}">'
                    f'<th>{esc(g.get("goal"))}</th><td>{esc(g.get("variant"))}</td><td>{esc(g.get("rule"))}</td>'
                    f'<td class="num">{esc(g.get("n"))}</td><td class="num">{esc(_entry_text(g.get("generated")))}</td>'
                    f'<td class="num">{esc(_entry_text(g.get("target")))}</td><td class="{cls}">{esc(status)}</td>'
                    f'<td class="note">{esc(g.get("why"))}</td><td class="note">{esc(g.get("meaning"))}</td></tr>')
    out += rows + ["</tbody></table>",
                   '<p class="note">met / not met: the generated 95% CI lies wholly on one side of the target '
                   "(the target's CI is the reference's, scaled); undecided: they overlap, too few clips to tell.</p>"]
    vae = v.get("vae")
    if isinstance(vae, dict) and not vae.get("broken"):
        out.append(f'<p class="note" id="vae-ok">{esc(vae.get("text"))}</p>')
    out.append("</section>")
    return "\n".join(out)


def _entry_text(e: dict[str, Any] | None) -> str:
    """``0.123 [0.05, 0.2]``; n/a when missing."""
    mean, ci = _mean_ci(e)
    return "n/a" if mean is None else mean + (f" {ci}" if ci else "")


def not_applicable_note(na: dict[str, str]) -> str:
    """The one line below a table that lists the rows left out of it."""
    if not na:
        return ""
    items = "; ".join(f"{esc(k)} ({esc(why)})" for k, why in na.items())
    return f'<p class="note not-applicable">not applicable here: {items}</p>'


def metric_table(metrics: dict[str, Any], definitions: dict[str, str]) -> str:
    """A variant's table: every row that can apply to it; those that cannot are listed once below it."""
    na = not_applicable(metrics)
    metrics = {k: r for k, r in metrics.items() if k not in na}
    rows = ['<table class="metrics"><thead><tr><th rowspan="2">metric</th><th colspan="3">generated</th>'
            '<th colspan="3" title="the same metric with audio the video was not made from">floor</th>'
            '<th colspan="3">ceiling (ground truth)</th>'
            '<th rowspan="2">note</th></tr><tr>' + "<th>n</th><th>mean</th><th>95% CI</th>" * 3 + "</tr></thead><tbody>"]
    for name, r in metrics.items():
        title = f' title="{esc(definitions[name])}"' if name in definitions else ""
        gen, floor, ceil = r.get("generated"), r.get("floor"), r.get("ceiling")
        rows.append(f'<tr data-metric="{esc(name)}"><th{title}>{esc(name)}</th>'
                    f'<td class="num">{_n(gen)}</td>{_cells(gen)}'
                    f'<td class="num">{_n(floor)}</td>{_cells(floor)}'
                    f'<td class="num">{_n(ceil)}</td>{_cells(ceil)}'
                    f'<td class="note">{esc(r.get("note") or "")}</td></tr>')
    rows.append("</tbody></table>")
    return "\n".join(rows) + not_applicable_note(na)


def kinds_table(metrics: dict[str, dict[str, Any]], definitions: dict[str, str]) -> str:
    """A table of metric rows whose entries are keyed by kind (e.g. the VAE diagnostic's input_own, output_own,
    ...): n, mean and 95% CI per kind."""
    na = not_applicable(metrics)
    metrics = {k: r for k, r in metrics.items() if k not in na}
    kinds: list[str] = []
    for r in metrics.values():
        kinds += [k for k, v in r.items() if isinstance(v, dict) and k not in kinds]
    head = "".join(f'<th colspan="3">{esc(k.replace("_", " "))}</th>' for k in kinds)
    rows = [f'<table class="kinds"><thead><tr><th rowspan="2">metric</th>{head}</tr><tr>'
            + "<th>n</th><th>mean</th><th>95% CI</th>" * len(kinds) + "</tr></thead><tbody>"]
    for name, r in metrics.items():
        title = f' title="{esc(definitions[name])}"' if name in definitions else ""
        cells = "".join(f'<td class="num">{_n(r.get(k))}</td>{_cells(r.get(k))}' for k in kinds)
        rows.append(f'<tr data-metric="{esc(name)}"><th{title}>{esc(name)}</th>{cells}</tr>')
    rows.append("</tbody></table>")
    return "\n".join(rows) + not_applicable_note(na)


def info_table(info: dict[str, Any]) -> str:
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(_num(v) or v)}</td></tr>" for k, v in info.items())
    return f'<table class="info"><tbody>{cells}</tbody></table>'


def video_block(videos: list[dict[str, Any]]) -> str:
    """``<video controls>`` per mp4, grouped by clip, side-by-side first."""
    if not videos:
        return ""
    by_clip: dict[str, list[dict[str, Any]]] = {}
    for v in videos:
        by_clip.setdefault(str(v.get("clip", "")), []).append(v)
    out = ['<div class="videos">']
    for clip, vs in by_clip.items():
        vs = sorted(vs, key=lambda v: KIND_ORDER.index(v["kind"]) if v.get("kind") in KIND_ORDER else len(KIND_ORDER))
        for v in vs:
            kind = str(v.get("kind", "")).replace("_", " ")
            out.append(f'<figure><video controls preload="metadata" width="256" src="{esc(href(v["path"]))}"></video>'
                       f'<figcaption>{esc(clip)}: {esc(kind)}</figcaption></figure>')
    out.append("</div>")
    return "\n".join(out)


def plot_img(out_dir: Path, plot: dict[str, Any]) -> str:
    """The PNG inlined as base64 (the page stands alone); a missing file says so instead."""
    p = out_dir / plot["path"]
    title = esc(plot.get("title", plot["path"]))
    if not p.is_file():
        return f'<p class="note">plot missing: {esc(plot["path"])}</p>'
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    # the caption above its own plot, the figures apart: a caption is never nearer another figure's plot
    return (f'<figure class="plot"><figcaption>{title}</figcaption>'
            f'<img class="plot" alt="{title}" src="data:image/png;base64,{data}"></figure>')


def per_file_table(per_file: list[dict[str, Any]]) -> str:
    """Per-file rows of an --audio-dir report: duration, rate, detected silences, each metric and its floor."""
    names = list(per_file[0].get("metrics", {})) if per_file else []
    head = "".join(f"<th>{esc(m)}</th>" for m in names)
    rows = [f'<table class="files"><thead><tr><th>file</th><th>s</th><th>rate</th><th>detected silences (s)</th>{head}'
            "</tr></thead><tbody>"]
    for p in per_file:
        cells = []
        for m in names:
            v, f = _num(p["metrics"].get(m)), _num((p.get("floor") or {}).get(m))
            c = _num((p.get("ceiling") or {}).get(m))
            cells.append(f'<td class="num">{v or "n/a"}' + (f' <span class="note">(floor {f})</span>' if f else "")
                         + (f' <span class="note">(teacher {c})</span>' if c else "") + "</td>")
        sil = ", ".join(f"{a:g}-{b:g}" for a, b in p.get("detected_silences_s", [])) or "none"
        rows.append(f'<tr><th>{esc(p["file"])}</th><td class="num">{_num(p.get("duration_s")) or ""}</td>'
                    f'<td class="num">{esc(p.get("sample_rate", ""))}</td><td>{esc(sil)}</td>{"".join(cells)}</tr>')
    rows.append("</tbody></table>")
    return "\n".join(rows)


def render_html(report: dict[str, Any], out_dir: Path) -> str:
    """The page as a string (see the module docstring)."""
    title = report.get("title") or "Synesthete evaluation"
    definitions = report.get("definitions") or {}
    variants = report.get("variants") or {}
    videos = report.get("videos") or []
    body = [f"<h1>{esc(title)}</h1>", verdict_block(report),
            f'<p>checkpoint: <code>{esc(report.get("checkpoint", ""))}</code></p>']
    if report.get("info"):
        body.append(info_table(report["info"]))
    for name in variant_order(list(variants)):
        v = variants[name]
        body.append(f'<section id="variant-{esc(name)}"><h2>{esc(name)} <span class="note">({esc(v.get("n_clips", 0))} '
                    f'clips)</span></h2>')
        if v.get("note"):
            body.append(f'<p class="note">{esc(v["note"])}</p>')
        if not v.get("metrics"):
            body.append('<p class="note">no clips</p>')
        else:
            body.append(metric_table(v["metrics"], definitions))
        body.append(video_block([x for x in videos if x.get("variant") == name]))
        body += [plot_img(out_dir, p) for p in report.get("plots") or [] if p.get("variant") == name]
        body.append("</section>")
    vae = report.get("vae_diagnostic")
    if isinstance(vae, dict) and vae.get("metrics"):
        psnr = _num(vae.get("psnr_db"))
        body += ['<section id="vae-diagnostic"><h2>VAE diagnostic <span class="note">'
                 f'({esc(vae.get("n_clips", ""))} clips{", PSNR " + psnr + " dB" if psnr else ""})</span></h2>',
                 f'<p class="note">{esc(vae.get("note") or "")}</p>', kinds_table(vae["metrics"], definitions),
                 "</section>"]
    other = [x for x in videos if x.get("variant") not in variants]
    if other:
        body += ["<h2>other videos</h2>", video_block(other)]
    if report.get("per_file"):
        body += ["<h2>files</h2>", per_file_table(report["per_file"])]
    for s in report.get("skipped") or []:
        body.append(f'<p class="note">skipped {esc(s.get("file"))}: {esc(s.get("reason"))}</p>')
    retrieval = report.get("retrieval") or {}
    if retrieval.get("skipped"):
        body.append(f'<p class="note">retrieval skipped: {esc(retrieval["skipped"])}</p>')
    loose = [p for p in report.get("plots") or [] if p.get("variant") not in variants]
    if loose:
        body += ["<h2>plots</h2>"] + [plot_img(out_dir, p) for p in loose]
    if definitions:
        body += ["<h2>definitions</h2>", "<dl>"] + [f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in definitions.items()]
        body.append("</dl>")
    if report.get("notes"):
        body += ["<h2>notes</h2>", "<ul>"] + [f"<li>{esc(n)}</li>" for n in report["notes"]] + ["</ul>"]
    if report.get("config"):
        cfg = json.dumps(report["config"], indent=2, sort_keys=True, default=str)
        body.append(f"<details><summary>config</summary><pre>{esc(cfg)}</pre></details>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report_html(report: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` from the report dict (atomically); returns its path."""
    out_dir = Path(out_dir)
    return atomic_write_text(out_dir / REPORT_HTML, render_html(report, out_dir))
