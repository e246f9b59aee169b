"""models/NAME/MODEL_CARD.md of a model shipped by bench/ship_small.py (issue 24 step 3), written only from the
reports kept in docs/results/reports/NAME/ and the run's log, so that every figure on the card names its raw file:
what the model is and how it was trained; the eval's verdict and its normal-music table (floor, generated, ground
truth) with the memorisation check and silence; the real-audio folder beside the teacher on the same files; the
30 s sampling time; what ``--style-seed`` does; the contact sheet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from trainer.models import model_parameters

from .rule import goal_value, read_report
from .ship_writers import card_metrics
from .steps import Log, REPO, display_command, repo_path, repo_relative
from .study import GOALS
from .text import entry_text, fmt, seeds_text
from .writers import met_text


def verdict_lines(rep: dict[str, Any]) -> list[str]:
    """The eval's own verdict block (trainer/eval/goals.py): its summary and one row per goal."""
    v = rep.get("verdict") or {}
    L = [f"**{v.get('question', 'Does it follow the music?')}** {v.get('summary', 'n/a')}.", "",
         "| goal | rule | clips | generated [95% CI] | target [95% CI] | status |", "|---|---|---|---|---|---|"]
    for g in v.get("goals", []):
        L.append(f"| {g['goal']} | {g['rule']} | {g['variant']} ({g.get('n')}) | {entry_text(g.get('generated'))} | "
                 f"{entry_text(g.get('target'))} | {g['status']} |")
    return L


def goal_lines(reps: list[dict[str, Any] | None]) -> list[str]:
    """Issue 24's goals for the shipped model (the study group of trainer/eval/goals.py), each on the mean of the
    sampling seeds' reports against its target (bench/ablation/rule.py's goal_value); no verdict unless every seed's
    report is there."""
    complete = all(r is not None for r in reps)
    L = ["| goal | rule | clips | mean of seeds | per seed | target | verdict |", "|---|---|---|---|---|---|---|"]
    for g in GOALS:
        gv = goal_value(g, reps)
        verdict = met_text(gv) if complete else "n/a (a seed's report is missing)"
        L.append(f"| {g.title} | {g.rule} | {g.variant} | {fmt(gv.generated)} | {seeds_text(gv.per_seed)} | "
                 f"{fmt(gv.target)} | {verdict} |")
    return L


def folder_rows(rep: dict[str, Any]) -> list[str]:
    """The real-audio report's rows: floor, this model, the teacher on the same files."""
    L = ["| metric | floor (other audio) | this model | teacher (same files) | n |", "|---|---|---|---|---|"]
    for name, row in rep.get("variants", {}).get("audio_dir", {}).get("metrics", {}).items():
        gen = row.get("generated") or {}
        if gen.get("n"):
            L.append(f"| {name} | {entry_text(row.get('floor'))} | {entry_text(gen)} | "
                     f"{entry_text(row.get('ceiling'))} | {gen.get('n')} |")
    return L


TINY_PROBES = ("docs/results/style/probe-synesthete-tiny.json", "docs/results/style/probe-synesthete-tiny-live.json")


def tiny_probe_text() -> str:
    """The shipped tiny models' style-only PSNR and style / noise diversity, from their committed probe records."""
    recs = [json.loads((REPO / f).read_text())["summary"] for f in TINY_PROBES]
    return (f"{' / '.join(fmt(r['style_only']['mean_psnr_db']) for r in recs)} dB and "
            f"{' / '.join(fmt(r['diversity_ratio_style_over_noise']) for r in recs)} ({', '.join(TINY_PROBES)})")


