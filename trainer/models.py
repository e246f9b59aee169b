"""Which model a command runs: the one resolver of ``trainer sample``, ``trainer live`` and ``trainer eval``.

In order: ``--checkpoint RUN_OR_STEP_DIR``; ``--model NAME`` (a shipped model); the run directory
:data:`DEFAULT_RUN` when it exists; else the first shipped model of the command's preference that is found
(:data:`SHIPPED`, a committed ordering: its first entry is the default; ``trainer live`` prefers the causal live
model). Shipped models live under ``models/NAME`` in the working directory or, from any other directory, in the
checkout this package runs from.

:func:`model_defaults` reads a model's own inference settings from its ``config.yaml`` (YAML only, no torch), so
that ``--help`` shows the guidance and steps a command will really run with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.cli import ShortFlag, add_config_args
from shared.errors import SynestheteError
from shared.provenance import read_run_config

DEFAULT_RUN = "runs/diffusion"
MODELS_DIR = "models"
CHECKOUT_MODELS = Path(__file__).resolve().parents[1] / MODELS_DIR  # the checkout's own models/
# The shipped models, in the order a command falls back to them (MODEL_CARD.md in each). The order is the rule of
# issue 24 (:func:`cpu_default_order`): the models that sample 30 s of audio on the 2-core CPU in at most
# SAMPLE30_LIMIT_S (one command, start-up and the default output size included; bench/sample30_time.py's record
# docs/results/reports/NAME/sample30.json), largest (denoiser + VAE parameters) first; tests/test_shipped_model.py
# checks it against the committed records. Measured: synesthete-small-plan 2,197,283 parameters, 34.3 s (64 px,
# guidance 2, 512 px output); synesthete-tiny 453,387 parameters, 8.4 s; synesthete-tiny-live 450,891 parameters, 7.4 s.
# (synesthete-small, its predecessor with a learned style posterior, 2,352,819 parameters and 36.3 s, was replaced by
# synesthete-small-plan, the same recipe and steps with the teacher's plan as its style: issue 23; its card and
# reports stay in docs/results/reports/synesthete-small/.)
SHIPPED = ("synesthete-small-plan", "synesthete-tiny", "synesthete-tiny-live")
SAMPLE30_LIMIT_S = 60.0
SAMPLE30_RECORD = "docs/results/reports/{name}/sample30.json"
LIVE_PREFERENCE = ("synesthete-tiny-live",) + tuple(n for n in SHIPPED if n != "synesthete-tiny-live")


class ModelNotFound(SynestheteError):
    """No model to run: the message names what was looked for and how to get one."""


def shipped_model(name: str) -> Path | None:
    """``models/NAME`` in the working directory, else in the checkout this package runs from; None if neither."""
    for root in (Path(MODELS_DIR), CHECKOUT_MODELS):
        if (root / name).exists():
            return root / name
    return None


def resolve_model(checkpoint: str | None = None, model: str | None = None, prefer: tuple[str, ...] = SHIPPED) -> Path:
    """The model a command runs (the module docstring's order)."""
    if checkpoint:
        return Path(checkpoint)
    if model:
        found = shipped_model(model)
        if found is None:
            raise ModelNotFound(f"--model {model!r}: not a shipped model (shipped: {', '.join(SHIPPED)}; looked in "
                                f"{MODELS_DIR}/ and {CHECKOUT_MODELS})")
        return found
    if Path(DEFAULT_RUN).exists():
        return Path(DEFAULT_RUN)
    for name in prefer:
        found = shipped_model(name)
        if found is not None:
            return found
    raise ModelNotFound(f"no checkpoint given, no {DEFAULT_RUN}/ and no shipped model under {MODELS_DIR}/: train one "
                        "with `trainer diffusion` or pass --checkpoint RUN_OR_STEP_DIR")


def weights_parameters(step_or_run: str | Path) -> int:
    """Parameters in a checkpoint's ``ema.safetensors`` (a run dir's ``latest`` or a step dir), from its header."""
    import numpy as np
    from safetensors import safe_open

    with safe_open(str(Path(step_or_run) / "ema.safetensors"), "np") as f:
        return sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())


