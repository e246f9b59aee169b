"""The one training loop, for the VAE and the denoiser (in the spirit of NVlabs EDM2's ``training_loop``).

A model plugs in as a :class:`Task`: how to build it and its optimizer, its batches from a start step,
one step's loss and metrics from a batch and a generator, validation, a preview image. The loop owns
everything else, in this order (reads top to bottom in :func:`train`):

1. the run directory: a per-directory lock (``shared.runlock``; rank 0 holds it under torchrun),
   stale ``ckpt/.tmp-step-*`` of interrupted saves removed, the model shape checked against the saved
   config (refused unless ``force``), ``config.yaml`` written, the newest intact checkpoint chosen;
2. model, EMA (with warm-up) and optimizer, restored from that checkpoint;
3. DDP, then torch.compile (CUDA only: on the CPU it costs start-up and gave nothing at our sizes);
4. steps: lr warm-up, loss, backward, gradient clipping, optimizer, EMA; metrics stay on the device and
   are flushed every ``run.log_every`` steps (one all-reduce and one host sync per flush), still one
   metrics.jsonl line per step; a non-finite loss stops the run naming the step, the loss terms and the
   last good checkpoint; validation and previews at their cadences; checkpoints every
   ``run.checkpoint_every`` steps (never of non-finite weights), the last ``run.keep_checkpoints`` kept;
5. ``summary.json``.

Exact resume. Every random draw of step s on rank r comes from generators seeded by (run.seed, r, s)
(``trainer.runtime.rng``; the task's generator lives on the training device, so its draws cost no host work
and no copy), so no RNG state is saved. The data stream is cut into segments that start at
checkpoint steps: at each such step the loop asks the task for a new stream ``task.batches(step)``, a pure
function of the step (the loader is seeded by it). A run killed anywhere resumes from its newest
checkpoint, which starts a segment, and sees exactly the batches, noise and updates an uninterrupted run
sees, with any number of loader workers (the same number, ranks and ``run.checkpoint_every`` as before:
the stream is a function of them). Cost: a loader restart (worker start, shuffle-buffer fill) per
checkpoint; and when a run resumes from a checkpoint off the segment grid (the final step of a shorter
earlier run), it reads and drops the batches since the segment start: at most ``checkpoint_every - 1``
batches of loading, no compute.

Skip counts. Each batch carries the ids of what the loader skipped before it (``trainer.data.SkipLog``);
the loop keeps them in a set, takes the union over ranks at each checkpoint and saves it in the state, so a
corrupt sample is counted once however many times, epochs or ranks read it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import matplotlib.image
import numpy as np
import torch
from torch import nn

from shared.config import Config
from shared.errors import SynestheteError
from shared.fsutil import atomic_write_json
from shared.runlock import dir_lock
from trainer import checkpoint as ckpt
from trainer import runtime as rt
from trainer.data import skip_counts, skipped_in

Batch = dict[str, Any]


class NonFiniteLossError(SynestheteError):
    """The loss (or a term of it, or the gradient norm) became NaN or infinite: the run stops."""


@dataclass
class Hyper:
    """The optimisation settings the loop reads (from ``vae.*`` or ``diffusion.*``)."""

    steps: int
    lr: float
    warmup_steps: int
    grad_clip: float
    ema_decay: float
    batch_size: int  # per rank
    compile: bool


class Task:
    """What differs between the models. Subclasses set ``name``, ``shape_sections``, ``hyper`` and
    ``val_every`` and implement the methods that raise here."""

    name: str
    shape_sections: tuple[str, ...]
    hyper: Hyper
    val_every: int

    def setup_run_dir(self, run_dir: Path) -> None:
        """Rank 0, under the lock, after the shape check and before ``config.yaml`` is written."""

    def run_config_extra(self) -> dict[str, Any]:
        """Extra keys for ``config.yaml``."""
        return {}

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        raise NotImplementedError

    def batches(self, start_step: int) -> Iterator[Batch]:
        """The batches of steps start_step, start_step + 1, ...: a pure function of ``start_step``."""
        raise NotImplementedError

    def loss(self, net: nn.Module, batch: Batch, generator: torch.Generator, step: int
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One step's scalar loss and its terms (0-dim tensors, left on the device)."""
        raise NotImplementedError

    def host_metrics(self, step: int) -> dict[str, float]:
        """Per-step values known on the host (no device sync), logged beside the loss terms."""
        return {}

    def validate(self, model: nn.Module, ema_model: nn.Module, step: int) -> dict[str, float]:
        return {}

    def preview(self, ema_model: nn.Module, step: int) -> tuple[str, np.ndarray] | None:
        """``(file name under RUN/samples, uint8 image (H, W, 3))`` on the main rank, or None."""
        return None

    def state(self) -> dict[str, Any]:
        """JSON state saved in every checkpoint and in the summary."""
        return {}


