"""report.html: the evaluation report as one self-contained page a person opens in a browser.

Written from the report.json dict (the same for ``trainer eval`` and ``trainer eval --audio-dir``):
variants in the order normal, silence, debug, then any others (normal music is the headline); one
table per variant with every metric's n, mean, 95% CI, floor and ceiling; the videos as
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

REPORT_HTML = "report.html"
KIND_ORDER = ("side_by_side", "generated", "ground_truth", "floor")

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 78em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6em 0; } th, td { border: 1px solid #ccc; padding: .25em .55em; }
th { background: #f3f3f3; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.na { color: #999; text-align: right; } .note { color: #555; font-size: .92em; }
.videos { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; } figcaption { font-size: .9em; color: #444; }
video { image-rendering: pixelated; background: #000; min-width: 160px; } img.plot { max-width: 100%; border: 1px solid #eee; }
dt { font-weight: 600; } dd { margin: 0 0 .5em 1.5em; } pre { background: #f7f7f7; padding: .6em; overflow: auto; }
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


def _cells(s: dict[str, Any] | None) -> str:
    """Two cells: mean, 95% CI ("n/a" when missing)."""
    if not isinstance(s, dict):
        return '<td class="na">n/a</td><td class="na">n/a</td>'
    mean = _num(s.get("mean"))
    ci = s.get("ci")
    lo, hi = (_num(ci[0]), _num(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
    m = f'<td class="num">{mean}</td>' if mean is not None else '<td class="na">n/a</td>'
    c = f'<td class="num">[{lo}, {hi}]</td>' if lo is not None and hi is not None else '<td class="na">n/a</td>'
    return m + c


def _n(s: dict[str, Any] | None) -> str:
    return esc(s.get("n", "")) if isinstance(s, dict) else ""


def metric_table(metrics: dict[str, Any], definitions: dict[str, str]) -> str:
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
    return "\n".join(rows)


def kinds_table(metrics: dict[str, dict[str, Any]], definitions: dict[str, str]) -> str:
    """A table of metric rows whose entries are keyed by kind (e.g. the VAE diagnostic's input_own, output_own,
    ...): n, mean and 95% CI per kind."""
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
    return "\n".join(rows)


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
    return f'<figure><img class="plot" alt="{title}" src="data:image/png;base64,{data}"><figcaption>{title}</figcaption></figure>'


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
            cells.append(f'<td class="num">{v or "n/a"}' + (f' <span class="note">(floor {f})</span>' if f else "")
                         + "</td>")
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
    body = [f"<h1>{esc(title)}</h1>", f'<p>checkpoint: <code>{esc(report.get("checkpoint", ""))}</code></p>']
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
    if report.get("plots"):
        body += ["<h2>plots</h2>"] + [plot_img(out_dir, p) for p in report["plots"]]
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
