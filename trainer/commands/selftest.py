"""`trainer selftest`: can this environment train and sample? (the trainer image's last build step)

Three checks, in order, each printed on one line as it passes:

1. compilers: the C compiler Triton builds its CUDA launchers with and the C++ compiler TorchInductor
   builds CPU kernels with are found and compile a one-line program. A CUDA image from the
   ``-runtime`` family has neither, and ``torch.compile`` then fails at its first step (pytorch#116696);
2. imports: every module of the ``trainer`` and ``shared`` packages imports (so every third-party
   library they need at import time is installed), and ffmpeg is on the PATH (mp4 writing);
3. compiled forward: a tiny :class:`~trainer.diffusion.model.Denoiser`, weights drawn at random (the
   adaLN-Zero init would make every output 0 and hide a wrong kernel), run eagerly and through
   ``torch.compile`` on the device (CUDA when there is one, else the CPU), in fp32; the two outputs
   must agree within :data:`TOLERANCE` (relative to the output's scale).

Exit 0 when all pass; otherwise the failing check's traceback and exit 1 (an environment problem,
not a usage error). ``run_checks`` is the same thing as a function (bench/gpu_suite.py calls it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from shared.cli import ShortFlag, add_config_args, config_or_exit

NAME = "selftest"
HELP = ("Check this environment: the trainer's imports and ffmpeg, the C/C++ compilers torch.compile needs, and a "
        "compiled forward of a tiny denoiser on the device (CUDA when there is one) against the eager one.")

# max |compiled - eager| / max |eager| in fp32. Inductor reorders reductions and fuses ops, so the two
# differ by rounding (~1e-6 relative here); a wrong kernel is off by O(1).
TOLERANCE = 1e-3
# The denoiser's shape: small enough that compiling it on a CPU takes seconds.
TINY_DENOISER = ["diffusion.snippet_frames=2", "diffusion.audio_context_frames=1", "diffusion.prev_frames=1",
                 "diffusion.width=32", "diffusion.depth=1", "diffusion.heads=2", "diffusion.style_dim=4",
                 "timeline.n_bands=4"]
LATENT_CHANNELS, LATENT_SIZE, BATCH = 4, 8, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Of the config only run.device is used: the denoiser's shape is this command's own (TINY_DENOISER).
    add_config_args(parser, [ShortFlag("--device", "run.device", str,
                                       "Where the compiled forward runs (auto: CUDA when torch sees a GPU, else the CPU).")])


def check_imports() -> str:
    """Import every module of the trainer and shared packages; ffmpeg must be on the PATH."""
    names = []
    for pkg_name in ("shared", "trainer"):
        pkg = importlib.import_module(pkg_name)
        for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg_name}."):
            importlib.import_module(m.name)
            names.append(m.name)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not on the PATH (trainer sample and eval write mp4s through it)")
    return f"{len(names)} modules of shared/ and trainer/; ffmpeg at {ffmpeg}"


def _compile_hello(compiler: str, suffix: str) -> None:
    """Compile (and link) a one-line program with ``compiler``; raise naming it when that fails."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"hello{suffix}"
        src.write_text("int main(void) { return 0; }\n")
        proc = subprocess.run([compiler, str(src), "-o", str(Path(tmp) / "hello")], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{compiler} cannot compile a one-line program: {proc.stderr.strip()[-500:]}")


def c_compiler() -> str:
    """The C compiler Triton uses for its launchers: $CC, else cc/gcc/clang on the PATH (triton's own order)."""
    cc = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if cc is None or shutil.which(cc) is None:
        raise RuntimeError(f"no C compiler: {'CC=' + cc + ' is not found' if cc else 'none of cc, gcc, clang is on the PATH'}"
                           " (torch.compile on CUDA needs one for Triton; install gcc, pytorch#116696)")
    return shutil.which(cc)


def cxx_compiler() -> str:
    """The C++ compiler TorchInductor compiles CPU kernels with ($CXX, else its search list)."""
    from torch._inductor import cpp_builder

    try:
        cxx = cpp_builder.get_cpp_compiler()
    except Exception as e:  # inductor raises its own error types for "none found"
        raise RuntimeError(f"no C++ compiler for TorchInductor ({type(e).__name__}: {e}); install g++ or set CXX") from None
    path = shutil.which(cxx)
    if path is None:
        raise RuntimeError(f"the C++ compiler TorchInductor would use, {cxx!r}, is not found; install g++ or set CXX")
    return path


def check_compilers() -> str:
    cc, cxx = c_compiler(), cxx_compiler()
    _compile_hello(cc, ".c")
    _compile_hello(cxx, ".cpp")
    return f"C {cc}, C++ {cxx}"


def tiny_denoiser_and_inputs(device: Any, seed: int = 0) -> tuple[Any, tuple]:
    """A tiny Denoiser with random (not adaLN-Zero) weights and one batch of inputs, on ``device``."""
    import torch

    from shared.config import build_config
    from shared.timeline import channel_names
    from trainer.diffusion.model import Denoiser

    cfg = build_config([], overrides=TINY_DENOISER)
    n_audio = len(channel_names(cfg.timeline))
    g = torch.Generator().manual_seed(seed)
    model = Denoiser(cfg, LATENT_CHANNELS, LATENT_SIZE, n_audio)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    model = model.to(device).eval()
    d = cfg.diffusion
    x = torch.randn(BATCH, d.snippet_frames, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE, generator=g)
    audio = torch.randn(BATCH, d.snippet_frames, 2 * d.audio_context_frames + 1, n_audio, generator=g)
    prev = torch.randn(BATCH, d.prev_frames, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE, generator=g)
    t = torch.rand(BATCH, generator=g)
    frame_index = torch.arange(d.snippet_frames).repeat(BATCH, 1) + 5
    is_silent = torch.zeros(BATCH, d.snippet_frames)
    x, audio, prev, t, frame_index, is_silent = (v.to(device) for v in (x, audio, prev, t, frame_index, is_silent))
    cond = model.make_cond(audio, is_silent, frame_index, prev=prev, style_z=torch.randn(BATCH, d.style_dim, generator=g).to(device))
    return model, (x, t, cond)


def check_compiled_forward(device_name: str = "auto", backend: str = "inductor") -> str:
    """``backend``: TorchInductor (what training uses); bench/gpu_suite.py's CPU smoke run passes ``aot_eager``
    (the same graph capture without code generation: a cold inductor compile takes 30-60 s on a 2-core box)."""
    import torch

    from trainer.runtime import pick_device

    device = pick_device(device_name)
    model, inputs = tiny_denoiser_and_inputs(device)
    torch._dynamo.reset()  # a fresh compile, not one cached by an earlier call in this process
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # full fp32 on both sides: TF32 alone would differ by ~1e-3
    try:
        with torch.no_grad():
            eager = model(*inputs)
            t0 = time.perf_counter()
            compiled = torch.compile(model, backend=backend)(*inputs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
    finally:
        torch.set_float32_matmul_precision(precision)
    scale = eager.abs().max().item()
    err = (compiled - eager).abs().max().item() / max(scale, 1e-12)
    if not scale > 0 or not err <= TOLERANCE:
        raise RuntimeError(f"compiled and eager forwards differ on {device}: max |compiled - eager| / max |eager| = "
                           f"{err:.3g} (tolerance {TOLERANCE:g}; output scale {scale:.3g})")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return (f"{device} ({where}), {backend}: relative difference {err:.2g} <= {TOLERANCE:g}; compiled in "
            f"{seconds:.1f} s")


CHECKS: list[tuple[str, Callable[..., str]]] = [
    ("compilers", check_compilers),
    ("imports", check_imports),
    ("compiled forward", check_compiled_forward),
]


def run_checks(device: str = "auto", out=sys.stdout, backend: str = "inductor") -> list[dict[str, Any]]:
    """Run every check in order; one dict per check (name, ok, detail or error, seconds). Stops at the first failure."""
    results = []
    for name, fn in CHECKS:
        t0 = time.perf_counter()
        try:
            detail = fn(device, backend) if fn is check_compiled_forward else fn()
        except Exception as e:
            results.append({"name": name, "ok": False, "error": f"{type(e).__name__}: {e}",
                            "traceback": traceback.format_exc(), "seconds": round(time.perf_counter() - t0, 2)})
            print(f"selftest: {name}: FAILED: {type(e).__name__}: {e}", file=out, flush=True)
            break
        results.append({"name": name, "ok": True, "detail": detail, "seconds": round(time.perf_counter() - t0, 2)})
        print(f"selftest: {name}: ok: {detail}", file=out, flush=True)
    return results


def run(args: argparse.Namespace) -> int:
    cfg = config_or_exit(args)
    results = run_checks(cfg.run.device)
    if all(r["ok"] for r in results):
        print("selftest: all checks passed", flush=True)
        return 0
    print(results[-1]["traceback"], file=sys.stderr)
    return 1
