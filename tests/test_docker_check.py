"""scripts/docker_check.py (`make docker-check`): its pure parts, without Docker.

The check itself builds images and runs containers (docs/results/docker_check.json is a real run's
summary); here: the step plan and its options, the parsers of what it reads (requirements/cpu.txt,
`apt-cache policy`, wheel names), the build arguments it passes (each one declared in its
Dockerfile), the `ray start` lines of its two-node cluster (real flags, no shared port), and the
summary's last line and report.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("docker_check", ROOT / "scripts" / "docker_check.py")
dc = importlib.util.module_from_spec(_spec)
sys.modules["docker_check"] = dc
_spec.loader.exec_module(dc)


def test_steps_are_ordered_after_what_they_need():
    seen: set[str] = set()
    for step in dc.STEPS:
        assert set(step.needs) <= seen, f"{step.name} needs a later step"
        seen.add(step.name)
    assert list(dc.RUNNERS) == dc.STEP_NAMES
    # what the issue lists is all there
    assert {"datagen-visualize", "datagen-run-processes", "datagen-run-ray", "datagen-inspect", "ray-cluster",
            "trainer-selftest", "trainer-sample", "trainer-ddp"} <= set(dc.STEP_NAMES)


def test_step_lists_parse_and_unknown_names_are_refused():
    assert dc.parse_step_list("build-datagen, datagen-visualize,") == ["build-datagen", "datagen-visualize"]
    assert dc.parse_step_list("") == [] and dc.parse_step_list(None) == []
    with pytest.raises(ValueError, match="unknown step.*build-datgen.*the steps are: tools"):
        dc.parse_step_list("build-datgen")
    with pytest.raises(SystemExit):
        dc.parse_args(["--only", "nope"])


def test_plan_only_brings_what_a_step_needs_in_order_and_skip_drops():
    assert dc.plan([], []) == dc.STEP_NAMES
    assert dc.plan(["datagen-visualize"], []) == ["tools", "dockerd", "base-bookworm", "base-python", "build-datagen",
                                                  "datagen-visualize"]
    assert dc.plan(["trainer-ddp"], ["base-bookworm"]) == [
        "tools", "dockerd", "base-python", "base-pytorch", "base-ffmpeg", "build-datagen", "build-trainer", "datagen-run-processes",
        "trainer-cache-latents", "trainer-ddp"]
    args = dc.parse_args(["--only", "ray-cluster", "--skip", "tools", "--clean"])
    assert dc.plan(args.only, args.skip)[0] == "dockerd" and args.clean


def test_a_step_is_blocked_only_by_a_needed_step_that_did_not_pass():
    assert dc.blocked_by("build-trainer", {"base-pytorch": "passed", "base-ffmpeg": "failed"}) == ["base-ffmpeg"]
    assert dc.blocked_by("build-trainer", {"base-pytorch": "passed"}) == []  # skipped: not blocking
    assert dc.blocked_by("trainer-ddp", {"trainer-cache-latents": "blocked"}) == ["trainer-cache-latents"]


def test_torch_pin_and_its_cpu_wheel():
    version = dc.torch_pin((ROOT / "requirements" / "cpu.txt").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert dc.torch_pin("# c\n torch == 2.1.0  # x\nnumpy\n") == "2.1.0"
    with pytest.raises(ValueError):
        dc.torch_pin("torch>=2\n")
    names = ["torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl",
             "torch-2.13.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl", "torch-2.12.0+cpu-cp311-cp311-linux_x86_64.whl"]
    assert dc.cpu_wheel_name(names, "2.13.0") == names[0]
    assert dc.cpu_wheel_name(names, "2.14.0") is None


def test_apt_candidates():
    text = """gcc:
  Installed: (none)
  Candidate: 4:12.2.0-3
  Version table:
     4:12.2.0-3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
libc6-dev:
  Installed: (none)
  Candidate: 2.36-9+deb12u14
nothere:
  Installed: (none)
  Candidate: (none)
