"""Write models/synesthete-tiny-live/MODEL_CARD.md from the evals of the live and the offline model.

    python bench/live_model_card.py --commit COMMIT --live-report runs/reeval/eval/live/report.json \\
        --offline-report runs/reeval/eval/tiny-s0/report.json \\
        [--wide-live-report runs/reeval/eval/val18-live/report.json \\
         --wide-offline-report runs/reeval/eval/val18-tiny-s0/report.json]

Both reports are ``trainer eval`` runs on the same val data (report.json; bench/reeval_shipped.sh makes the
data and runs them, COMMIT is the commit they ran on); the card puts the offline model's
figures beside the live model's, per variant (normal music first), with the 95% CIs the reports hold. The live
latency figures come from the summaries bench/live_latency.py keeps (``bench/live_latency_*_cpu.json``). The
reports read are copied to docs/results/reports/synesthete-tiny-live/ (committed with the card). So
refreshing the card after either model changes is: re-run its ``trainer eval``, then this command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from trainer.eval.report import fmt_entry, keep_report  # noqa: E402

NAME = "synesthete-tiny-live"
DATA = "runs/live-cpu"  # where the model was trained (its data, VAE and latents; not remade: an earlier generator)
EVAL = "runs/reeval"  # bench/reeval_shipped.sh's work dir: today's generator, the tiny preset at the model's 8 fps
NORMAL = ("loudness_motion_spearman", "loudness_brightness_spearman", "loudness_bright_area_spearman",
          "bands_colour_geometry_r2", "av_align", "beat_alignment_score", "av_align_proxy", "retrieval_top1",
          "retrieval_mean_rank", "mean_motion_energy", "style_diversity", "output_sensitivity_motion", "val_loss")
SILENCE = ("silence_settle_ratio", "dropout_return", "loudness_motion_spearman", "mean_motion_energy")

# What was run (from the repository root); the data is the ablation's cpu preset (bench/responsiveness_ablation.py
# --preset tiny, called cpu then: its data, VAE and latents, copied), the flags are its arm B's, the recipe of models/synesthete-tiny.
TRAIN_FLAGS = ("data.audio_silence_mix_prob=0.3 data.audio_debug_mix_prob=0.05 diffusion.audio_feature_normalize_per_clip=false "
               "diffusion.audio_shuffle_loss_weight=0.5 diffusion.audio_shuffle_negatives=hard "
               "diffusion.audio_shuffle_loss_space=x0 diffusion.audio_shuffle_loss_type=hinge")


# The model this card describes was trained before issue 29 changed the generator (retraining it is issue 24).
TEACHER_NOTE = ("**Teacher:** trained on shards of the generator before issue 29 (content versions timeline 2, audio 1, "
                "visual 1): songs at one dynamic level (2-3 dB of loudness movement in a clip) and visualizers that "
                "follow loudness weakly (ground-truth loudness->motion about 0.28 at 8 fps). Today's generator teaches "
                "more (songs with dynamics, a loudness-first drive: `trainer teacher`, docs/RESULTS.md \"Teacher "
                "before/after\"); this model has not been retrained on it.")


def metric_rows(names: tuple[str, ...], live: dict, offline: dict) -> list[str]:
    rows = ["| metric | floor (live, other clip's audio) | live (this model) | offline (synesthete-tiny) | ground truth | n |",
            "|---|---|---|---|---|---|"]
    for m in names:
        a, b = live.get(m), offline.get(m)
        if a is None:
            continue
        rows.append(f"| {m} | {fmt_entry(a.get('floor'))} | {fmt_entry(a.get('generated'))} | "
                    f"{fmt_entry((b or {}).get('generated'))} | {fmt_entry(a.get('ceiling'))} | "
                    f"{(a.get('generated') or {}).get('n')} |")
    return rows


def ci_reading(names: tuple[str, ...], live: dict, offline: dict) -> str:
    """Which metrics separate the two models: their 95% CIs do not overlap (computed, so it stays true)."""
    apart, same, ns = [], [], set()
    for m in names:
        a, b = (live.get(m) or {}).get("generated") or {}, (offline.get(m) or {}).get("generated") or {}
        if not a.get("ci") or not b.get("ci"):
            continue
        ns.add(a.get("n"))
        lo_a, hi_a = a["ci"]
        lo_b, hi_b = b["ci"]
        if hi_a < lo_b or hi_b < lo_a:
            apart.append(f"{m} (live {fmt_entry({'mean': a['mean']})}, offline {fmt_entry({'mean': b['mean']})})")
        else:
            same.append(m)
    return ("95% CIs apart: " + ("; ".join(apart) if apart else "none") + ". Overlapping (no measured difference "
            f"at n = {'/'.join(str(n) for n in sorted(ns, key=str))}): " + (", ".join(same) if same else "none") + ".")


def variant(report: dict, name: str) -> tuple[dict, int]:
    v = report.get("variants", {}).get(name, {})
    return v.get("metrics", {}), int(v.get("n_clips") or 0)


def latency_rows() -> list[str]:
    runs = sorted((json.loads(p.read_text()) for p in (ROOT / "bench").glob("live_latency_*_cpu.json")),
                  key=lambda r: r.get("started_utc", ""))  # in the order they ran
    rows = ["| model | run | sustained (x real time) | dropped / frames | click latency mean / p95 / max | drift "
            "(frames) | RSS first → last | load (1/5/15 min) start → end |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        label = r.get("label") or Path(r["checkpoint"]).name
        rows.append(f"| {label} | {r['minutes']:g} min | {r['sustained_x_realtime']} | {r['dropped']} / {r['frames']} | "
                    f"{r['click_latency_mean_ms']} / {r['click_latency_p95_ms']} / {r['click_latency_max_ms']} ms | "
                    f"{r['drift_frames']} | {r['rss_mb_first']} → {r['rss_mb_last']} MB | "
                    f"{r['load_start'].split('load average:')[-1].strip()} → {r['load_end'].split('load average:')[-1].strip()} |")
    return rows


def offline_frames(offline: dict) -> str:
    """The offline model's training frames, from the config its report records."""
    od = (offline.get("config") or {}).get("diffusion") or {}
    if not od:
        return "n/a"
    return f"{od['steps']} steps x {od['batch_size']} snippets x {od['snippet_frames']} frames = " \
           f"{od['steps'] * od['batch_size'] * od['snippet_frames']}"


