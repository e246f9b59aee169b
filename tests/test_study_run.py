"""bench/responsiveness_ablation.py --study --preset smoke, end to end: real datagen, VAE, latents, arm B's
calibration, arms A, B, B0 and B+ with both seeds, and the registered verdicts in study.json. The smoke preset proves
the plumbing only; its verdicts mean nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_study_end_to_end(tmp_path):
    work = tmp_path / "work"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "responsiveness_ablation.py"), "--preset", "smoke",
                        "--study", "--study-minutes", "0.05", "--work", str(work)], cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((work / "study.json").read_text())
    assert list(doc["arms"]) == ["A", "B", "B0", "B+"] and doc["steps"] >= 1 and doc["s_per_step_B"] > 0
    assert doc["pressure"].startswith("shuffle pressure ") and doc["seeds"][:2] == [0, 1]
    assert set(doc["comparisons"]) == {"B vs B0", "B vs A", "B+ vs B"}
    for arm in ("A", "B", "B0", "B+"):  # every arm trained and evaluated with both seeds, its config as registered
        for seed in (0, 1):
            assert (work / "eval" / f"arm{arm}_s{seed}" / "report.json").is_file()
    cfg = (work / "armB0_s0" / "config.yaml").read_text()
    assert "audio_shuffle_loss_weight: 0.0" in cfg
    assert "[study] shuffle pressure" in r.stderr
    kept = work / "kept_reports"  # every report copied as it was written, and the verdicts beside them
    assert sorted(q.name for q in kept.glob("*.json")) == sorted(
        f"arm{a}_s{s}.json" for a in ("A", "B", "B0", "B+") for s in doc["seeds"] if a in ("B", "B0") or s < 2)
    assert (kept / "armB0_s1.json").read_bytes() == (work / "eval" / "armB0_s1" / "report.json").read_bytes()
    assert json.loads((work / "study.json").read_text()) == json.loads((kept.parent / "study.json").read_text())
    results = (work / "RESULTS.md").read_text()  # the results section, from the reports
    assert "## Evidence study (issue 24): results" in results and f"**Verdict (B vs B0, loudness → motion): {doc['pressure']}.**" in results
    assert "| metric | teacher (ground truth) [95% CI] | arm A | arm B | arm B0 | arm B+ |" in results
    again = subprocess.run([sys.executable, str(ROOT / "bench" / "responsiveness_ablation.py"), "--preset", "smoke",
                            "--study", "--study-minutes", "0.05", "--work", str(work)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)  # every step done: skipped; the section replaced, not repeated
    assert again.returncode == 0, again.stderr[-3000:]
    assert (work / "RESULTS.md").read_text().count("## Evidence study (issue 24): results") == 1

    # A later session whose WORK is gone: the plan and the kept reports stand; nothing is trained or evaluated again
    work2 = tmp_path / "work2"
    later = subprocess.run([sys.executable, str(ROOT / "bench" / "responsiveness_ablation.py"), "--preset", "smoke",
                            "--study", "--study-minutes", "0.05", "--work", str(work2), "--vae", str(work / "vae"),
                            "--keep-reports", str(kept)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert later.returncode == 0, later.stderr[-3000:]
    ran = [json.loads(line)["name"] for line in (work2 / "commands.jsonl").read_text().splitlines()]
    assert ran == ["datagen", "cache-latents"], ran  # no VAE (given), no calibration, no arm trained or evaluated
    doc2 = json.loads((work2 / "study.json").read_text())
    assert doc2["steps"] == doc["steps"] and doc2["pressure"] == doc["pressure"]
    assert doc2["comparisons"] == doc["comparisons"]

