"""bench/responsiveness_ablation.py --preset smoke, end to end: real datagen, VAE, latents, diffusion arms, eval.

The smoke preset proves the plumbing only (32 px, 2 shards x 4 clips, 3 steps per model): its numbers mean
nothing, but every arm must have its row, built from the arm's own report.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "responsiveness_ablation.py"
ARM_KEYS = ["1", "2", "3", "4", "5 (g=1)", "5 (g=2)", "5 (g=4)", "6"]


def _run(work: Path, results: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--preset", "smoke", "--work", str(work),
                           "--results", str(results)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def _table_rows(md: str) -> dict[str, list[str]]:
    rows = {}
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("| arm ") and not line.startswith("| step "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_smoke_ablation_writes_every_arm_and_resumes(tmp_path):
    work, results = tmp_path / "work", tmp_path / "RESULTS.md"
    r = _run(work, results)
    assert r.returncode == 0, r.stderr[-3000:]
    md = results.read_text()
    rows = _table_rows(md)
    for key in ARM_KEYS:
        assert key in rows, f"arm {key} has no row in RESULTS.md"
    # each row's S cell is the arm's own report value (arm 5 g=1 repeats arm 4's evaluation)
    header = next(line for line in md.splitlines() if line.startswith("| arm "))
    s_col = [c.strip() for c in header.strip("|").split("|")].index("S (motion)")
    for key in ARM_KEYS:
        slug = {"5 (g=1)": "arm4"}.get(key, "arm" + key.replace(" (g=", "_g").replace(")", ""))
        rep = json.loads((work / "eval" / slug / "report.json").read_text())
        s = rep["variants"]["normal"]["metrics"]["output_sensitivity_motion"]["generated"]["mean"]
        assert rows[key][s_col] == ("n/a" if s is None else f"{s:.3g}"), (key, rows[key][s_col], s)
    # guidance sweep reuses arm 4's checkpoint: three distinct guidance values, one training
    assert [rows[k][2] for k in ("5 (g=1)", "5 (g=2)", "5 (g=4)")] == ["1", "2", "4"]
    assert "still to be made" in md and "## Commands" in md and "python -m trainer diffusion" in md
    log = [json.loads(x) for x in (work / "commands.jsonl").read_text().splitlines()]
    trains = [x for x in log if x["name"].endswith("-train")]
    assert sorted(x["name"] for x in trains) == ["arm1-train", "arm2-train", "arm3-train", "arm4-train", "arm6-train"]
    assert all(x["rc"] == 0 and x["wall_s"] > 0 for x in log)
    # arm 1 trains without pressure and without silence clips; arm 3 with derange pressure
    assert "diffusion.audio_shuffle_loss_weight=0 " in next(x for x in trains if x["name"] == "arm1-train")["command"] + " "
    assert "data.audio_silence_mix_prob=0 " in next(x for x in trains if x["name"] == "arm1-train")["command"] + " "
    assert "diffusion.audio_shuffle_negatives=derange" in next(x for x in trains if x["name"] == "arm3-train")["command"]
    stills = sorted((work / "stills").glob("*.png"))
    assert stills and all(0 < p.stat().st_size < 200_000 for p in stills)
    # resumable: a second run trains and evaluates nothing, and rewrites the same table
    r2 = _run(work, results)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert len((work / "commands.jsonl").read_text().splitlines()) == len(log)
    assert _table_rows(results.read_text()) == rows


@pytest.mark.parametrize("preset", ["smoke", "cpu", "h100"])
def test_every_preset_and_arm_is_a_valid_config(preset, tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import responsiveness_ablation as ab
    finally:
        sys.path.pop(0)
    from shared.config import build_config

    cfg_file = ab.resolved_config(preset, [], tmp_path / "ablation.yaml")
    base = build_config([cfg_file])
    steps = base.diffusion.steps
    weights = {}
    for arm in ab.arms(steps, tune=True):
        if arm.train is None:
            continue
        cfg = build_config([cfg_file], overrides=arm.train)
        assert cfg.diffusion.steps == steps  # equal compute: no arm changes the step count
        weights[arm.key] = cfg.diffusion.audio_shuffle_loss_weight
        if arm.key == "6" or arm.key.startswith("T"):
            assert cfg.data.audio_debug_mix_schedule_steps == steps // 2
    assert weights == {"1": 0, "2": 0, "3": 0.5, "4": 0.5, "6": 0.5, "T1 (w=1)": 1, "T2 (w=2)": 2, "T3 (m=0.2)": 0.5}
    # the generated data holds debug clips for arm 6's curriculum and silence clips for arms 2+
    assert base.data.audio_debug_mix_prob > ab.FINAL_DEBUG_PROB and base.data.audio_silence_mix_prob == 0.3