KEPT = ROOT / "docs" / "results" / "reports" / NAME  # copies of the report.json files the card is written from
REPORT_NAMES = ("live", "offline", "wide-live", "wide-offline")  # in --live-report, --offline-report, --wide-* order


def raw_reports_line(*names: str) -> str:
    """The card's line beside a table: where the raw reports behind its figures are kept."""
    kept = ", ".join(f"`{(KEPT / f'{n}.json').relative_to(ROOT)}`" for n in names)
    return f"Raw reports behind this table: {kept} (copied there by bench/live_model_card.py from the reports it read)."


WIDE_DATA = f"{EVAL}/val18"  # the preset's generator with 18 val shards: 32 distinct normal and 32 silence clips


def wide_section(live: dict, offline: dict) -> list[str]:
    """The same comparison on a larger val set (``--wide-live-report``/``--wide-offline-report``): CIs half as wide."""
    normal, n_normal = variant(live, "normal")
    silence, n_silence = variant(live, "silence")
    off_normal, _ = variant(offline, "normal")
    off_silence, _ = variant(offline, "silence")
    ev = live.get("info", {})
    return [
        f"### On more val clips: {n_normal} normal, {n_silence} silence/dropout", "",
        "8 clips per variant leave every CI wide, so both models were evaluated again on 18 val shards of the same "
        "generator (val shards 0-5 are the preset's own, byte for byte; 6-17 are clips the preset never made), "
        f"{ev.get('seeds', 1)} seed, guidance {ev.get('guidance')} (offline: "
        f"{offline.get('info', {}).get('guidance')}):", "",
        "```",
        f"python -m datagen run --config {EVAL}/tiny.yaml --shards 1 data.val_shards=18 render.fps=8 --executor local "
        f"--no-progress --out {WIDE_DATA}",
        f"python -m trainer eval --checkpoint models/{NAME} --data {WIDE_DATA} --n 32 --out {EVAL}/eval/val18-live "
        "eval.write_videos=false",
        f"python -m trainer eval --checkpoint models/synesthete-tiny --data {WIDE_DATA} --n 32 --seed 0 "
        f"--out {EVAL}/eval/val18-tiny-s0 eval.write_videos=false",
        "```", "",
        raw_reports_line("wide-live", "wide-offline"), "",
        f"Normal music, n = {n_normal} clips:", "",
        *metric_rows(NORMAL, normal, off_normal), "",
        f"Silence/dropout clips, n = {n_silence} clips:", "",
        *metric_rows(SILENCE, silence, off_silence), "",
        f"Normal music, live against offline: {ci_reading(NORMAL, normal, off_normal)}", "",
        f"Silence/dropout: {ci_reading(SILENCE, silence, off_silence)}", ""]