def model_parameters(model: str | Path) -> dict[str, int]:
    """A shipped model's parameters: ``denoiser`` (``latest``), ``vae`` (``vae/latest``) and their ``total``, the
    size :func:`cpu_default_order` ranks by."""
    n = {"denoiser": weights_parameters(Path(model) / "latest"), "vae": weights_parameters(Path(model) / "vae" / "latest")}
    return {**n, "total": n["denoiser"] + n["vae"]}


def cpu_default_order(parameters: dict[str, int], sample30_s: dict[str, float],
                      limit_s: float = SAMPLE30_LIMIT_S) -> tuple[str, ...]:
    """The shipped models in the CPU's fallback order: those whose 30 s sampling took at most ``limit_s``, by
    parameters, largest first; then the slower ones, fastest first (ties keep the given order)."""
    fast = sorted((n for n in parameters if sample30_s[n] <= limit_s), key=lambda n: -parameters[n])
    slow = sorted((n for n in parameters if sample30_s[n] > limit_s), key=lambda n: sample30_s[n])
    return tuple(fast + slow)


def model_defaults(path: str | Path) -> dict[str, Any]:
    """``{"inference.audio_guidance_scale": g, "inference.steps": n, ...}``: the inference settings saved with a
    model (its run directory's config.yaml; a step directory's run above it). Empty where none can be read."""
    p = Path(path)
    for run in (p, p.parent.parent):  # RUN, or RUN/ckpt/step-N
        try:
            saved = read_run_config(run)
        except SynestheteError:
            return {}
        if saved is not None:
            return {f"inference.{k}": v for k, v in (saved.get("inference") or {}).items()}
    return {}


def default_model_help(prefer: tuple[str, ...] = SHIPPED) -> str:
    """``--checkpoint``'s help: the order, and what it resolves to here and now."""
    try:
        now = f"here and now: {resolve_model(prefer=prefer)}"
    except ModelNotFound:
        now = "none found here"
    return (f"Diffusion run dir (its latest checkpoint) or a ckpt/step-* dir. Default: {DEFAULT_RUN} if it exists, "
            f"else the shipped {prefer[0]} ({now}).")


def add_model_arguments(parser, prefer: tuple[str, ...] = SHIPPED) -> str | None:
    """``--checkpoint`` and ``--model NAME`` on a command; returns the default model's path (None: none found)."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", default=None, metavar="RUN_OR_STEP_DIR", help=default_model_help(prefer))
    which.add_argument("--model", default=None, metavar="NAME", choices=SHIPPED,
                        help=f"A shipped model by name instead of --checkpoint ({', '.join(SHIPPED)}).")
    try:
        return str(resolve_model(prefer=prefer))
    except ModelNotFound:
        return None


def sampling_flags(seed_help: str = "Noise seed.", steps_help: str = "Sampling steps per snippet.") -> list[ShortFlag]:
    """The short flags of every command that samples a model: --seed, --guidance, --style-guidance, --steps."""
    return [ShortFlag("--seed", "inference.seed", int, seed_help),
            ShortFlag("--guidance", "inference.audio_guidance_scale", float, "Audio classifier-free guidance scale."),
            ShortFlag("--style-guidance", "inference.style_guidance_scale", float,
                      "Style classifier-free guidance scale (1 = off; more: --style-seed changes more)."),
            ShortFlag("--steps", "inference.steps", int, steps_help)]


def add_model_config_args(parser, default: str | None, flags: list[ShortFlag]) -> None:
    """:func:`shared.cli.add_config_args` with the defaults the command will really run: ``default``'s own settings
    (:func:`model_defaults`) where a model was found."""
    add_config_args(parser, flags, model_defaults=model_defaults(default) if default else None, source=default)
