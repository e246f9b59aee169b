"""The GPU calls' carry list (bench/gpu_carry.py): every third-party module that bench/gpu_suite.py and
bench/gpu_model.py reach must be in the GPU image's package list (bench/gpu_image_packages.txt) or carried
by bench/gpu_prepare.sh, so that a lent GPU machine is not spent on an import error."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_carry  # noqa: E402


def test_the_gpu_calls_reach_only_image_or_carried_modules():
    verdict = gpu_carry.check()
    assert verdict.ok, gpu_carry.report(verdict)
    # the walk really followed the project: the suite reaches the renderer, the shards and the eval
    assert {"datagen.visual.renderer", "shared.audio_io", "trainer.eval.rhythm"} <= verdict.reach.modules
    assert {"ffmpeg", "librosa", "cv2", "moderngl", "webdataset", "torch"} <= set(verdict.reach.third_party)


def test_every_dynamic_import_is_covered_by_the_table():
    verdict = gpu_carry.check()
    uncovered = verdict.reach.dynamic_users - set(gpu_carry.DYNAMIC_IMPORTERS)
    assert not uncovered, f"importlib.import_module in {uncovered}: add its edges to gpu_carry.DYNAMIC"


def test_an_invented_import_is_reported(tmp_path):
    root = tmp_path / "repo"
    (root / "bench").mkdir(parents=True)
    (root / "shared").mkdir()
    (root / "shared" / "__init__.py").write_text("")
    (root / "shared" / "deep.py").write_text("def f():\n    import numpy\n    from nosuchpkg_xyz.sub import thing\n")
    (root / "bench" / "helper.py").write_text("import os\nfrom shared import deep\n")
    script = root / "bench" / "call.py"
    script.write_text("import json\n\ndef main():\n    import helper\n    cmd = ['py', '-m', 'shared.deep']\n")
    image = {"numpy": ["numpy"]}
    verdict = gpu_carry.check(roots=[script], image=image, carried=[], root=root)
    assert not verdict.ok
    assert verdict.missing_modules == {"nosuchpkg_xyz": ["shared.deep"]}
    assert "MISSING module nosuchpkg_xyz: imported by shared.deep" in gpu_carry.report(verdict)
    # listed in the image, the same code passes
    assert gpu_carry.check(roots=[script], image={**image, "nosuchpkg-xyz": ["nosuchpkg_xyz"]}, carried=[],
                           root=root).ok


def test_a_carried_distribution_with_an_uncarried_requirement_is_reported():
    # librosa needs pooch (and pooch platformdirs): carried without them, the check names them
    carried = [d for d in gpu_carry.read_carry_list() if d not in ("pooch", "platformdirs")]
    verdict = gpu_carry.check(carried=carried)
    assert verdict.missing_requirements.get("librosa") == ["pooch"], gpu_carry.report(verdict)


def test_dropping_a_carried_wheel_fails_the_check():
    carried = [d for d in gpu_carry.read_carry_list() if d != "ffmpeg-python"]
    verdict = gpu_carry.check(carried=carried)
    assert set(verdict.missing_modules) == {"ffmpeg"}
    assert verdict.missing_modules["ffmpeg"] == ["shared.audio_io", "shared.video"]


def test_list_readers():
    carried = gpu_carry.read_carry_list()
    assert {"pydantic", "ffmpeg-python", "librosa", "soxr", "imageio-ffmpeg"} <= set(carried)
    image = gpu_carry.read_image_list()
    assert image["opencv-python-headless"] == ["cv2"] and image["pillow"] == ["PIL"] and image["pyyaml"] == ["yaml"]
    assert image["numpy"] == ["numpy"] and image["lazy-loader"] == ["lazy_loader"] and "torch" in image