def use_work_of(report: dict) -> None:
    """Name the work dir the evals ran in (their data's parent) in the card's commands."""
    global EVAL, WIDE_DATA
    EVAL = str(Path(report["info"]["data"]).parent)
    WIDE_DATA = f"{EVAL}/val18"


def eval_note(prov: dict) -> str:
    """What data the evals ran on, and on which commit (tiny_model_card.eval_record): not the training data."""
    commit, v = prov["commit"], prov["content_versions"]
    return (f"Evaluated on commit `{commit}` on the data today's generator makes (content versions timeline "
            f"{v['timeline']}, audio {v['audio']}, visual {v['visual']}) from the `tiny` preset at the models' own 8 fps "
            f"(`bash bench/reeval_shipped.sh {EVAL}` makes it and runs every eval of this card; two runs gave the same reports, "
            "timings aside). Both models were trained on "
            "the generator of an earlier commit (content versions timeline 2, audio 1, visual 1, before issue 29 changed "
            "the songs and the drive; that data cannot be remade), so these are the shipped checkpoints on data they "
            "were not trained for, and the ground-truth and floor columns are today's data's. The evals' record (commit, "
            f"content versions and id of the data): `{(KEPT / 'eval.json').relative_to(ROOT)}`.")


def card(model: Path, live: dict, offline: dict, offline_label: str, wide: tuple[dict, dict] | None,
         prov: dict) -> str:
    commit = prov["commit"]
    cfg = yaml.safe_load((model / "config.yaml").read_text())
    cfg = cfg.get("config", cfg)
    d, df, inf, r = cfg["data"], cfg["diffusion"], cfg["inference"], cfg["render"]
    k, fps = df["audio_context_frames"], r["fps"]
    channels = df["audio_channels"]
    step = int(live.get("info", {}).get("step") or 0)
    ev = live.get("info", {})
    normal, n_normal = variant(live, "normal")
    silence, n_silence = variant(live, "silence")
    off_normal, _ = variant(offline, "normal")
    off_silence, _ = variant(offline, "silence")
    files = sorted(q for q in model.rglob("*") if q.is_file() and not q.is_symlink() and q.name != "MODEL_CARD.md")
    L = [f"# {NAME}", "",
         "The live-mode companion of `models/synesthete-tiny`: the same data, VAE and training recipe, reshaped so "
         "that a frame is generated as soon as its own audio has arrived, from features that never look ahead. "
         f"`trainer live --checkpoint models/{NAME} --audio song.wav --serve 8765` plays it in a browser; "
         "`trainer live` uses it by default (when there is no `runs/diffusion/`).", "",
         f"**Quality, honestly:** a demonstration-size model ({r['resolution']}² px, a {df['width']}-wide "
         f"{df['depth']}-block denoiser, {step} steps on {d['train_shards'] * d['samples_per_shard']} procedural "
         "clips, trained on the 2-core CPU). Blurry blobs; what it shows is whether the pictures follow the audio.", "",
         TEACHER_NOTE, "",
         "## Shape: what makes it live", "",
         f"- `diffusion.snippet_frames={df['snippet_frames']}`, `inference.snippet_overlap={inf['snippet_overlap']}`: "
         "one frame per snippet, back to back: a frame never waits for later frames of its snippet.",
         f"- `diffusion.audio_context_frames={k}`, `diffusion.audio_context_future={df['audio_context_future']}`: each "
         f"frame's audio window is timeline frames t-{k} .. t ({1000 * k / fps:.0f} ms of past, no look-ahead).",
         f"- Causal channels (`audio_context_future=0` makes the model causal, trainer/live/features.py): "
         f"`diffusion.audio_channels` = {', '.join(channels)} ({len(channels)} of the timeline's "
         f"{len(channels) + 2}: no beat_phase / downbeat, whose causal values need the audio that latent shards do "
         "not store; live, the beat tracker is then not run at all). The loader takes these columns from the stored "
         "shards and recomputes `is_silent` as the trailing median the live stream computes, so the shards were not "
         "regenerated; the same numbers reach the model live (tests/test_live_conditioning.py, on real audio).",
         f"- `diffusion.prev_frames={df['prev_frames']}`: each frame is conditioned on the previous generated latent "
         "(coherence).", "",
         "## Recipe", "",
         f"Data, VAE and latents of the ablation's tiny preset (bench/responsiveness_ablation.py `--preset tiny`, called cpu then, "
         f"copied to `{DATA}/`), its arm B flags (the recipe of `models/synesthete-tiny`), the live shape above in "
         f"`{DATA}/live.yaml` (the preset's ablation.yaml plus those fields), batches of {df['batch_size']} "
         f"1-frame snippets, {df['steps']} steps: {df['steps'] * df['batch_size'] * df['snippet_frames']} training frames "
         f"(the offline model: {offline_frames(offline)}); the bootstrap curriculum over the first "
         f"{d['audio_debug_mix_schedule_steps']} steps:", "",
         "```",
         f"nice -n 5 python -m trainer diffusion --config {DATA}/live.yaml --latents {DATA}/latents --out {DATA}/ship4k "
         f"{TRAIN_FLAGS} diffusion.steps={df['steps']} run.seed={cfg['run']['seed']} "
         f"data.audio_debug_mix_schedule_steps={d['audio_debug_mix_schedule_steps']} "
         f"inference.audio_guidance_scale={inf['audio_guidance_scale']:g} "
         f"inference.audio_guidance_schedule={inf['audio_guidance_schedule']}",
         "# packaged with trainer/checkpoint.py's package_model (EMA weights, no optimizer state); check_sizes "
         "(bench/ablation/ship_study.py)",
         "```", "",
         "## Evaluation beside the offline model (per variant, normal music first)", "",
         eval_note(prov), "",
         f"`trainer eval` on the preset's val data ({EVAL}/data): {n_normal} normal-music and {n_silence} "
         f"silence/dropout clips with distinct audio, {ev.get('seeds', 1)} seed, guidance {ev.get('guidance')} (the "
         f"offline model at its own setting, {offline.get('info', {}).get('guidance')}), "
         f"{ev.get('steps')} {ev.get('sampler', '').upper()} steps, 95% percentile-bootstrap CIs over clips "
         f"({ev.get('bootstrap')} resamples) in brackets. Eval samples whole clips offline, each model with the "
         "conditioning it was trained on (this one: the causal channels). *Floor* = this model's video made from a "
         "different clip's audio, scored against this clip's audio; *ground truth* = the visualizers' frames. "
         f"Offline column: {offline_label}. Commands:", "",
         "```",
         f"python -m datagen run --config {EVAL}/tiny.yaml render.fps=8 --executor local --no-progress --out {EVAL}/data",
         f"python -m trainer eval --checkpoint models/{NAME} --data {EVAL}/data --out {EVAL}/eval/live "
         "eval.write_videos=false",
         f"python -m trainer eval --checkpoint models/synesthete-tiny --data {EVAL}/data --seed 0 "
         f"--out {EVAL}/eval/tiny-s0 eval.write_videos=false",
         f"python bench/live_model_card.py --commit {commit} --live-report {EVAL}/eval/live/report.json "
         f"--offline-report {EVAL}/eval/tiny-s0/report.json --wide-live-report {EVAL}/eval/val18-live/report.json "
         f"--wide-offline-report {EVAL}/eval/val18-tiny-s0/report.json",
         "```", "",
         raw_reports_line("live", "offline"), "",
         f"Normal music (the headline; music frames only), n = {n_normal} clips:", "",
         *metric_rows(NORMAL, normal, off_normal), "",
         f"Silence/dropout clips, n = {n_silence} clips:", "",
         *metric_rows(SILENCE, silence, off_silence), "",
         f"Normal music, live against offline: {ci_reading(NORMAL, normal, off_normal)}", "",
         f"Silence/dropout: {ci_reading(SILENCE, silence, off_silence)}", "",
         "With 8 clips per variant every CI is wide; the floor column says how much of a figure any audio would "
         "give. What the live model gives up is its look-ahead (2 future frames and the centred silence median) "
         "and the beat channels.", "",
         *(wide_section(*wide) if wide else []),
         "## Live on the CPU box", "",
         "`python bench/live_latency.py --minutes 10 --checkpoint models/<model> --write` (a click track through a "
         "real-time pipe, the path of `trainer live --audio -`; details and the machine in bench/RESULTS.md, *Live "
         "latency*). Goals: >= 1x real time for 10 minutes, click latency <= 1 frame + 150 ms = "
         f"{1000 / fps + 150:.0f} ms, 0 dropped, drift < 1 frame, flat memory. Raw records: "
         "`bench/live_latency_*_cpu.json` (one per row, committed, each with the load average it ran under; they name no commit).", "",
         *latency_rows(), "",
         "## Files", "", "| file | bytes |", "|---|---|",
         *[f"| {q.relative_to(model)} | {q.stat().st_size} |" for q in files],
         f"| total | {sum(q.stat().st_size for q in files)} |", "",
         "## Use", "",
         "```",
         f"python -m trainer live --checkpoint models/{NAME} --audio song.wav --serve 8765   # watch at http://127.0.0.1:8765/",
         f"ffmpeg -i song.flac -f wav - | python -m trainer live --checkpoint models/{NAME} --audio - --out live.mp4",
         "```", ""]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--live-report", required=True, help="report.json of `trainer eval` on the live model.")
    p.add_argument("--offline-report", required=True, help="report.json of `trainer eval` on models/synesthete-tiny, "
                   "same data.")
    p.add_argument("--offline-label",
                   default="`models/synesthete-tiny`, evaluated by the third command (sampling seed 0, its own guidance)",
                   help="What the offline column is (a sentence for the card).")
    p.add_argument("--wide-live-report", default=None, help="Optional: report.json of the live model on the larger "
                   "val set (WORK/val18 of bench/reeval_shipped.sh, see the card); needs --wide-offline-report.")
    p.add_argument("--wide-offline-report", default=None, help="Optional: the offline model's on the same larger set.")
    p.add_argument("--model", default=str(ROOT / "models" / NAME))
    p.add_argument("--commit", required=True, help="The commit the evals ran on (git rev-parse --short HEAD then).")
    args = p.parse_args(argv)
    if (args.wide_live_report is None) != (args.wide_offline_report is None):
        print("error: --wide-live-report and --wide-offline-report go together", file=sys.stderr)
        return 2
    reports = []
    paths = [args.live_report, args.offline_report]
    if args.wide_live_report:
        paths += [args.wide_live_report, args.wide_offline_report]
    for path in paths:
        try:
            reports.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as e:
            print(f"error: {path}: not a readable report.json ({e})", file=sys.stderr)
            return 2
    for name, path in zip(REPORT_NAMES, paths):
        keep_report(path, KEPT / f"{name}.json")
    use_work_of(reports[0])
    model = Path(args.model)
    out = model / "MODEL_CARD.md"
    wide = (reports[2], reports[3]) if len(reports) == 4 else None
    from tiny_model_card import eval_record

    prov = eval_record(reports, args.commit)
    (KEPT / "eval.json").write_text(json.dumps(prov, indent=1) + "\n", encoding="utf-8")
    out.write_text(card(model, reports[0], reports[1], args.offline_label, wide, prov), encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
