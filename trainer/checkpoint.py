"""Run directories and checkpoints (ARCHITECTURE.md, "Paths").

::

    RUN/config.yaml                      resolved config + provenance
    RUN/ckpt/step-00001000/model.safetensors, ema.safetensors, optim.safetensors, state.json
    RUN/latest -> ckpt/step-00001000     swapped atomically once the step dir is complete

Tensors go to safetensors, everything else to JSON: loading never unpickles. Nested state dicts
(an optimizer's ``{"state": {0: {...}}, "param_groups": [...]}``) are flattened: their tensors
become safetensors entries named by their path, and the rest of the structure is kept in
``state.json`` as a JSON skeleton that keeps key types (int keys stay ints, as
``Optimizer.load_state_dict`` needs).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from shared.config import Config, model_shape

CKPT_DIR = "ckpt"
LATEST = "latest"
STATE_FILE = "state.json"
CONFIG_FILE = "config.yaml"
STEP_PREFIX = "step-"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the run."""


class ShapeMismatchError(CheckpointError):
    """The run's saved config has a different model shape than the config asked for."""


def step_dir_name(step: int) -> str:
    return f"{STEP_PREFIX}{int(step):08d}"


def _step_of(name: str) -> int | None:
    if name.startswith(STEP_PREFIX) and name[len(STEP_PREFIX):].isdigit():
        return int(name[len(STEP_PREFIX):])
    return None


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete step dirs under ``run_dir/ckpt``, oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    dirs = [(s, p) for p in root.iterdir() if p.is_dir() and (s := _step_of(p.name)) is not None
            and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(dirs)]


# ------------------------------------------------------------- flattening