def style_lines(probe: dict[str, Any]) -> list[str]:
    s, post = probe["summary"], probe.get("posterior") or {}
    return [f"`bench/style_probe.py` on {len(probe['files'])} real recording(s), their first {fmt(probe['seconds'])} s, "
            f"guidance {fmt(probe.get('guidance'))}"
            + (f", style guidance {fmt(probe['style_guidance'])}" if probe.get("style_guidance", 1.0) != 1.0 else "")
            + f": {probe['k']} **style** seeds at one noise seed "
            f"give videos {fmt(s['style_only']['mean_psnr_db'])} dB apart (style diversity "
            f"{fmt(s['style_only']['mean_style_diversity'])}); {probe['k']} **noise** seeds at one style seed "
            f"{fmt(s['noise_only']['mean_psnr_db'])} dB apart (diversity {fmt(s['noise_only']['mean_style_diversity'])}); "
            f"style over noise diversity {fmt(s['diversity_ratio_style_over_noise'])}. The shipped tiny models, whose "
            f"style posterior collapsed, gave {tiny_probe_text()}."
            + (" This model takes the teacher's visual plan as its style (`diffusion.style_source: plan`): style seed N "
               "is the palette, background, knobs and primitives the teacher draws for a clip of seed N "
               "(`trainer/style.py`)." if (probe.get("trained") or {}).get("style_source") == "plan" else "")
            + (f" Style posterior on {post.get('snippets')} val snippets: KL {fmt(post.get('kl_per_clip'))} nats per "
               f"clip, mean posterior sigma {fmt(post.get('mean_posterior_std'))}." if post else "")]


def of_model(rep: dict[str, Any] | None, step: int) -> dict[str, Any] | None:
    """A kept eval report when it evaluated the packaged model's step (None otherwise: the card says missing)."""
    return rep if rep is not None and rep.get("info", {}).get("step", step) == step else None


def stopped_text(runs: list[dict[str, Any]]) -> str:
    """What the training time includes when a part of the run was stopped (a session's end) and resumed."""
    stopped = [r for r in runs if r.get("rc") != 0]
    if not stopped:
        return ""
    return (f"; {len(stopped)} of them stopped (exit {', '.join(str(r.get('rc')) for r in stopped)}) and resumed "
            "bit-exactly from the last checkpoint, so the time includes the steps redone since it")


