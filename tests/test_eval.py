"""`trainer eval` on a tiny checkpoint and tiny val pixel shards: the per-variant report, the floor and ceiling,
an audio-blind model at chance, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from shared.provenance import code_commit
from shared.video import probe
from trainer.cli import main
from trainer.eval.clips import Clip, choose_clips, floor_partners
from trainer.eval.goals import VERDICT, goals_in

from eval_fixtures import shared_tiny_checkpoint, tiny_config, torch_threads, write_val_pixel_shards

# 8 val clips: variants cycle normal, silence, debug; clip 5 (debug) is a copy of clip 2 (debug)
COPIES = {5: 2}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    with torch_threads(1):
        ckpt = shared_tiny_checkpoint(tmp_path_factory)
        data = write_val_pixel_shards(tmp_path_factory.mktemp("pixels"), tiny_config(1), n_clips=8, audio_of=COPIES,
                                      sibling_groups=1)
        yield ckpt, data


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(["eval", *map(str, args)])
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def clip(key: str, variant: str, audio: str) -> Clip:
    return Clip(key=key, meta={"variant": variant}, audio_hash=audio)


def test_stratified_choice_skips_copies_and_caps_each_variant():
    headers = [clip("05", "debug", "d0"), clip("00", "normal", "a"), clip("01", "debug", "d0"), clip("02", "normal", "b"),
               clip("03", "normal", "c"), clip("04", "silence", "s"), clip("06", "debug", "d1"), clip("07", "odd", "o")]
    chosen = choose_clips(headers, per_variant=2)
    assert list(chosen) == ["normal", "silence", "debug", "odd"]
    assert [[c.key for c in cs] for cs in chosen.values()] == [["00", "02"], ["04"], ["01", "06"], ["07"]]
    assert [c.key for c in choose_clips(list(reversed(headers)), 2)["debug"]] == ["01", "06"]  # order-free
    assert choose_clips([clip("00", "normal", "a")], 8)["debug"] == []  # an absent variant is listed, empty


def test_floor_partner_is_always_different_audio():
    clips = [clip("n0", "normal", "a"), clip("n1", "normal", "b"), clip("s0", "silence", "c"),
             clip("d0", "debug", "d")]
    assert floor_partners(clips) == [1, 0, 1, 2]  # same variant first, else the nearest other clip
    same_audio = [clip("x", "debug", "d"), clip("y", "normal", "d")]
    assert floor_partners(same_audio) == [None, None]  # only copies: no floor rather than a fake one


def test_eval_writes_the_per_variant_report(setup, tmp_path, capsys):
    ckpt, data = setup
    out = tmp_path / "eval"
    with torch_threads(1):
        code, stdout, err = run_cli(capsys, "--checkpoint", ckpt, "--data", data, "--out", out, "--n", 2)
    assert code == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert list(rep["variants"]) == ["normal", "silence", "debug"]
    v = rep["variants"]
    assert [v[k]["n_clips"] for k in v] == [2, 2, 1]
    assert v["debug"]["clips"] == ["000000-00002"]  # clip 5 is a copy of clip 2's audio: counted once
    for variant in v.values():
        for name, row in variant["metrics"].items():
            for kind in ("generated", "floor", "ceiling"):
                assert set(row[kind]) == {"mean", "ci", "n"}, (name, kind)
                assert row[kind]["mean"] is None or isinstance(row[kind]["mean"], float)
    m = v["normal"]["metrics"]
    for name in ("loudness_motion_spearman", "av_align", "beat_alignment_score", "bands_colour_geometry_r2"):
        for kind in ("generated", "floor", "ceiling"):
            assert m[name][kind]["n"] == 2 and m[name][kind]["ci"] is not None, (name, kind)
    # the ground truth follows its audio: brightness and size track the RMS, it settles in silence, and the
    # dropout of the normal clips shows as a motion step when the track comes back
    assert m["loudness_brightness_spearman"]["ceiling"]["mean"] > 0.9
    assert m["loudness_bright_area_spearman"]["ceiling"]["mean"] > 0.9
    assert m["dropout_return"]["ceiling"]["n"] == 2
    s = v["silence"]["metrics"]["silence_settle_ratio"]
    assert s["ceiling"]["mean"] < 0.05 and s["generated"]["n"] == 2 and s["floor"]["n"] == 2
    assert v["normal"]["metrics"]["silence_settle_ratio"]["note"] == "no clip with a labelled silence segment"
    assert m["retrieval_top1"]["floor"] == {"mean": 0.5, "ci": None, "n": 2}  # chance 1/N
    assert m["retrieval_mean_rank"]["floor"]["mean"] == 1.5  # chance (N+1)/2
    sib = m["style_diversity_siblings"]
    assert sib["ceiling"]["n"] == 1 and sib["ceiling"]["mean"] > 0 and "1 sibling group" in sib["note"]
    assert "TempoTokens" in rep["definitions"]["av_align"] and "sigma = 0.1 s" in rep["definitions"]["beat_alignment_score"]
    assert "lambda = 1" in rep["definitions"]["bands_colour_geometry_r2"] and rep["better"]["av_align"] == "higher"
    # the AV offset (trainer/eval/av_offset.py), pooled over the clips (validated on the teacher in test_av_offset.py:
    # these clips step their loudness on a 0.25 s grid, so their curve has a peak every 0.25 s)
    assert m["av_offset_ms"]["ceiling"]["n"] == 2 and abs(m["av_offset_ms"]["ceiling"]["mean"]) <= 1000
    assert m["av_offset_peak"]["ceiling"]["mean"] > 0 and v["debug"]["metrics"]["av_offset_ms"]["generated"]["n"] == 0
    assert "positive = the picture lags the sound" in rep["definitions"]["av_offset_ms"].lower()
    assert "not synchformer's desync" in rep["definitions"]["av_offset_ms"].lower()
    assert set(rep["vae_diagnostic"]["metrics"]["av_align"]) == {"input_own", "input_shuffled", "output_own",
                                                                  "output_shuffled"}
    assert [x["variant"] for x in rep["videos"]] == ["normal", "silence", "debug"]
    for x in rep["videos"] + rep["plots"]:
        assert (out / x["path"]).is_file(), x
    info = probe(out / rep["videos"][0]["path"])
    # three 32 px panels and two 2 px separators, scaled to 256 px panels by the encoder (8x: 800 x 256)
    assert info["n_frames"] == 32 and info["has_audio"] and (info["width"], info["height"]) == (8 * (3 * 32 + 4), 256)
    md = (out / "report.md").read_text()
    assert md.index("## Normal music (the headline): 2 clip(s)") < md.index("## Variant: silence")
    assert "| av_align |" in md and "[" in md  # CIs in brackets
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("report")) == ["report.html", "report.json",
                                                                                     "report.md"]
    page = (out / "report.html").read_text()
    assert all(f'src="{x["path"]}"' in page for x in rep["videos"]) and "<video" in page
    assert "normal music (2 clips)" in stdout and "loudness_motion_spearman" in stdout
    # the verdict block: first in report.json, md and html, from the goals table; the tiny VAE is flagged
    verdict = rep["verdict"]
    assert list(rep)[0] == "verdict" and verdict["question"] == "Does it follow the music?"
    assert [(g["variant"], g["goal"]) for g in verdict["goals"]] == [
        (g.variant, g.title) for g in goals_in(VERDICT) if g.variant in ("normal", "silence")]
    for g in verdict["goals"]:
        assert g["status"] in ("met", "not met", "undecided", "n/a") and g["why"], g
        assert g["n"] == rep["variants"][g["variant"]]["metrics"][g["metric"]]["generated"]["n"], g
    psnr = rep["vae_diagnostic"]["psnr_db"]
    assert psnr < 20 and verdict["vae"]["broken"] and verdict["warnings"] == [verdict["vae"]["text"]]
    assert md.index("**WARNING: VAE broken: reconstruction PSNR") < md.index("## Verdict: Does it follow the music?") \
        < md.index("## Normal music (the headline)")
    assert f"{psnr:.1f} dB" in verdict["warnings"][0] and 'id="vae-warning"' in page
    assert page.index('id="vae-warning"') < page.index('<section id="verdict">') < page.index('id="variant-normal"')
    assert "WARNING: VAE broken" in stdout and "Does it follow the music?" in stdout
    # rows that cannot apply: kept in report.json, left out of the tables, listed once below them
    normal_md = md[md.index("## Normal music"):md.index("## Variant: silence")]
    assert "| silence_settle_ratio |" not in normal_md
    assert "Not applicable here: silence_settle_ratio (no clip with a labelled silence segment)." in normal_md
    assert verdict["not_applicable"]["normal"] == {"silence_settle_ratio": "no clip with a labelled silence segment"}
    assert "silence_settle_ratio" in v["normal"]["metrics"]
    # each plot names its variant (report.html puts it in that variant's section)
    assert {p.get("variant") for p in rep["plots"]} == {"normal", "silence", "debug"}


def test_eval_bad_inputs_exit_2_with_one_line(setup, tmp_path, capsys):
    ckpt, data = setup
    cases = [
        (["--checkpoint", ckpt, "--data", tmp_path / "no_pixels"], ["no_pixels"]),
        (["--checkpoint", tmp_path / "no_run", "--data", data], ["no_run"]),
        (["--checkpoint", ckpt, "--data", data, "render.resolution=64"], ["64x64", "32x32", str(data), "step-"]),
    ]
    for args, needles in cases:
        code, _, err = run_cli(capsys, *args, "--out", tmp_path / "e")
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert code == 2 and "Traceback" not in err, (args, err)
        assert all(n in lines[-1] for n in needles) and lines[-1].startswith("error:"), (needles, err)
    assert not (tmp_path / "e" / "report.json").exists()


def test_report_numbers_are_json_safe():
    from trainer.eval.report import fmt, fmt_entry, json_number

    assert json_number({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5]}) == {"a": None, "b": ["inf", "-inf", 1.5]}
    assert fmt(None) == fmt(float("nan")) == "n/a" and fmt(0.123456) == "0.123"
    assert fmt_entry({"mean": 0.5, "ci": [0.25, 0.75], "n": 3}) == "0.5 [0.25, 0.75]"
    assert fmt_entry({"mean": None, "ci": None, "n": 0}) == "n/a"


def test_an_audio_blind_model_scores_chance_and_no_floor_gap(tmp_path):
    """A freshly initialised denoiser outputs exactly 0 (adaLN-Zero): its videos depend on the noise only. The
    floor video shares the generated one's noise and style, so every metric's floor -> generated gap is exactly
    0; with one clip per chunk (eval.batch_clips=1) every clip gets the same noise, so every video is the
    same and retrieval is exactly at chance: top-1 = 1/N, mean rank = (N+1)/2, for each of 2 pooled seeds.
    Val data with normal clips only: the silence and debug sections say "no clips"."""
    from shared.timeline import channel_names
    from trainer.diffusion.model import Denoiser
    from trainer.eval.evaluate import evaluate
    from trainer.sample import SamplingModel
    from trainer.vae.model import FrameVAE

    cfg = tiny_config(1, ["eval.write_videos=false", "eval.batch_clips=1", "eval.bootstrap=50", "eval.seeds=2"])
    data = write_val_pixel_shards(tmp_path / "pixels", cfg, n_clips=4, variants=("normal",))
    torch.manual_seed(0)
    model = SamplingModel(cfg=cfg, denoiser=Denoiser(cfg, 4, 8, len(channel_names(cfg.timeline))).eval(),
                          vae=FrameVAE(cfg.vae).eval(), latent_scale=1.0, latent_shape=(4, 8, 8), step=0,
                          step_dir=Path("initial"), device=torch.device("cpu"))
    with torch_threads(1), torch.no_grad():
        rep, _, _ = evaluate(model, data, tmp_path / "eval", per_variant=4, log=lambda m: None)
    assert rep["info"]["seeds"] == 2
    assert rep["info"]["commit"] == code_commit()  # the code that measured it, for the figures quoted from it
    m = rep["variants"]["normal"]["metrics"]
    gaps = 0
    for name, row in m.items():
        g, f = row["generated"]["mean"], row["floor"]["mean"]
        if g is not None and f is not None and not name.startswith("retrieval") and name != "val_loss":
            assert g == f, name
            gaps += 1
    assert gaps >= 8
    assert m["retrieval_top1"]["generated"]["mean"] == pytest.approx(1 / 4)
    assert m["retrieval_mean_rank"]["generated"]["mean"] == pytest.approx(5 / 2)
    assert m["output_sensitivity_motion"]["generated"]["mean"] == 0.0
    assert m["val_loss"]["generated"]["mean"] == m["val_loss"]["floor"]["mean"]
    assert m["style_diversity_siblings"]["note"] == "no siblings"  # data without a val_siblings/ split
    for variant in ("silence", "debug"):
        v = rep["variants"][variant]
        assert v["n_clips"] == 0 and v["note"] == "no clips"
        assert all(row["note"] == "no clips" and row["generated"]["mean"] is None for row in v["metrics"].values())


def test_default_report_dir_never_writes_into_a_shipped_model(tmp_path):
    from trainer.commands.eval import default_out

    shipped = Path(__file__).resolve().parents[1] / "models" / "synesthete-tiny"
    assert default_out(shipped) == Path("runs") / "eval-synesthete-tiny"
    step = tmp_path / "run" / "ckpt" / "step-00000010"
    step.mkdir(parents=True)
    (step / "state.json").write_text("{}")
    assert default_out(step) == tmp_path / "run" / "eval" / "step-00000010"
    assert default_out(tmp_path / "run") == tmp_path / "run" / "eval"