def lr_at(step: int, base_lr: float, warmup_steps: int) -> float:
    """Linear warmup to ``base_lr`` over ``warmup_steps``, then constant (step counts from 0)."""
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup_steps)


def segment_start(step: int, every: int) -> int:
    """The first step of the data segment that holds ``step`` (segments start at checkpoint steps)."""
    return (step // every) * every


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def weights_finite(*tensors: dict[str, torch.Tensor]) -> bool:
    """True when every floating-point tensor of the given state dicts is finite (one host sync)."""
    flags = [torch.isfinite(t).all() for sd in tensors for t in sd.values() if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


class _StepMetrics:
    """Per-step loss terms kept on the device until :meth:`flush` (one all-reduce, one host sync)."""

    def __init__(self, dist: rt.Dist):
        self.dist = dist
        self.names: list[str] | None = None
        self.rows: list[torch.Tensor] = []
        self.host: list[tuple[int, dict[str, float]]] = []

    def add(self, step: int, terms: dict[str, torch.Tensor], host: dict[str, float]) -> None:
        if self.names is None:
            self.names = list(terms)
        device = terms[self.names[0]].device
        self.rows.append(torch.stack([torch.as_tensor(terms[k], dtype=torch.float32, device=device).detach().reshape(())
                                      for k in self.names]))
        self.host.append((step, host))

    def flush(self) -> list[tuple[int, dict[str, float]]]:
        """``[(step, {name: mean over ranks})]`` for the steps since the last flush."""
        if not self.rows:
            return []
        values = torch.stack(self.rows)  # (n_steps, n_terms)
        if self.dist.distributed:
            torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
            values = values / self.dist.world_size
        out = [(step, {**dict(zip(self.names, row)), **host}) for (step, host), row in zip(self.host, values.tolist())]
        self.rows, self.host = [], []
        return out


def _check_finite(rows: list[tuple[int, dict[str, float]]], run_dir: Path) -> None:
    for step, m in rows:
        bad = {k: v for k, v in m.items() if not math.isfinite(v)}
        if bad:
            good = ckpt.resolve_latest(run_dir)
            terms = ", ".join(f"{k}={v:.4g}" for k, v in m.items() if k not in ("lr", "samples_per_s"))
            raise NonFiniteLossError(
                f"non-finite {', '.join(sorted(bad))} at step {step} ({terms}); the run stopped. Last good "
                f"checkpoint: {good if good is not None else 'none (no checkpoint yet)'}; lower the learning rate "
                "or the precision's range and re-run to resume from it")


def _open_run(task: Task, cfg: Config, run_dir: Path, dist: rt.Dist, force: bool,
              stack: contextlib.ExitStack) -> ckpt.Checkpoint | None:
    """Rank 0 takes the lock and prepares the directory; every rank gets the checkpoint rank 0 chose."""
    chosen: ckpt.Checkpoint | None = None

    def prepare() -> str | None:
        nonlocal chosen
        run_dir.mkdir(parents=True, exist_ok=True)
        stack.enter_context(dir_lock(run_dir, f"trainer {task.name}"))
        for p in ckpt.remove_stale_temp(run_dir):
            print(f"{task.name}: removed {p}, left by an interrupted checkpoint save")
        ckpt.prepare_run_dir(run_dir, cfg, task.shape_sections, force, extra=task.run_config_extra(),
                             before_write=task.setup_run_dir)
        chosen = ckpt.read_checkpoint(run_dir)
        return None if chosen is None else str(chosen.step_dir)

    step_dir = rt.main_first(dist, prepare)
    if not dist.is_main and step_dir is not None:
        chosen = ckpt.read_step_dir(Path(step_dir))
    return chosen


def finished_summary(task_name: str, run_dir: Path, loaded: ckpt.Checkpoint | None, steps: int,
                     dist: rt.Dist) -> dict[str, Any] | None:
    """For a run whose checkpoint ``loaded`` is already at ``steps`` or beyond (a finished run re-run): say so,
    and return its ``summary.json`` marked ``already_finished`` when that file is the summary of this step, so
    that nothing is built, loaded or rewritten (a rate of 0 samples/s would read as a failure). None when there
    is more to train, or no such summary (the caller then writes one)."""
    if loaded is None or loaded.step < steps:
        return None
    step = loaded.step
    try:
        saved = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        saved = None
    summary = dict(saved, already_finished=True) if isinstance(saved, dict) and saved.get("steps") == step else None
    if dist.is_main:
        print(f"{task_name}: {run_dir} already finished at step {step} ({task_name}.steps={steps}); nothing to train"
              + ("" if summary else ", writing its summary") + " (a larger --steps continues it)")
    return summary


def done_word(summary: dict[str, Any]) -> str:
    """How a command's closing line names the run it trained: 'done', or 'already finished' (nothing to do)."""
    return "already finished" if summary.get("already_finished") else "done"


def _restore(loaded: ckpt.Checkpoint | None, model: nn.Module, ema: rt.EMA, opt: torch.optim.Optimizer
             ) -> tuple[int, int, set, dict[str, float], dict[str, float]]:
    """Load a checkpoint's weights, EMA and optimizer state into the fresh ones; (start step, samples seen,
    skipped sample ids, last train metrics, last val metrics), all empty for a new run."""
    if loaded is None:
        return 0, 0, set(), {}, {}
    model.load_state_dict(loaded.tensors["model"])
    ema.load_state_dict(loaded.tensors["ema"])
    opt.load_state_dict(loaded.tensors["optim"])
    st = loaded.state
    ema.num_updates = st.get("ema_updates", loaded.step)
    skipped = set(st["skipped"]) if isinstance(st.get("skipped"), list) else set()  # older runs saved counts
    return loaded.step, st.get("samples_seen", 0), skipped, st.get("metrics", {}), st.get("val", {})


def _wrap(model: nn.Module, h: Hyper, dist: rt.Dist) -> tuple[nn.Module, nn.Module]:
    """(the network the steps run: DDP, then torch.compile on CUDA; a frozen copy that holds the EMA weights
    for validation and previews)."""
    device = dist.device
    net: nn.Module = model
    if dist.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if h.compile and device.type == "cuda":
        net = torch.compile(net)
    ema_model = copy.deepcopy(model).eval()
    for p in ema_model.parameters():
        p.requires_grad_(False)
    return net, ema_model


def _save_preview(task: Task, ema_model: nn.Module, step: int, run_dir: Path, logger) -> None:
    """The task's preview image of the EMA model, as RUN/samples/NAME and in TensorBoard."""
    shot = task.preview(ema_model, step)
    if shot is not None:
        name, image = shot
        (run_dir / "samples").mkdir(exist_ok=True)
        matplotlib.image.imsave(run_dir / "samples" / name, image)
        logger.log_image(step, f"{task.name}/preview", image)


def _save_checkpoint(run_dir: Path, step: int, model: nn.Module, ema: rt.EMA, opt: torch.optim.Optimizer,
                     state: dict[str, Any], keep: int, dist: rt.Dist) -> None:
    """Checkpoint step ``step`` (rank 0 writes, every rank waits); never non-finite weights."""
    if not weights_finite(model.state_dict(), ema.state_dict()):
        raise NonFiniteLossError(f"non-finite weights after step {step} with finite losses; not "
                                 f"checkpointed. Last good checkpoint: {ckpt.resolve_latest(run_dir)}")
    if dist.is_main:
        ckpt.save_checkpoint(run_dir, step, {"model": model.state_dict(), "ema": ema.state_dict(),
                                             "optim": opt.state_dict()}, state, keep)
    rt.barrier(dist)


def _flush(pending: "_StepMetrics", rate: rt.RateMeter, logger, bar, run_dir: Path) -> dict[str, float]:
    """Write the pending steps' metrics (a non-finite line too: it is the record of what happened), then stop the
    run on a non-finite loss; the last step's metrics."""
    rows = pending.flush()
    rows[-1][1]["samples_per_s"] = rate.read()
    logger.log_rows(rows, prefix="train/")
    _check_finite(rows, run_dir)
    last = rows[-1][1]
    bar.set_postfix(loss=f"{last['loss']:.4f}", samples_s=f"{last['samples_per_s']:.0f}")
    return last


def _run_facts(model: nn.Module, run, dist: rt.Dist) -> dict[str, Any]:
    """The summary's device, world size, precision and parameter count."""
    return {"device": str(dist.device), "world_size": dist.world_size,
            "precision": str(rt.autocast_dtype(run, dist.device) or "fp32"),
            "parameters": sum(p.numel() for p in model.parameters())}


def _resume_batches(task: Task, start: int, every: int, skipped: set) -> Iterator[Batch]:
    """The batch stream from step ``start``: its data segment's stream, less the batches a run that stopped off
    the segment grid already consumed (replayed; their skipped samples are added to ``skipped``)."""
    seg = segment_start(start, every)
    batches = iter(task.batches(seg))
    for _ in range(start - seg):
        skipped |= skipped_in(next(batches))
    return batches


def _validate(task: Task, model: nn.Module, ema_model: nn.Module, step: int, logger, bar, dist: rt.Dist
              ) -> dict[str, float]:
    """The task's validation at ``step`` (``ema_model`` holds the EMA weights), logged and shown on rank 0."""
    val = task.validate(model, ema_model, step)
    if val:
        logger.log(step, val, prefix="val/")
        if dist.is_main:
            bar.write(f"{task.name} step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in val.items()))
    return val


def train(task: Task, cfg: Config, run_dir: str | Path, *, dist: rt.Dist | None = None, force: bool = False,
          show_progress: bool = True) -> dict[str, Any]:
    """Train (or resume) ``task`` in ``run_dir`` up to ``task.hyper.steps``; write and return the summary."""
    dist = dist or rt.setup_distributed(cfg.run.device)
    device, run, h = dist.device, cfg.run, task.hyper
    run_dir = Path(run_dir)
    rt.enable_tf32(device)
    with contextlib.ExitStack() as stack:
        # --- 1. the run directory and the checkpoint to resume from
        loaded = _open_run(task, cfg, run_dir, dist, force, stack)
        if (finished := finished_summary(task.name, run_dir, loaded, h.steps, dist)) is not None:
            return finished  # nothing to train: the finished run's own summary

        # --- 2. model, EMA, optimizer (same init on every rank; DDP also broadcasts rank 0's weights)
        rt.seed_everything(run.seed)
        model = task.build_model().to(device)
        opt = task.make_optimizer(model)
        ema = rt.EMA(model, h.ema_decay)
        start, samples_seen, skipped, last, val = _restore(loaded, model, ema, opt)
        if loaded is not None and dist.is_main:
            print(f"{task.name}: resuming {run_dir} from step {start} ({loaded.step_dir.name})")

        # --- 3. DDP, then compile
        net, ema_model = _wrap(model, h, dist)

        # --- 4. steps
        logger = rt.MetricsLogger(run_dir, enabled=dist.is_main, resume_step=start if loaded else None)
        stack.callback(logger.close)
        bar = rt.progress(h.steps, start, task.name, disable=not (dist.is_main and show_progress))
        stack.callback(bar.close)
        rate = rt.RateMeter()
        pending = _StepMetrics(dist)
        t_start = time.perf_counter()
        batches = _resume_batches(task, start, run.checkpoint_every, skipped) if start < h.steps else None

        model.train()
        for step in range(start, h.steps):
            done = step + 1
            lr = lr_at(step, h.lr, h.warmup_steps)
            for g in opt.param_groups:
                g["lr"] = lr
            batch = next(batches)
            skipped |= skipped_in(batch)
            batch = to_device(batch, device)
            rt.seed_step(run.seed, dist.rank, step)
            with rt.autocast(run, device):
                loss, terms = task.loss(net, batch, rt.step_generator(run.seed, dist.rank, step, device), step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), h.grad_clip)
            opt.step()
            ema.decay = rt.ema_decay_at(step, h.ema_decay)
            ema.update(model)
            samples_seen += h.batch_size * dist.world_size
            rate.add(h.batch_size * dist.world_size)
            pending.add(done, {"loss": loss, **terms, "grad_norm": grad_norm}, {"lr": lr, **task.host_metrics(step)})
            bar.update(1)

            ckpt_due = done % run.checkpoint_every == 0 or done == h.steps
            val_due = done % task.val_every == 0 or done == h.steps
            preview_due = done % run.sample_every == 0 or done == h.steps
            # the same condition on every rank: a flush is a collective
            if done % run.log_every == 0 or ckpt_due or val_due or preview_due:
                last = _flush(pending, rate, logger, bar, run_dir)

            if val_due:
                ema.copy_to(ema_model)
                val = _validate(task, model, ema_model, done, logger, bar, dist)

            if preview_due and dist.is_main:
                ema.copy_to(ema_model)
                _save_preview(task, ema_model, done, run_dir, logger)

            if ckpt_due:
                skipped = rt.all_gather_union(skipped, dist)
                state = {"ema_updates": ema.num_updates, "samples_seen": samples_seen, "skipped": sorted(skipped),
                         "metrics": last, "val": val, **task.state()}
                _save_checkpoint(run_dir, done, model, ema, opt, state, run.keep_checkpoints, dist)
                if done < h.steps and done % run.checkpoint_every == 0:
                    batches = iter(task.batches(done))  # a new data segment starts at every checkpoint step

        # --- 5. summary
        batches = None  # stops the loader workers
        skipped = rt.all_gather_union(skipped, dist)
        seconds = time.perf_counter() - t_start
        summary = {
            "command": task.name, "steps": max(start, h.steps),
            "resumed_from": start if loaded is not None else None,
            "train": {k: v for k, v in last.items() if math.isfinite(v)}, "val": val,
            "skipped": skip_counts(skipped), "samples_seen": samples_seen,
            "seconds_this_session": round(seconds, 3),
            "samples_per_s": (round((h.steps - start) * h.batch_size * dist.world_size / max(seconds, 1e-9), 2)
                              if h.steps > start else None),  # None: no step this session
            **_run_facts(model, run, dist), **task.state(),
        }
        if dist.is_main:
            atomic_write_json(run_dir / "summary.json", summary, indent=2)
        rt.barrier(dist)
    return summary
