"""Provenance written beside every output: git SHA, package versions, host."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import yaml

from shared.config import Config
from shared.errors import CheckpointError

CONFIG_FILE = "config.yaml"  # a run's resolved config (write_resolved_config, read_run_config)

PACKAGES = ("synesthete", "torch", "numpy", "scipy", "moderngl", "webdataset", "ray", "soundfile", "pydantic", "simplejpeg")


def git_sha(cwd: str | Path | None = None) -> str | None:
    here = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def code_commit(cwd: str | Path | None = None) -> str | None:
    """The short commit of this checkout's code, ``-dirty`` when tracked files other than markdown and docs/
    (results: reports, tables, pictures; no code) differ from it (a results file being rewritten is not a change
    of the code that measured it); None outside git."""
    here = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                ":(exclude,top)*.md", ":(exclude,top)docs"],
                               cwd=here, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.strip() else "")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance() -> dict[str, Any]:
    return {
        "git_sha": git_sha(),
        "packages": package_versions(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_resolved_config(path: str | Path, cfg: Config, extra: dict[str, Any] | None = None) -> Path:
    """Write ``config.yaml``: the resolved config plus a provenance block."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = {"config": cfg.model_dump(mode="json"), "provenance": provenance()}
    if extra:
        doc.update(extra)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.replace(p)
    return p


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The resolved config tree saved in ``run_dir/config.yaml`` by :func:`write_resolved_config` (None when there is
    none). Light on purpose (YAML only, no torch): ``--help`` reads a model's settings with it."""
    p = Path(run_dir) / CONFIG_FILE
    if not p.is_file():
        return None
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise CheckpointError(f"{p}: unreadable run config ({type(e).__name__}: {' '.join(str(e).split())})") from e
    if not isinstance(doc, dict):
        raise CheckpointError(f"{p}: not a config mapping")
    return doc.get("config", doc)


def machine_description() -> str:
    """CPU model, core count, OS and the current load: what a benchmark row needs to be read."""
    import re

    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        m = re.search(r"Model name:\s*(.+)", out)
        cpu = m.group(1).strip() if m else cpu
    except (OSError, subprocess.SubprocessError):
        pass
    load = os.getloadavg()[0]
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()} "
            f"(1-min load average {load:.1f} at the start; a shared machine makes the figures noisy)")