def write_card(dest: Path, keep: Path, arm, plan: dict[str, Any], log: Log, train, data_cmd: str,
               preset: str, vae_desc: str) -> Path:
    """Write dest/MODEL_CARD.md from the kept reports (absent ones are said to be missing) and return its path.
    ``train``: the training Step (its name finds its log records, its argv is quoted); ``preset``: the
    bench/ablation/presets.py preset the data came from; ``vae_desc``: where the VAE came from."""
    state = json.loads((dest / "latest" / "state.json").read_text())
    step = int(state["step"])
    val, val1 = of_model(read_report(keep / "val.json"), step), of_model(read_report(keep / "val_s1.json"), step)
    real, s30 = read_report(keep / "real_audio.json"), read_report(keep / "sample30.json")
    probe, sheet = read_report(keep / "style_probe.json"), read_report(keep / "showcase.json")
    cfg = yaml.safe_load((dest / "config.yaml").read_text())["config"]
    n = model_parameters(dest)
    runs = [r for r in log.records if r["name"] == train.name]  # each session's part of a resumed run
    train_cmd = display_command(train.argv)
    r, d, inf = cfg["render"], cfg["diffusion"], cfg["inference"]
    name = dest.name
    L = [f"# {name}", "",
         f"A {r['resolution']}×{r['resolution']} px, {fmt(r['fps'])} fps audio-to-video latent diffusion model: "
         f"denoiser {n['denoiser']:,} parameters (width {d['width']}, depth {d['depth']}), frame VAE "
         f"{n['vae']:,} parameters (`vae/`, {vae_desc}), "
         f"{n['total']:,} in all. Its EMA weights (step {step}) are stored as "
         f"{state.get('weights_dtype', 'float32')}{' (loaded into float32)' if state.get('weights_dtype') else ''}. It "
         f"samples with audio guidance {fmt(inf['audio_guidance_scale'])} ({inf['audio_guidance_schedule']}), "
         f"{inf['steps']} steps (its `config.yaml`).", "",
         "## Training", "",
         f"Recipe: issue 24's arm {arm.key} ({arm.title}); why this arm: docs/RESULTS.md, \"Evidence study (issue "
         "24): results\". "
         f"{plan['steps']} steps at batch {d['batch_size']}: {fmt(plan['budget_s'] / 60)} minutes at the calibrated "
         f"{fmt(plan['s_per_step'])} s/step ({plan['calibration_steps']} calibration steps, {plan['threads']} threads, "
         f"load {fmt(plan.get('calibration_load1'))}; `{repo_path(keep / 'plan.json')}`). The training took "
         f"{fmt(sum(r['wall_s'] for r in runs))} s in {len(runs)} command(s) (load average "
         f"{', '.join(fmt(r.get('load1')) for r in runs)} at their ends){stopped_text(runs)}. Its data: the `{preset}` preset of "
         f"bench/ablation/presets.py ({cfg['data']['train_shards'] * cfg['data']['samples_per_shard']:,} training "
         "clips), regenerated from config. The data and training commands (`python bench/ship_small.py` runs "
         "every step, then writes this card):", "",
         "```", data_cmd, train_cmd, "```", ""]
    L += ["## Evaluation: the study's val clips (`trainer eval`, this packaged model)", ""]
    if val:
        L += [f"Raw report: `{repo_path(keep / 'val.json')}` (measured on commit `{val['info'].get('commit') or 'not recorded'}`; sampling seed "
              f"{val['info'].get('seed')}, {val['info'].get('frames_per_clip')} frames per clip). 95% bootstrap CIs "
              "over clips in brackets. *Floor* = video generated from another clip's audio (chance for retrieval); "
              "*ground truth* = the teacher's frames.", ""]
        mem = val["variants"]["normal"]["metrics"].get("memorisation_ratio", {}).get("generated")
        L += verdict_lines(val) + ["",
              "Memorisation check (`memorisation_ratio`): the generated clips' latent distance to their nearest "
              f"training clip over the ground truth's is {entry_text(mem)} (a model is flagged below 0.5).", ""]
        L += ["### Issue 24's goals: mean of sampling seeds 0 and 1", "",
              f"Raw reports: `{repo_path(keep / 'val.json')}` (seed 0) and `{repo_path(keep / 'val_s1.json')}` (seed 1; "
              f"{'missing' if val1 is None else 'same clips'}). A goal is met when the mean clears its target.", ""]
        L += goal_lines([val, val1]) + ["", "### Every metric, sampling seed 0", ""]
        L += ["| metric | floor (other audio) | generated | ground truth | n |", "|---|---|---|---|---|"]
        L += card_metrics(val)
    else:
        L += ["Missing: the val eval did not run (see WORK/commands.jsonl).", ""]
    L += ["## Real recordings (`trainer eval --audio-dir tests/data/real_audio`)", ""]
    if real:
        L += [f"Raw report: `{repo_path(keep / 'real_audio.json')}`. The teacher column is the ground-truth visualizers "
              "on the same files (the ceiling).", ""] + folder_rows(real) + [""]
    else:
        L += ["Missing: the real-audio eval did not run.", ""]
    L += ["## Sampling time", ""]
    if s30 and s30.get("rc") == 0:
        L += [f"30 s of audio sampled in {fmt(s30['wall_s'])} s on {s30.get('device')} (one command, start-up and the "
              f"default output size included; load {fmt((s30.get('load_before') or [None])[0])} before, commit "
              f"{s30.get('commit')}): `{repo_path(keep / 'sample30.json')}`.", ""]
    else:
        L += ["Missing." if not s30 else f"Failed (exit {s30.get('rc')}): `{repo_path(keep / 'sample30.json')}`.", ""]
    L += ["## `--style-seed`", ""]
    L += (style_lines(probe) + [f"Raw record: `{repo_path(keep / 'style_probe.json')}`.", ""] if probe else ["Missing.", ""])
    L += ["## Contact sheet", ""]
    if sheet and (dest / "contact_sheet.png").is_file():
        rows = "; ".join(f"{s['label']} {fmt(s['loudness_motion_spearman'])}" for s in sheet["sources"])
        L += [f"![the teacher above this model on {sheet['audio']}](contact_sheet.png)", "",
              f"{fmt(sheet['seconds'])} s of `{sheet['audio']}`; loudness → motion Spearman over them: {rows} "
              f"(`{repo_path(keep / 'showcase.json')}`).", ""]
    else:
        L += ["Missing.", ""]
    card = dest / "MODEL_CARD.md"
    card.write_text(repo_relative("\n".join(L)), encoding="utf-8")
    return card
