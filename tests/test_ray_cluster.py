"""`datagen run` on real Ray: the embedded cluster, and a two-node localhost cluster that loses a node mid-run.

Few Ray clusters in the whole file (each costs seconds and ~600 MB): the embedded one started by
`datagen run --executor ray` (three runs: one whole, one killed mid-run, its re-run), and a `ray start --head`
+ `ray start --address` pair, each node in its own process group and temp dir, stopped by process-group id (never `ray stop`, which would
kill every Ray process on the machine). Everything listens on 127.0.0.1 only; token auth is off
for these loopback-only test clusters.
"""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from shared.command_line import run_cli

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
BIN = Path(sys.executable).parent
MICRO = ["data.sample_rate=8000", "data.clip_seconds=3.0", "render.resolution=32", "render.fps=8",
         "timeline.n_fft=256", "render.chunk_frames=8", "data.samples_per_shard=2", "data.val_style_siblings=0"]
ARGS = ["--config", TINY, "--shards", "8", "--val-shards", "1", "--no-progress", *MICRO]
N_SHARDS = 9

# Ray rewrites a 127.0.0.1 node address to the machine's address and then listens on every
# interface. The head node and the drivers keep loopback through Ray's single-machine switch; a
# worker node cannot (Ray refuses to add nodes with that switch off), so it is started through
# the same `ray` CLI with the rewrite disabled.
LOOPBACK_RAY_CLI = ("import sys; from ray._private import services; "
                    "services.resolve_ip_for_localhost = lambda host: host; "
                    "from ray.scripts.scripts import main; sys.exit(main())")


def ray_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


