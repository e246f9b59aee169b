"""Run directories and checkpoints (ARCHITECTURE.md, "Paths").

::

    RUN/config.yaml                      resolved config + provenance
    RUN/ckpt/step-00001000/model.safetensors, ema.safetensors, optim.safetensors, state.json
    RUN/latest -> ckpt/step-00001000     swapped atomically once the step dir is complete

``state.json`` lists every other file of its step dir with its size and sha256. Loading a run dir checks
them and falls back to the newest intact checkpoint with a warning naming the damaged file; a step dir
given by name that is damaged, or a run with nothing intact left, is a :class:`CheckpointError` naming
the file. Checkpoints written before the listing existed (the shipped model) load with a warning.
A save interrupted by a crash leaves ``ckpt/.tmp-step-*``: :func:`remove_stale_temp` clears them at the
start of the next run (under the run directory's lock).

Tensors go to safetensors, everything else to JSON: loading never unpickles. Nested state dicts
(an optimizer's ``{"state": {0: {...}}, "param_groups": [...]}``) are flattened: their tensors
become safetensors entries named by their path, and the rest of the structure is kept in
``state.json`` as a JSON skeleton that keeps key types (int keys stay ints, as
``Optimizer.load_state_dict`` needs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from shared.config import Config, build_config, model_shape, shape_mismatch
from shared.errors import CheckpointError
from shared.fsutil import atomic_path
from shared.provenance import CONFIG_FILE, read_run_config, write_resolved_config  # noqa: F401 (re-exported)

CKPT_DIR = "ckpt"
LATEST = "latest"
STATE_FILE = "state.json"
STEP_PREFIX = "step-"
TMP_PREFIX = f".tmp-{STEP_PREFIX}"


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


def file_digest(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def save_checkpoint(run_dir: str | os.PathLike, step: int, tensors: dict[str, Any], state: dict[str, Any],
                    keep: int) -> Path:
    """Write ``ckpt/step-NNNNNNNN/`` ({name}.safetensors per entry of ``tensors`` + state.json).

    ``state.json`` is written last and lists the other files with size and sha256. The step dir is
    written under a temporary name, fsynced and renamed; only then is ``latest`` re-pointed (a new
    symlink renamed over the old one, which is atomic), and the oldest step dirs beyond ``keep`` are
    removed. A crash at any point leaves ``latest`` on a complete checkpoint.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (got {keep})")
    run = Path(run_dir)
    root = run / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f"{TMP_PREFIX}{int(step):08d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        skeletons: dict[str, Any] = {}
        files: dict[str, dict[str, Any]] = {}
        for name, sd in tensors.items():
            flat: dict[str, torch.Tensor] = {}
            skeletons[name] = flatten_state(sd, "", flat)
            f = tmp / f"{name}.safetensors"
            save_file(flat, str(f))
            files[f.name] = {"size": f.stat().st_size, "sha256": file_digest(f)}
        doc = {"step": int(step), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "files": files, "structure": skeletons, "state": state}
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
    with atomic_path(run / LATEST) as link_tmp:
        os.symlink(os.path.join(CKPT_DIR, final.name), link_tmp)
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


def remove_stale_temp(run_dir: str | os.PathLike) -> list[Path]:
    """Remove what interrupted saves left behind (``ckpt/.tmp-step-*``, a half-made ``latest`` link).

    Call it only while holding the run directory's lock: a running save owns its temp dir.
    """
    run = Path(run_dir)
    stale = list((run / CKPT_DIR).glob(f"{TMP_PREFIX}*")) if (run / CKPT_DIR).is_dir() else []
    stale += [p for p in run.glob(f".{LATEST}.tmp-*")] if run.is_dir() else []
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    return stale


# ------------------------------------------------------------------ load


@dataclass
class Checkpoint:
    step: int
    step_dir: Path
    tensors: dict[str, Any]  # name -> state dict
    state: dict[str, Any]


def resolve_latest(run_dir: str | os.PathLike) -> Path | None:
    link = Path(run_dir) / LATEST
    if not link.exists():
        return None
    target = link.resolve()
    return target if (target / STATE_FILE).is_file() else None