def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested structure into ``tensors`` (keyed by its path); return a JSON skeleton.

    dicts -> ``{"__dict__": [[key, value], ...]}`` (keeps int keys), tuples -> ``{"__tuple__": [...]}``,
    tensors -> ``{"__tensor__": name}``; str/int/float/bool/None pass through.
    """
    if isinstance(obj, torch.Tensor):
        name = prefix or "_"
        tensors[name] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": name}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"checkpoint state key {k!r} at '{prefix}' must be str or int")
            items.append([k, flatten_state(v, f"{prefix}.{k}" if prefix else str(k), tensors)])
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        out = [flatten_state(v, f"{prefix}.{i}" if prefix else str(i), tensors) for i, v in enumerate(obj)]
        return {"__tuple__": out} if isinstance(obj, tuple) else out
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    raise TypeError(f"checkpoint state at '{prefix}' has unsupported type {type(obj).__name__}")


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {k: unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
        raise CheckpointError(f"unknown checkpoint skeleton node with keys {sorted(skeleton)}")
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


# ------------------------------------------------------------------ save


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(run_dir: str | os.PathLike, step: int, tensors: dict[str, Any], state: dict[str, Any],
                    keep: int) -> Path:
    """Write ``ckpt/step-NNNNNNNN/`` ({name}.safetensors per entry of ``tensors`` + state.json).

    The step dir is written under a temporary name, fsynced and renamed; only then is ``latest``
    re-pointed (a new symlink renamed over the old one, which is atomic), and the oldest step dirs
    beyond ``keep`` are removed. A crash at any point leaves ``latest`` on a complete checkpoint.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (got {keep})")
    run = Path(run_dir)
    root = run / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{step_dir_name(step)}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        skeletons: dict[str, Any] = {}
        for name, sd in tensors.items():
            flat: dict[str, torch.Tensor] = {}
            skeletons[name] = flatten_state(sd, "", flat)
            save_file(flat, str(tmp / f"{name}.safetensors"))
        doc = {"step": int(step), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "structure": skeletons, "state": state}
        (tmp / STATE_FILE).write_text(json.dumps(doc), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():  # re-saving the same step (e.g. the final save right after a periodic one)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    link_tmp = run / f".{LATEST}.tmp-{os.getpid()}"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(os.path.join(CKPT_DIR, final.name), link_tmp)
    os.replace(link_tmp, run / LATEST)
    _fsync_dir(run)
    prune_checkpoints(run, keep)
    return final


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` step dirs (never the one ``latest`` points to); return the removed."""
    run = Path(run_dir)
    current = resolve_latest(run)
    dirs = list_checkpoints(run)
    removed = []
    for p in dirs[:-keep] if len(dirs) > keep else []:
        if current is not None and p.resolve() == current.resolve():
            continue
        shutil.rmtree(p)
        removed.append(p)
    return removed


# ------------------------------------------------------------------ load


def resolve_latest(run_dir: str | os.PathLike) -> Path | None:
    link = Path(run_dir) / LATEST
    if not link.exists():
        return None
    target = link.resolve()
    return target if (target / STATE_FILE).is_file() else None


def find_checkpoint(path: str | os.PathLike) -> Path | None:
    """A step dir itself, or a run dir's ``latest``; None when the run has no checkpoint yet."""
    p = Path(path)
    if (p / STATE_FILE).is_file():
        return p
    if not p.exists():
        return None
    return resolve_latest(p)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
    """``(step, {name: state_dict}, state)`` from a run dir (via ``latest``) or a step dir; None if none.

    Reads safetensors and JSON only (no pickle anywhere).
    """
    step_dir = find_checkpoint(path)
    if step_dir is None:
        return None
    try:
        doc = json.loads((step_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{step_dir / STATE_FILE}: unreadable checkpoint state ({e})") from None
    device = str(map_location)
    tensors: dict[str, Any] = {}
    for name, skeleton in doc["structure"].items():
        f = step_dir / f"{name}.safetensors"
        if not f.is_file():
            raise CheckpointError(f"{step_dir}: missing {f.name}")
        flat = load_file(str(f), device=device)
        tensors[name] = unflatten_state(skeleton, flat)
    return int(doc["step"]), tensors, doc["state"]


# ------------------------------------------------------------ run config


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The resolved config tree saved in ``run_dir/config.yaml`` (None when there is none)."""
    p = Path(run_dir) / CONFIG_FILE
    if not p.is_file():
        return None
    doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    return doc.get("config", doc)


def saved_model_shape(saved_config: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """Pick the dotted ``keys`` out of a saved raw config tree (missing keys read as None)."""
    out = {}
    for key in keys:
        section, name = key.split(".")
        out[key] = (saved_config.get(section) or {}).get(name)
    return out


def check_run_config(run_dir: str | os.PathLike, cfg: Config, sections: tuple[str, ...], force: bool = False
                     ) -> list[str]:
    """Compare the model shape of ``cfg`` with the one saved in ``run_dir``; return the differences.

    A difference raises :class:`ShapeMismatchError` naming the fields, unless ``force``: then the
    old checkpoints are moved aside (``ckpt.replaced-<time>``, nothing deleted) so the run starts
    fresh with the new shape.
    """
    from shared.config import shape_mismatch

    saved = read_run_config(run_dir)
    if saved is None:
        return []
    current = model_shape(cfg, sections)
    diffs = shape_mismatch(saved_model_shape(saved, list(current)), current)
    if not diffs:
        return []
    if not force:
        raise ShapeMismatchError(
            f"run dir {run_dir} was trained with a different model shape:\n  " + "\n  ".join(diffs)
            + "\nuse another --out, or --force to start a new run there (old checkpoints are moved aside)")
    run = Path(run_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    if (run / CKPT_DIR).exists():
        os.replace(run / CKPT_DIR, run / f"{CKPT_DIR}.replaced-{stamp}")
    if (run / LATEST).is_symlink() or (run / LATEST).exists():
        (run / LATEST).unlink()
    return diffs


def prepare_run_dir(run_dir: str | os.PathLike, cfg: Config, sections: tuple[str, ...], force: bool = False,
                    extra: dict[str, Any] | None = None, write: bool = True) -> Path:
    """Check the shape against a previous run, then (main rank) write ``config.yaml``."""
    from shared.provenance import write_resolved_config

    run = Path(run_dir)
    check_run_config(run, cfg, sections, force)
    if write:
        run.mkdir(parents=True, exist_ok=True)
        write_resolved_config(run / CONFIG_FILE, cfg, extra)
    return run


def load_torch_file(path: str | os.PathLike) -> Any:
    """The one place a ``.pt`` file may be read: ``weights_only=True`` refuses arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)