def shard_files(out: Path) -> dict[str, bytes]:
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(out.glob("*/shard-*.tar"))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_pids(proc: subprocess.Popen) -> set[int]:
    """A `ray start` node's processes: its process group and every descendant (Ray workers get their own groups)."""
    out = set()
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == proc.pid:
                out.add(p.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    try:
        out |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
    except psutil.Error:
        pass
    return out


def kill_node(proc: subprocess.Popen) -> set[int]:
    """SIGKILL a node's process group and each of its descendants, by id."""
    pids = node_pids(proc)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    return pids


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same shards written serially (executor local): what every Ray run must reproduce byte for byte."""
    from datagen.run import run_datagen
    from shared.config import build_config

    out = tmp_path_factory.mktemp("ref") / "pixels"
    cfg = build_config([TINY], flags={"data.train_shards": 8, "data.val_shards": 1, "run.executor": "local"},
                       overrides=MICRO)
    assert run_datagen(cfg, out, progress=False)[0] == 0
    return out


def test_embedded_ray_cluster_byte_identical_one_context_per_actor(reference, tmp_path):
    out = tmp_path / "px"
    proc = subprocess.run([str(BIN / "datagen"), "run", *ARGS, "--executor", "ray", "--workers", "2", "--out", str(out)],
                          cwd=ROOT, env=ray_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert shard_files(out) == shard_files(reference)
    summary = json.loads((out / "summary.json").read_text())
    # Two long-lived actors rendered 9 shards: two GL contexts, each in its own actor process.
    assert summary["gl_contexts"] == 2 and summary["shards_written"] == N_SHARDS
    pids = {w["pid"] for w in summary["workers"]}
    assert len(pids) == 2 and all(w["renderers_in_process"] == 1 for w in summary["workers"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert {e["worker"]["pid"] for e in manifest["shards"].values()} <= pids
    assert run_cli("datagen", "datagen.commands", "", ["inspect", str(out)]) == 0


def orphaned(dirs: set[Path]) -> set[Path]:
    """The embedded clusters' temp dirs (/tmp/ray<driver pid>-XXXX) whose driver is gone: another run's live cluster
    (a second test session on the machine) is not this test's leftover."""
    import psutil

    out = set()
    for d in dirs:
        m = re.match(r"ray(\d+)-", d.name)
        if m and not psutil.pid_exists(int(m.group(1))):
            out.add(d)
    return out


def test_sigkilled_driver_of_the_embedded_cluster_leaves_nothing_behind_then_resumes(reference, tmp_path):
    """SIGKILL a real `datagen run` (embedded Ray) after its first shard: within 10 s none of the processes it
    started runs (actors, raylet, GCS, Ray's dashboard and runtime-env agents), no shard appears after its lock
    is gone, its Ray temp dir is removed, and a re-run resumes to the serial reference's bytes."""
    from killing import kill_datagen_after_first_shard, still_running

    out = tmp_path / "px"
    argv = [*ARGS, "--executor", "ray", "--workers", "2", "--out", str(out)]
    before = set(Path("/tmp").glob("ray*"))
    started, at_death = kill_datagen_after_first_shard(argv, out, env=ray_env(), timeout=240)
    names = " ".join(p.name() for p in started)
    # "ShardWorke": Linux keeps 15 characters of a process name, and psutil gives the full one only while it can
    # still read the process's command line (not always, once the process is gone: seen under load)
    assert "raylet" in names and "ShardWorke" in names, names
    left = still_running(started, within_s=10)
    assert left == [], f"outlived the driver: {[p.name() for p in left]}"
    assert set(out.glob("*/shard-*.tar")) == at_death, "a shard was written after the driver's lock was gone"
    assert not orphaned(set(Path("/tmp").glob("ray*")) - before), "the embedded cluster's temp dir is left behind"
    proc = subprocess.run([str(BIN / "datagen"), "run", *argv], cwd=ROOT, env=ray_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert shard_files(out) == shard_files(reference)


@pytest.fixture(scope="module", autouse=True)
def _two_node_processes():
    """Start a head node and a worker node (1 CPU each, own temp dirs and process groups) on 127.0.0.1 when
    the module starts, so that they boot while the other tests run; stop them by id when it ends."""
    port = free_port()
    dirs = [tempfile.mkdtemp(prefix="r", dir="/tmp") for _ in range(2)]
    common = ["--num-cpus=1", "--block", "--disable-usage-stats", "--object-store-memory=80000000",
              "--node-ip-address=127.0.0.1"]
    # Fast node-death detection so the lost node's actor is declared dead in seconds.
    env = ray_env(RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3",
                  RAY_health_check_initial_delay_ms="1000")
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", f"--port={port}", "--include-dashboard=false",
                             f"--temp-dir={dirs[0]}", *common], env=dict(env, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # `ray start --address` keeps retrying until the head's GCS answers.
    worker = subprocess.Popen([sys.executable, "-c", LOOPBACK_RAY_CLI, "start", f"--address=127.0.0.1:{port}",
                               f"--temp-dir={dirs[1]}", *common], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield {"address": f"127.0.0.1:{port}", "head": head, "worker": worker}
    finally:
        for p in (worker, head):
            kill_node(p)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def two_node_cluster(_two_node_processes):
    """The two-node cluster, once both nodes have registered (a driver connects, counts and leaves)."""
    address = _two_node_processes["address"]
    wait = ("import ray, time, sys; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR')\n"
            "t = time.time()\n"
            "while sum(n['Alive'] for n in ray.nodes()) < 2 and time.time() - t < 120: time.sleep(0.5)\n"
            "sys.exit(0 if sum(n['Alive'] for n in ray.nodes()) == 2 else 1)")
    deadline = time.monotonic() + 120
    while True:
        r = subprocess.run([sys.executable, "-c", wait, address], capture_output=True, text=True,
                           env=ray_env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0"), timeout=180)
        if r.returncode == 0:
            return _two_node_processes
        assert time.monotonic() < deadline, f"two-node cluster did not come up: {r.stderr[-2000:]}"
        time.sleep(1)


def _running_shard_on(pids: set[int]) -> bool:
    """Whether one of these processes is an actor inside ShardWorker.run (Ray retitles the process)."""
    for pid in pids:
        try:
            if "ShardWorker.run" in " ".join(psutil.Process(pid).cmdline()):
                return True
        except psutil.Error:
            pass
    return False


def test_multinode_cluster_survives_losing_a_worker_node(reference, tmp_path, two_node_cluster):
    """Kill the worker node (raylet and actor) while its actor writes a shard: the run completes with every
    shard exactly once, the shards shared with the serial reference are byte-identical, inspect passes."""
    out = tmp_path / "px"
    # A longer run than the reference, so that the worker node's actor (slower to start under load) gets work well
    # before the end: the kill must land with shards still to write (a kill at 20 of 21 shards, under the load of two
    # CI runs, found the last shard already written and nothing left to lose)
    n_train = 60
    worker_node = two_node_cluster["worker"]
    argv = [a if a != "8" else str(n_train) for a in ARGS]
    driver = subprocess.Popen([str(BIN / "datagen"), "run", *argv, "--address", two_node_cluster["address"],
                               "--workers", "2", "--out", str(out)], cwd=ROOT,
                              env=ray_env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: set[int] | None = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            done_before = len(list(out.glob("*/shard-*.tar")))
            if done_before < n_train - 4 and _running_shard_on(node_pids(worker_node)):
                killed = kill_node(worker_node)
                break
            time.sleep(0.05)
        stdout, stderr = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert killed is not None, ("the worker node's actor never ran a shard while more than 4 were left: "
                                f"{stderr[-2000:]}")
    time.sleep(0.5)
    survivors = [p for p in killed if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not survivors, f"worker node processes survived the kill: {survivors}"
    assert driver.returncode == 0, stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    print(f"\nfault injection: worker node killed with {done_before}/{n_train + 1} shards finished, its actor "
          f"mid-shard; lost_workers={summary['lost_workers']} retries={summary['retries']} "
          f"failed={summary['shards_failed']} attempt_failures={summary['attempt_failures']} "
          f"seconds={summary['seconds']}")
    assert summary["lost_workers"] >= 1 and summary["retries"] >= 1 and summary["shards_failed"] == []
    names = sorted(f"{p.parent.name}/{p.name}" for p in out.glob("*/shard-*"))
    assert names == sorted({*names}) and len(names) == n_train + 1 and not list(out.rglob("*.partial"))
    got = shard_files(out)
    assert {k: got[k] for k in shard_files(reference)} == shard_files(reference)
    assert run_cli("datagen", "datagen.commands", "", ["inspect", str(out)]) == 0


def test_tiny_config_shards_are_byte_identical_under_local_processes_and_ray(tmp_path):
    """At configs/tiny.yaml sizes (64 px, 16 kHz, 8 bands) the timeline's BLAS products are big enough to be
    split across threads: local and processes run with a 2-thread BLAS, Ray actors with 1, and all three
    must still write the same bytes (shard jobs pin math libraries to one thread)."""
    argv = ["--config", TINY, "--shards", "1", "--val-shards", "1", "--samples-per-shard", "1", "--no-progress",
            "data.val_style_siblings=0"]
    two_threads = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    runs = {"local": two_threads, "processes": two_threads, "ray": {}}
    got = {}
    for executor, threads in runs.items():
        out = tmp_path / executor
        proc = subprocess.run([str(BIN / "datagen"), "run", *argv, "--executor", executor, "--workers", "1",
                               "--out", str(out)], cwd=ROOT, env=ray_env(**threads), capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        got[executor] = shard_files(out)
    assert sorted(got["local"]) == ["train/shard-000000.tar", "val/shard-000000.tar"]
    assert got["processes"] == got["local"]
    assert got["ray"] == got["local"]


def test_unanswering_ray_address_fails_within_the_connect_timeout_naming_it(tmp_path):
    """Nothing listens on the port: `datagen run --address` fails in about run.ray_connect_timeout_s, naming the
    address, instead of waiting for minutes."""
    address = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    proc = subprocess.run([str(BIN / "datagen"), "run", "--config", TINY, "--address", address, "--out",
                           str(tmp_path / "px"), "--no-progress", *MICRO, "run.ray_connect_timeout_s=2"], cwd=ROOT,
                          env=ray_env(), capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: the Ray cluster at {address} does not answer")
    assert "Traceback" not in proc.stderr
    assert elapsed < 30, elapsed  # 2 s of probing plus interpreter and Ray import start-up


_ACCEPTING_PORT = """
import socket, sys, time
import ray
from datagen.executors.ray import connect_within
from datagen.manifest import RunError

with socket.socket() as srv:
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    address = f"127.0.0.1:{srv.getsockname()[1]}"
    t0 = time.monotonic()
    try:
        connect_within(ray, address, 2.0)
    except RunError as e:
        print(f"{time.monotonic() - t0:.2f} {address} {e}")
"""


def test_port_that_accepts_but_is_no_ray_head_fails_within_the_connect_timeout():
    """A TCP port that accepts connections but never speaks Ray's protocol makes ray.init wait for minutes: the
    connection attempt is abandoned after the timeout with an error naming the address. In a child process: the
    abandoned ray.init goes on retrying in its thread until its process ends, and in the pytest process it would
    print "Failed to connect to the observability pubsub" after the suite's summary."""
    proc = subprocess.run([sys.executable, "-c", _ACCEPTING_PORT], cwd=ROOT, env=ray_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seconds, address, message = proc.stdout.strip().split(" ", 2)
    assert message == f"the Ray cluster at {address} did not answer within 2 s (run.ray_connect_timeout_s); check --address"
    assert float(seconds) < 5


def test_a_remote_error_keeps_its_reason():
    """A shard that failed inside a Ray actor is reported by its own error (here a full disk), not by the first
    line of Ray's wrapper (which is the traceback's header and cut the reason off)."""
    import traceback

    from ray.exceptions import RayTaskError

    from datagen.executors.base import error_text, is_disk_full
    from shared.errors import DiskFullError

    try:
        raise DiskFullError("/shared/pixels/train/shard-000001.tar: no space left on device")
    except DiskFullError as e:
        wrapped = RayTaskError("ShardWorker.run", traceback.format_exc(), e).as_instanceof_cause()
    assert error_text(wrapped) == "DiskFullError: /shared/pixels/train/shard-000001.tar: no space left on device"
    assert is_disk_full(wrapped)