def find_checkpoint(path: str | os.PathLike) -> Path | None:
    """A step dir itself, or a run dir's ``latest``; None when the run has no checkpoint yet (nothing is read)."""
    p = Path(path)
    if (p / STATE_FILE).is_file():
        return p
    if not p.exists():
        return None
    return resolve_latest(p)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def read_step_dir(step_dir: Path, names: Iterable[str] | None = None, map_location: str | torch.device = "cpu"
                  ) -> Checkpoint:
    """Read one step dir (all its state dicts, or only ``names``), checking each file against the listing.

    Raises :class:`CheckpointError` naming the file that is missing, cut short, altered or unreadable.
    """
    state_file = step_dir / STATE_FILE
    try:
        doc = json.loads(state_file.read_text(encoding="utf-8"))
        structure = doc["structure"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{state_file}: unreadable checkpoint state ({type(e).__name__}: {e})") from e
    wanted = list(structure) if names is None else list(names)
    listing = doc.get("files")
    if listing is None:
        _warn(f"{step_dir} does not list its files' sizes and checksums (written by an older version): "
              "loading it unchecked")
    tensors: dict[str, Any] = {}
    for name in wanted:
        f = step_dir / f"{name}.safetensors"
        if name not in structure or not f.is_file():
            raise CheckpointError(f"{f}: missing (the checkpoint has {', '.join(sorted(structure)) or 'nothing'})")
        if listing is not None:
            want = listing.get(f.name)
            if want is None:
                raise CheckpointError(f"{f}: not listed in {state_file}")
            size = f.stat().st_size
            if size != want["size"]:
                raise CheckpointError(f"{f}: {size} bytes, {state_file} lists {want['size']} (cut short or replaced)")
            if file_digest(f) != want["sha256"]:
                raise CheckpointError(f"{f}: sha256 differs from the one {state_file} lists (the file was altered)")
        try:
            flat = load_file(str(f), device=str(map_location))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{f}: unreadable safetensors file ({e})") from e
        tensors[name] = unflatten_state(structure[name], flat)
    return Checkpoint(int(doc["step"]), step_dir, tensors, doc.get("state", {}))


def read_checkpoint(path: str | os.PathLike, names: Iterable[str] | None = None,
                    map_location: str | torch.device = "cpu") -> Checkpoint | None:
    """The newest intact checkpoint of a run dir, or a given step dir; None when the run has none yet.

    In a run dir, a damaged checkpoint (``latest`` first, then the other step dirs newest first) is
    passed over with a warning naming the damaged file. Raises :class:`CheckpointError` when a step dir
    given by name is damaged, or when no checkpoint of the run is intact.
    """
    p = Path(path)
    if (p / STATE_FILE).is_file():
        return read_step_dir(p, names, map_location)
    if not p.exists():
        return None
    latest = resolve_latest(p)
    candidates = ([latest] if latest is not None else []) + [d for d in reversed(list_checkpoints(p))
                                                              if latest is None or d.resolve() != latest.resolve()]
    damaged: list[str] = []
    for step_dir in candidates:
        try:
            ckpt = read_step_dir(step_dir, names, map_location)
        except CheckpointError as e:
            damaged.append(str(e))
            continue
        for msg in damaged:
            _warn(f"damaged checkpoint passed over: {msg}; using {step_dir} instead")
        return ckpt
    if damaged:
        raise CheckpointError(f"no intact checkpoint in {p}: " + "; ".join(damaged))
    return None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
    """``(step, {name: state_dict}, state)`` of :func:`read_checkpoint`; None if there is none.

    Reads safetensors and JSON only (no pickle anywhere).
    """
    ckpt = read_checkpoint(path, map_location=map_location)
    return None if ckpt is None else (ckpt.step, ckpt.tensors, ckpt.state)


# ------------------------------------------------------------ run config


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
                    extra: dict[str, Any] | None = None, before_write: Callable[[Path], None] | None = None) -> Path:
    """Check the shape against a previous run, call ``before_write(run_dir)``, then write ``config.yaml``."""
    run = Path(run_dir)
    check_run_config(run, cfg, sections, force)
    run.mkdir(parents=True, exist_ok=True)
    if before_write is not None:
        before_write(run)
    write_resolved_config(run / CONFIG_FILE, cfg, extra)
    return run


# ------------------------------------------------------------ packaging

PACKAGED_WEIGHTS = "ema"  # a packaged model samples with the EMA weights
RESUME_STATE = ("rng", "latents", "vae_source")  # state.json's "state" keys only a resumed run or this machine uses