"""
    assert dc.apt_candidates(text) == {"gcc": "4:12.2.0-3", "libc6-dev": "2.36-9+deb12u14"}


def _declared_args(dockerfile: Path) -> set[str]:
    return set(re.findall(r"^ARG\s+(\w+)", dockerfile.read_text(), re.M))


@pytest.mark.parametrize("kind", ["datagen", "trainer"])
def test_every_build_argument_passed_is_declared_in_the_dockerfile(kind: str):
    args = dc.build_args(kind, dc.IMAGES, "http://127.0.0.1:1/", {"gcc": "4:12.2.0-3", "libc6-dev": "2.36-9"})
    pairs = dict(a.split("=", 1) for a in args[1::2])
    assert args[0::2] == ["--build-arg"] * len(pairs)
    assert set(pairs) <= _declared_args(ROOT / "docker" / f"{kind}.Dockerfile")
    if kind == "datagen":
        assert pairs["PIP_EXTRA_INDEX_URL"] == "" and pairs["PYTHON_IMAGE"] == dc.IMAGES["python"]
    else:
        assert pairs["TORCH_CUDA"] == "cpu" and pairs["GCC_VERSION"] == "4:12.2.0-3"
        assert pairs["PYTORCH_IMAGE"] == dc.IMAGES["pytorch"] and pairs["FFMPEG_IMAGE"] == dc.IMAGES["ffmpeg"]
    with pytest.raises(ValueError):
        dc.build_args("web", dc.IMAGES, "")


def test_ray_start_lines_use_real_flags_and_no_port_twice():
    from ray.scripts.scripts import start

    known = {o for p in start.params for o in p.opts}
    gcs, head_ports, worker_ports = dc.ray_ports(27100)
    head = dc.ray_start_args("head", gcs, head_ports, 0)
    worker = dc.ray_start_args("worker", gcs, worker_ports, 2)
    for argv in (head, worker):
        assert argv[0] == "start"
        assert {a.split("=", 1)[0] for a in argv[1:]} <= known, argv
        assert "--node-ip-address=127.0.0.1" in argv and "--block" in argv
    assert "--num-cpus=0" in head and "--num-gpus=0" in head and "--head" in head  # as the manifests' head
    assert f"--address=127.0.0.1:{gcs}" in worker and "--num-cpus=2" in worker
    ports = [gcs, *head_ports.values(), *worker_ports.values()]
    assert len(set(ports)) == len(ports)
    with pytest.raises(ValueError):
        dc.ray_start_args("driver", gcs, head_ports, 0)


def test_last_line_names_the_failed_step():
    assert dc.failure_line({"tools": "passed", "dockerd": "passed"}) == "docker-check: PASSED (2 steps)"
    line = dc.failure_line({"tools": "passed", "dockerd": "passed", "base-bookworm": "failed",
                            "base-python": "blocked", "base-ffmpeg": "failed"})
    assert line.startswith("docker-check: FAILED at step base-bookworm")
    assert "also failed: base-ffmpeg" in line and "not run (needs a failed step): base-python" in line


def test_report_lists_steps_and_images():
    summary = {"started_utc": "2026-12-06T00:00:00Z", "wall_s": 12.0, "result": "failed",
               "host": {"cpus": 2, "docker_server": "Docker 20.10", "storage_driver": "vfs"},
               "steps": [{"name": "tools", "what": "w", "result": "passed", "seconds": 1.25},
                         {"name": "dockerd", "what": "w", "result": "blocked", "seconds": None}],
               "images": {"datagen": {"tag": "x/datagen:check", "bytes": 2_345_000_000}},
               "facts": {"datagen EGL renderer": "llvmpipe"}}
    md = dc.report_markdown(summary)
    assert "| tools | passed | 1.2 | w |" in md and "| dockerd | blocked |  | w |" in md
    assert "| x/datagen:check (datagen) | 2.35 GB |" in md and "llvmpipe" in md and "**failed**" in md
    assert dc.human_bytes(999) == "999 B" and dc.human_bytes(1_500_000) == "1.50 MB"


def test_list_runs_without_docker(capsys):
    assert dc.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in dc.STEP_NAMES)


def test_make_target_runs_the_script():
    text = (ROOT / "Makefile").read_text()
    m = re.search(r"^docker-check:.*\n((?:\t.*\n)+)", text, re.M)
    assert m and "scripts/docker_check.py" in m.group(1)


def test_committed_summary_is_a_real_run_of_every_step():
    """docs/results/docker_check.json: a run of the whole plan (not a subset), each step with its outcome."""
    path = ROOT / "docs" / "results" / "docker_check.json"
    if not path.exists():
        pytest.skip("no committed run yet")
    summary = json.loads(path.read_text())
    assert [s["name"] for s in summary["steps"]] == dc.STEP_NAMES
    assert summary["result"] == ("passed" if all(s["result"] == "passed" for s in summary["steps"]) else "failed")
    assert (path.with_suffix(".md")).exists()


def test_storage_driver_choice():
    assert dc.choose_storage_driver("auto", True) == "overlay2"
    assert dc.choose_storage_driver("auto", False) == "vfs"
    assert dc.choose_storage_driver("vfs", True) == "vfs"
    assert dc.parse_args([]).storage_driver == "auto"


def test_a_second_check_waits_for_the_machine_lock(tmp_path, capsys):
    import fcntl
    import os
    import threading

    lock = tmp_path / "check.lock"
    first = dc.hold_machine_lock(lock)
    assert lock.read_text().strip() == str(os.getpid())
    got: list[int] = []
    second = threading.Thread(target=lambda: got.append(dc.hold_machine_lock(lock)))
    second.start()
    second.join(0.5)
    assert second.is_alive() and not got, "the second check did not wait"
    fcntl.flock(first, fcntl.LOCK_UN)
    os.close(first)
    second.join(5)
    assert got and not second.is_alive()
    os.close(got[0])
    assert "waiting for another docker check" in capsys.readouterr().out