def package_model(run_dir: str | os.PathLike, dest: str | os.PathLike, inference: dict[str, Any] | None = None,
                  half: bool = False) -> list[Path]:
    """Package a diffusion run as a model: what ``trainer sample`` and ``trainer eval`` need, nothing to resume.

    A packaged model is a run dir of its own::

        DEST/config.yaml                   the run's (provenance kept), its inference section updated with
                                           ``inference`` (the sampling defaults); the edited config must still build
        DEST/ckpt/step-N/ema.safetensors   the run's newest checkpoint's EMA weights, copied (``half``: stored as
                                           float16, half the bytes; loading casts them back to the model's float32)
        DEST/ckpt/step-N/state.json        its state.json listing and describing only that file, without the
                                           resume state (RNG, latents and VAE source paths)
        DEST/latest -> ckpt/step-N
        DEST/vae/                          the run's copy of its frame VAE (links kept)

    It loads like any run (:func:`read_checkpoint`, the file listing checked). ``dest`` is replaced when it exists.
    Returns the files written (links left out), sorted.
    """
    run = Path(run_dir)
    step_dir = find_checkpoint(run)
    if step_dir is None:
        raise CheckpointError(f"{run}: no checkpoint to package")
    out = _package_step(step_dir.resolve(), Path(dest), half)
    _package_config(run, out, inference or {})
    shutil.copytree(run / "vae", out / "vae", symlinks=True)
    return sorted(q for q in out.rglob("*") if q.is_file() and not q.is_symlink())


def package_vae(run_dir: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Package a ``trainer vae`` run as a frame VAE others encode and decode with (``trainer cache-latents --vae
    DEST``, ``load_vae``): ``DEST/config.yaml`` (the run's), its newest checkpoint's EMA weights with their trimmed
    state.json under ``DEST/ckpt/step-N/``, ``DEST/latest``. ``dest`` is replaced when it exists; returns the
    files written, sorted."""
    run = Path(run_dir)
    step_dir = find_checkpoint(run)
    if step_dir is None:
        raise CheckpointError(f"{run}: no checkpoint to package")
    out = _package_step(step_dir.resolve(), Path(dest))
    shutil.copy2(run / CONFIG_FILE, out / CONFIG_FILE)
    return sorted(q for q in out.rglob("*") if q.is_file() and not q.is_symlink())


def _package_step(step_dir: Path, out: Path, half: bool = False) -> Path:
    """A fresh ``out`` holding ``ckpt/step-N`` (the EMA weights only) and ``latest`` pointing at it."""
    if out.exists():
        shutil.rmtree(out)
    (out / CKPT_DIR / step_dir.name).mkdir(parents=True)
    _package_weights(step_dir, out / CKPT_DIR / step_dir.name, half)
    (out / LATEST).symlink_to(Path(CKPT_DIR) / step_dir.name)
    return out


def _package_config(run: Path, out: Path, inference: dict[str, Any]) -> None:
    """The run's config.yaml with its inference section updated, checked to still build."""
    doc = yaml.safe_load((run / CONFIG_FILE).read_text())
    doc["config"]["inference"].update(inference)
    (out / CONFIG_FILE).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    checked = out / "config.check.yaml"  # the edited tree must still be a valid config
    checked.write_text(yaml.safe_dump(doc["config"], sort_keys=False), encoding="utf-8")
    try:
        build_config([checked])
    finally:
        checked.unlink()


def half_tensors(flat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float32/float64 tensors as float16 (integer and other tensors as they are). Raises CheckpointError when a
    finite value does not fit float16 (|x| > 65504 would become inf)."""
    out = {}
    for k, v in flat.items():
        if v.dtype in (torch.float32, torch.float64):
            h = v.to(torch.float16)
            if not torch.equal(torch.isfinite(h), torch.isfinite(v)):
                raise CheckpointError(f"tensor {k!r} has values beyond float16's range (max |x| "
                                      f"{v[torch.isfinite(v)].abs().max().item():.4g}): package it without half")
            v = h
        out[k] = v
    return out


def _package_weights(step_dir: Path, out: Path, half: bool = False) -> None:
    """The EMA weights of a step dir and its state.json trimmed to them (no other weights, no resume state). The
    source file is checked against its listing first; ``source_sha256`` records which weights were packaged."""
    weights = f"{PACKAGED_WEIGHTS}.safetensors"
    read_step_dir(step_dir, [PACKAGED_WEIGHTS])  # a damaged source is refused (CheckpointError), not repackaged
    state = json.loads((step_dir / STATE_FILE).read_text())
    state["structure"] = {PACKAGED_WEIGHTS: state["structure"][PACKAGED_WEIGHTS]}
    for k in RESUME_STATE:
        state.get("state", {}).pop(k, None)
    state["source_sha256"] = file_digest(step_dir / weights)
    if half:
        save_file(half_tensors(load_file(str(step_dir / weights))), str(out / weights))
        state["weights_dtype"] = "float16"
    else:
        shutil.copy2(step_dir / weights, out / weights)
    if "files" in state:  # the listing (size, sha256) of the one weights file shipped, so that loading checks it
        state["files"] = {weights: {"size": (out / weights).stat().st_size, "sha256": file_digest(out / weights)}}
    (out / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
